"""Few-shot checkpoints through the plain entry points (issue 23, the episodic task of
:mod:`mner.tasks`): ``Pipeline.from_pretrained(FEWSHOT, support=S)``; ``mner predict FEWSHOT --support
S`` tags the support's types exactly as ``mner fewshot predict`` does (same lines); ``mner tag FEWSHOT
--support S`` writes the pipeline's rows on both engines, resumes after a kill and refuses a restart
with another support set; ``mner evaluate FEWSHOT EPISODES`` scores as ``mner fewshot evaluate``.
Without ``--support``, and with ``--support`` for a model of fixed types, one line and exit code 2;
``mner serve`` refuses a few-shot checkpoint in one line that says what to use instead.

NNShot, untrained, tags a query that repeats support words with the support's tags (each word's
nearest support word is itself), so the entities are known in advance."""

from __future__ import annotations

import json

import pytest

from fewshot_fixtures import fewshot_model, tiny_bert  # noqa: F401  (fixture)
from model_fixtures import encoders, maf_config, one_thread  # noqa: F401  (fixtures)
from mner.cli.main import main
from mner.data.example import Example
from mner.data.formats import write_jsonl
from mner.errors import MNERError

pytestmark = pytest.mark.usefixtures("one_thread")

CAPTION = "a bowl of food on a table"
SUPPORT = [("i love ramen", "ramen"), ("pad thai for lunch", "pad thai"), ("🍜 tacos with anna", "tacos"),
           ("best sushi in town", "sushi")]


def _support() -> list[Example]:
    out = []
    for i, (text, dish) in enumerate(SUPPORT):
        words, d = text.split(), dish.split()
        start = next(j for j in range(len(words)) if words[j:j + len(d)] == d)
        tags = ["O"] * len(words)
        tags[start:start + len(d)] = ["B-DISH"] + ["I-DISH"] * (len(d) - 1)
        out.append(Example(f"s{i}", words, tags, caption=CAPTION))
    return out


@pytest.fixture(scope="module")
def files(tiny_bert, tmp_path_factory):
    root = tmp_path_factory.mktemp("predict_fewshot")
    fewshot_model(tiny_bert, "nnshot").save_pretrained(root / "nnshot")
    write_jsonl(_support(), root / "dish.jsonl")
    inputs = root / "in.jsonl"
    inputs.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in [
        {"id": "a", "text": "🍜 tacos  with anna", "caption": CAPTION},   # offsets count code points
        {"id": "b", "text": "pad thai for lunch", "caption": CAPTION}]), encoding="utf-8")
    return {"root": root, "ckpt": root / "nnshot", "support": root / "dish.jsonl", "inputs": inputs}


