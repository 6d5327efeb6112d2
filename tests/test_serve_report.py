"""``mner report``: the pictures and index of a tiny training run; the confusion matrix and the
worst tweets on a hand-written predictions file."""

from __future__ import annotations

import contextlib
import io
import json

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
