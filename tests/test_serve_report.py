"""``mner report``: the pictures and index of a tiny training run; the confusion matrix and the
worst tweets on a hand-written predictions file."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mner.cli import main
from mner.report.runs import MISSED, SPURIOUS, confusion, read_run, worst_tweets
from model_fixtures import encoders, experiment, one_thread, sample_paths, write_yaml  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def run(encoders, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    paths = sample_paths()
    cfg = experiment(encoders, paths["tweets"], tmp / "run", images=paths["images"],
                     data={"missing_images": "blank"}, training={"epochs": 2, "batch_size": 2})
    torch.manual_seed(0)
    code, out, err = _run(["train", write_yaml(tmp / "tiny.yaml", cfg), "--output-dir", tmp / "run"])
    assert code == 0, err[-2000:]
    return tmp / "run"


def test_report_of_a_tiny_training_run(run, tmp_path):
    code, out, err = _run(["report", run, run, "--out", tmp_path / "rep", "--explain", "1"])
    assert code == 0, err[-2000:]
    files = set(json.loads(out.strip().splitlines()[-1])["files"])
    assert {"index.html", "type_f1.png", "run-1-curves.png", "run-1-confusion.png", "run-2-curves.png"} <= files
    for name in files - {"index.html"}:
        assert Image.open(tmp_path / "rep" / name).format == "PNG"
    index = (tmp_path / "rep" / "index.html").read_text()
    assert "Worst test tweets" in index and "run-1-curves.png" in index
    # the worst tweet with an image, drawn with its entities' attention (one per run: --explain 1)
    assert "run-1-explain-0.png" in files and "run-1-explain-1.png" not in files
    # the matrix counts every gold span once and every spurious prediction once
    r = read_run(run)
    rows, cols, m = confusion(r.predictions)
    gold = sum(len(p.spans(p.gold)) for p in r.predictions)
    spurious = sum(1 for p in r.predictions for k in p.spans(p.pred) if k not in p.spans(p.gold))
    assert m[:-1].sum() == gold and m[-1].sum() == spurious
    report = json.loads((run / "test_report.json").read_text())
    assert np.trace(m[:-1, :-1]) == report["micro"]["tp"]


PREDICTIONS = """# id = a
# image = a
Obama\tB-PER\tB-PER
in\tO\tO
Paris\tB-LOC\tB-ORG

# id = b
New\tB-LOC\tB-LOC
York\tI-LOC\tO
rocks\tO\tB-MISC