def run(argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("mner: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_predict_with_a_support_set_tags_its_types_as_fewshot_predict_does(files, capsys):
    text = ["--text", "i love ramen", "--caption", CAPTION]
    code, out, err = run(["predict", files["ckpt"], "--support", files["support"], *text], capsys)
    assert code == 0, err
    record = json.loads(out)
    assert [(e["text"], e["type"], e["start"], e["end"]) for e in record["entities"]] == [("ramen", "DISH", 7, 12)]
    assert "types DISH" in err
    assert run(["fewshot", "predict", files["ckpt"], "--support", files["support"], *text], capsys)[1] == out

    code, out, err = run(["predict", files["ckpt"], "--support", files["support"], "--input", files["inputs"]], capsys)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in records] == ["a", "b"]
    got = [[(e["text"], e["type"], e["start"], e["end"]) for e in r["entities"]] for r in records]
    assert got == [[("tacos", "DISH", 2, 7)], [("pad thai", "DISH", 0, 8)]]
    assert records[0]["text"][2:7] == "tacos"   # code points into the text as given (the emoji is one)
    same = run(["fewshot", "predict", files["ckpt"], "--support", files["support"], "--input", files["inputs"]], capsys)
    assert same[0] == 0 and same[1] == out

    # the decoding options of mner fewshot predict reach the model: an O bias of 100 leaves no entity
    code, out, err = run(["predict", files["ckpt"], "--support", files["support"], *text, "--o-bias", "100"], capsys)
    assert code == 0 and json.loads(out)["entities"] == []

    written = files["root"] / "out.jsonl"
    code, out, err = run(["predict", files["ckpt"], "--support", files["support"], "--input", files["inputs"],
                          "--output", written], capsys)
    assert code == 0 and out == "" and written.read_text(encoding="utf-8") == same[1]


def test_predict_of_a_fewshot_checkpoint_without_support_says_to_pass_it(files, capsys):
    code, out, err = run(["predict", files["ckpt"], "--text", "Pizza with the Lakers"], capsys)
    assert code == 2 and out == ""
    line = one_line_error(err)
    assert "--support FILE" in line and "'nnshot'" in line and str(files["ckpt"]) in line


def test_support_with_a_model_of_fixed_types_is_refused(encoders, files, capsys):
    from mner.models import MAFModel

    maf = files["root"] / "maf"
    MAFModel(maf_config(encoders, view="caption")).save_pretrained(maf)
    code, out, err = run(["predict", maf, "--support", files["support"], "--text", "Obama in Paris"], capsys)
    assert code == 2 and out == ""
    line = one_line_error(err)
    assert f"--support {files['support']}" in line and "'maf'" in line and "fixed set of entity types" in line
    code, out, err = run(["predict", maf, "--o-bias", "2", "--text", "Obama in Paris"], capsys)
    assert code == 2 and "--o-bias" in one_line_error(err) and "few-shot" in one_line_error(err)
    # and without --support it still tags as before
    code, out, err = run(["predict", maf, "--text", "Obama in Paris", "--caption", "a man"], capsys)
    assert code == 0 and "entities" in json.loads(out)


def _texts(files) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in files["inputs"].read_text(encoding="utf-8").splitlines()]
    return [r["text"] for r in rows], [r["caption"] for r in rows]


def test_one_pipeline_for_any_checkpoint_binds_a_support_set(files, encoders):
    from mner.fewshot.pipeline import FewShotPipeline
    from mner.models import MAFModel, load_model
    from mner.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(files["ckpt"], support=files["support"], device="cpu")
    assert isinstance(pipe, Pipeline) and pipe.task == "episodic" and pipe.types == ["DISH"]
    texts, captions = _texts(files)
    got = pipe(texts, caption=captions)
    assert [[(e["text"], e["start"], e["end"]) for e in ents] for ents in got] == [[("tacos", 2, 7)], [("pad thai", 0, 8)]]
    # the same as the few-shot pipeline built by hand, with the support given as examples
    by_hand = FewShotPipeline(load_model(files["ckpt"]), _support(), device="cpu")
    assert by_hand(texts, caption=captions) == got
    assert pipe.info() == {"model_type": "nnshot", "task": "episodic", "types": ["DISH"], "support": 4,
                           "views": list(pipe.views), "backend": "torch"}
    with pytest.raises(MNERError, match=r"pass support=FILE"):
        Pipeline.from_pretrained(files["ckpt"])
    maf = files["root"] / "maf-pipe"
    MAFModel(maf_config(encoders, view="caption")).save_pretrained(maf)
    with pytest.raises(MNERError, match="fixed set of entity types"):
        Pipeline.from_pretrained(maf, support=files["support"])
    assert Pipeline.from_pretrained(maf).task == "supervised"


