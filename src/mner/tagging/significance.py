"""Is system B really better than system A? Paired significance tests for entity-level micro F1.

Two systems tagged the same tweets; their micro F1 differ by ``d = F1(B) - F1(A)``. Two tests say
how often a difference this large arises when the systems are in truth equally good, both
resampling *tweets* (the unit the test set is made of) and both on the same per-tweet counts:

- **paired bootstrap** (:func:`paired_bootstrap`): draw the test set again, tweet by tweet with
  replacement, many times, and score both systems on each draw (the same tweets for both, hence
  *paired*). The spread of ``d*`` over the draws is the uncertainty of ``d`` that comes from the
  choice of test tweets: its percentiles are the confidence interval. The p-value is two-sided,
  from the draws shifted to a zero mean (the null hypothesis ``d = 0``):
  ``p = (1 + #{|d* - d| >= |d|}) / (R + 1)``.
- **approximate randomization** (:func:`approximate_randomization`): if A and B were
  interchangeable, swapping their outputs on any tweet would not matter. Swap them on each tweet
  with probability 1/2, many times, and count how often ``|d*| >= |d|``:
  ``p = (1 + count) / (R + 1)``. This makes fewer assumptions than the bootstrap and is the
  better p-value; the bootstrap's strength is the confidence interval.

The ``+1`` in both counts the observed data as one of the resamples, so a p-value is never 0
(the smallest is ``1 / (R + 1)``) and identical systems get exactly 1.

Micro F1 is not a sum over tweets, so the statistic is recomputed on each resample. That is cheap
here: the per-tweet counts ``(tp, predicted, gold)`` of each system are computed once
(:func:`tweet_counts`, the same entity reading as :func:`mner.tagging.score`), a resample is a
vector of tweet weights (how many times each tweet was drawn) or of swap decisions, and the
resampled totals of a block of resamples are one matrix product. 10,000 resamples of Twitter-2015
test (3257 tweets) take well under a second.

**Several seeds.** With runs ``A_1..A_S`` and ``B_1..B_S`` (seed ``s`` of each system; their
order pairs them), :func:`compare_runs` tests the *mean over seeds* of ``F1(B_s) - F1(A_s)``,
the gain the results page reports. A bootstrap resample draws the tweets once and applies the same
draw to every seed: a tweet is one unit, whichever seed tagged it, so that its three copies are
not counted as three independent observations (which would make a small gain look significant).
Approximate randomization likewise swaps A and B on a tweet in every seed at once (the null
hypothesis: on each tweet, the block of A's runs and the block of B's runs are interchangeable).
Swapping each (seed, tweet) pair on its own, or concatenating the seeds' counts into one large
test set, were the alternatives; both treat the copies of a tweet as independent, which they are
not (the seeds of one system make mostly the same mistakes), and concatenation also pools another
statistic (the F1 of the union, not the mean of the F1s). What neither test does is treat the seeds themselves as a sample of training runs:
they say whether the mean gain over *these* seeds is more than the test set's sampling noise. The
spread between seeds is the other half of the answer; the results page shows it next to the test
(mean ± std and each seed's F1).

Randomness comes only from the ``seed`` given (a :class:`numpy.random.Generator` or an int for
:func:`numpy.random.default_rng`); the global random state is never read or changed. The same
inputs and seed give the same result, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from mner.tagging.metrics import chunk_pair
from mner.tagging.schemes import _chunker

__all__ = [
    "METHODS",
    "SignificanceResult",
    "approximate_randomization",
    "grouped_randomization",
    "compare",
    "compare_runs",
    "micro_f1",
    "paired_bootstrap",
    "tweet_counts",
]

METHODS = ("bootstrap", "randomization")
#: resamples per matrix product: bounds the memory of a block to ``_BLOCK x tweets`` numbers
_BLOCK = 500
# |d*| >= |d| is decided with this slack: the same counts summed in another order give the same
# F1 up to the last bits, and such a resample is as extreme as the data, not less
_EPS = 1e-12


@dataclass(frozen=True)
class SignificanceResult:
    """The outcome of a paired test of B against A.

    Attributes:
        method: ``"bootstrap"`` or ``"randomization"``.
        f1_a, f1_b: micro F1 of A and B (fractions; the mean over runs when there are several).
        difference: ``f1_b - f1_a`` (the mean over runs of the per-run differences).
        p_value: two-sided, in ``(0, 1]``.
        ci_low, ci_high: the bootstrap's percentile confidence interval of ``difference``
            (None for randomization).
        confidence: the level of that interval.
        resamples, seed: how many resamples, from which seed (None when a Generator was given).
        n_sequences: tweets per run; n_runs: paired runs (seeds).
        per_run: with several runs, ``(f1_a, f1_b)`` of each pair.
    """

    method: str
    f1_a: float
    f1_b: float
    difference: float
    p_value: float
    ci_low: float | None
    ci_high: float | None
    confidence: float
    resamples: int
    seed: int | None
    n_sequences: int
    n_runs: int = 1
    per_run: tuple[tuple[float, float], ...] = ()

    def to_dict(self) -> dict:
        return {"method": self.method, "f1_a": self.f1_a, "f1_b": self.f1_b, "difference": self.difference,
                "p_value": self.p_value, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "confidence": self.confidence, "resamples": self.resamples, "seed": self.seed,
                "n_sequences": self.n_sequences, "n_runs": self.n_runs,
                "per_run": [list(p) for p in self.per_run]}

    def format(self, name_a: str = "A", name_b: str = "B") -> str:
        """Three lines in percent: both F1s, the gain with its interval, the p-value."""
        runs = f" (mean over {self.n_runs} runs)" if self.n_runs > 1 else ""
        lines = [f"F1 {name_a}: {100 * self.f1_a:.2f}{runs}", f"F1 {name_b}: {100 * self.f1_b:.2f}{runs}"]
        gain = f"gain ({name_b} - {name_a}): {100 * self.difference:+.2f}"
        if self.ci_low is not None and self.ci_high is not None:
            gain += (f", {100 * self.confidence:g} % CI [{100 * self.ci_low:+.2f}, "
                     f"{100 * self.ci_high:+.2f}]")
        lines.append(gain)
        lines.append(f"p = {self.p_value:.4g} ({_METHOD_WORDS[self.method]}, two-sided, {self.resamples} "
                     f"resamples of {self.n_sequences} tweets, seed {self.seed})")
        return "\n".join(lines)


_METHOD_WORDS = {"bootstrap": "paired bootstrap", "randomization": "approximate randomization"}


# ------------------------------------------------------------------------------------ counts
def tweet_counts(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], mode: str = "conlleval",
                 scheme: str = "iob2") -> np.ndarray:
    """Per tweet ``(tp, predicted, gold)`` entity counts: an ``(n, 3)`` int64 array whose column
    sums give exactly the micro counts of :func:`mner.tagging.score` (same reading of entities).

    Raises:
        ValueError: the numbers of tweets differ, a tweet's tag sequences differ in length, or
            a tag is malformed (naming the tweet by its position).
    """
    if isinstance(gold, str) or isinstance(pred, str):
        raise TypeError("tweet_counts takes sequences of tag sequences (a list of lists)")
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} tweets but the predictions have {len(pred)}; the tests pair "
                         "tweets by position: give one predicted sequence per gold tweet, in the same order")
    chunks = _chunker(mode, scheme)
    out = np.zeros((len(gold), 3), dtype=np.int64)
    for i, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise ValueError(f"tweet {i}: gold has {len(g)} tags but the prediction has {len(p)}; "
                             "the predictions are not aligned with the gold tweets")
        g_chunks, p_chunks = chunk_pair(chunks, g, p, f"tweet {i}")
        g_set = set(g_chunks)
        out[i] = (sum(1 for c in p_chunks if c in g_set), len(p_chunks), len(g_chunks))
    return out


def micro_f1(tp, predicted, gold):
    """Micro F1 from (arrays of) totals, ``2PR / (P + R)`` as :class:`mner.tagging.Scores`
    computes it; 0 where undefined."""
    tp, predicted, gold = (np.asarray(x, dtype=np.float64) for x in (tp, predicted, gold))
    p = np.divide(tp, predicted, out=np.zeros(np.broadcast(tp, predicted).shape), where=predicted > 0)
    r = np.divide(tp, gold, out=np.zeros(np.broadcast(tp, gold).shape), where=gold > 0)
    d = p + r
    f = np.divide(2.0 * p * r, d, out=np.zeros(d.shape), where=d > 0)
    return f if f.ndim else float(f)


# ------------------------------------------------------------------------------------ the tests
def _generator(seed) -> tuple[np.random.Generator, int | None]:
    if isinstance(seed, np.random.Generator):
        return seed, None
    if isinstance(seed, (bool, float)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int or a numpy.random.Generator, not {type(seed).__name__}")
    return np.random.default_rng(int(seed)), int(seed)


def _check_args(resamples: int, confidence: float) -> None:
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def _stack(counts_a, counts_b) -> tuple[np.ndarray, np.ndarray]:
    """``(S, n, 3)`` int arrays of both systems, checked to be paired."""
    a = np.asarray(counts_a, dtype=np.int64)
    b = np.asarray(counts_b, dtype=np.int64)
    if a.ndim == 2:
        a = a[None]
    if b.ndim == 2:
        b = b[None]
    if a.ndim != 3 or a.shape[-1] != 3 or b.ndim != 3 or b.shape[-1] != 3:
        raise ValueError("counts must be (tweets, 3) or (runs, tweets, 3) arrays of (tp, predicted, gold), "
                         f"got shapes {np.shape(counts_a)} and {np.shape(counts_b)}")
    if a.shape != b.shape:
        raise ValueError(f"A has {a.shape[0]} run(s) of {a.shape[1]} tweets, B {b.shape[0]} run(s) of "
                         f"{b.shape[1]} tweets; a paired test needs the same runs and tweets on both sides")
    if a.shape[1] == 0:
        raise ValueError("no tweets to test")
    if not np.array_equal(a[..., 2], b[..., 2]):
        s, i = map(int, np.argwhere(a[..., 2] != b[..., 2])[0])
        raise ValueError(f"run {s}, tweet {i}: A was scored against {a[s, i, 2]} gold entities, B against "
                         f"{b[s, i, 2]}; both systems must be scored on the same gold")
    if not (a[..., 0] <= a[..., 1]).all() or not (b[..., 0] <= b[..., 1]).all() or (a < 0).any() or (b < 0).any():
        raise ValueError("counts must be non-negative with tp <= predicted")
    return a, b


def _f1_per_run(a: np.ndarray) -> np.ndarray:
    tot = a.sum(axis=1)
    return micro_f1(tot[:, 0], tot[:, 1], tot[:, 2])


def paired_bootstrap(counts_a, counts_b, resamples: int = 10_000, seed=0,
                     confidence: float = 0.95) -> SignificanceResult:
    """Paired bootstrap over tweets on per-tweet counts (see the module docstring).

    Args:
        counts_a, counts_b: :func:`tweet_counts` of A and B, ``(n, 3)``, or ``(S, n, 3)`` for S
            paired runs (the statistic is then the mean over runs; one draw of tweets per resample
            serves every run).
        resamples: how many bootstrap test sets.
        seed: an int or a :class:`numpy.random.Generator`.
        confidence: level of the percentile interval of the difference.
    """
    _check_args(resamples, confidence)
    a, b = _stack(counts_a, counts_b)
    rng, seed_int = _generator(seed)
    n_runs, n = a.shape[:2]
    fa, fb = _f1_per_run(a), _f1_per_run(b)
    observed = float(np.mean(fb - fa))
    # columns: for each run, tp_a, pred_a, tp_b, pred_b, gold
    table = np.concatenate([a[:, :, :2], b[:, :, :2], a[:, :, 2:]], axis=2)  # (S, n, 5)
    table = table.transpose(1, 0, 2).reshape(n, n_runs * 5).astype(np.float64)
    diffs = np.empty(resamples)
    done = 0
    while done < resamples:
        k = min(_BLOCK, resamples - done)
        draws = rng.integers(0, n, size=(k, n))
        # how many times each tweet was drawn, per resample (a row-wise bincount)
        weights = np.bincount((draws + n * np.arange(k)[:, None]).ravel(), minlength=k * n).reshape(k, n)
        tot = (weights.astype(np.float64) @ table).reshape(k, n_runs, 5)
        f_a = micro_f1(tot[..., 0], tot[..., 1], tot[..., 4])
        f_b = micro_f1(tot[..., 2], tot[..., 3], tot[..., 4])
        diffs[done:done + k] = (f_b - f_a).mean(axis=1)
        done += k
    extreme = int(np.count_nonzero(np.abs(diffs - observed) >= abs(observed) - _EPS))
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(diffs, [tail, 1.0 - tail])
    return SignificanceResult("bootstrap", float(fa.mean()), float(fb.mean()), observed,
                              (1 + extreme) / (resamples + 1), float(low), float(high), confidence, resamples,
                              seed_int, n, n_runs, _per_run(fa, fb, n_runs))


def approximate_randomization(counts_a, counts_b, resamples: int = 10_000, seed=0) -> SignificanceResult:
    """Approximate randomization over tweets on per-tweet counts (see the module docstring).

    ``counts_a``, ``counts_b``: as for :func:`paired_bootstrap`; with several runs, a swap of a
    tweet swaps A and B in every run.
    """
    _check_args(resamples, 0.5)
    a, b = _stack(counts_a, counts_b)
    rng, seed_int = _generator(seed)
    n_runs, n = a.shape[:2]
    fa, fb = _f1_per_run(a), _f1_per_run(b)
    observed = float(np.mean(fb - fa))
    tot_a = a.sum(axis=1).astype(np.float64)  # (S, 3)
    tot_b = b.sum(axis=1).astype(np.float64)
    # what a swap of each tweet moves from B to A, one column per (run, count): (n, S * 2)
    delta = (b[:, :, :2] - a[:, :, :2]).astype(np.float64).transpose(1, 0, 2).reshape(n, n_runs * 2)
    diffs = np.empty(resamples)
    done = 0
    while done < resamples:
        k = min(_BLOCK, resamples - done)
        swap = rng.integers(0, 2, size=(k, n)).astype(np.float64)
        moved = (swap @ delta).reshape(k, n_runs, 2)  # sums of integers: exact in float64
        tp_a, pr_a = tot_a[:, 0] + moved[..., 0], tot_a[:, 1] + moved[..., 1]
        tp_b, pr_b = tot_b[:, 0] - moved[..., 0], tot_b[:, 1] - moved[..., 1]
        d = micro_f1(tp_b, pr_b, tot_a[:, 2]) - micro_f1(tp_a, pr_a, tot_a[:, 2])
        diffs[done:done + k] = d.mean(axis=1)
        done += k
    extreme = int(np.count_nonzero(np.abs(diffs) >= abs(observed) - _EPS))
    return SignificanceResult("randomization", float(fa.mean()), float(fb.mean()), observed,
                              (1 + extreme) / (resamples + 1), None, None, 0.95, resamples, seed_int, n,
                              n_runs, _per_run(fa, fb, n_runs))


def grouped_randomization(counts_a, counts_b, groups, resamples: int = 10_000, seed=0) -> SignificanceResult:
    """Approximate randomization when the reported figure is the *mean of per-group micro F1s*.

    The few-shot table reports, per model, the average over six target-type splits of the micro F1
    pooled over each split's test episodes (and the mean over seeds). Here the units are those
    episodes: ``counts_a``, ``counts_b`` are ``(n, 3)`` or ``(S, n, 3)`` per-episode counts of the
    ``n`` episodes of every split laid end to end, ``groups`` (n,) names the split of each; the
    statistic is ``mean over runs and groups of F1_g(B) - F1_g(A)``, and a resample swaps A and B on
    each episode (in every run at once) with probability 1/2. With one group it is
    :func:`approximate_randomization`, draw for draw.
    """
    _check_args(resamples, 0.5)
    a, b = _stack(counts_a, counts_b)
    groups = np.asarray(groups)
    if groups.shape != (a.shape[1],):
        raise ValueError(f"groups must name the group of each of the {a.shape[1]} units, got shape {groups.shape}")
    names, index = np.unique(groups, return_inverse=True)
    member = np.eye(len(names))[index]                                    # (n, G)
    rng, seed_int = _generator(seed)
    n_runs, n = a.shape[:2]
    tot_a = np.einsum("snc,ng->sgc", a.astype(np.float64), member)        # (S, G, 3)
    tot_b = np.einsum("snc,ng->sgc", b.astype(np.float64), member)
    fa = micro_f1(tot_a[..., 0], tot_a[..., 1], tot_a[..., 2])            # (S, G)
    fb = micro_f1(tot_b[..., 0], tot_b[..., 1], tot_b[..., 2])
    observed = float(np.mean(fb - fa))
    delta = (b[:, :, :2] - a[:, :, :2]).astype(np.float64)               # (S, n, 2)
    # what a swap of each unit moves from B to A, in the columns of its group: (n, S * G * 2), so
    # that a block of resamples is one matrix product (the three-operand einsum it replaces runs as
    # numpy's unoptimised nested loop: 3.5 of the few-shot page's 3.6 min); sums of integers, exact
    # in float64, so the draws are the same
    spread = (delta[:, :, None, :] * member[None, :, :, None]).transpose(1, 0, 2, 3)
    spread = spread.reshape(n, n_runs * len(names) * 2)
    diffs = np.empty(resamples)
    done = 0
    while done < resamples:
        k = min(_BLOCK, resamples - done)
        swap = rng.integers(0, 2, size=(k, n)).astype(np.float64)
        moved = (swap @ spread).reshape(k, n_runs, len(names), 2)       # (k, S, G, 2)
        tp_a, pr_a = tot_a[..., 0] + moved[..., 0], tot_a[..., 1] + moved[..., 1]
        tp_b, pr_b = tot_b[..., 0] - moved[..., 0], tot_b[..., 1] - moved[..., 1]
        d = micro_f1(tp_b, pr_b, tot_a[..., 2]) - micro_f1(tp_a, pr_a, tot_a[..., 2])
        diffs[done:done + k] = d.reshape(k, -1).mean(axis=1)
        done += k
    extreme = int(np.count_nonzero(np.abs(diffs) >= abs(observed) - _EPS))
    return SignificanceResult("randomization", float(fa.mean()), float(fb.mean()), observed,
                              (1 + extreme) / (resamples + 1), None, None, 0.95, resamples, seed_int, n,
                              n_runs, _per_run(fa.mean(axis=1), fb.mean(axis=1), n_runs))


def _per_run(fa: np.ndarray, fb: np.ndarray, n_runs: int) -> tuple[tuple[float, float], ...]:
    return tuple((float(x), float(y)) for x, y in zip(fa, fb)) if n_runs > 1 else ()


def _run(method: str, ca, cb, resamples: int, seed, confidence: float) -> SignificanceResult:
    if method == "bootstrap":
        return paired_bootstrap(ca, cb, resamples, seed, confidence)
    if method == "randomization":
        return approximate_randomization(ca, cb, resamples, seed)
    raise ValueError(f"method {method!r}: choose one of {', '.join(METHODS)}")


def compare(gold: Sequence[Sequence[str]], pred_a: Sequence[Sequence[str]], pred_b: Sequence[Sequence[str]],
            method: str = "bootstrap", resamples: int = 10_000, seed=0, confidence: float = 0.95,
            mode: str = "conlleval", scheme: str = "iob2") -> SignificanceResult:
    """Test system B against system A on the same gold tweets (tag sequences aligned by position).

    ``method``: ``"bootstrap"`` (p-value and confidence interval) or ``"randomization"``.
    ``mode``/``scheme``: how entities are read, as in :func:`mner.tagging.score`.
    """
    try:
        ca = tweet_counts(gold, pred_a, mode, scheme)
    except ValueError as err:
        raise ValueError(f"system A: {err}") from None
    try:
        cb = tweet_counts(gold, pred_b, mode, scheme)
    except ValueError as err:
        raise ValueError(f"system B: {err}") from None
    return _run(method, ca, cb, resamples, seed, confidence)


def compare_runs(gold: Sequence[Sequence[str]], runs_a: Sequence[Sequence[Sequence[str]]],
                 runs_b: Sequence[Sequence[Sequence[str]]], method: str = "bootstrap", resamples: int = 10_000,
                 seed=0, confidence: float = 0.95, mode: str = "conlleval",
                 scheme: str = "iob2") -> SignificanceResult:
    """Test the mean gain of B over A across paired runs (``runs_a[s]`` with ``runs_b[s]``: the
    same seed), all on the same gold tweets; see *Several seeds* in the module docstring."""
    if len(runs_a) != len(runs_b):
        raise ValueError(f"{len(runs_a)} runs of A but {len(runs_b)} of B; pair them seed by seed")
    if not runs_a:
        raise ValueError("no runs to compare")
    ca, cb = [], []
    for s, (pa, pb) in enumerate(zip(runs_a, runs_b)):
        try:
            ca.append(tweet_counts(gold, pa, mode, scheme))
        except ValueError as err:
            raise ValueError(f"system A, run {s}: {err}") from None
        try:
            cb.append(tweet_counts(gold, pb, mode, scheme))
        except ValueError as err:
            raise ValueError(f"system B, run {s}: {err}") from None
    return _run(method, np.stack(ca), np.stack(cb), resamples, seed, confidence)
