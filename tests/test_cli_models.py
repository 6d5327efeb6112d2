"""The model commands of the CLI: ``mner train``, ``evaluate``, ``score`` on its output,
``predict`` (one text or a JSONL file), and refusing a pickled checkpoint."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mner.cli import main
from mner.models import MAFModel, load_model
from mner.pipeline import Pipeline
from model_fixtures import (  # noqa: F401  (fixtures)
    encoders,
    experiment,
    one_thread,
    random_image,
    read_jsonl,
    sample_paths,
    subprocess_env,
    write_yaml,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def trained(encoders, tmp_path_factory):
    """``mner train`` on the sample corpus with a pixels + caption model (4 epochs by --set)."""
    tmp = tmp_path_factory.mktemp("cli")
    paths = sample_paths()
    cfg = experiment(encoders, paths["tweets"], tmp / "ignored", images=paths["images"],
                     captions=str(paths["captions"]), model={"visual_view": "both"},
                     data={"missing_images": "blank"},
                     training={"epochs": 1, "batch_size": 2, "learning_rate": 3e-3, "head_learning_rate": 1e-2})
    yaml_path = write_yaml(tmp / "tiny.yaml", cfg)
    run = tmp / "run"
    torch.manual_seed(0)  # `mner train` leaves the initialisation unseeded (see test_training.py)
    code, out, err = _run(["train", yaml_path, "--set", "training.epochs=4", "--output-dir", run])
    return {"tmp": tmp, "run": run, "code": code, "out": out, "err": err, "paths": paths}


def test_train_prints_a_final_json_summary(trained):
    assert trained["code"] == 0, trained["err"][-2000:]
    summary = json.loads(trained["out"].strip().splitlines()[-1])
    assert 0.0 <= summary["test_f1"] <= 1.0 and 0.0 <= summary["dev_f1"] <= 1.0
    assert summary["epochs_run"] == 4 and Path(summary["output_dir"]) == trained["run"]
    assert set(summary["test_f1_per_type"]) == {"LOC", "MISC", "ORG", "PER"}
    assert "policy 'blank': 1 tweets kept without image" in trained["out"]
    model = load_model(trained["run"])
    assert isinstance(model, MAFModel) and model.config.visual_view == "both"


def _evaluate_args(trained, checkpoint: Path, out: Path) -> list:
    paths = trained["paths"]
    return ["evaluate", checkpoint, paths["tweets"] / "test.txt", "--images", paths["images"],
            "--captions", paths["captions"], "--out", out]


def test_evaluate_gives_what_train_reported_on_test(trained):
    conll = trained["tmp"] / "run-test.conll"
    code, out, err = _run(_evaluate_args(trained, trained["run"], conll) + ["--json"])
    assert code == 0, err
    summary = json.loads(trained["out"].strip().splitlines()[-1])
    evaluated = json.loads(out)
    assert evaluated["split"] == "test" and evaluated["f1"] == pytest.approx(summary["test_f1"])
    # the same predictions, word by word, as the ones `mner train` wrote for its best model
    report = json.loads((trained["run"] / "test_report.json").read_text())
    assert evaluated["micro"] == report["micro"] and evaluated["per_type"] == report["per_type"]
    assert conll.read_text() == (trained["run"] / "predictions" / "test.conll").read_text()


@pytest.fixture(scope="module")
def every_word_loc(trained) -> Path:
    """The trained model with its emission layer set so that it tags every word B-LOC."""
    model = load_model(trained["run"])
    with torch.no_grad():
        model.emissions.weight.zero_()
        model.emissions.bias.fill_(-20.0)
        model.emissions.bias[model.label_set.index("B-LOC")] = 20.0
    return model.save_pretrained(trained["tmp"] / "every-word-loc")


@pytest.fixture(scope="module")
def leaning_loc(trained) -> Path:
    """The trained model with its B-LOC emission bias raised by 5: it predicts some entities, with
    confidences below 1 that depend on the image (a model whose output has something to compare)."""
    model = load_model(trained["run"])
    with torch.no_grad():
        model.emissions.bias[model.label_set.index("B-LOC")] += 5.0
    return model.save_pretrained(trained["tmp"] / "leaning-loc")


def _every_word_a_loc(text: str) -> list[dict]:
    """What the every-word-B-LOC model must predict for a text of plain space-separated words."""
    return [{"text": m.group(), "type": "LOC", "start": m.start(), "end": m.end(),
             "token_start": i, "token_end": i + 1, "confidence": 1.0}
            for i, m in enumerate(re.finditer(r"\S+", text))]


def test_evaluate_report_and_predictions_that_score_reads_back(trained, every_word_loc):
    """On a model that tags every word B-LOC (so that precision, recall and F1 differ and are not 0)."""
    tmp = trained["tmp"]
    checkpoint = every_word_loc
    conll = tmp / "eval" / "test.conll"
    args = _evaluate_args(trained, checkpoint, conll)
    code, out, err = _run(args)
    assert code == 0, err
    assert out.splitlines()[0].startswith("mode: conlleval")
    assert f"predictions: {conll}" in out and conll.is_file()
    rows = [line.split() for line in conll.read_text().splitlines() if line.strip() and not line.startswith(("#", "IMGID"))]
    assert len(rows) == 45 and all(cols[-1] == "B-LOC" for cols in rows)

    code, out_json, err = _run(args + ["--json"])
    evaluated = json.loads(out_json)
    assert code == 0 and evaluated["predictions"] == str(conll)
    # 45 words predicted as LOC; right where a gold entity is a one-word LOC
    from mner.data.formats import read_file
    from mner.tagging import get_spans

    gold = read_file(trained["paths"]["tweets"] / "test.txt")
    spans = [s for ex in gold for s in get_spans(list(ex.tags), mode="conlleval")]
    hits = sum(s.label == "LOC" and s.end - s.start == 1 for s in spans)
    assert 0 < hits < len(spans)
    assert evaluated["precision"] == pytest.approx(hits / 45) and evaluated["recall"] == pytest.approx(hits / len(spans))
    code, scored_out, err = _run(["score", conll, "--json"])
    assert code == 0, err
    scored = json.loads(scored_out)
    assert scored["tweets"] == 6
    for key in ("precision", "recall", "f1"):
        assert scored[key] == pytest.approx(evaluated[key])

    code, strict, err = _run(args + ["--mode", "strict"])
    assert code == 0 and strict.splitlines()[0].startswith("mode: strict")


def test_evaluate_a_corpus_split_and_its_missing_image(trained):
    paths, run, tmp = trained["paths"], trained["run"], trained["tmp"]
    base = ["evaluate", run, paths["tweets"], "--split", "valid", "--images", paths["images"],
            "--captions", paths["captions"], "--out", tmp / "valid.conll"]
    code, out, err = _run(base)
    assert code == 2 and "s204" in err and err.startswith("mner: error:")
    code, out, err = _run(base + ["--missing-images", "blank"])
    assert code == 0, err
    assert "sequences: 4" in out and "kept without image" in err


def test_predict_one_text_with_an_image(trained, every_word_loc, leaning_loc, tmp_path):
    image = tmp_path / "photo.png"
    random_image(3).save(image)
    text = "Obama meets Merkel in Berlin"
    caption = "two people shaking hands"
    output = tmp_path / "out" / "pred.jsonl"
    code, out, err = _run(["predict", every_word_loc, "--text", text, "--image", image,
                           "--caption", caption, "--output", output])
    assert code == 0, err
    (record,) = read_jsonl(output)
    assert record["text"] == text and record["image"] == str(image)
    assert record["entities"] == _every_word_a_loc(text)
    # standard output by default
    code, out, err = _run(["predict", every_word_loc, "--text", text, "--image", image])
    assert code == 0, err
    (printed,) = [json.loads(line) for line in out.splitlines()]
    assert printed["text"] == text and "caption" not in printed
    assert printed["entities"] == _every_word_a_loc(text)
    # a model with image-dependent confidences: exactly what the Python pipeline predicts
    code, out, err = _run(["predict", leaning_loc, "--text", text, "--image", image, "--caption", caption])
    assert code == 0, err
    (printed,) = [json.loads(line) for line in out.splitlines()]
    expected = Pipeline.from_pretrained(leaning_loc, device="cpu")(text, image=image, caption=caption)
    assert expected and printed["entities"] == expected


def _predict_jsonl(trained, tmp_path, first_image: str, checkpoint: Path | None = None) -> tuple[int, str, Path]:
    paths = trained["paths"]
    tmp_path.mkdir(parents=True, exist_ok=True)
    inputs = tmp_path / "inputs.jsonl"
    rows = [{"id": "a", "text": "Kevin Durant joins the Warriors", "image": first_image, "caption": "a man"},
            {"id": "b", "tokens": ["Paris", "in", "the", "spring"], "image": str(paths["images"] / "s201.jpg")},
            {"id": "c", "text": "no image here"}]
    inputs.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    output = tmp_path / "pred.jsonl"
    code, out, err = _run(["predict", checkpoint or trained["run"], "--input", inputs, "--image-dir", paths["images"],
                           "--output", output])
    return code, err, output


def _pipeline_on_the_jsonl_rows(trained, checkpoint: Path) -> list[list[dict]]:
    """What the Python pipeline predicts for the rows of :func:`_predict_jsonl` (some entities)."""
    images = trained["paths"]["images"]
    pipe = Pipeline.from_pretrained(checkpoint, device="cpu")
    # one batch, as `mner predict` runs them (the rounded confidences may move in the last digit
    # with the padding of another batch); the tokens of row b are those of its text
    texts = ["Kevin Durant joins the Warriors", "Paris in the spring", "no image here"]
    captions = ["a man", None, None]
    out = pipe(texts, image=[images / "s101.jpg", images / "s201.jpg", None], caption=captions)
    assert all(out), "nothing to compare: the checkpoint predicts no entity"
    # the first row's image matters: without it the prediction differs
    assert out[0] != pipe(texts, image=[None, images / "s201.jpg", None], caption=captions)[0]
    return out


def test_predict_a_jsonl_file(trained, every_word_loc, leaning_loc, tmp_path):
    code, err, output = _predict_jsonl(trained, tmp_path / "known", str(trained["paths"]["images"] / "s101.jpg"),
                                       checkpoint=every_word_loc)
    assert code == 0, err
    records = read_jsonl(output)
    assert [r["id"] for r in records] == ["a", "b", "c"]
    assert records[1]["text"] == "Paris in the spring"
    for r in records:
        assert r["entities"] == _every_word_a_loc(r["text"]), r["id"]
    assert "2 of 3 inputs have no caption" in err and "wrote 3 predictions" in err
    # a model with image-dependent confidences: exactly what the Python pipeline predicts
    code, err, output = _predict_jsonl(trained, tmp_path / "leaning", str(trained["paths"]["images"] / "s101.jpg"),
                                       checkpoint=leaning_loc)
    assert code == 0, err
    assert [r["entities"] for r in read_jsonl(output)] == _pipeline_on_the_jsonl_rows(trained, leaning_loc)


def test_predict_a_jsonl_file_with_image_paths_relative_to_image_dir(trained, leaning_loc, tmp_path):
    code, err, output = _predict_jsonl(trained, tmp_path, "s101.jpg", checkpoint=leaning_loc)
    assert code == 0, err
    records = read_jsonl(output)
    assert [r["id"] for r in records] == ["a", "b", "c"]
    # "s101.jpg" is read from --image-dir: the same entities (and confidences) as with its full path
    assert [r["entities"] for r in records] == _pipeline_on_the_jsonl_rows(trained, leaning_loc)


def test_predict_refuses_a_pickled_checkpoint_with_one_line(trained, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    torch.save(load_model(trained["run"]).state_dict(), folder / "pytorch_model.bin")
    code, out, err = _run(["predict", folder, "--text", "Obama in Paris"])
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("mner: error:") and "pytorch_model.bin" in err
    assert "Traceback" not in err
    # the same through the real entry point: the process exits with 2
    proc = subprocess.run([sys.executable, "-m", "mner", "predict", str(folder), "--text", "Obama in Paris"],
                          env=subprocess_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and "pytorch_model.bin" in proc.stderr


def test_predict_needs_text_or_input(trained):
    code, out, err = _run(["predict", trained["run"]])
    assert code == 2 and "--text" in err and "--input" in err
