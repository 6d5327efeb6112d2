"""Controls of a supervised model's visual view: what the image (or caption) is worth, and whether
MAF's cross-modal matching module (CM) tells a tweet's own view from another tweet's.

A gain over the text-only tagger is not yet a gain *from the image*: a model may use any visual
input as extra capacity, or learn the share of positives in its batches instead of matching. Three
decodings of the same labelled tweets say which:

- **real**: every tweet with its own view (image and/or caption), the usual test F1;
- **shuffled**: the views permuted among the tweets of the split that have one (a seeded
  permutation; the view of a tweet of the ``both`` view moves with its image and caption
  together). ``kept_own`` counts the tweets that got their own view back (the same image reference
  or caption text: Twitter captions repeat, so more than the permutation's fixed points);
- **none**: no view for any tweet (``Example.image`` and ``caption`` None: the processor gives an
  empty view, ``present`` False, nothing substituted).

``F1 real - F1 shuffled`` is what the *content* of the view is worth; ``F1 real - F1 none`` what
having any view at all is worth. A text-only model has no view: its three F1s are one.

For a model with CM (MAF without ``no_matching``), the match probability ``y^_m`` of each tweet is
read with the real and with the shuffled view (eval mode: no swapped negatives, so CM sees the pair
the decoding uses). :class:`MatchStats` gives their means and standard deviations, how often a
tweet's real pair scores above its shuffled one, and the rank AUC of real against shuffled pairs
(:func:`rank_auc`; 0.5 = CM cannot tell them apart). Tweets without a view, and shuffled pairs
that kept their own view, are left out of the AUC. The probability is a field of the model's output
(:attr:`mner.models.base.TaggerOutput.match_probability`), read from the decoding's own forward.

``mner evaluate CHECKPOINT DATA --controls`` prints them; ``bench/maf_benchmark.py`` stores them
with every cell.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass, field
from typing import Any, Sequence

from mner.data.example import Example
from mner.errors import MNERError

__all__ = ["Controls", "MatchStats", "rank_auc", "shuffle_views", "remove_views", "visual_controls",
           "experiment_controls"]


def rank_auc(positives: Sequence[float], negatives: Sequence[float]) -> float | None:
    """The probability that a random positive scores above a random negative, ties counted 0.5
    (the Mann-Whitney U statistic over ``n_pos * n_neg``, with mid-ranks for ties). None when
    either side is empty."""
    n_pos, n_neg = len(positives), len(negatives)
    if not n_pos or not n_neg:
        return None
    scored = sorted([(float(s), 1) for s in positives] + [(float(s), 0) for s in negatives])
    rank_sum = 0.0
    i = 0
    while i < len(scored):
        j = i
        while j < len(scored) and scored[j][0] == scored[i][0]:
            j += 1
        mid = (i + 1 + j) / 2  # the mean of the 1-based ranks i+1 .. j
        rank_sum += mid * sum(label for _, label in scored[i:j])
        i = j
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _view_key(ex: Example, views: Sequence[str]) -> tuple:
    """What a tweet's view is, for the views a model reads: ``(image, caption)`` where read."""
    return (ex.image if "pixels" in views else None, ex.caption if "caption" in views else None)


def _has_view(ex: Example, views: Sequence[str]) -> bool:
    return any(v is not None for v in _view_key(ex, views))


def shuffle_views(examples: Sequence[Example], views: Sequence[str], seed: int = 0) -> tuple[list[Example], int, int]:
    """The examples with the views a model reads (``pixels``: the image, ``caption``: the caption)
    permuted among the tweets that have one (seeded: ``random.Random(seed)``); tweets without a
    view keep none. Returns the new examples, how many tweets had a view, and how many of those got
    their own view back (the same image reference and caption text)."""
    rows = [i for i, ex in enumerate(examples) if _has_view(ex, views)]
    order = list(rows)
    random.Random(seed).shuffle(order)
    out = list(examples)
    kept = 0
    for i, j in zip(rows, order):
        ex, donor = examples[i], examples[j]
        changes: dict[str, Any] = {}
        if "pixels" in views:
            changes["image"] = donor.image
        if "caption" in views:
            changes["caption"] = donor.caption
        kept += _view_key(donor, views) == _view_key(ex, views)
        out[i] = ex.replace(**changes)
    return out, len(rows), kept