def _tag_rows(out_dir) -> list[dict]:
    from mner.batch import read_output

    return sorted(read_output(out_dir), key=lambda r: r["row"])


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_tag_with_a_support_set_writes_the_pipelines_rows(files, capsys, engine):
    if engine == "ray":
        pytest.importorskip("ray")
    from mner.batch.tagging import ENTITY_FIELDS
    from mner.pipeline import Pipeline

    texts, captions = _texts(files)
    want = Pipeline.from_pretrained(files["ckpt"], support=files["support"], device="cpu")(texts, caption=captions)
    out_dir = files["root"] / f"tagged-{engine}"
    extra = ["--workers", "1"] if engine == "local" else ["--concurrency", "1", "--threads", "1"]
    code, out, err = run(["tag", files["ckpt"], files["inputs"], "--out", out_dir, "--support", files["support"],
                          "--engine", engine, "--no-progress", *extra], capsys)
    assert code == 0, err
    assert "support: 4 tweets, types DISH" in err
    rows = _tag_rows(out_dir)
    assert [r["id"] for r in rows] == ["a", "b"]
    assert [r["entities"] for r in rows] == [[{f: e[f] for f in ENTITY_FIELDS} for e in ents] for ents in want]
    assert all(r["match_probability"] is None for r in rows)
    manifest = json.loads((out_dir / "_manifest.json").read_text())
    assert manifest["options"]["support"]["sha256"]
    # a restart with another support set would mix two sets of types in one folder: refused, naming it
    other = files["root"] / f"other-{engine}.jsonl"
    write_jsonl(_support()[:2], other)
    code, out, err = run(["tag", files["ckpt"], files["inputs"], "--out", out_dir, "--support", other,
                          "--no-progress"], capsys)
    assert code == 2 and "other options (support" in one_line_error(err)
    if engine == "local":  # the decoding options of mner predict act here too, and are part of the output's options
        biased = files["root"] / "tagged-biased"
        code, out, err = run(["tag", files["ckpt"], files["inputs"], "--out", biased, "--support", files["support"],
                              "--o-bias", "100", "--workers", "1", "--no-progress"], capsys)
        assert code == 0, err
        assert [r["entities"] for r in _tag_rows(biased)] == [[], []]
        assert json.loads((biased / "_manifest.json").read_text())["options"]["decoding"] == {"o_bias": 100.0}
        code, out, err = run(["tag", files["ckpt"], files["inputs"], "--out", biased, "--support", files["support"],
                              "--no-progress"], capsys)
        assert code == 2 and "decoding" in one_line_error(err)


def test_tag_of_a_fewshot_checkpoint_without_support_says_to_pass_it(files, capsys):
    out_dir = files["root"] / "tagged-none"
    code, out, err = run(["tag", files["ckpt"], files["inputs"], "--out", out_dir], capsys)
    assert code == 2 and out == ""
    line = one_line_error(err)
    assert "--support FILE" in line and "'nnshot'" in line
    assert not out_dir.exists()   # refused before anything was read or written


def test_a_killed_fewshot_tag_run_started_again_writes_every_row_once(files, tmp_path):
    import subprocess
    import sys

    from model_fixtures import subprocess_env

    texts = ["🍜 tacos  with anna", "pad thai for lunch", "i love ramen", "best sushi in town", "nothing here"]
    inputs = tmp_path / "many.jsonl"
    inputs.write_text("".join(json.dumps({"id": f"t{i}", "text": texts[i % 5], "caption": CAPTION},
                                         ensure_ascii=False) + "\n" for i in range(12)), encoding="utf-8")
    base = ["tag", str(files["ckpt"]), str(inputs), "--support", str(files["support"]), "--shard-size", "5",
            "--batch-size", "2", "--workers", "0", "--no-progress"]
    env = subprocess_env(tmp_path)
    env["MNER_TAG_CRASH_AFTER"] = "1"   # the process dies right after its first committed shard
    out_dir = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-m", "mner", *base, "--out", str(out_dir)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 137, proc.stderr[-2000:]
    assert json.loads((out_dir / "_manifest.json").read_text())["status"] == "running"
    assert main([*base, "--out", str(out_dir)]) == 0
    assert main([*base, "--out", str(tmp_path / "reference")]) == 0
    rows = _tag_rows(out_dir)
    assert rows == _tag_rows(tmp_path / "reference") and [r["id"] for r in rows] == [f"t{i}" for i in range(12)]
    assert any(r["entities"] for r in rows)


