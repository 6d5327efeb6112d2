"""Evaluate a tagging model: decode a data set, score it entity by entity, write predictions.

Works for any model with ``decode(batch) -> Decoded`` (see :mod:`mner.models.base`), on one
process or several (predictions are gathered across processes with accelerate).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from mner.data.example import Example
from mner.data.formats import write_conll
from mner.tagging import EntityReport, score

__all__ = ["Predictions", "predict_tags", "evaluate_examples", "dev_metrics"]


@dataclass
class Predictions:
    ids: list[str]
    tags: list[list[str]]
    confidences: list[list[float]] | None = None

    def by_id(self) -> dict[str, list[str]]:
        return dict(zip(self.ids, self.tags))


def predict_tags(model, loader, accelerator=None, confidences: bool = False) -> Predictions:
    """Decode every batch of ``loader`` (gathered over processes when ``accelerator`` is given)."""
    unwrapped = accelerator.unwrap_model(model) if accelerator is not None else model
    ids: list[str] = []
    tags: list[list[str]] = []
    confs: list[list[float]] = []
    for batch in loader:
        decoded = unwrapped.decode(batch, confidences=confidences)
        ids += list(batch.ids)
        tags += decoded.tags
        if confidences:
            confs += decoded.confidences
    if accelerator is not None and accelerator.num_processes > 1:
        rows = accelerator.gather_for_metrics(list(zip(ids, tags, confs or [None] * len(ids))),
                                              use_gather_object=True)
        seen: dict[str, tuple] = {}
        for i, t, c in rows:
            seen.setdefault(i, (t, c))
        ids = list(seen)
        tags = [seen[i][0] for i in ids]
        confs = [seen[i][1] for i in ids] if confidences else []
    return Predictions(ids, tags, confs if confidences else None)


def evaluate_examples(examples: Sequence[Example], predictions: Predictions, mode: str = "conlleval") -> EntityReport:
    """Score predictions against the gold tags of ``examples`` (matched by tweet id)."""
    pred = predictions.by_id()
    missing = [ex.id for ex in examples if ex.id not in pred]
    if missing:
        raise ValueError(f"no prediction for {len(missing)} tweets (e.g. {missing[:5]})")
    return score([ex.tags for ex in examples], [pred[ex.id] for ex in examples], mode=mode,
                 ids=[ex.id for ex in examples])


def write_predictions(examples: Sequence[Example], predictions: Predictions, path: str | Path) -> Path:
    """CoNLL columns ``token gold pred`` (``mner score FILE`` reads them back)."""
    pred = predictions.by_id()
    write_conll(examples, path, predictions=[pred[ex.id] for ex in examples])
    return Path(path)


def dev_metrics(examples: Sequence[Example], mode: str = "conlleval"):
    """The ``evaluate`` callback of the trainer: micro P/R/F1 (fractions) and per-type F1."""

    def evaluate(model, loader, accelerator=None) -> dict:
        report = evaluate_examples(examples, predict_tags(model, loader, accelerator), mode)
        out = {"precision": report.micro.precision, "recall": report.micro.recall, "f1": report.micro.f1}
        out.update({f"f1_{t}": s.f1 for t, s in report.per_type.items()})
        return out

    return evaluate
