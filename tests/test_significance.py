"""Paired significance tests of micro F1 (mner.tagging.significance) and ``mner score --compare``."""

from __future__ import annotations

import gzip
import itertools
import json

import numpy as np
import pytest

from mner.cli import main
from mner.tagging import score
from mner.tagging.significance import (
    grouped_randomization,
    approximate_randomization,
    compare,
    compare_runs,
    micro_f1,
    paired_bootstrap,
    tweet_counts,
)

METHODS = ("bootstrap", "randomization")

# The hand-checkable case: four tweets, 4 gold entities.
GOLD = [["B-PER", "O"], ["B-LOC", "I-LOC"], ["B-ORG", "O", "B-PER"], ["O", "O"]]
# A: t0 right; t1 wrong span (B-LOC O); t2 finds ORG only; t3 a spurious MISC -> tp 2 of 4 predicted, F1 0.5
PRED_A = [["B-PER", "O"], ["B-LOC", "O"], ["B-ORG", "O", "O"], ["B-MISC", "O"]]
# B: every entity right -> F1 1.0
PRED_B = [list(t) for t in GOLD]


def _random_corpus(seed: int, n: int = 200) -> tuple[list, list, list]:
    """Random gold tags and two noisy systems (B drops fewer tags than A)."""
    rng = np.random.default_rng(seed)
    types = ["PER", "LOC", "ORG", "MISC"]
    gold = []
    for _ in range(n):
        tags = []
        for _ in range(int(rng.integers(3, 12))):
            r = rng.random()
            if r < 0.15:
                tags.append(f"B-{types[int(rng.integers(4))]}")
            elif r < 0.25 and tags and tags[-1] != "O":
                tags.append("I-" + tags[-1][2:])
            else:
                tags.append("O")
        gold.append(tags)

    def noisy(p: float) -> list:
        return [[("O" if rng.random() < p else t) for t in tags] for tags in gold]

    return gold, noisy(0.3), noisy(0.1)


def _brute_force_randomization_p(gold, a, b) -> float:
    """Exact randomization p-value: every swap pattern, each scored with mner.tagging.score."""
    observed = score(gold, b).f1 - score(gold, a).f1
    hits = total = 0
    for swaps in itertools.product((False, True), repeat=len(gold)):
        sa = [y if s else x for x, y, s in zip(a, b, swaps)]
        sb = [x if s else y for x, y, s in zip(a, b, swaps)]
        hits += abs(score(gold, sb).f1 - score(gold, sa).f1) >= abs(observed) - 1e-12
        total += 1
    return hits / total


# ================================================================================ counts
def test_tweet_counts_sum_to_the_scorers_micro_counts():
    gold, a, _ = _random_corpus(0)
    for mode in ("conlleval", "strict"):
        counts = tweet_counts(gold, a, mode=mode)
        report = score(gold, a, mode=mode)
        assert counts.shape == (len(gold), 3) and counts.dtype == np.int64
        assert tuple(counts.sum(axis=0)) == (report.micro.tp, report.micro.predicted, report.micro.support)
        assert micro_f1(*counts.sum(axis=0)) == report.micro.f1  # the same float, not only close


def test_hand_checked_case():
    counts_a, counts_b = tweet_counts(GOLD, PRED_A), tweet_counts(GOLD, PRED_B)
    assert counts_a.tolist() == [[1, 1, 1], [0, 1, 1], [1, 1, 2], [0, 1, 0]]
    assert counts_b.tolist() == [[1, 1, 1], [1, 1, 1], [2, 2, 2], [0, 0, 0]]
    # By hand, B - A for each set of swapped tweets among 1-3 (tweet 0 is the same in both):
    # none +0.5, {1} 0, {2} 6/7 - 2/3 = +0.190, {3} 8/9 - 4/7 = +0.317, {1,2} -0.317, {1,3} -0.190,
    # {2,3} 0, all -0.5: two of eight are as extreme as the data -> exact p = 2 / 8
    assert _brute_force_randomization_p(GOLD, PRED_A, PRED_B) == 0.25
    result = compare(GOLD, PRED_A, PRED_B, method="randomization", resamples=20_000, seed=3)
    assert (result.f1_a, result.f1_b, result.difference) == (0.5, 1.0, 0.5)
    assert result.ci_low is None and result.n_sequences == 4
    assert abs(result.p_value - 0.25) < 0.015


def test_randomization_matches_brute_force_on_random_small_cases():
    for seed in range(3):
        gold, a, b = _random_corpus(seed, n=9)
        exact = _brute_force_randomization_p(gold, a, b)
        est = compare(gold, a, b, method="randomization", resamples=20_000, seed=seed).p_value
        assert abs(est - exact) < 0.02, (seed, est, exact)


