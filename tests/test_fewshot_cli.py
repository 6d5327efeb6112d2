"""``mner fewshot train | evaluate`` end to end on a tiny four-type corpus and tiny random encoders:
source-type episodes for training, dev and test episode files of the target types, the best
checkpoint scored; then the checkpoint evaluated again from the command line, and resumed."""

from __future__ import annotations

import json

import pytest

from fewshot_fixtures import tiny_bert, write_tiny_corpus  # noqa: F401
from model_fixtures import one_thread, write_yaml  # noqa: F401
from mner.cli.main import main
from mner.data.episodes import read_episodes

pytestmark = pytest.mark.usefixtures("one_thread")


def _setup(tmp_path, bert, model_type="mousing", model=None):
    corpus = write_tiny_corpus(tmp_path / "corpus")
    ids = [line[6:].strip() for split in ("train", "valid", "test")
           for line in (corpus / f"{split}.txt").read_text().splitlines() if line.startswith("IMGID:")]
    captions = tmp_path / "captions.txt"
    captions.write_text("".join(f"{i}.jpg :a photo of people in a city\n" for i in ids))
    for split, n in (("valid", 3), ("test", 4)):
        assert main(["fewshot", "episodes", str(corpus), "--split", split, "--types", "PER,OTHER", "--k", "1",
                     "--episodes", str(n), "--seed", "1", "--captions", str(captions),
                     "--out", str(tmp_path / f"{split}.jsonl")]) == 0
    cfg = {
        "model_type": model_type,
        "model": {"text_encoder": {"name": str(bert), "casing_dim": 4}, "caption_encoder": {"name": str(bert)},
                  **({"hidden_dim": 16} if model_type in ("mousing", "proto-maf") else {}), **(model or {})},
        "data": {"corpus": str(corpus), "captions": str(captions), "feature_cache": None},
        "episodes": {"target_types": ["PER", "OTHER"], "k": 1, "train_episodes": 4,
                     "dev": str(tmp_path / "valid.jsonl"), "test": str(tmp_path / "test.jsonl")},
        "training": {"output_dir": str(tmp_path / "run"), "epochs": 2, "batch_size": 2, "eval_batch_size": 2,
                     "learning_rate": 1e-3, "seed": 3, "progress": False, "tensorboard": False, "cpu": True,
                     "log_every": 1},
    }
    return write_yaml(tmp_path / "fewshot.yaml", cfg)