def test_serve_of_a_fewshot_checkpoint_without_support_says_to_pass_it(files, capsys):
    code, out, err = run(["serve", files["ckpt"], "--port", "1"], capsys)
    assert code == 2
    line = one_line_error(err)
    assert "--support FILE" in line and "'nnshot'" in line
    code, out, err = run(["serve", files["ckpt"], "--port", "1", "--support", files["root"] / "none.jsonl"], capsys)
    assert code == 2 and "no such file" in one_line_error(err)


def test_a_missing_support_file_is_refused_in_one_line_by_every_entry_point(files, capsys, tmp_path):
    """One check (``Task.check_support``) for every entry point, before anything is read or written."""
    missing = files["root"] / "no-such-support.jsonl"
    for argv in (["predict", files["ckpt"], "--text", "tacos"],
                 ["fewshot", "predict", files["ckpt"], "--text", "tacos"],
                 ["tag", files["ckpt"], files["inputs"], "--out", tmp_path / "o"],
                 ["tag", files["ckpt"], files["inputs"], "--out", tmp_path / "o", "--engine", "ray"],
                 ["serve", files["ckpt"], "--port", "1"],
                 ["explain", files["ckpt"], "--text", "tacos", "--out", tmp_path / "x.png"]):
        code, out, err = run([*argv, "--support", missing], capsys)
        assert code == 2 and f"--support {missing}: no such file" in one_line_error(err), argv
    assert not (tmp_path / "o").exists() and not (tmp_path / "x.png").exists()
    from mner.pipeline import Pipeline

    with pytest.raises(MNERError, match=r"^support=/.*no-such-support.jsonl: no such file$"):
        Pipeline.from_pretrained(files["ckpt"], support=missing)


def test_serve_of_a_fewshot_checkpoint_answers_predict_with_its_support_set(files):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mner.pipeline import Pipeline
    from mner.serve.app import create_app

    texts, captions = _texts(files)
    want = Pipeline.from_pretrained(files["ckpt"], support=files["support"], device="cpu")(texts, caption=captions)
    with TestClient(create_app(files["ckpt"], support=files["support"], device="cpu")) as client:
        info = client.get("/model").json()
        assert info["task"] == "episodic" and info["types"] == ["DISH"] and info["entity_types"] == ["DISH"]
        assert info["match_probability"] is False and info["fewshot"] is not None
        for text, caption, ents in zip(texts, captions, want):
            got = client.post("/predict", json={"text": text, "caption": caption})
            assert got.status_code == 200, got.text
            body = got.json()
            assert [(e["text"], e["type"], e["start"], e["end"]) for e in body["entities"]] == [
                (e["text"], e["type"], e["start"], e["end"]) for e in ents]
            assert body["match_probability"] is None
        # the New types tab runs the same model with the support set each request sends
        spans = {"support": [{"text": "i love ramen", "entities": [{"start": 7, "end": 12, "type": "DISH"}],
                              "caption": CAPTION}], "text": "ramen for lunch", "caption": CAPTION}
        got = client.post("/fewshot/predict", json=spans)
        assert got.status_code == 200, got.text
        one = [Example("s0", ["i", "love", "ramen"], ["O", "O", "B-DISH"], caption=CAPTION)]
        alone = Pipeline.from_pretrained(files["ckpt"], support=one, device="cpu")("ramen for lunch", caption=CAPTION)
        assert got.json()["types"] == ["DISH"] and got.json()["entities"] == alone
        assert client.get("/").status_code == 200
    # its decoding options act as in mner predict: an O bias of 100 leaves no entity
    with TestClient(create_app(files["ckpt"], support=files["support"], device="cpu", decoding={"o_bias": 100.0})) as client:
        assert client.post("/predict", json={"text": texts[0], "caption": captions[0]}).json()["entities"] == []
