"""One benchmark runner over a typed cell (issue 23, item 6): ``bench/cells.py``'s :class:`Cell`
schema, ``bench/runner.py``'s loop, and what both benchmark scripts get from them (staleness,
``--rerun-stale``, stored predictions), on made-up cells and a tiny few-shot model.
"""

from __future__ import annotations

import copy
import gzip
import json
import statistics
import sys
from pathlib import Path

import pytest

from fewshot_fixtures import tiny_bert, write_tiny_corpus  # noqa: F401  (fixture)
from mner.cli import main as mner_main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import cells  # noqa: E402
import fewshot_benchmark as fewshot  # noqa: E402
import maf_benchmark as maf  # noqa: E402
import runner  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPEC = cells.Fingerprint(("mner/models/",))


def _cell(name: str = "d__m__seed1", f1: float = 0.5, **over) -> dict:
    c = {"cell": name, "dataset": "d", "model": "m", "seed": 1, "command": f"bench {name}",
         "config": {"training": {"output_dir": "/x/run", "lr": 1e-3}, "data": {"corpus": "/x/data"}},
         "test": {"precision": 0.5, "recall": 0.5, "f1": f1, "per_type": {"PER": f1}, "episode_counts": [[1, 2, 2]]},
         "dev_f1": 0.4, "best_epoch": 2, "seconds_per_epoch": [1.5, 1.5], "wall_seconds": 3.0,
         "machine": "cpu", "git_commit": "abc1234", "code_fingerprint": "fp-old", "finished": "2026-12-07T00:00:00+00:00"}
    c.update(over)
    return c


def test_every_stored_cell_has_the_schema_and_reads_back_to_its_bytes():
    paths = sorted((ROOT / "bench" / "results").glob("*/*.json"))
    assert len(paths) > 100
    for path in paths:
        cell = cells.Cell.load(path)
        assert isinstance(cell.test, cells.Scores) and 0 <= cell.test.f1 <= 1
        assert json.dumps(cell.to_dict(), indent=2) + "\n" == path.read_text(), path


def test_a_malformed_cell_is_refused_naming_the_file_and_the_field(tmp_path):
    path = tmp_path / "d__m__seed1.json"
    path.write_text(json.dumps(_cell(test={"precision": 0.5, "recall": 0.5, "f1": "high"})))
    with pytest.raises(cells.CellError, match=r"d__m__seed1\.json, test: field 'f1' is str"):
        cells.Cell.load(path)
    bad = _cell()
    del bad["command"]
    path.write_text(json.dumps(bad))
    with pytest.raises(cells.CellError, match=r"d__m__seed1\.json: missing field\(s\) command"):
        cells.Cell.load(path)
    path.write_text(json.dumps(_cell(seed=True)))  # a bool is not a seed
    with pytest.raises(cells.CellError, match="field 'seed' is bool"):
        cells.Cell.load(path)
    path.write_text(json.dumps(_cell(name="other")))
    with pytest.raises(cells.CellError, match="holds cell 'other'"):
        cells.Cell.load(path)
    path.write_text("{")
    with pytest.raises(cells.CellError, match="not JSON"):
        cells.Cell.load(path)


def test_the_typed_fields_and_the_benchmarks_own_keep_their_order():
    d = _cell(predictions={"path": "p.gz", "sha256": "0" * 64, "bytes": 3, "tweets": 2})
    cell = cells.Cell.from_dict(d)
    assert cell.predictions.extra == {"tweets": 2} and cell.extra["dataset"] == "d"
    assert list(cell.to_dict()) == list(d) and cell.to_dict() == d
    cell.previous = {"test_f1": 0.4}  # a new field goes after the others
    assert list(cell.to_dict())[-1] == "previous"