def test_train_then_evaluate(tiny_bert, tmp_path, capsys):
    config = _setup(tmp_path, tiny_bert)
    # one mner train for every task: the recipe's model_type picks the episodic recipe (mner.tasks)
    assert main(["train", str(config)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["epochs_run"] == 2 and summary["global_step"] == 4  # 4 episodes per epoch, 2 per step
    assert 0.0 <= summary["test_f1"] <= 1.0 and summary["dev_f1"] is not None
    run = tmp_path / "run"
    assert (run / "best" / "config.json").is_file() and (run / "test_report.json").is_file()
    # the source types only were trained on: the training log says which
    assert main(["fewshot", "evaluate", str(run), str(tmp_path / "test.jsonl"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["count"] == len(read_episodes(tmp_path / "test.jsonl"))
    assert report["f1"] == pytest.approx(summary["test_f1"])
    assert report["mode"] == "conlleval"
    # one mner evaluate: a few-shot checkpoint is scored on the episode file, as mner fewshot evaluate scores it
    assert main(["evaluate", str(run), str(tmp_path / "test.jsonl"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["f1"] == report["f1"]
    for refused in (["--controls"], ["--split", "valid"], ["--out", str(tmp_path / "p.txt")]):
        assert main(["evaluate", str(run), str(tmp_path / "test.jsonl"), *refused]) == 2
        err = capsys.readouterr().err
        assert refused[0] in err and "episode file" in err and "Traceback" not in err
    # the poster's protocol: the same supports, a random query with tweets that hold no target
    # mention (all O); the model scores such a file too
    poster = tmp_path / "test-poster.jsonl"
    assert main(["fewshot", "episodes", str(tmp_path / "corpus"), "--types", "PER,OTHER", "--k", "1",
                 "--episodes", "4", "--seed", "1", "--captions", "none", "--query", "random",
                 "--query-size", "5", "--out", str(poster)]) == 0
    capsys.readouterr()
    eps = read_episodes(poster)
    assert any(set(x.tags) == {"O"} for ep in eps for x in ep.query)
    assert main(["fewshot", "evaluate", str(run), str(poster), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["count"] == 4 and 0.0 <= report["f1"] <= 1.0


def test_source_type_selection_and_diagnose(tiny_bert, tmp_path, capsys):
    config = _setup(tmp_path, tiny_bert)
    assert main(["fewshot", "episodes", str(tmp_path / "corpus"), "--split", "valid", "--types", "LOC,ORG",
                 "--k", "1", "--episodes", "3", "--seed", "2", "--captions", "none",
                 "--out", str(tmp_path / "dev-source.jsonl")]) == 0
    import yaml

    cfg = yaml.safe_load(config.read_text())
    cfg["episodes"]["dev_source"] = str(tmp_path / "dev-source.jsonl")
    config.write_text(yaml.safe_dump(cfg))
    assert main(["fewshot", "train", str(config)]) == 0
    capsys.readouterr()
    run = tmp_path / "run"
    # every evaluation scored the source-type dev episodes too, and their best model was kept apart
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
             if json.loads(line).get("event") == "eval"]
    assert len(evals) == 2 and all("source_f1" in e and "f1" in e for e in evals)
    kept = json.loads((run / "best-source_f1" / "config.json").read_text())["trained"]
    best_source = max(evals, key=lambda e: e["source_f1"])
    assert kept["dev"]["source_f1"] == pytest.approx(best_source["source_f1"])
    assert kept["epoch"] == evals.index(best_source) + 1
    # source-type dev episodes must not hold a target type
    cfg["episodes"]["dev_source"] = str(tmp_path / "valid.jsonl")
    config.write_text(yaml.safe_dump(cfg))
    assert main(["fewshot", "train", str(config)]) == 2
    assert "dev_source" in capsys.readouterr().err
    # diagnose: the graph, masks, views and caption controls of the checkpoint
    assert main(["fewshot", "diagnose", str(run), str(tmp_path / "test.jsonl"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert {"graph", "train_masks", "views", "captions"} <= set(d)
    assert d["graph"]["word_visual_pairs"] > 0 and d["f1"] == pytest.approx(d["captions"]["f1_real"])
    assert main(["fewshot", "diagnose", str(run), str(tmp_path / "test.jsonl"), "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "word-visual pairs that are edges" in out and "captions: F1 real" in out


def test_training_episodes_hold_source_types_only(tiny_bert, tmp_path):
    from mner.fewshot.experiment import build_episodes, load_fewshot

    cfg = load_fewshot(str(_setup(tmp_path, tiny_bert)))
    train_set, pool, dev, test, _ = build_episodes(cfg, log=lambda *_: None)
    seen = {t[2:] for i in range(len(train_set)) for ex in train_set[i].support + train_set[i].query
            for t in ex.tags if t != "O"}
    assert seen == {"LOC", "ORG"}
    assert {t[2:] for ex in pool for t in ex.tags if t != "O"} == {"LOC", "ORG"}
    assert {t for ep in dev + test for t in ep.types} == {"PER", "MISC"}


def test_nnshot_evaluates_as_structshot(tiny_bert, tmp_path, capsys):
    config = _setup(tmp_path, tiny_bert, "nnshot")
    assert main(["fewshot", "train", str(config)]) == 0
    capsys.readouterr()
    run = str(tmp_path / "run")
    assert main(["fewshot", "evaluate", run, str(tmp_path / "test.jsonl"), "--decoder", "structshot",
                 "--temperature", "0.5", "--json"]) == 0
    assert 0.0 <= json.loads(capsys.readouterr().out)["f1"] <= 1.0
    # a MAF-only option on a few-shot model, and a bad temperature, are user errors
    assert main(["fewshot", "evaluate", run, str(tmp_path / "test.jsonl"), "--temperature", "0"]) == 2
    assert main(["fewshot", "evaluate", run, str(tmp_path / "test.jsonl"), "--o-bias", "nan"]) == 2
    assert main(["fewshot", "evaluate", run, str(tmp_path / "test.jsonl"), "--o-bias", "1e4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["recall"] == 0.0
    # predict takes the same decoding options: StructShot tags new text, a huge O bias tags nothing
    support = tmp_path / "support.jsonl"
    support.write_text(json.dumps({"tokens": ["john", "in", "paris"], "tags": ["B-PER", "O", "B-LOC"]}) + "\n")
    base = ["fewshot", "predict", run, "--support", str(support), "--text", "mary in london"]
    assert main(base + ["--decoder", "structshot", "--temperature", "0.5"]) == 0
    assert "entities" in json.loads(capsys.readouterr().out)
    assert main(base + ["--o-bias", "1e4"]) == 0
    assert json.loads(capsys.readouterr().out)["entities"] == []
    assert main(base + ["--temperature", "0"]) == 2


def test_config_errors_are_user_errors(tiny_bert, tmp_path, capsys):
    config = _setup(tmp_path, tiny_bert)
    assert main(["fewshot", "train", str(config), "--set", "episodes.target_types=[]"]) == 2
    assert "target_types" in capsys.readouterr().err
    assert main(["fewshot", "train", str(config), "--set", "model_type=maf"]) == 2
    assert "few-shot models" in capsys.readouterr().err
    assert main(["fewshot", "train", str(config), "--set", "episodes.source_types=[PER, LOC]"]) == 2
