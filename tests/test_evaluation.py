"""Evaluation by position (mner.evaluation): the same tweet twice, order kept, counts checked,
and the per-batch gathering of several processes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mner.data.example import Example
from mner.evaluation import Predictions, evaluate_examples, predict_tags, write_predictions
from mner.models.base import Decoded


def _examples() -> list[Example]:
    # the same tweet id twice (a tweet in two episodes), with different gold tags
    return [Example("t1", ("Rob", "runs"), ("B-PER", "O")),
            Example("t1", ("Rob", "runs"), ("B-ORG", "O")),
            Example("t2", ("in", "Paris"), ("O", "B-LOC"))]


def test_predictions_are_matched_by_position_not_by_id():
    examples = _examples()
    preds = Predictions([["B-PER", "O"], ["B-ORG", "O"], ["O", "B-LOC"]])
    report = evaluate_examples(examples, preds)
    assert (report.micro.tp, report.micro.predicted, report.micro.support) == (3, 3, 3)
    # by id the second t1 would have been scored with the first one's tags: one error each way
    swapped = Predictions([["B-ORG", "O"], ["B-PER", "O"], ["O", "B-LOC"]])
    report = evaluate_examples(examples, swapped)
    assert (report.micro.tp, report.micro.predicted, report.micro.support) == (1, 3, 3)


def test_counts_must_agree(tmp_path):
    with pytest.raises(ValueError, match="2 predictions for 3 examples"):
        evaluate_examples(_examples(), Predictions([["O", "O"], ["O", "O"]]))
    with pytest.raises(ValueError, match="matched by position"):
        write_predictions(_examples(), Predictions([["O", "O"]] * 4), tmp_path / "p.conll")


def test_written_predictions_follow_the_data_order(tmp_path):
    path = write_predictions(_examples(), Predictions([["B-PER", "O"], ["O", "O"], ["O", "B-LOC"]]),
                             tmp_path / "p.conll")
    pred_column = [line.split()[-1] for line in path.read_text().splitlines() if line.strip()
                   and not line.startswith("#") and len(line.split()) >= 3]
    assert pred_column[-6:] == ["B-PER", "O", "O", "O", "O", "B-LOC"]


class _Model:
    """decode() tags word j of a batch row as the row's first token (a known answer per row)."""

    def decode(self, batch, confidences=False):
        tags = [[f"B-{row[0]}"] * len(row) for row in batch.rows]
        return Decoded(tags, [[0.5] * len(r) for r in batch.rows] if confidences else None)


def _batch(rows, ids):
    return SimpleNamespace(rows=rows, ids=ids)


def test_predict_tags_keeps_the_order_of_the_batches():
    loader = [_batch([["A"], ["B", "B"]], ["x", "x"]), _batch([["C"]], ["y"])]
    preds = predict_tags(_Model(), loader, confidences=True)
    assert preds.tags == [["B-A"], ["B-B", "B-B"], ["B-C"]]
    assert preds.ids == ["x", "x", "y"] and preds.confidences == [[0.5], [0.5, 0.5], [0.5]]


class _TwoProcesses:
    """What accelerate does for process 0 of 2 with a prepared, non-shuffled loader: process p
    decodes batches p, p + 2, ...; ``gather_for_metrics`` returns the rows of both processes for
    this step, process 0's first, and drops the padding of the last step (``remainder``)."""

    num_processes = 2

    def __init__(self, other_rows: list[list], remainder: int):
        self.other_rows = list(other_rows)
        self.remainder = remainder
        self.calls = 0

    def unwrap_model(self, model):
        return model

    def gather_for_metrics(self, rows, use_gather_object=False):
        assert use_gather_object
        self.calls += 1
        out = list(rows) + self.other_rows.pop(0)
        return out[: self.remainder] if not self.other_rows else out


def test_gathering_over_processes_keeps_the_data_order():
    # 5 items, batch size 1: process 0 holds items 0, 2, 4; process 1 items 1, 3 and a copy of 0
    items = [["P"], ["Q"], ["R"], ["S"], ["T"]]
    mine = [_batch([items[0]], ["0"]), _batch([items[2]], ["2"]), _batch([items[4]], ["4"])]
    theirs = [[("1", ["B-Q"], None, None)], [("3", ["B-S"], None, None)], [("0", ["B-P"], None, None)]]
    acc = _TwoProcesses(theirs, remainder=1)
    preds = predict_tags(_Model(), mine, accelerator=acc)
    assert acc.calls == 3
    assert preds.tags == [["B-P"], ["B-Q"], ["B-R"], ["B-S"], ["B-T"]]
    assert preds.ids == ["0", "1", "2", "3", "4"] and preds.match_probability is None  # no model output gave one