def test_staleness_is_code_or_configuration_and_ignores_where_the_cell_ran(tmp_path):
    versions = cells.Versions(SPEC)
    stored = _cell()
    now = json.loads(json.dumps(stored["config"]))
    now["training"]["output_dir"], now["data"]["corpus"] = "/elsewhere/run", "/elsewhere/data"
    volatile = ("training.output_dir", "data.corpus")
    assert cells.stale_reasons(stored, "fp-old", versions, now, volatile) == []
    assert cells.stale_reasons(stored, "fp-new", versions, now, volatile) == ["code"]
    now["training"]["lr"] = 5e-5
    assert cells.stale_reasons(stored, "fp-old", versions, now, volatile) == ["configuration"]
    # a key the stored cell did not name, written out later with the value it meant then, is no change
    named = dict(stored["config"], model={"o_distance": "prototype"})
    assert cells.stale_reasons(stored, "fp-old", versions, named, volatile) == ["configuration"]
    implied = {"model.o_distance": "prototype"}
    assert cells.stale_reasons(dict(stored, config=dict(stored["config"], model={})), "fp-old", versions, named,
                               volatile, implied) == []
    assert cells.stale_reasons(stored, "fp-old", versions, dict(named, model={"o_distance": "nearest"}), volatile,
                               implied) == ["configuration"]
    # a re-run that gave the stored figures at new code makes the two versions one
    versions.add_reruns([_cell(code_fingerprint="fp-new", previous={"code_fingerprint": "fp-old", "test_f1": 0.5,
                                                                    "dev_f1": 0.4, "stale": ["code"]})])
    assert cells.stale_reasons(stored, "fp-new", versions, stored["config"], volatile) == []
    assert versions.shown_by["fp-new"] == "d__m__seed1"


def test_a_version_shown_equal_to_two_others_joins_all_three():
    versions = cells.Versions(SPEC)
    entry = lambda old, new: {"cell": f"{old}->{new}", "old": {"code_fingerprint": old, "dev_f1": 0.4, "test_f1": 0.5},
                              "new": {"code_fingerprint": new, "dev_f1": 0.4, "test_f1": 0.5}}
    versions.add_evidence([entry("fp-a", "fp-b"), entry("fp-c", "fp-b")])
    # fp-b trains as fp-a and as fp-c: the second link does not undo the first
    assert versions.same("fp-a", "fp-b") and versions.same("fp-c", "fp-b") and versions.same("fp-a", "fp-c")
    assert versions.shown_by["fp-b"] == "fp-a->fp-b"
    # every link names the re-run that made it (the MAF page looks each one up)
    assert set(versions.equivalent) <= set(versions.shown_by) and versions.shown_by["fp-a"] == "fp-c->fp-b"
    # figures that differ show nothing
    versions.add_evidence([{"cell": "x", "old": {"code_fingerprint": "fp-d", "dev_f1": 0.4, "test_f1": 0.5},
                            "new": {"code_fingerprint": "fp-e", "dev_f1": 0.4, "test_f1": 0.51}}])
    assert not versions.same("fp-d", "fp-e") and not versions.same("fp-a", "fp-d")


def test_the_fewshot_page_names_what_an_equivalence_rerun_did_not_reproduce(tmp_path, monkeypatch):
    """An equivalence entry whose F1s match links the two code versions; where it says which other
    figures moved (``except``), the page says so instead of "every figure"."""
    def side(fp, commit):
        return {"code_fingerprint": fp, "git_commit": commit, "dev_f1": 0.4, "test_f1": 0.5}

    evidence = [{"cell": "c1", "machine": "host", "old": side("fp-old", "aaa1111"), "new": side("fp-new", "bbb2222")},
                {"cell": "c2", "machine": "host", "old": side("fp-old", "aaa1111"), "new": side("fp-x", "ccc3333"),
                 "except": "two graph statistics (after the eighth digit)"}]
    monkeypatch.setattr(fewshot, "ROOT", tmp_path)
    monkeypatch.setattr(fewshot, "EQUIVALENCE_FILE", tmp_path / "fewshot-equivalence.json")
    fewshot.EQUIVALENCE_FILE.write_text(json.dumps(evidence))
    monkeypatch.setattr(fewshot.cellmeta, "code_fingerprint", lambda spec, src=None: "fp-new")
    text = "\n".join(fewshot._version_lines([dict(_cell("c0"), code_fingerprint="fp-old", git_commit="aaa1111")]))
    assert "(counts as the code here now)" in text
    plain = next(line for line in text.splitlines() if line.startswith("Code `fp-new`"))
    moved = next(line for line in text.splitlines() if line.startswith("Code `fp-x`"))
    assert "to the last digit (" in plain and "except" not in plain
    assert "to the last digit except two graph statistics (after the eighth digit) (" in moved