def remove_views(examples: Sequence[Example], views: Sequence[str]) -> list[Example]:
    """The examples without the views a model reads (no image and/or no caption for any tweet)."""
    changes: dict[str, Any] = {}
    if "pixels" in views:
        changes["image"] = None
    if "caption" in views:
        changes["caption"] = None
    return [ex.replace(**changes) for ex in examples] if changes else list(examples)


@dataclass
class MatchStats:
    """CM's match probability ``y^_m`` over the tweets with a view (see the module docstring).

    ``auc``: rank AUC of the real pairs against the shuffled pairs that are not the tweet's own
    (None without such pairs); ``real_higher``: over those tweets, how many score their real pair
    above their shuffled one; ``none_mean``: the mean probability with no view at all."""

    tweets: int
    real_mean: float
    real_std: float
    shuffled_mean: float
    shuffled_std: float
    auc: float | None
    real_higher: int
    compared: int
    none_mean: float | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Controls:
    """Test F1 (fractions) with the real, shuffled and no visual view, and CM's statistics.

    ``views``: the views the model reads (empty: text only, the three F1s are equal);
    ``shuffled_tweets``: tweets whose view was permuted, ``kept_own``: of those, how many got
    their own view back; ``report`` / ``predictions``: the real decoding's (not serialised)."""

    views: tuple[str, ...]
    tweets: int
    f1_real: float
    f1_shuffled: float
    f1_none: float
    seed: int
    shuffled_tweets: int
    kept_own: int
    match: MatchStats | None = None
    report: Any = field(default=None, repr=False)
    predictions: Any = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {"views": list(self.views), "tweets": self.tweets, "f1_real": self.f1_real,
                "f1_shuffled": self.f1_shuffled, "f1_none": self.f1_none, "shuffle_seed": self.seed,
                "shuffled_tweets": self.shuffled_tweets, "kept_own": self.kept_own,
                "match": self.match.to_dict() if self.match is not None else None}

    def format(self) -> str:
        """The controls as lines of text (F1 in percent)."""
        what = " + ".join({"pixels": "images", "caption": "captions"}[v] for v in self.views)
        if not self.views:
            return (f"controls: the model has no visual view (text only): F1 {100 * self.f1_real:.2f} "
                    "with real, shuffled or no images / captions alike")
        lines = [
            f"controls ({self.tweets} tweets, view: {what}):",
            f"  F1 real {what}:       {100 * self.f1_real:6.2f}",
            f"  F1 shuffled {what}:   {100 * self.f1_shuffled:6.2f}   ({self.shuffled_tweets} tweets permuted, "
            f"seed {self.seed}; {self.kept_own} kept their own)",
            f"  F1 no {what}:         {100 * self.f1_none:6.2f}",
            f"  worth of the content (real - shuffled): {100 * (self.f1_real - self.f1_shuffled):+.2f}; "
            f"of having one (real - none): {100 * (self.f1_real - self.f1_none):+.2f}",
        ]
        m = self.match
        if m is None:
            lines.append("  cross-modal matching: none in this model")
        else:
            auc = f"{m.auc:.3f}" if m.auc is not None else "-"
            lines += [
                f"  CM match probability ({m.tweets} tweets with a view): real {m.real_mean:.3f} "
                f"(std {m.real_std:.3f}), shuffled {m.shuffled_mean:.3f} (std {m.shuffled_std:.3f})"
                + (f", no view {m.none_mean:.3f}" if m.none_mean is not None else ""),
                f"  CM AUC real vs shuffled: {auc}; real above shuffled for {m.real_higher} of {m.compared} tweets "
                "(0.5: CM cannot tell a tweet's view from another's)",
            ]
        return "\n".join(lines)


def _decode(model, examples: Sequence[Example], collate, batch_size: int, mode: str):
    """Predictions, their report and CM's match probability per example (None without CM)."""
    from torch.utils.data import DataLoader

    from mner.evaluation import evaluate_examples, predict_tags

    loader = DataLoader(list(examples), batch_size=batch_size, collate_fn=collate)
    preds = predict_tags(model, loader)
    return preds, evaluate_examples(examples, preds, mode=mode), preds.match_probability


def _std(values: Sequence[float]) -> float:
    return statistics.pstdev(values) if values else math.nan