# ================================================================================ the properties
@pytest.mark.parametrize("method", METHODS)
def test_identical_systems_give_p_one_and_no_difference(method):
    gold, a, _ = _random_corpus(1)
    result = compare(gold, a, [list(t) for t in a], method=method, resamples=2000, seed=0)
    assert result.difference == 0.0 and result.f1_a == result.f1_b
    assert result.p_value == 1.0
    if method == "bootstrap":
        assert result.ci_low == result.ci_high == 0.0


@pytest.mark.parametrize("method", METHODS)
def test_a_system_better_on_every_tweet_is_significant(method):
    gold, _, _ = _random_corpus(2, n=300)
    gold = [t + ["B-PER"] for t in gold]  # every tweet has an entity
    worse = [t[:-1] + ["O"] for t in gold]  # ... which A always misses
    result = compare(gold, worse, gold, method=method, resamples=5000, seed=0)
    assert result.difference > 0 and result.p_value == 1 / 5001
    if method == "bootstrap":
        assert 0 < result.ci_low <= result.difference <= result.ci_high


def test_bootstrap_interval_is_a_point_when_every_tweet_is_alike():
    gold = [["B-PER", "O"]] * 50
    result = paired_bootstrap(tweet_counts(gold, [["O", "O"]] * 50), tweet_counts(gold, gold), resamples=300)
    assert (result.f1_a, result.f1_b, result.difference) == (0.0, 1.0, 1.0)
    assert result.ci_low == result.ci_high == 1.0 and result.p_value == 1 / 301


def test_bootstrap_is_centred_on_the_observed_difference():
    gold, a, b = _random_corpus(4, n=400)
    result = compare(gold, a, b, resamples=4000, seed=1, confidence=0.9)
    assert result.ci_low < result.difference < result.ci_high
    assert result.confidence == 0.9 and result.difference > 0


@pytest.mark.parametrize("method", METHODS)
def test_results_are_reproducible_with_the_seed_and_leave_the_global_rng_alone(method):
    gold, a, b = _random_corpus(5, n=60)
    b = [list(t) for t in a[:30]] + b[30:]  # a small difference: p well inside (0, 1)
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    first = compare(gold, a, b, method=method, resamples=1500, seed=42)
    assert np.array_equal(np.random.get_state()[1], before)
    again = compare(gold, a, b, method=method, resamples=1500, seed=42)
    assert first == again
    from_generator = compare(gold, a, b, method=method, resamples=1500, seed=np.random.default_rng(42))
    assert from_generator.p_value == first.p_value and from_generator.seed is None and first.seed == 42
    others = {compare(gold, a, b, method=method, resamples=1500, seed=s).p_value for s in (1, 2, 3)}
    assert len(others | {first.p_value}) > 1  # the seed does drive the resampling


@pytest.mark.parametrize("method", METHODS)
def test_pooled_runs_test_the_mean_gain(method):
    gold, a, b = _random_corpus(6, n=150)
    _, a2, b2 = _random_corpus(7, n=150)
    a2 = [t[: len(g)] + ["O"] * (len(g) - len(t)) for t, g in zip(a2, gold)]  # other tweets' noise, cut to fit
    b2 = [t[: len(g)] + ["O"] * (len(g) - len(t)) for t, g in zip(b2, gold)]
    pooled = compare_runs(gold, [a, a2], [b, b2], method=method, resamples=2000, seed=0)
    singles = [compare(gold, x, y, method=method, resamples=10, seed=0) for x, y in ((a, b), (a2, b2))]
    assert pooled.n_runs == 2 and len(pooled.per_run) == 2
    assert pooled.difference == pytest.approx(np.mean([s.difference for s in singles]), abs=1e-15)
    assert pooled.per_run == tuple((s.f1_a, s.f1_b) for s in singles)
    # one run "pooled" is the plain test, draw for draw
    one = compare_runs(gold, [a], [b], method=method, resamples=500, seed=9)
    assert one.p_value == compare(gold, a, b, method=method, resamples=500, seed=9).p_value
    # two copies of one run: the tweets are the unit, so the copies add no evidence
    twice = compare_runs(gold, [a, a], [b, b], method=method, resamples=500, seed=9)
    assert twice.p_value == one.p_value and twice.difference == pytest.approx(one.difference, abs=1e-15)


