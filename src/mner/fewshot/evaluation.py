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
from mner.processing.episodes import EpisodeProcessor
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


def _key(ex) -> tuple:
    return (ex.id, ex.tokens, ex.caption, ex.image)


def _pad_rows(rows: list[tuple], width: int) -> tuple:
    """Stack per-tweet representations (each a tuple of ``(n_words, ...)`` tensors or None) into
    ``(B, width, ...)`` tensors, zero-padded."""
    out = []
    for j, first in enumerate(rows[0]):
        if first is None:
            out.append(None)
            continue
        t = first.new_zeros((len(rows), width) + tuple(first.shape[1:]))
        for i, r in enumerate(rows):
            t[i, : r[j].shape[0]] = r[j]
        out.append(t)
    return tuple(out)


@torch.no_grad()
def predict_episodes(model, episodes: Sequence[Episode], processor: EpisodeProcessor, batch_size: int = 4,
                     accelerator=None, progress: bool = False, encode_batch_size: int = 32,
                     cache: bool = True, head=None, encoded: dict | None = None) -> EpisodePredictions:
    """Decode the query set of every episode (given its support set).

    A tweet's representation does not depend on the episode it is in (``model.encode``, eval
    mode), so each distinct tweet of all episodes is encoded once, in batches, and every episode
    batch then runs only ``model.head`` (prototypes, distances, CRF) over the stored rows: the
    result is the same as running the whole model on each episode (a test checks it), at a
    fraction of the cost, since the benchmark's 500 episodes reuse a few hundred tweets.
    ``cache=False`` runs the whole model on every episode batch instead. ``head(batch, support,
    query) -> TaggerOutput`` replaces ``model.head`` (diagnostics decode one view of a model).

    ``encoded``: a dict the caller keeps across calls with *the same weights* (one checkpoint decoded
    several ways: a grid of decoding options, other decoders, diagnostics), which holds the rows of
    each chunk of distinct tweets encoded so far. A chunk met again (the same tweets in the same
    order: the same episode file) is not encoded again; its rows are those that encoding it again
    gives, bit for bit (the same inputs in the same batch, eval mode), so the predictions are those of
    a call without it. Only chunks, not single tweets, are reused: a tweet padded in another batch can
    differ in the last bits. Drop the dict when the weights change."""
    from tqdm.auto import tqdm

    unwrapped = accelerator.unwrap_model(model) if accelerator is not None else model
    was_training = unwrapped.training
    unwrapped.eval()
    device = next(unwrapped.parameters()).device
    t0 = time.perf_counter()
    out: list[list[list[str]]] = []
    try:
        reps: dict[tuple, tuple] = {}
        if cache:
            distinct = {}
            for ep in episodes:
                for ex in ep.support + ep.query:
                    distinct.setdefault(_key(ex), ex)
            todo = list(distinct.values())
            for start in range(0, len(todo), encode_batch_size):
                chunk = todo[start:start + encode_batch_size]
                keys = tuple(_key(ex) for ex in chunk)
                rows = encoded.get(keys) if encoded is not None else None
                if rows is None:
                    enc = unwrapped.encode(processor.tagging(chunk).to(device), False)
                    rows = [tuple(t[i, : len(ex.tokens)] if t is not None else None for t in enc)
                            for i, ex in enumerate(chunk)]
                    if encoded is not None:
                        encoded[keys] = rows
                reps.update(zip(keys, rows))
        loader = DataLoader(list(episodes), batch_size=batch_size, shuffle=False, collate_fn=processor.collate(train=False))
        for batch in tqdm(loader, disable=not progress, desc="episodes", unit="batch"):
            batch = batch.without_tags().to(device)
            if cache:
                s_eps = [ex for ep in episodes[len(out):len(out) + len(batch)] for ex in ep.support]
                q_eps = [ex for ep in episodes[len(out):len(out) + len(batch)] for ex in ep.query]
                support = _pad_rows([reps[_key(ex)] for ex in s_eps], batch.support.words.word_mask.shape[1])
                query = _pad_rows([reps[_key(ex)] for ex in q_eps], batch.query.words.word_mask.shape[1])
                decoded = unwrapped.decode_output((head or unwrapped.head)(batch, support, query))
            else:
                if head is not None:
                    raise ValueError("predict_episodes: head= needs cache=True")
                decoded = unwrapped.decode(batch)
            per = [[] for _ in range(len(batch))]
            for e, tags in zip(batch.query_episode.tolist(), decoded.tags):
                per[e].append(tags)
            out += per
    finally:
        unwrapped.train(was_training)
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


def episode_metrics(episodes: Sequence[Episode], processor: EpisodeProcessor, mode: str = "conlleval",
                    batch_size: int = 4):
    """The trainer's ``evaluate`` callback over dev episodes (the loader it passes is not used:
    the episodes are decoded by :func:`predict_episodes`, each distinct tweet encoded once)."""

    def evaluate(model, loader=None, accelerator=None) -> dict:
        preds = predict_episodes(model, episodes, processor, batch_size, accelerator)
        report = score_episodes(episodes, preds, mode)
        out = {"precision": report.micro.precision, "recall": report.micro.recall, "f1": report.micro.f1,
               "episodes_per_second": preds.episodes_per_second}
        out.update({f"f1_{t}": s.f1 for t, s in report.per_type.items()})
        return out

    return evaluate
