"""The user-defined-types set (``bench/data/user-types/``) and its scoring script (``bench/user_types.py``).

The data: read by mner's own readers, IOB2 of the declared types, the texts exactly the tokens (and
what mner's tokenizer makes of them), the README's counts, no duplicate, no text of the benchmarks.
The script: end to end on tiny random checkpoints through ``mner fewshot predict``; an untrained
NNShot given the support tweets as queries tags them back exactly (each word's nearest support word
is itself), so the whole path, predict's character offsets to tags to scores, must give F1 = 1."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from conftest import DATA_DIR
from fewshot_fixtures import fewshot_model
from model_fixtures import one_thread  # noqa: F401  (fixture)
from mner.data.example import Example
from mner.data.formats import read_file, read_jsonl, read_twitter
from mner.data.tokenize import tokenize_text
from mner.tagging import get_spans, tag_problems
from tiny_models import make_tiny_bert

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import user_types  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

DATA = ROOT / "bench" / "data" / "user-types"
TYPES = {"PRODUCT", "EVENT", "WORK"}
OTHER = {"PER", "LOC", "ORG"}


def raw(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def readme_tables() -> dict[str, list[str]]:
    """Every table row of the README: its first cell -> the other cells."""
    rows = {}
    for line in (DATA / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and not set(line) <= set("|-"):
            rows[cells[0]] = cells[1:]
    return rows


def types_of(tags) -> set[str]:
    return {s.label for s in get_spans(list(tags))}


def test_files_are_read_by_mner_and_tagged_iob2():
    support = read_file(DATA / "support.jsonl")
    query = read_jsonl(DATA / "query.jsonl")
    assert len(support) == len(raw("support.jsonl")) and len(query) == len(raw("query.jsonl"))
    for ex in support + query:
        assert ex.tags is not None and not tag_problems(ex.tags, "iob2"), ex.where
        assert {t[2:] for t in ex.tags if t != "O"} <= TYPES, ex.where
    for rec in raw("query.jsonl"):
        other = rec["other_tags"]
        assert len(other) == len(rec["tokens"]) and not tag_problems(other, "iob2"), rec["id"]
        assert {t[2:] for t in other if t != "O"} <= OTHER, rec["id"]
        assert all(t == "O" or o == "O" for t, o in zip(rec["tags"], other)), rec["id"]
    assert all(set(rec) == {"id", "text", "tokens", "tags", "caption"} for rec in raw("support.jsonl"))


def test_text_is_the_tokens():
    for rec in raw("support.jsonl") + raw("query.jsonl"):
        assert rec["text"].split() == rec["tokens"], rec["id"]
        assert " ".join(rec["tokens"]) == rec["text"], rec["id"]            # single spaces, nothing around
        assert tokenize_text(rec["text"])[0] == rec["tokens"], rec["id"]    # what predict makes of the text
    for ex in read_jsonl(DATA / "query.jsonl", require_tokens=False):
        assert ex.text == " ".join(ex.tokens)


def test_counts_are_the_readmes():
    rows = readme_tables()
    support, query, q_raw = read_file(DATA / "support.jsonl"), read_jsonl(DATA / "query.jsonl"), raw("query.jsonl")
    header = rows["per type"]
    assert set(header) == TYPES
    for i, t in enumerate(header):
        tweets = sum(t in types_of(ex.tags) for ex in support)
        assert 5 <= tweets <= 10, t
        assert tweets == int(rows["support tweets"][i]), t
        assert sum(s.label == t for ex in support for s in get_spans(list(ex.tags))) == int(rows["support mentions"][i])
        q_tweets = sum(t in types_of(ex.tags) for ex in query)
        assert q_tweets >= 30 and q_tweets == int(rows["query tweets with a mention"][i]), t
        assert sum(s.label == t for ex in query for s in get_spans(list(ex.tags))) == int(rows["query mentions"][i])
    n_types = [len(types_of(r["tags"])) for r in q_raw]
    has_other = [bool(types_of(r["other_tags"])) for r in q_raw]
    counts = {
        "with one new type": n_types.count(1),
        "with two new types": n_types.count(2),
        "with other names only (PER, LOC, ORG)": sum(n == 0 and o for n, o in zip(n_types, has_other)),
        "with no name at all": sum(n == 0 and not o for n, o in zip(n_types, has_other)),
        "with other names beside a new type": sum(n > 0 and o for n, o in zip(n_types, has_other)),
        'starting with a capitalised "The" that is no name': sum(
            r["tokens"][0] == "The" and r["tags"][0] == "O" and r["other_tags"][0] == "O" for r in q_raw),
        "all": len(q_raw),
    }
    assert {k: int(rows[k][0]) for k in counts} == counts
    assert 0.2 <= counts["with no name at all"] / counts["all"] <= 0.3     # about a quarter
    for label in OTHER:
        assert sum(s.label == label for r in q_raw for s in get_spans(r["other_tags"])) == int(rows[label][0])
    pairs = {}
    for r in q_raw:
        if len(types_of(r["tags"])) == 2:
            key = "+".join(sorted(types_of(r["tags"])))
            pairs[key] = pairs.get(key, 0) + 1
    assert sorted(pairs.values()) == [4, 4, 4] and len(pairs) == 3
    tokens = re.search(r"Tokens: support (\d+), query (\d+)", (DATA / "README.md").read_text(encoding="utf-8"))
    assert (sum(map(len, support)), sum(map(len, query))) == (int(tokens[1]), int(tokens[2]))


def test_no_duplicates_and_captions_name_nothing():
    recs = raw("support.jsonl") + raw("query.jsonl")
    assert len({r["id"] for r in recs}) == len(recs)
    texts = [r["text"].lower() for r in recs]
    assert len(set(texts)) == len(texts), [t for t in texts if texts.count(t) > 1]
    for r in recs:
        cap = r["caption"]
        assert cap and cap == cap.lower() and cap.strip() == cap and not cap.endswith("."), r["id"]
        for s in get_spans(r["tags"]):
            mention = " ".join(r["tokens"][s.start:s.end]).lower().lstrip("#")
            assert not re.search(rf"\b{re.escape(mention)}\b", cap), (r["id"], mention)


def test_no_text_of_the_benchmarks():
    folders = [DATA_DIR / d for d in ("twitter2015", "twitter2017")]
    if not all(f.is_dir() for f in folders):
        pytest.skip(f"the benchmark tweets are not at {DATA_DIR} (set MNER_DATA): the check that no tweet of "
                    "the set is a benchmark tweet needs them")
    bench = {" ".join(ex.tokens).lower() for f in folders for path in sorted(f.glob("*.txt"))
             for ex in read_twitter(path)}
    assert len(bench) > 1000
    ours = [r for r in raw("support.jsonl") + raw("query.jsonl") if r["text"].lower() in bench]
    assert not ours, [r["id"] for r in ours]


# ----------------------------------------------------------------------------- the script


def test_entities_map_to_gold_tokens():
    ex = Example("1", ["my", "Apple", "Watch", "broke"], ["O", "B-PRODUCT", "I-PRODUCT", "O"])
    ents = [{"text": "Apple Watch", "type": "PRODUCT", "start": 3, "end": 14}]
    assert user_types.entities_to_tags(ex, ents) == ["O", "B-PRODUCT", "I-PRODUCT", "O"]
    with pytest.raises(ValueError, match="does not fall on the gold tokens"):
        user_types.entities_to_tags(ex, [{"text": "pple", "type": "PRODUCT", "start": 4, "end": 8}])
    with pytest.raises(ValueError, match="in the gold text"):
        user_types.entities_to_tags(ex, [{"text": "Pear", "type": "PRODUCT", "start": 3, "end": 8}])


def test_scores_and_false_positives():
    gold = [Example("1", ["The", "Big", "Mac", "in", "Tokyo"], ["O", "B-PRODUCT", "I-PRODUCT", "O", "O"]),
            Example("2", ["rain", "all", "week"], ["O", "O", "O"])]
    other = [["O", "O", "O", "O", "B-LOC"], ["O", "O", "O"]]
    pred = [["B-EVENT", "B-PRODUCT", "I-PRODUCT", "O", "B-WORK"], ["B-WORK", "O", "O"]]
    s = user_types.score_predictions(gold, other, pred)
    assert s["per_type"]["PRODUCT"]["f1"] == 1.0 and s["per_type"]["WORK"]["precision"] == 0.0
    assert s["micro"]["tp"] == 1 and s["micro"]["predicted"] == 4 and s["micro"]["support"] == 1
    assert s["false_positives"] == {"total": 3, "on_other_names": 1, "in_tweets_without_names": 1, "wrong_type": 0}


def _ckpt_dir(root: Path, cell: str, model_type: str) -> Path:
    best = root / "runs" / "bench-fewshot" / cell / "best"
    best.mkdir(parents=True)
    (best / "config.json").write_text(json.dumps({"model_type": model_type}))
    return best


def test_only_finished_cells_and_their_decodings(tmp_path, monkeypatch):
    results = tmp_path / "results"
    results.mkdir()
    monkeypatch.setattr(user_types, "RESULTS", results)
    done, training = "twitter2017__Per+Loc__nnshot__k5__seed37", "twitter2017__Per+Loc__mousing__k5__seed37"
    nn = _ckpt_dir(tmp_path / "wt", done, "nnshot")
    _ckpt_dir(tmp_path / "wt", training, "mousing")
    _ckpt_dir(tmp_path / "wt", "twitter2015__Per+Loc__nnshot__k5__seed37", "nnshot")
    (results / f"{done}.json").write_text("{}")
    (results / "twitter2015__Per+Loc__nnshot__k5__seed37.json").write_text("{}")
    (results / (done.replace("nnshot", "structshot") + ".json")).write_text(json.dumps({"temperature": 0.05}))
    logged = []
    assert user_types.find_checkpoints([tmp_path / "wt"], log=logged.append) == [(done, nn.resolve())]
    assert len(logged) == 1 and training in logged[0]
    rows, notes = user_types.decodings(done, "nnshot", {"--support", "--input"})
    assert rows == [("nnshot", [])] and "no --decoder" in notes[0]
    rows, notes = user_types.decodings(done, "nnshot", {"--decoder", "--temperature"})
    assert rows == [("nnshot", []), ("structshot", ["--decoder", "structshot", "--temperature", "0.05"])] and not notes
    assert user_types.decodings(None, "mousing", set()) == ([("mousing", [])], [])


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Untrained tiny NNShot and MOUSING checkpoints; 512 positions, as the tiny vocabulary spells most
    words letter by letter."""
    folder = tmp_path_factory.mktemp("user_types")
    bert = make_tiny_bert(folder / "bert", max_position_embeddings=512)
    out = {}
    for variant in ("nnshot", "mousing"):
        fewshot_model(bert, variant).save_pretrained(folder / variant)
        out[variant] = folder / variant
    return out


