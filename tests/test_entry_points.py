"""The entry-point matrix (issue 23): every registered model type, built by its contract fixture
(``model_fixtures.CONTRACT_FIXTURES``), goes through every entry point the same way, so a model
added later gets them all for free. For each type: ``mner train`` on a tiny corpus (the recipe of
its task, :mod:`mner.tasks`), ``mner evaluate`` (a labelled split, or an episode file), ``mner
predict``, ``Pipeline.from_pretrained``, ``mner tag`` on the local engine and on Ray, the
service's ``POST /predict`` and ``mner explain``: each gives the pipeline's entities; ``mner
report`` draws the run. A few-shot model takes the same
support set everywhere; without it every entry point refuses in one line.
"""

from __future__ import annotations

import json

import pytest

from fewshot_fixtures import write_tiny_corpus
from mner.cli.main import main
from mner.config import to_dict
from mner.data.example import Example
from mner.data.formats import write_jsonl
from mner.errors import MNERError
from mner.models import MODELS
from mner.tasks import task_of_type
from model_fixtures import CONTRACT_FIXTURES, one_thread, write_yaml  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]

TEXTS = [("john meets paris", "a photo of people in a city"), ("🎉 mary in tokyo with google", None),
         ("the olympics in rome", "a stadium")]
ENTITY_FIELDS = ("text", "type", "start", "end", "confidence")


def _support() -> list[Example]:
    """Two types the corpus also has (PER, LOC), named as a user would."""
    return [Example("s1", ["john", "went", "to", "paris"], ["B-PER", "O", "O", "B-LOC"], caption="a man in a city"),
            Example("s2", ["mary", "smith", "at", "london"], ["B-PER", "I-PER", "O", "B-LOC"]),
            Example("s3", ["anna", "loves", "tokyo"], ["B-PER", "O", "B-LOC"])]


@pytest.fixture(scope="module")
def ray_runtime():
    """One Ray runtime for the module (mner tag --engine ray joins it instead of starting its own)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module", params=sorted(MODELS))
def trained(request, tmp_path_factory):
    """The model type's contract model, trained one epoch by ``mner train`` from a recipe of its task."""
    model_type = request.param
    root = tmp_path_factory.mktemp(f"entry-{model_type}")
    model, _ = CONTRACT_FIXTURES[model_type](root)
    task = task_of_type(model_type)
    corpus = write_tiny_corpus(root / "corpus")
    ids = [line[6:].strip() for split in ("train", "valid", "test")
           for line in (corpus / f"{split}.txt").read_text().splitlines() if line.startswith("IMGID:")]
    captions = root / "captions.txt"
    captions.write_text("".join(f"{i}.jpg :a photo of people in a city\n" for i in ids))
    recipe = {"model_type": model_type, "model": to_dict(model.config),
              "data": {"corpus": str(corpus), "captions": str(captions), "feature_cache": None},
              "training": {"output_dir": str(root / "run"), "epochs": 1, "batch_size": 4, "eval_batch_size": 4,
                           "learning_rate": 1e-3, "seed": 3, "progress": False, "tensorboard": False, "cpu": True}}
    if "pixels" in model.views:
        recipe["data"]["missing_images"] = "blank"   # the tiny corpus has no image files
    episodes = None
    if task.needs_support:
        for split, n in (("valid", 2), ("test", 2)):
            assert main(["fewshot", "episodes", str(corpus), "--split", split, "--types", "PER,OTHER", "--k", "1",
                         "--episodes", str(n), "--seed", "1", "--captions", str(captions),
                         "--out", str(root / f"{split}.jsonl")]) == 0
        episodes = root / "test.jsonl"
        recipe["episodes"] = {"target_types": ["PER", "OTHER"], "k": 1, "train_episodes": 4,
                              "dev": str(root / "valid.jsonl"), "test": str(episodes)}
    assert main(["train", str(write_yaml(root / "recipe.yaml", recipe))]) == 0
    support = root / "support.jsonl"
    write_jsonl(_support(), support)
    inputs = root / "in.jsonl"
    inputs.write_text("".join(json.dumps({"id": f"t{i}", "text": t, **({"caption": c} if c else {})},
                                         ensure_ascii=False) + "\n" for i, (t, c) in enumerate(TEXTS)),
                      encoding="utf-8")
    return {"type": model_type, "task": task, "root": root, "run": root / "run", "corpus": corpus,
            "episodes": episodes, "support": support if task.needs_support else None, "inputs": inputs}


