"""Evaluate a few-shot tagger on episodes: entity-level P/R/F1 pooled over all query tweets.

The protocol (``docs/models/mousing.md``): every episode's query set is tagged with the labels of
that episode, given its support set; the spans of every query tweet of every episode are pooled and
scored at once (micro P/R/F1, ``conlleval`` or ``strict`` mode, named in the report). The same tweet
may be a query of many episodes: predictions are kept by position, never by tweet id.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import torch
from torch.utils.data import DataLoader

from mner.data.episodes import Episode
from mner.tagging import EntityReport, score

__all__ = ["EpisodePredictions", "predict_episodes", "score_episodes", "episode_metrics"]


@dataclass
class EpisodePredictions:
    """Per episode, the predicted tags of each query tweet (in order)."""

    tags: list[list[list[str]]]
    seconds: float = 0.0

    @property
    def episodes_per_second(self) -> float:
        return len(self.tags) / self.seconds if self.seconds else 0.0


@torch.no_grad()
def predict_episodes(model, episodes: Sequence[Episode], collate, batch_size: int = 4,
                     accelerator=None, progress: bool = False) -> EpisodePredictions:
    """Decode the query set of every episode (given its support set)."""
    from tqdm.auto import tqdm

    unwrapped = accelerator.unwrap_model(model) if accelerator is not None else model
    loader = DataLoader(list(episodes), batch_size=batch_size, shuffle=False, collate_fn=collate)
    out: list[list[list[str]]] = []
    t0 = time.perf_counter()
    for batch in tqdm(loader, disable=not progress, desc="episodes", unit="batch"):
        decoded = unwrapped.decode(batch)
        q_ep = batch.query_episode.tolist()
        per = [[] for _ in range(len(batch))]
        for e, tags in zip(q_ep, decoded.tags):
            per[e].append(tags)
        out += per
    return EpisodePredictions(out, time.perf_counter() - t0)


def score_episodes(episodes: Sequence[Episode], predictions: EpisodePredictions, mode: str = "conlleval") -> EntityReport:
    """Pool every query tweet of every episode and score them together."""
    if len(predictions.tags) != len(episodes):
        raise ValueError(f"{len(predictions.tags)} predicted episodes for {len(episodes)} episodes")
    gold, pred, ids = [], [], []
    for i, (ep, tags) in enumerate(zip(episodes, predictions.tags)):
        if len(tags) != len(ep.query):
            raise ValueError(f"episode {i}: {len(tags)} predictions for {len(ep.query)} query tweets")
        for ex, t in zip(ep.query, tags):
            gold.append(list(ex.tags))
            pred.append(t)
            ids.append(f"episode {i} query {ex.id}")
    return score(gold, pred, mode=mode, ids=ids)


def episode_metrics(episodes: Sequence[Episode], mode: str = "conlleval", batch_size: int = 4):
    """The trainer's ``evaluate`` callback over dev episodes (the loader it passes is not used:
    episodes are decoded in a fixed order with their own batches)."""

    def evaluate(model, loader, accelerator=None) -> dict:
        collate = loader.collate_fn if loader is not None else None
        preds = predict_episodes(model, episodes, collate, batch_size, accelerator)
        report = score_episodes(episodes, preds, mode)
        out = {"precision": report.micro.precision, "recall": report.micro.recall, "f1": report.micro.f1,
               "episodes_per_second": preds.episodes_per_second}
        out.update({f"f1_{t}": s.f1 for t, s in report.per_type.items()})
        return out

    return evaluate