# id = c
fine\tO\tO
"""


def test_confusion_and_worst_tweets_by_hand(tmp_path):
    (tmp_path / "predictions").mkdir()
    (tmp_path / "predictions" / "test.conll").write_text(PREDICTIONS)
    (tmp_path / "test_report.json").write_text('{"per_type": {}, "micro": {"f1": 0.5}}')
    r = read_run(tmp_path)
    rows, cols, m = confusion(r.predictions)
    assert rows == ["LOC", "MISC", "ORG", "PER", SPURIOUS] and cols == ["LOC", "MISC", "ORG", "PER", MISSED]
    want = np.zeros((5, 5), dtype=int)
    want[3, 3] = 1                 # Obama PER -> PER
    want[0, 2] = 1                 # Paris LOC -> ORG
    want[0, 4] = 1                 # New York LOC: predicted "New" only, other boundaries -> missed
    want[4, 0] = 1                 # "New" LOC predicted: no gold span with its boundaries -> spurious
    want[4, 1] = 1                 # rocks MISC spurious
    assert (m == want).all()
    assert [p.id for p in worst_tweets(r.predictions)] == ["b", "a"]   # 3 errors, 1 error; c has none


def test_report_refusals(tmp_path):
    assert _run(["report", tmp_path / "nothing", "--out", tmp_path / "rep"])[0] == 2
    (tmp_path / "empty").mkdir()
    code, _, err = _run(["report", tmp_path / "empty", "--out", tmp_path / "rep"])
    assert code == 2 and "metrics.jsonl" in err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.jsonl").write_text('{"event": "train"}\n{oops\n')
    code, _, err = _run(["report", tmp_path / "bad", "--out", tmp_path / "rep"])
    assert code == 2 and "metrics.jsonl:2" in err


# ============================================================================ issue 25.12: images found, gold shown
def _relocate(run, dest, images_src, images_at: str, output_dir: str, images_dest):
    """A copy of ``run`` at ``dest`` whose experiment.json records relative paths, as a run made
    from another working folder does; its images copied to ``images_dest``."""
    import shutil

    shutil.copytree(run, dest)
    if images_dest is not None:
        shutil.copytree(images_src, images_dest)
    exp = json.loads((dest / "experiment.json").read_text())
    exp["data"]["images"] = images_at
    exp["data"]["corpus"] = str(Path(images_at).parent / "tweets")
    exp["training"]["output_dir"] = output_dir
    (dest / "experiment.json").write_text(json.dumps(exp))
    return dest


def test_report_finds_the_images_wherever_it_is_made_from(run, tmp_path, monkeypatch):
    paths = sample_paths()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    # trained from tmp/proj as `mner train ... --output-dir runs/r` with images in data/images
    proj = _relocate(run, tmp_path / "proj" / "runs" / "r", paths["images"], "data/images", "runs/r",
                     tmp_path / "proj" / "data" / "images")
    code, out, err = _run(["report", proj, "--out", tmp_path / "a", "--explain", "1"])
    assert code == 0, err[-2000:]
    assert "r-explain-0.png" in json.loads(out.strip().splitlines()[-1])["files"]
    # the quickstart's layout, the run folder moved: its images inside it
    quick = _relocate(run, tmp_path / "moved" / "q", paths["images"], "runs/quickstart/demo-data/images",
                      "runs/quickstart", tmp_path / "moved" / "q" / "demo-data" / "images")
    code, out, err = _run(["report", quick, "--out", tmp_path / "b", "--explain", "1"])
    assert code == 0 and "q-explain-0.png" in json.loads(out.strip().splitlines()[-1])["files"]
    # moved away from its images: the index says where it looked and what to give; --images finds them
    lost = _relocate(run, tmp_path / "moved" / "lost", paths["images"], "data/images", "runs/r", None)
    code, out, err = _run(["report", lost, "--out", tmp_path / "c", "--explain", "1"])
    assert code == 0 and "lost-explain-0.png" not in json.loads(out.strip().splitlines()[-1])["files"]
    index = (tmp_path / "c" / "index.html").read_text()
    assert "--images" in index and str(elsewhere / "data" / "images") in index
    code, out, err = _run(["report", lost, "--out", tmp_path / "d", "--explain", "1", "--images", paths["images"]])
    assert code == 0 and "lost-explain-0.png" in json.loads(out.strip().splitlines()[-1])["files"]
    assert "gold above the predictions" in (tmp_path / "d" / "index.html").read_text()
    assert _run(["report", lost, "--out", tmp_path / "e", "--images", tmp_path / "nowhere"])[0] == 2


def test_worst_tweet_pictures_show_gold_beside_the_predictions():
    import matplotlib.pyplot as plt

    from mner.report.explain import figure_of
    from mner.report.runs import _gold_entities
    from model_fixtures import random_image

    tokens = ["Handsome", "Rob", "is", "all", "over", "New", "York"]
    text = " ".join(tokens)
    gold = _gold_entities(tokens, ["O", "B-MISC", "O", "O", "O", "B-LOC", "I-LOC"], text)
    assert [(text[g["start"]:g["end"]], g["type"]) for g in gold] == [("Rob", "MISC"), ("New York", "LOC")]
    n = 16
    px = {"grid": [4, 4], "weights": [1 / n] * n}
    result = {"match_probability": 0.4, "entities": [
        {"text": "Rob", "type": "PER", "start": 9, "end": 12, "confidence": 0.7, "explanation": {"pixels": px}},
        {"text": "all", "type": "ORG", "start": 16, "end": 19, "confidence": 0.6, "explanation": {"pixels": px}}]}
    fig = figure_of(text, result, random_image(2, size=48), gold=gold)
    try:
        head = fig.axes[0]
        rows = {}
        for t in head.texts:   # each drawn row: its label, then the tweet's pieces
            rows.setdefault(round(t.get_position()[1], 2), []).append(t.get_text())
        titles = [ax.get_title() for ax in fig.axes[1:3]]
    finally:
        plt.close(fig)
    gold_row, pred_row = (rows[y] for y in sorted(rows, reverse=True))
    assert gold_row[0].strip() == "gold:" and "Rob [MISC]" in gold_row and "New York [LOC]" in gold_row
    assert pred_row[0].strip() == "predicted:" and "Rob [PER]" in pred_row and "all [ORG]" in pred_row
    assert titles == ["Rob (PER, 0.70)\ngold: MISC", "all (ORG, 0.60)\ngold: not an entity"]