def visual_controls(model, examples: Sequence[Example], processor=None, *, image_store=None, seed: int = 0,
                    batch_size: int = 64, mode: str = "conlleval") -> Controls:
    """The controls of the module docstring for a fixed-label model on labelled ``examples``.

    ``processor``: the model's processor to decode with (default ``model.processor(image_store)``,
    features cached in memory for the three decodings); ``seed``: of the permutation."""
    if getattr(model, "label_set", None) is None:
        raise MNERError(f"a {getattr(model, 'model_type', type(model).__name__)!r} model has no label set of "
                        "its own: the controls are for fixed-label taggers (MAF, the text-only CRF)")
    examples = list(examples)
    if not examples:
        raise MNERError("no tweet to score: the controls need labelled tweets")
    views = tuple(getattr(model, "views", ()) or ())
    processor = processor if processor is not None else model.processor(image_store=image_store)
    collate = processor.collate(train=False)
    preds, report, match_real = _decode(model, examples, collate, batch_size, mode)
    if not views:
        f1 = report.micro.f1
        return Controls(views, len(examples), f1, f1, f1, seed, 0, 0, None, report, preds)
    with_view = [i for i, ex in enumerate(examples) if _has_view(ex, views)]
    if not with_view:
        what = " or ".join({"pixels": "an image", "caption": "a caption"}[v] for v in views)
        how = " or ".join({"pixels": "the images (--images DIR)", "caption": "the captions (--captions FILE)"}[v]
                          for v in views)
        raise MNERError(f"no tweet has {what}: the controls compare the real view with a shuffled one; give {how}")
    shuffled, n_shuffled, kept = shuffle_views(examples, views, seed)
    _, report_shuffled, match_shuffled = _decode(model, shuffled, collate, batch_size, mode)
    _, report_none, match_none = _decode(model, remove_views(examples, views), collate, batch_size, mode)
    stats = None
    if match_real is not None:
        own = {i for i in with_view if _view_key(shuffled[i], views) == _view_key(examples[i], views)}
        compared = [i for i in with_view if i not in own]
        real = [match_real[i] for i in with_view]
        other = [match_shuffled[i] for i in with_view]
        stats = MatchStats(
            tweets=len(with_view), real_mean=statistics.fmean(real), real_std=_std(real),
            shuffled_mean=statistics.fmean(other), shuffled_std=_std(other),
            auc=rank_auc([match_real[i] for i in compared], [match_shuffled[i] for i in compared]),
            real_higher=sum(match_real[i] > match_shuffled[i] for i in compared), compared=len(compared),
            none_mean=statistics.fmean(match_none))
    return Controls(views, len(examples), report.micro.f1, report_shuffled.micro.f1, report_none.micro.f1,
                    seed, n_shuffled, kept, stats, report, preds)


def experiment_controls(experiment: Any, checkpoint, split: str = "test", seed: int = 0,
                        batch_size: int | None = None) -> Controls:
    """The controls of a trained experiment's model on one of its splits, with the visual features
    computed exactly as ``mner train`` computed them (every split encoded into one cache in the
    data's order, so each caption is encoded in the batch training put it in): the real F1 is then
    the one training reported. ``experiment``: an :class:`~mner.experiment.ExperimentConfig`, or
    the dict / YAML path :func:`~mner.experiment.load_experiment` reads."""
    from mner.encoders.cache import feature_cache
    from mner.experiment import ExperimentConfig, load_experiment
    from mner.models import load_model

    cfg = experiment if isinstance(experiment, ExperimentConfig) else load_experiment(experiment)
    model = load_model(checkpoint)
    views = tuple(model.views)
    from mner.data.prepare import prepare_data

    data = prepare_data(cfg.data, needs_images="pixels" in views, needs_captions="caption" in views,
                        log=lambda *_: None)
    if split not in data.splits:
        raise MNERError(f"the experiment's data has no split {split!r} (it has {', '.join(data.splits)})")
    processor = model.processor(data.image_store, feature_cache(cfg.data.feature_cache))
    if processor.views:
        for exs in data.splits.values():
            processor.precompute(exs, progress=False)
    return visual_controls(model, data.splits[split], processor, seed=seed,
                           batch_size=batch_size or cfg.training.eval_batch_size)
