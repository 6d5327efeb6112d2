"""Evaluate a tagging model: decode a data set, score it entity by entity, write predictions.

Works for any model with ``decode(batch) -> Decoded`` (see :mod:`mner.models.base`), on one
process or several (predictions are gathered across processes with accelerate, batch by batch,
so they stay in the order of the data).

Predictions are matched to the data by *position*, never by tweet id: the same tweet may appear
several times (in many few-shot episodes, or twice in a file), and the i-th prediction belongs to
the i-th example.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from mner.data.example import Example
from mner.data.formats import write_conll
from mner.tagging import EntityReport, score

__all__ = ["Predictions", "predict_tags", "evaluate_examples", "write_predictions", "dev_metrics"]


@dataclass
class Predictions:
    """Predicted tags in the order of the data (and per word the confidence of its tag).

    ``ids``: the tweet ids of the batches, for information only (they need not be unique);
    ``match_probability``: per tweet, the model's image-text match probability (None: a model
    without one, :attr:`mner.models.base.TaggerOutput.match_probability`)."""

    tags: list[list[str]]
    confidences: list[list[float]] | None = None
    ids: list[str] | None = None
    match_probability: list[float] | None = None

    def __len__(self) -> int:
        return len(self.tags)


def predict_tags(model, loader, accelerator=None, confidences: bool = False) -> Predictions:
    """Decode every batch of ``loader``, in order (gathered over processes when ``accelerator``
    is given: a prepared loader's duplicated tail is dropped by ``gather_for_metrics``)."""
    unwrapped = accelerator.unwrap_model(model) if accelerator is not None else model
    gather = accelerator is not None and accelerator.num_processes > 1
    ids: list[str] = []
    tags: list[list[str]] = []
    confs: list[list[float]] = []
    match: list[float | None] = []
    for batch in loader:
        decoded = unwrapped.decode(batch, confidences=confidences)
        n = len(decoded.tags)
        batch_ids = list(getattr(batch, "ids", None) or [None] * n)
        rows = list(zip(batch_ids, decoded.tags, decoded.confidences or [None] * n,
                        decoded.match_probability or [None] * n))
        if gather:
            # one gather per batch: process p holds batch k * P + p, so the gathered rows of step
            # k are batches k * P .. k * P + P - 1, in the order of the data
            rows = accelerator.gather_for_metrics(rows, use_gather_object=True)
        for i, t, c, m in rows:
            ids.append(i)
            tags.append(t)
            match.append(m)
            if confidences:
                confs.append(c)
    has_match = bool(match) and all(m is not None for m in match)
    return Predictions(tags, confs if confidences else None, ids, match if has_match else None)


def _check_counts(examples: Sequence[Example], predictions: Predictions) -> None:
    if len(predictions.tags) != len(examples):
        raise ValueError(f"{len(predictions.tags)} predictions for {len(examples)} examples; predictions "
                         "are matched by position, one per example in the order of the data")


def evaluate_examples(examples: Sequence[Example], predictions: Predictions, mode: str = "conlleval") -> EntityReport:
    """Score predictions against the gold tags of ``examples``: the i-th prediction is the
    i-th example's (the counts must be equal)."""
    _check_counts(examples, predictions)
    return score([ex.tags for ex in examples], list(predictions.tags), mode=mode, ids=[ex.id for ex in examples])


def write_predictions(examples: Sequence[Example], predictions: Predictions, path: str | Path) -> Path:
    """CoNLL columns ``token gold pred`` (``mner score FILE`` reads them back), by position."""
    _check_counts(examples, predictions)
    write_conll(examples, path, predictions=list(predictions.tags))
    return Path(path)


def dev_metrics(examples: Sequence[Example], mode: str = "conlleval"):
    """The ``evaluate`` callback of the trainer: micro P/R/F1 (fractions) and per-type F1."""

    def evaluate(model, loader, accelerator=None) -> dict:
        report = evaluate_examples(examples, predict_tags(model, loader, accelerator), mode)
        out = {"precision": report.micro.precision, "recall": report.micro.recall, "f1": report.micro.f1}
        out.update({f"f1_{t}": s.f1 for t, s in report.per_type.items()})
        return out

    return evaluate