def test_script_end_to_end(tiny_checkpoints, tmp_path, capsys):
    page = tmp_path / "user-types.md"
    support = DATA / "support.jsonl"
    # the support tweets as queries: an untrained NNShot tags them back exactly, three types in one episode
    assert user_types.main([str(tiny_checkpoints["nnshot"]), str(tiny_checkpoints["mousing"]),
                            "--query", str(support), "--out", str(page), "--json", str(tmp_path / "rows.json")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(out[-1])
    by = {r["model"]: r for r in figures["rows"]}
    nn, mo = by["nnshot"], by["mousing"]
    assert nn["micro"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert nn["per_type_f1"] == {"PRODUCT": 1.0, "EVENT": 1.0, "WORK": 1.0}
    assert set(mo["per_type_f1"]) == TYPES
    assert figures["data_sha256"]["support"] == figures["data_sha256"]["query"] == user_types.sha256(support)
    text = page.read_text(encoding="utf-8")
    assert "| NNShot |" in text and "| MOUSING |" in text and figures["data_sha256"]["support"] in text
    assert "fewshot predict" in text and "--support" in text
    # the rows as data beside the page, for the few-shot results page
    stored = json.loads((tmp_path / "rows.json").read_text())
    assert [r["model"] for r in stored["rows"]] == ["nnshot", "mousing"] and stored["types"] == list(stored["types"])
    assert stored["rows"][0]["micro"]["f1"] == 1.0 and stored["command"].startswith(".venv/bin/python bench/user_types.py")
    # the real query file: every gold mention counted, false positives split
    assert user_types.main([str(tiny_checkpoints["nnshot"]), "--no-page"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rows"][0]
    assert 0.0 <= row["micro"]["f1"] <= 1.0
    assert set(row["false_positives"]) == {"total", "on_other_names", "in_tweets_without_names", "wrong_type"}