def _support_args(t) -> list[str]:
    return ["--support", str(t["support"])] if t["support"] is not None else []


def _pipeline_entities(t) -> list[list[dict]]:
    from mner.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(t["run"], device="cpu", support=t["support"])
    assert pipe.task == t["task"].name
    got = pipe([text for text, _ in TEXTS], caption=[c for _, c in TEXTS])
    return [[{f: e[f] for f in ENTITY_FIELDS} for e in ents] for ents in got]


def test_evaluate_scores_it_on_what_its_task_is_scored_on(trained, capsys):
    t = trained
    capsys.readouterr()
    if t["task"].needs_support:
        argv = ["evaluate", t["run"], t["episodes"], "--json"]
    else:
        argv = ["evaluate", t["run"], t["corpus"], "--split", "test", "--captions", t["root"] / "captions.txt",
                "--missing-images", "blank", "--json"]
    assert main([str(a) for a in argv]) == 0
    report = json.loads(capsys.readouterr().out)
    assert 0.0 <= report["f1"] <= 1.0


def test_predict_pipeline_tag_and_serve_give_the_same_entities(trained, ray_runtime, capsys):
    t = trained
    want = _pipeline_entities(t)
    # mner predict --input
    capsys.readouterr()
    assert main(["predict", str(t["run"]), "--input", str(t["inputs"]), *_support_args(t)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [[{f: e[f] for f in ENTITY_FIELDS} for e in r["entities"]] for r in lines] == want
    # mner tag, both engines
    from mner.batch import read_output

    for engine, extra in (("local", ["--workers", "0"]), ("ray", ["--concurrency", "1", "--threads", "1"])):
        out = t["root"] / f"tagged-{engine}"
        code = main(["tag", str(t["run"]), str(t["inputs"]), "--out", str(out), "--engine", engine, "--no-progress",
                     "--batch-size", "4", *extra, *_support_args(t)])
        assert code == 0, capsys.readouterr().err[-2000:]
        rows = sorted(read_output(out), key=lambda r: r["row"])
        assert [r["entities"] for r in rows] == want, engine
    # the service
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mner.serve.app import create_app

    with TestClient(create_app(t["run"], device="cpu", support=t["support"])) as client:
        assert client.get("/model").json()["task"] == t["task"].name
        for (text, caption), ents in zip(TEXTS, want):
            body = client.post("/predict", json={"text": text, "caption": caption}).json()
            assert [{f: e[f] for f in ENTITY_FIELDS} for e in body["entities"]] == ents


def test_explain_and_report_take_it(trained, capsys):
    """``mner explain`` draws the pipeline's entities (with the attention of a model that has one);
    ``mner report`` draws the run's curves and per-type F1, whichever task trained it."""
    pytest.importorskip("matplotlib")
    t = trained
    text, caption = TEXTS[0]
    want = _pipeline_entities(t)[0]
    capsys.readouterr()
    png = t["root"] / "explain.png"
    assert main(["explain", str(t["run"]), "--text", text, "--caption", caption, "--out", str(png),
                 *_support_args(t)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [{f: e[f] for f in ENTITY_FIELDS} for e in shown["entities"]] == want
    assert shown["explanations"] == (not t["task"].needs_support) and png.read_bytes()[:4] == b"\x89PNG"
    report = t["root"] / "report"
    assert main(["report", str(t["run"]), "--out", str(report)]) == 0
    files = json.loads(capsys.readouterr().out)["files"]
    assert "index.html" in files and any(f.endswith("-curves.png") for f in files), files


def test_a_support_set_is_asked_of_few_shot_models_only(trained, capsys):
    from mner.pipeline import Pipeline

    t = trained
    other = None if t["support"] is not None else t["root"] / "support-given.jsonl"
    if other is not None:
        write_jsonl(_support(), other)
    wrong = [] if t["support"] is not None else ["--support", str(other)]
    for argv in (["predict", str(t["run"]), "--text", "john meets paris", *wrong],
                 ["tag", str(t["run"]), str(t["inputs"]), "--out", str(t["root"] / "refused"), *wrong],
                 ["explain", str(t["run"]), "--text", "john meets paris", "--out", str(t["root"] / "x.png"), *wrong]):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "--support" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(MNERError, match="support"):
        Pipeline.from_pretrained(t["run"], support=other)