def test_result_to_dict_and_format():
    result = compare(GOLD, PRED_A, PRED_B, resamples=200, seed=1)
    d = result.to_dict()
    assert d["method"] == "bootstrap" and d["resamples"] == 200 and d["seed"] == 1 and d["difference"] == 0.5
    json.dumps(d)
    text = result.format("text-only", "MAF")
    assert "F1 text-only: 50.00" in text and "gain (MAF - text-only): +50.00" in text
    assert "paired bootstrap, two-sided, 200 resamples of 4 tweets, seed 1" in text


# ================================================================================ refusals
def test_misaligned_inputs_are_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="system B: gold has 4 tweets but the predictions have 3"):
        compare(GOLD, PRED_A, PRED_B[:3])
    with pytest.raises(ValueError, match=r"system A: tweet 2: gold has 3 tags but the prediction has 2"):
        compare(GOLD, [t if i != 2 else t[:2] for i, t in enumerate(PRED_A)], PRED_B)
    with pytest.raises(ValueError, match="system A, run 1"):
        compare_runs(GOLD, [PRED_A, PRED_A[1:]], [PRED_B, PRED_B])
    with pytest.raises(ValueError, match="2 runs of A but 1 of B"):
        compare_runs(GOLD, [PRED_A, PRED_A], [PRED_B])
    with pytest.raises(ValueError, match="tweet 1, pred"):
        compare(GOLD, [t if i != 1 else ["B-LOC", "X-LOC"] for i, t in enumerate(PRED_A)], PRED_B)
    ca, cb = tweet_counts(GOLD, PRED_A), tweet_counts(GOLD, PRED_B)
    with pytest.raises(ValueError, match="same runs and tweets"):
        paired_bootstrap(ca, cb[:3])
    other_gold = cb.copy()
    other_gold[3, 2] = 1
    with pytest.raises(ValueError, match="tweet 3: A was scored against 0 gold entities, B against 1"):
        approximate_randomization(ca, other_gold)
    with pytest.raises(ValueError, match="resamples must be a positive integer"):
        paired_bootstrap(ca, cb, resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap(ca, cb, confidence=1.5)
    with pytest.raises(ValueError, match="method 'sign'"):
        compare(GOLD, PRED_A, PRED_B, method="sign")
    with pytest.raises(TypeError, match="seed"):
        compare(GOLD, PRED_A, PRED_B, seed=1.5)


# ================================================================================ the CLI
def _write_columns(path, gold, pred, ids=None, compress=False):
    lines = []
    for k, (g, p) in enumerate(zip(gold, pred)):
        lines.append(f"# id = {ids[k] if ids else k}")
        lines += [f"w{k}_{i}\t{a}\t{b}" for i, (a, b) in enumerate(zip(g, p))]
        lines.append("")
    text = "\n".join(lines) + "\n"
    if compress:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_cli_compare_prints_both_f1s_the_gain_p_and_ci(tmp_path, capsys):
    gold, a, b = _random_corpus(8, n=120)
    fa = _write_columns(tmp_path / "a.conll.gz", gold, a, compress=True)
    fb = _write_columns(tmp_path / "b.conll", gold, b)
    assert main(["score", str(fa), "--compare", str(fb), "--resamples", "1000", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    expected = compare(gold, a, b, resamples=1000, seed=1)
    assert f"A: precision {100 * score(gold, a).micro.precision:.2f}" in out
    assert f"f1 {100 * expected.f1_b:.2f}" in out
    assert f"gain (B - A): {100 * expected.difference:+.2f}, 95 % CI [{100 * expected.ci_low:+.2f}" in out
    assert f"p = {expected.p_value:.4g} (paired bootstrap" in out
    # the JSON form, with a separate gold file, approximate randomization
    gold_file = _write_columns(tmp_path / "gold.conll", gold, gold)
    pred_a = tmp_path / "pa.conll"
    pred_a.write_text("".join(f"# id = {k}\n" + "".join(f"w{k}_{i}\t{t}\n" for i, t in enumerate(p)) + "\n"
                              for k, p in enumerate(a)))
    assert main(["score", str(gold_file), str(pred_a), "--compare", str(fb), "--significance", "randomization",
                 "--resamples", "500", "--seed", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = compare(gold, a, b, method="randomization", resamples=500, seed=2)
    assert out["a"]["f1"] == expected.f1_a and out["b"]["f1"] == expected.f1_b
    assert out["gain"] == expected.difference and out["significance"]["p_value"] == expected.p_value
    assert out["significance"]["method"] == "randomization" and out["tweets"] == 120


def test_cli_compare_refuses_other_gold_and_other_tweets(tmp_path, capsys):
    gold, a, b = _random_corpus(9, n=20)
    fa = _write_columns(tmp_path / "a.conll", gold, a)
    other_gold = [list(t) for t in gold]
    k = next(i for i, t in enumerate(other_gold) if "O" in t)
    other_gold[k][other_gold[k].index("O")] = "B-MISC"
    fb = _write_columns(tmp_path / "b.conll.gz", other_gold, b, compress=True)
    assert main(["score", str(fa), "--compare", str(fb)]) == 2
    err = capsys.readouterr().err
    assert f"tweet {k}: its gold column differs" in err and "b.conll.gz" in err
    fewer = _write_columns(tmp_path / "c.conll", gold[:-1], b[:-1])
    assert main(["score", str(fa), "--compare", str(fewer)]) == 2
    assert "different tweets" in capsys.readouterr().err
    broken = tmp_path / "d.conll.gz"
    broken.write_bytes(b"not gzip at all")
    assert main(["score", str(fa), "--compare", str(broken)]) == 2
    assert "not a readable gzip file" in capsys.readouterr().err


def test_cli_reads_a_compressed_file_and_names_it_in_errors(tmp_path, capsys):
    gold, a, _ = _random_corpus(10, n=10)
    fa = _write_columns(tmp_path / "a.conll.gz", gold, a, compress=True)
    assert main(["score", str(fa), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["f1"] == score(gold, a).f1
    bad = tmp_path / "bad.conll.gz"
    with gzip.open(bad, "wt") as fh:
        fh.write("w\tB-PER\tB-PER\nv\tO\n\n")  # a line with a column missing
    assert main(["score", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad} (decompressed):2" in err


def test_grouped_randomization_tests_the_mean_of_per_group_f1():
    rng = np.random.default_rng(5)
    n = 40
    gold = rng.integers(0, 3, size=n)
    pred_a = rng.integers(0, 3, size=n)
    pred_b = rng.integers(0, 4, size=n)
    a = np.stack([np.minimum(pred_a, gold), pred_a, gold], axis=1)
    b = np.stack([np.minimum(pred_b, gold), pred_b, gold], axis=1)
    # one group: approximate randomization, draw for draw
    one = grouped_randomization(a, b, np.zeros(n), resamples=2000, seed=3)
    ref = approximate_randomization(a, b, resamples=2000, seed=3)
    assert one.p_value == ref.p_value and one.difference == pytest.approx(ref.difference)
    # two groups: the statistic is the mean of the two groups' F1 differences
    groups = np.array([0] * 10 + [1] * 30)
    two = grouped_randomization(a, b, groups, resamples=2000, seed=3)
    per = [micro_f1(*b[groups == g].sum(0)) - micro_f1(*a[groups == g].sum(0)) for g in (0, 1)]
    assert two.difference == pytest.approx(np.mean(per))
    assert two.difference != pytest.approx(ref.difference)
    # identical systems: p = 1; a system better on every unit of both groups: small p
    assert grouped_randomization(a, a, groups, resamples=200).p_value == 1.0
    perfect = np.stack([gold, gold, gold], axis=1)
    worse = np.stack([np.zeros(n, int), gold + 1, gold], axis=1)
    assert grouped_randomization(worse, perfect, groups, resamples=2000, seed=1).p_value < 0.01
    with pytest.raises(ValueError, match="groups"):
        grouped_randomization(a, b, groups[:5])


def test_grouped_randomization_over_runs_and_groups_matches_every_swap_enumerated():
    """Several runs and groups: the resampled p-value is the exact one (all 2^n swap patterns, each
    scored as the mean over runs and groups of the per-group micro F1 difference)."""
    rng = np.random.default_rng(11)
    n, runs = 10, 2
    groups = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
    gold = rng.integers(0, 4, size=(runs, n))
    a_pred, b_pred = rng.integers(0, 4, size=(runs, n)), rng.integers(0, 5, size=(runs, n))
    a = np.stack([np.minimum(a_pred, gold), a_pred, gold], axis=2)
    b = np.stack([np.minimum(b_pred, gold), b_pred, gold], axis=2)

    def stat(x, y):
        return np.mean([micro_f1(*y[s][groups == g].sum(0)) - micro_f1(*x[s][groups == g].sum(0))
                        for s in range(runs) for g in range(3)])

    observed = stat(a, b)
    hits = 0
    for swaps in itertools.product((False, True), repeat=n):
        m = np.array(swaps)[None, :, None]
        hits += abs(stat(np.where(m, b, a), np.where(m, a, b))) >= abs(observed) - 1e-12
    exact = hits / 2 ** n
    result = grouped_randomization(a, b, groups, resamples=20_000, seed=4)
    assert result.difference == pytest.approx(observed) and result.n_runs == runs
    assert 0.05 < exact < 0.95 and abs(result.p_value - exact) < 0.015, (result.p_value, exact)