def _plan(results: Path, name: str, f1: float, calls: list, config: dict | None = None, record=None) -> runner.Plan:
    def run():
        calls.append(name)
        return [record if record is not None else _cell(name, f1, code_fingerprint="fp-new")]

    stored_config = _cell()["config"]
    return runner.Plan(name=name, path=results / f"{name}.json", config=config or stored_config,
                       run_dir=results.parent / "runs" / name, run=run)


def test_the_runner_skips_stored_cells_reruns_stale_ones_and_keeps_the_old_result(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    (results / "a__m__seed1.json").write_text(json.dumps(_cell("a__m__seed1", 0.5), indent=2) + "\n")
    calls: list = []
    built = []
    plans = [_plan(results, "a__m__seed1", 0.6, calls), _plan(results, "b__m__seed1", 0.7, calls),
             _plan(results, "c__m__seed1", 0.8, calls)]
    versions = cells.Versions(SPEC)
    ran = runner.run_plans(plans, current="fp-new", versions=versions, max_cells=1,
                           after_cell=lambda: built.append(1))
    out = capsys.readouterr().out
    assert ran == ["b__m__seed1"] and calls == ["b__m__seed1"] and built == [1]
    assert "a__m__seed1: stored, skipped (stale: other code)" in out
    assert (tmp_path / "runs" / "b__m__seed1" / "code_fingerprint").read_text().strip() == "fp-new"
    assert cells.Cell.load(results / "b__m__seed1.json").test.f1 == 0.7
    # --rerun-stale: the stale stored cell is re-run, the old result kept in "previous"
    calls.clear()
    ran = runner.run_plans(plans, current="fp-new", versions=versions, rerun_stale=True)
    assert calls == ["a__m__seed1", "c__m__seed1"] and ran == ["a__m__seed1", "c__m__seed1"]
    again = cells.Cell.load(results / "a__m__seed1.json")
    assert again.test.f1 == 0.6 and again.previous["test_f1"] == 0.5 and again.previous["stale"] == ["code"]
    assert again.previous["code_fingerprint"] == "fp-old"



def test_a_rerun_keeps_the_old_result_of_every_cell_it_stores(tmp_path):
    """NNShot's cell stores StructShot's: a re-run keeps each one's own old figures."""
    results = tmp_path / "results"
    results.mkdir()
    for name, f1 in (("a__nnshot__seed1", 0.5), ("a__structshot__seed1", 0.55)):
        (results / f"{name}.json").write_text(json.dumps(_cell(name, f1), indent=2) + "\n")
    plan = _plan(results, "a__nnshot__seed1", 0.6, [])
    plan.run = lambda: [_cell("a__nnshot__seed1", 0.6, code_fingerprint="fp-new"),
                        _cell("a__structshot__seed1", 0.65, code_fingerprint="fp-new"),
                        _cell("a__new__seed1", 0.7, code_fingerprint="fp-new")]
    runner.run_plans([plan], current="fp-new", versions=cells.Versions(SPEC), rerun_stale=True)
    got = {n: cells.Cell.load(results / f"{n}.json") for n in ("a__nnshot__seed1", "a__structshot__seed1", "a__new__seed1")}
    assert got["a__nnshot__seed1"].previous["test_f1"] == 0.5
    assert got["a__structshot__seed1"].previous["test_f1"] == 0.55 and got["a__structshot__seed1"].test.f1 == 0.65
    assert got["a__new__seed1"].previous is None


def test_the_runner_refuses_to_store_a_record_without_the_schema(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    bad = _cell("a__m__seed1")
    del bad["machine"]
    with pytest.raises(cells.CellError, match="missing field"):
        runner.run_plans([_plan(results, "a__m__seed1", 0.5, [], record=bad)], current="fp",
                         versions=cells.Versions(SPEC))
    assert not (results / "a__m__seed1.json").exists()


def test_a_run_folder_of_another_code_version_is_not_resumed(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "last").mkdir(parents=True)
    runner.fresh_run_dir(run, "aaa")  # no marker: an older run, removed
    assert not (run / "last").exists() and "removed" in capsys.readouterr().out
    (run / "last").mkdir()
    runner.fresh_run_dir(run, "aaa")  # same version: kept for resuming
    assert (run / "last").exists()
    runner.fresh_run_dir(run, "bbb")
    assert not (run / "last").exists()


def test_the_readme_blocks_are_replaced_between_their_markers_only(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- s -->\nold\n<!-- e -->\nafter\n")
    assert runner.replace_block(readme, "<!-- s -->", "<!-- e -->", "<!-- s -->\nnew\n<!-- e -->")
    assert readme.read_text() == "intro\n<!-- s -->\nnew\n<!-- e -->\nafter\n"
    assert not runner.replace_block(tmp_path / "none.md", "<!-- s -->", "<!-- e -->", "x")


def test_both_benchmarks_read_their_cells_through_the_schema_and_share_the_runner():
    assert maf.load_cells() and fewshot.load_cells()
    for bench in (maf, fewshot):
        assert bench.runner is runner and bench.cellmeta is cells
        assert "training.output_dir" in bench.VOLATILE
    assert "fewshot-results: start" in (ROOT / "README.md").read_text()
    assert "maf-results: start" in (ROOT / "README.md").read_text()


# ----------------------------------------------------------------------------------------------
# A tiny few-shot cell: its test predictions are stored, replay to its F1, and a changed file is caught


def _episodes(corpus: Path, captions: Path, split: str, types: str, n: int, seed: int, out: Path) -> Path:
    assert mner_main(["fewshot", "episodes", str(corpus), "--split", split, "--types", types, "--k", "1",
                      "--episodes", str(n), "--seed", str(seed), "--captions", str(captions), "--out", str(out)]) == 0
    return out


def _tiny_cell(tmp: Path, tiny_bert, model_type: str, model: dict | None = None) -> tuple[list[dict], Path]:
    """A tiny few-shot cell of ``model_type`` run by the benchmark's :func:`run_cell`: its records and
    the folder of its episode files."""
    corpus = write_tiny_corpus(tmp / "corpus")
    ids = [line[6:].strip() for split in ("train", "valid", "test")
           for line in (corpus / f"{split}.txt").read_text().splitlines() if line.startswith("IMGID:")]
    captions = tmp / "captions.txt"
    captions.write_text("".join(f"{i}.jpg :a photo of people in a city\n" for i in ids))
    eps = tmp / "episodes"
    eps.mkdir()
    files = {"dev": _episodes(corpus, captions, "valid", "PER,OTHER", 3, 1, eps / "dev-k1.jsonl"),
             "dev_source": _episodes(corpus, captions, "valid", "LOC,ORG", 3, 1, eps / "dev-source-k1.jsonl"),
             "test": _episodes(corpus, captions, "test", "PER,OTHER", 4, 1, eps / "test-k1.jsonl")}
    _episodes(corpus, captions, "test", "PER,OTHER", 3, 2, eps / "test-poster-k1.jsonl")
    raw = {"model_type": model_type,
           "model": {"text_encoder": {"name": str(tiny_bert), "casing_dim": 4}, "caption_encoder": {"name": str(tiny_bert)},
                     **(model or {})},
           "data": {"corpus": str(corpus), "captions": str(captions), "feature_cache": None},
           "episodes": {"target_types": ["PER", "OTHER"], "k": 1, "train_episodes": 4,
                        **{k: str(v) for k, v in files.items()}},
           "training": {"output_dir": str(tmp / "run"), "epochs": 2, "batch_size": 2, "eval_batch_size": 2,
                        "learning_rate": 1e-3, "seed": 3, "progress": False, "tensorboard": False, "cpu": True,
                        "log_every": 1}}
    records = fewshot.run_cell("tiny", "Per+Others", model_type, 1, 3, fewshot.TRAIN, raw=raw, results=tmp / "results",
                               calibrate=True)
    return records, eps


@pytest.fixture(scope="module")
def tiny_fewshot_cell(tiny_bert, tmp_path_factory):
    return _tiny_cell(tmp_path_factory.mktemp("fewshot_cell"), tiny_bert, "nnshot")


def test_a_fewshot_cell_stores_its_predictions_and_they_score_back(tiny_fewshot_cell, tmp_path):
    records, eps = tiny_fewshot_cell
    assert [r["model"] for r in records] == ["nnshot", "structshot"]
    for record in records:
        cell = cells.Cell.from_dict(record)   # both records have the schema
        assert cell.code_fingerprint == cells.code_fingerprint(fewshot.CODE)
        assert cell.predictions.extra == {"ours_episodes": 4, "poster_episodes": 3}
        tags = fewshot.stored_predictions(record)
        assert isinstance(tags, dict), tags
        assert len(tags["ours"]) == 4 and len(tags["poster"]) == 3
    # the predictions replay to the cell's F1 exactly; a changed tag, file or F1 is caught
    record = copy.deepcopy(records[0])
    record["test"]["f1"] += 0.01
    assert "ours scores" in fewshot.stored_predictions(record)
    path = Path(records[0]["predictions"]["path"])
    path = path if path.is_absolute() else ROOT / path
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    row = json.loads(lines[0])
    row["tags"][0] = ["B-PER" if t == "O" else "O" for t in row["tags"][0]]
    forged = tmp_path / "forged.jsonl.gz"
    rec = cells.store_gzip(("\n".join([json.dumps(row)] + lines[1:]) + "\n").encode(), forged, tmp_path)
    record = copy.deepcopy(records[0])
    record["predictions"] = {**record["predictions"], **rec, "path": str(forged)}
    assert "ours scores" in fewshot.stored_predictions(record)
    record["predictions"]["sha256"] = "0" * 64
    assert "sha256 differs" in fewshot.stored_predictions(record)
    # the same predictions give the same bytes
    again = fewshot.store_predictions(fewshot.stored_predictions(records[0]), tmp_path / "again.jsonl.gz")
    assert again["sha256"] == records[0]["predictions"]["sha256"]


def test_older_fewshot_cells_get_their_predictions_from_their_checkpoint(tiny_fewshot_cell, tmp_path, monkeypatch):
    """``--add-predictions``: a stored cell without predictions gets those of its run folder's best
    checkpoint (StructShot: NNShot's, with the cell's tau), only where they score the cell's F1."""
    records, eps = tiny_fewshot_cell
    results, runs, episodes = tmp_path / "results", tmp_path / "runs", tmp_path / "episodes"
    results.mkdir()
    (episodes / "tiny" / "Per+Others").mkdir(parents=True)
    for f in eps.glob("test*.jsonl"):
        (episodes / "tiny" / "Per+Others" / f.name).write_bytes(f.read_bytes())
    runs.mkdir()
    (runs / records[0]["cell"]).symlink_to(Path(records[0]["config"]["training"]["output_dir"]))
    monkeypatch.setattr(fewshot, "RESULTS", results)
    monkeypatch.setattr(fewshot, "EPISODES", episodes)
    kept = {}
    for record in records:
        old = {k: v for k, v in record.items() if k != "predictions"}
        kept[record["cell"]] = record["predictions"]["sha256"]
        (results / f"{record['cell']}.json").write_text(json.dumps(old, indent=2) + "\n")
    wrong = dict(records[0], cell="tiny__Per+Loc__nnshot__k1__seed3", split="Per+Loc")  # another split's cell
    wrong.pop("predictions")
    (results / f"{wrong['cell']}.json").write_text(json.dumps(wrong, indent=2) + "\n")
    added, missing = fewshot.add_predictions(runs)
    assert sorted(added) == sorted(kept) and "no checkpoint" in missing[wrong["cell"]]
    for name, sha in kept.items():
        cell = cells.Cell.load(results / f"{name}.json")
        assert cell.predictions.sha256 == sha   # the same predictions as the run that made the cell
    assert fewshot.add_predictions(runs)[0] == []  # filled cells are left alone


def test_a_mousing_cell_stores_its_nearest_o_decoding_and_its_o_bias(tiny_bert, tmp_path, monkeypatch):
    """Every MOUSING cell also stores its checkpoints decoded with the nearest-O decoder (the default of
    new checkpoints) as its own row, and the O-bias decoding chosen on dev; ``--derive`` makes both for
    a stored cell that lacks them, from its checkpoint, and only for the cells asked."""
    records, eps = _tiny_cell(tmp_path, tiny_bert, "mousing",
                              {"hidden_dim": 16, **{k: v for k, v in fewshot.MOUSING.items() if k != "graph"}})
    assert [r["model"] for r in records] == ["mousing", "mousing-nearest-o", "mousing-cal"]
    base, near, cal = records
    assert base["config"]["model"]["o_distance"] == "prototype" and near["decoding"] == fewshot.NEAREST_O
    assert near["cell"] == "tiny__Per+Others__mousing-nearest-o__k1__seed3" and "diagnostics" not in near
    assert "o_bias" in cal and set(cal["dev_f1_by_o_bias"]) == {str(b) for b in fewshot.O_BIASES}
    # the O-bias cell scores both protocols itself (not the base model's poster figure copied) and
    # keeps none of the base decoding's predictions, diagnostics or source-selected checkpoint
    assert cal["poster_scored"] and cal["test_poster"]["sha256"] == base["test_poster"]["sha256"]
    assert not {"predictions", "diagnostics", "selected_on_source"} & set(cal)
    cells.Cell.from_dict(near), cells.Cell.from_dict(cal)   # the runner stores both through the schema
    # the stored tags are the checkpoint's under the nearest-O decoder, not under the prototype O it was
    # trained with: re-decoding the same checkpoint each way and replaying the tags tells them apart
    from mner.data.episodes import read_episodes
    from mner.models import load_model

    tags = fewshot.stored_predictions(near)
    assert isinstance(tags, dict), tags
    test = read_episodes(eps / "test-k1.jsonl")
    model = load_model(Path(base["config"]["training"]["output_dir"]) / "best")
    assert model.config.o_distance == "prototype"
    proto = fewshot._score(model, test, 2)[0]["episode_counts"]
    for key, value in fewshot.NEAREST_O.items():
        setattr(model.config, key, value)
    assert fewshot._score(model, test, 2)[0]["episode_counts"] == near["test"]["episode_counts"]
    assert proto == base["test"]["episode_counts"]
    assert proto != near["test"]["episode_counts"]   # the two decoders tag these episodes differently

    # --derive: the stored base cell alone gets both again, from the checkpoint in --runs; the cell
    # names episode files of the checkout it ran in, found here under the protocol's folder
    results, runs, protocol = tmp_path / "stored", tmp_path / "runs", tmp_path / "protocol"
    results.mkdir(), runs.mkdir(), (protocol / "tiny" / "Per+Others").mkdir(parents=True)
    for f in eps.glob("*.jsonl"):
        (protocol / "tiny" / "Per+Others" / f.name).write_bytes(f.read_bytes())
    (runs / base["cell"]).symlink_to(Path(base["config"]["training"]["output_dir"]))
    elsewhere = copy.deepcopy(base)
    for key in ("dev", "test", "dev_source"):
        elsewhere["config"]["episodes"][key] = f"/another/checkout/{Path(base['config']['episodes'][key]).name}"
    cells.Cell.from_dict(elsewhere).store(results / f"{base['cell']}.json")
    monkeypatch.setattr(fewshot, "RESULTS", results)
    monkeypatch.setattr(fewshot, "EPISODES", protocol)
    monkeypatch.setattr(fewshot, "write_report", lambda: {})
    assert fewshot.derive_missing(["mousing"], ["tiny"], fewshot.TRAIN, runs, seeds=[4]) == []   # not asked
    made = fewshot.derive_missing(["mousing"], ["tiny"], fewshot.TRAIN, runs, seeds=[3], ks=[1])
    assert [c["model"] for c in made] == ["mousing-cal", "mousing-nearest-o"] and "retrained" not in made[1]
    assert (results / "predictions" / f"{near['cell']}.jsonl.gz").is_file()   # beside the cells asked for
    again = cells.Cell.load(results / f"{near['cell']}.json").to_dict()
    assert again["test"]["episode_counts"] == near["test"]["episode_counts"] and again["dev_f1"] == near["dev_f1"]
    assert fewshot.derive_missing(["mousing"], ["tiny"], fewshot.TRAIN, runs) == []   # nothing left to make
    # an O-bias cell stored before O-bias cells were scored on the poster's protocol is made again
    cal_path = results / f"{cal['cell']}.json"
    old_cal = json.loads(cal_path.read_text())
    old_cal["test_poster"] = None
    cal_path.write_text(json.dumps(old_cal))
    remade = fewshot.derive_missing(["mousing"], ["tiny"], fewshot.TRAIN, runs)
    assert [c["model"] for c in remade] == ["mousing-cal"] and remade[0]["test_poster"] is not None
    # a test file other than the one the cell was scored on is refused, naming it
    (results / f"{near['cell']}.json").unlink()
    (protocol / "tiny" / "Per+Others" / "test-k1.jsonl").write_text((eps / "dev-k1.jsonl").read_text())
    with pytest.raises(SystemExit, match="not the test episode file the cell was scored on"):
        fewshot.derive_missing(["mousing"], ["tiny"], fewshot.TRAIN, runs)


def _episodes_cells(model, counts, seed=37, splits=None):
    """Made-up few-shot cells of ``model``: per split, ``counts`` episodes (tp, predicted, gold)."""
    out = {}
    for split in (splits or fewshot.SPLITS):
        tp, pr, gold = (sum(c[i] for c in counts) for i in range(3))
        f1 = 2 * tp / (pr + gold) if pr + gold else 0.0
        test = {"f1": f1, "episode_counts": [list(c) for c in counts]}
        out[("twitter2017", 5, model, split)] = [{"seed": seed, "test": test, "test_poster": dict(test)}]
    return out


def test_each_ablation_is_tested_against_mousing_on_the_same_episodes():
    same = [(3, 5, 6), (2, 4, 4), (5, 6, 7), (1, 3, 2)] * 10
    worse = [(2, 5, 6), (1, 4, 4), (4, 6, 7), (0, 3, 2)] * 10
    by = {**_episodes_cells("mousing", same), **_episodes_cells("mousing-no-image", same),
          **_episodes_cells("mousing-no-mcis", worse),
          # an ablation without all six splits gets no row
          **_episodes_cells("mousing-random", worse, splits=list(fewshot.SPLITS)[:5])}
    figures = {}
    lines = fewshot.ablation_significance_rows(by, "twitter2017", 5, figures)
    rows = [line for line in lines if line.startswith("| w/")]
    assert [r.split(" | ")[:2] for r in rows] == [["| w/o Image", "ours"], ["| w/o Image", "the poster's"],
                                                  ["| w/o MCIS", "ours"], ["| w/o MCIS", "the poster's"]]
    # the same output as MOUSING on every episode: no change, p = 1
    assert figures["twitter2017/k5/ours/change_mousing-no-image_vs_mousing"] == 0.0
    assert figures["twitter2017/k5/ours/p_mousing-no-image_vs_mousing"] == 1.0
    # one fewer true positive on every episode: a loss the episodes show (p at its floor)
    assert figures["twitter2017/k5/ours/change_mousing-no-mcis_vs_mousing"] < 0
    assert figures["twitter2017/k5/ours/p_mousing-no-mcis_vs_mousing"] < 0.001
    # beside it, the change the poster's table reports
    assert rows[2].endswith(f"| {fewshot.POSTER_ABLATION['mousing-no-mcis'] - fewshot.POSTER_ABLATION['mousing']:+.2f} |")
    assert fewshot.ablation_significance_rows({}, "twitter2017", 5, {}) == []


def test_the_fewshot_page_summarises_the_user_defined_types(tmp_path):
    def row(model, p, r, f1, predicted, fp_names):
        return {"model": model, "micro": {"precision": p, "recall": r, "f1": f1, "predicted": predicted, "support": 96},
                "false_positives": {"total": 0, "on_other_names": fp_names, "in_tweets_without_names": 0,
                                    "wrong_type": 0}}

    stored = {"rows": [row("mousing", 0.3, 0.5, 0.375, 150, 30), row("mousing", 0.4, 0.5, 0.444, 120, 20),
                       row("structshot", 0.5, 0.4, 0.444, 80, 10)],
              "data": {"support_tweets": 18, "query_tweets": 136, "query_mentions": 96},
              "command": ".venv/bin/python bench/user_types.py a b c", "git_commit": "abc1234"}
    path = tmp_path / "user-types.json"
    assert fewshot.user_types_rows(path, {}) == []  # nothing stored: no section
    path.write_text(json.dumps(stored))
    figures = {}
    lines = fewshot.user_types_rows(path, figures)
    assert lines[0] == "## User-defined types (PRODUCT, EVENT, WORK)" and "`bench/user_types.py`, 3 rows, commit abc1234" in lines[2]
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| model")]
    # the table's model order (StructShot before MOUSING); mean ± std over a model's checkpoints
    assert rows[0] == "| StructShot | 1 | 50.0 | 40.0 | 44.4 | 80.0 / 96 | 10.0 |"
    assert rows[1] == "| MOUSING | 2 | 35.0 ± 7.1 | 50.0 ± 0.0 | 41.0 ± 4.9 | 135.0 ± 21.2 / 96 | 25.0 ± 7.1 |"
    assert figures == {"user-types/structshot/f1": 44.4, "user-types/mousing/f1": 40.95}


def test_the_average_is_over_the_seeds_with_all_six_splits():
    """The table's average (and the README's) is taken over the seeds that have every split, as the
    significance test takes them: a seed with fewer splits shows in its splits only, and the spread
    over seeds is given once two seeds are complete."""
    def row(by):
        figures = {}
        line = fewshot._table(by, "twitter2017", 5, ["mousing"], "ours", "dev", figures, poster=False)[-1]
        return line, figures

    s37 = _episodes_cells("mousing", [(3, 5, 6)] * 4)                                  # F1 6/11 on every split
    s38 = _episodes_cells("mousing", [(1, 5, 6)] * 4, seed=38, splits=list(fewshot.SPLITS)[:3])   # F1 2/11
    by = {key: s37[key] + s38.get(key, []) for key in s37}
    line, figures = row(by)
    assert line.endswith(f"| **{600 / 11:.2f} (seed 37)** |")           # seed 38 lacks three splits: left out
    assert f"| {100 * 4 / 11:.2f} ± " in line                           # ... but shown in its splits
    assert figures["twitter2017/k5/ours/dev/mousing"] == round(600 / 11, 2)
    s38 = _episodes_cells("mousing", [(1, 5, 6)] * 4, seed=38)
    by = {key: s37[key] + s38[key] for key in s37}
    line, figures = row(by)
    assert line.endswith(f"| **{400 / 11:.2f} ± {100 * statistics.stdev([6 / 11, 2 / 11]):.2f}** |")
    assert figures["twitter2017/k5/ours/dev/mousing/std"] == round(100 * statistics.stdev([6 / 11, 2 / 11]), 2)


def test_the_two_mousing_decoders_are_compared_on_the_same_checkpoints():
    """P / R of MOUSING under both decoders beside StructShot, on the seeds where a split has a
    nearest-O cell only (the same checkpoints), and no section before there is one."""
    def cell(seed, p, r):
        t = {"precision": p, "recall": r, "f1": 2 * p * r / (p + r)}
        return {"seed": seed, "test": t, "test_poster": dict(t)}

    by = {("twitter2017", 5, "mousing", "Per+Loc"): [cell(37, 0.30, 0.50), cell(38, 0.40, 0.50)],
          ("twitter2017", 5, "structshot", "Per+Loc"): [cell(37, 0.45, 0.40), cell(38, 0.55, 0.40)]}
    assert fewshot.decoder_rows(by, "twitter2017", 5) == []
    by[("twitter2017", 5, "mousing-nearest-o", "Per+Loc")] = [cell(38, 0.50, 0.48)]
    rows = {tuple(line.split(" | ")[:2]): line.split(" | ")[2] for line in fewshot.decoder_rows(by, "twitter2017", 5)
            if line.startswith("| ") and " ours " in f" {line} "}
    assert rows[("| MOUSING", "ours")] == "40.0 / 50.0"                  # seed 38 only: 37 has no nearest-O cell
    assert rows[("| MOUSING, nearest-O decoder", "ours")] == "50.0 / 48.0"
    assert rows[("| StructShot", "ours")] == "55.0 / 40.0"
