"""Tests of mner.crf: brute force on tiny tag sets, pytorch-crf on realistic sizes, training."""

from __future__ import annotations

import itertools

import pytest
import torch

import mner.crf as crf_module
from mner.crf import (
    CRF,
    DISALLOWED,
    allowed_transitions,
    apply_constraints,
    crf_log_likelihood,
    crf_log_partition,
    crf_marginals,
    viterbi_decode,
)

IOB2_LABELS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
BIOES_LABELS = ("O", "B-X", "I-X", "E-X", "S-X")


def length_mask(lengths: list[int], seq_len: int) -> torch.Tensor:
    return torch.arange(seq_len)[None, :] < torch.tensor(lengths)[:, None]


def random_scores(gen: torch.Generator, num_tags: int, with_start_end: bool):
    trans = torch.randn(num_tags, num_tags, generator=gen, dtype=torch.float64)
    if not with_start_end:
        return trans, None, None
    start = torch.randn(num_tags, generator=gen, dtype=torch.float64)
    end = torch.randn(num_tags, generator=gen, dtype=torch.float64)
    return trans, start, end


def path_allowed(path, allowed) -> bool:
    trans_ok, start_ok, end_ok = allowed
    if not path:
        return True
    return bool(
        start_ok[path[0]]
        and end_ok[path[-1]]
        and all(trans_ok[a, b] for a, b in zip(path, path[1:]))
    )


class BruteForce:
    """Every tag sequence of one sentence, scored the slow and obvious way."""

    def __init__(self, emissions, trans, start, end, allowed=None):
        length, num_tags = emissions.shape
        paths = list(itertools.product(range(num_tags), repeat=length))
        if allowed is not None:
            paths = [p for p in paths if path_allowed(p, allowed)]
        self.paths = paths
        self.scores = torch.stack([self.score(emissions, p, trans, start, end) for p in paths])

    @staticmethod
    def score(emissions, path, trans, start, end):
        """sum_t E[t, y_t] + sum_t T[y_t, y_t+1] (+ start[y_0] + end[y_last])."""
        path = list(path)
        if not path:
            return emissions.new_zeros(())
        steps = torch.arange(len(path))
        tags = torch.tensor(path)
        total = emissions[steps, tags].sum() + trans[tags[:-1], tags[1:]].sum()
        if start is not None:
            total = total + start[path[0]]
        if end is not None:
            total = total + end[path[-1]]
        return total

    def log_z(self):
        return torch.logsumexp(self.scores, dim=0)

    def best(self):
        i = int(self.scores.argmax())
        return list(self.paths[i]), self.scores[i]

    def marginals(self, num_tags: int, seq_len: int):
        probs = torch.softmax(self.scores, dim=0)
        out = torch.zeros(seq_len, num_tags, dtype=probs.dtype)
        for p, path in zip(probs, self.paths):
            for t, tag in enumerate(path):
                out[t, tag] += p
        return out


def check_against_brute_force(emissions, mask, tags, scores, brute_scores, allowed=None):
    """Compare all four functions with brute force; ``scores`` go to the functions (possibly
    penalised), ``brute_scores`` to brute force (raw, restricted to allowed paths)."""
    batch, seq_len, num_tags = emissions.shape
    log_z = crf_log_partition(emissions, mask, *scores)
    llh = crf_log_likelihood(emissions, tags, mask, *scores)
    paths, best_scores = viterbi_decode(emissions, mask, *scores)
    marg = crf_marginals(emissions, mask, *scores)
    for b in range(batch):
        n = int(mask[b].sum())
        brute = BruteForce(emissions[b, :n], *brute_scores, allowed=allowed)
        gold = BruteForce.score(emissions[b, :n], tags[b, :n].tolist(), *brute_scores)
        torch.testing.assert_close(log_z[b], brute.log_z(), rtol=0, atol=1e-9)
        torch.testing.assert_close(llh[b], gold - brute.log_z(), rtol=0, atol=1e-9)
        best_path, best_score = brute.best()
        assert paths[b] == best_path, f"sequence {b} (length {n})"
        torch.testing.assert_close(best_scores[b], best_score, rtol=0, atol=1e-9)
        torch.testing.assert_close(
            marg[b], brute.marginals(num_tags, seq_len), rtol=0, atol=1e-9
        )


@pytest.mark.parametrize("num_tags", [3, 4])
@pytest.mark.parametrize("with_start_end", [True, False])
def test_functions_match_brute_force(num_tags, with_start_end):
    gen = torch.Generator().manual_seed(10 * num_tags + with_start_end)
    lengths = [5, 1, 0, 3, 5, 2, 4]
    batch, seq_len = len(lengths), 5
    emissions = 2 * torch.randn(batch, seq_len, num_tags, generator=gen, dtype=torch.float64)
    mask = length_mask(lengths, seq_len)
    tags = torch.randint(num_tags, (batch, seq_len), generator=gen).masked_fill(~mask, -100)
    scores = random_scores(gen, num_tags, with_start_end)
    check_against_brute_force(emissions, mask, tags, scores, scores)


@pytest.mark.parametrize("scheme, labels", [("iob2", IOB2_LABELS), ("bioes", BIOES_LABELS)])
def test_constrained_functions_match_brute_force_over_allowed_paths(scheme, labels):
    gen = torch.Generator().manual_seed(7)
    num_tags, seq_len = len(labels), 4
    lengths = [4, 1, 0, 2, 4, 3]
    batch = len(lengths)
    allowed = allowed_transitions(labels, scheme)
    # favour I-/E- tags so that the unconstrained best paths break the scheme
    bias = torch.tensor([2.0 if lab[0] in "IE" else 0.0 for lab in labels], dtype=torch.float64)
    emissions = torch.randn(batch, seq_len, num_tags, generator=gen, dtype=torch.float64) + bias
    mask = length_mask(lengths, seq_len)
    raw = random_scores(gen, num_tags, True)

    tags = torch.zeros(batch, seq_len, dtype=torch.long)
    for b, n in enumerate(lengths):  # a random allowed gold path
        paths = BruteForce(emissions[b, :n], *raw, allowed=allowed).paths
        pick = int(torch.randint(len(paths), (), generator=gen))
        tags[b, :n] = torch.tensor(paths[pick], dtype=torch.long)

    unconstrained, _ = viterbi_decode(emissions, mask, *raw)
    assert any(not path_allowed(p, allowed) for p in unconstrained), "test has no bite"
    penalised = apply_constraints(*raw, allowed)
    check_against_brute_force(emissions, mask, tags, penalised, raw, allowed=allowed)


@pytest.mark.parametrize("scheme, labels", [("iob2", IOB2_LABELS), ("bioes", BIOES_LABELS)])
@pytest.mark.parametrize("use_start_end", [True, False])
def test_decode_never_returns_a_disallowed_transition(scheme, labels, use_start_end):
    torch.manual_seed(3)
    num_tags = len(labels)
    bias = torch.tensor([4.0 if lab[0] in "IE" else 0.0 for lab in labels])
    emissions = 3 * torch.randn(32, 20, num_tags) + bias
    mask = length_mask(torch.randint(0, 21, (32,)).tolist(), 20)
    constrained = CRF(num_tags, labels, constraints=scheme, use_start_end=use_start_end)
    free = CRF(num_tags, use_start_end=use_start_end)
    free.load_state_dict(constrained.state_dict())
    allowed = allowed_transitions(labels, scheme)
    assert not all(path_allowed(p, allowed) for p in free.decode(emissions, mask))
    paths = constrained.decode(emissions, mask)
    assert [len(p) for p in paths] == mask.sum(1).tolist()
    assert all(path_allowed(p, allowed) for p in paths)


def test_allowed_transitions_iob2_rules():
    labels = ["O", "B-PER", "I-PER", "B-MISC-X", "I-MISC-X"]
    trans_ok, start_ok, end_ok = allowed_transitions(labels, "BIO")
    idx = {lab: i for i, lab in enumerate(labels)}

    def ok(a, b):
        return bool(trans_ok[idx[a], idx[b]])

    assert not ok("O", "I-PER") and not ok("O", "I-MISC-X")
    assert ok("B-PER", "I-PER") and ok("I-PER", "I-PER")
    assert not ok("B-PER", "I-MISC-X") and not ok("I-PER", "I-MISC-X")
    assert ok("B-MISC-X", "I-MISC-X")
    assert ok("I-PER", "O") and ok("B-PER", "B-PER") and ok("O", "B-PER") and ok("O", "O")
    assert start_ok.tolist() == [True, True, False, True, False]
    assert end_ok.all()
    assert int(trans_ok.sum()) == 25 - 2 * 3  # into each I-x: from O, B-y and I-y only


def test_allowed_transitions_bioes_rules():
    labels = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "E-LOC"]
    trans_ok, start_ok, end_ok = allowed_transitions(labels, "IOBES")
    for alias, canonical in zip(allowed_transitions(labels, "bioes"), (trans_ok, start_ok, end_ok)):
        assert torch.equal(alias, canonical)
    idx = {lab: i for i, lab in enumerate(labels)}

    def ok(a, b):
        return bool(trans_ok[idx[a], idx[b]])

    assert not ok("B-PER", "O") and not ok("I-PER", "O") and not ok("B-PER", "B-LOC")
    assert ok("B-PER", "I-PER") and ok("B-PER", "E-PER") and ok("I-PER", "E-PER")
    assert not ok("B-PER", "E-LOC") and not ok("O", "I-PER") and not ok("O", "E-PER")
    assert ok("E-PER", "O") and ok("S-PER", "B-LOC") and ok("E-PER", "S-PER")
    assert not ok("E-PER", "I-PER") and not ok("S-PER", "E-PER")
    assert start_ok.tolist() == [True, True, False, False, True, True, False]
    assert end_ok.tolist() == [True, False, False, True, True, False, True]


@pytest.mark.parametrize(
    "labels, scheme, match",
    [
        (["O", "B-PER", "X"], "iob2", "'X' at index 2"),
        (["[CLS]", "O"], "iob2", r"'\[CLS\]' at index 0"),
        (["O", "S-PER"], "iob2", "'S-PER' at index 1"),
        (["O", "B-"], "bioes", "'B-' at index 1"),
        (["O", "BI-PER", "I-PER"], "iob2", "'BI-PER' at index 1"),
        (["O", "-LOC"], "iob2", "'-LOC' at index 1"),
        (["O", "IE-PER"], "bioes", "'IE-PER' at index 1"),
        (["O", "-PER"], "bioes", "'-PER' at index 1"),
        (["O", "B-PER "], "iob2", "'B-PER ' at index 1"),
        (["O", "o"], "iob2", "'o' at index 1"),
        (["O", None], "iob2", "None at index 1"),
        (["O"], "iob1", "unknown tagging scheme"),
        (["O"], "io", "unknown tagging scheme"),
        (["O"], "bilou", "unknown tagging scheme"),
    ],
)
def test_allowed_transitions_rejects_bad_labels(labels, scheme, match):
    with pytest.raises(ValueError, match=match):
        allowed_transitions(labels, scheme)


def test_constraint_penalty_is_finite_and_additive():
    allowed = allowed_transitions(IOB2_LABELS, "iob2")
    trans = torch.zeros(5, 5)
    t, s, e = apply_constraints(trans, None, None, allowed)
    assert torch.isfinite(t).all() and torch.isfinite(s).all() and torch.isfinite(e).all()
    assert t[0, 2] == DISALLOWED and t[1, 2] == 0 and s[2] == DISALLOWED and s[1] == 0
    assert (e == 0).all()


def random_batch(gen, batch, seq_len, num_tags, full: bool, dtype=torch.float64):
    emissions = torch.randn(batch, seq_len, num_tags, generator=gen, dtype=dtype)
    tags = torch.randint(num_tags, (batch, seq_len), generator=gen)
    if full:
        return emissions, tags, None
    lengths = torch.randint(1, seq_len + 1, (batch,), generator=gen)
    lengths[0] = seq_len
    lengths[1] = 1
    return emissions, tags, length_mask(lengths.tolist(), seq_len)


@pytest.mark.parametrize("full", [True, False])
def test_matches_pytorch_crf(full):
    import torchcrf  # pytorch-crf: a declared test dependency (extra `test`), a missing one fails
    gen = torch.Generator().manual_seed(2024 + full)
    batch, seq_len, num_tags = 32, 60, 9
    emissions, tags, mask = random_batch(gen, batch, seq_len, num_tags, full)
    ref = torchcrf.CRF(num_tags, batch_first=True).double()
    with torch.no_grad():  # spread the scores out so that paths are not trivial
        for p in ref.parameters():
            p.normal_(generator=gen)
    ours = CRF(num_tags).double()
    ours.load_state_dict(ref.state_dict())
    # ours gets mask=None in the full case; pytorch-crf a bool mask (its None path is slow)
    ref_mask = torch.ones(batch, seq_len, dtype=torch.bool) if mask is None else mask
    for reduction in ("none", "sum", "mean", "token_mean"):
        expected = -ref(emissions, tags, ref_mask, reduction=reduction)
        got = ours(emissions, tags, mask, reduction=reduction)
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-6, msg=reduction)
    assert ours.decode(emissions, mask) == ref.decode(emissions, ref_mask)


def test_matches_pytorch_crf_in_float32():
    import torchcrf  # pytorch-crf: a declared test dependency (extra `test`), a missing one fails
    gen = torch.Generator().manual_seed(5)
    emissions, tags, mask = random_batch(gen, 32, 60, 9, full=False, dtype=torch.float32)
    ref = torchcrf.CRF(9, batch_first=True)
    ours = CRF(9)
    ours.load_state_dict(ref.state_dict())
    expected = -ref(emissions, tags, mask, reduction="none")
    torch.testing.assert_close(ours(emissions, tags, mask, reduction="none"), expected)
    assert ours.decode(emissions, mask) == ref.decode(emissions, mask)


@pytest.mark.parametrize("constraints", [None, "iob2"])
def test_gradients_flow_and_are_finite(constraints):
    torch.manual_seed(0)
    crf = CRF(5, IOB2_LABELS, constraints=constraints)
    emissions = torch.randn(4, 7, 5, requires_grad=True)
    mask = length_mask([7, 3, 1, 0], 7)
    tags = torch.tensor([[1, 2, 0, 3, 4, 4, 0]] * 4)  # an allowed IOB2 sequence
    crf(emissions, tags, mask).backward()
    for name, grad in [("emissions", emissions.grad)] + [
        (n, p.grad) for n, p in crf.named_parameters()
    ]:
        assert grad is not None and torch.isfinite(grad).all(), name
        assert grad.abs().sum() > 0, name
    assert (emissions.grad[~mask] == 0).all()  # padded positions get no gradient


def test_padding_content_is_ignored():
    torch.manual_seed(1)
    crf = CRF(4)
    mask = length_mask([5, 2, 0], 5)
    clean = torch.randn(3, 5, 4)
    tags = torch.randint(4, (3, 5))
    dirty = clean.clone()
    dirty[~mask] = float("nan")
    dirty[1, 4] = float("inf")
    dirty.requires_grad_()
    dirty_tags = tags.masked_fill(~mask, -100)
    dirty_tags[1, 3] = 99  # any value at padded positions, not only -100
    nll = crf(dirty, dirty_tags, mask, reduction="none")
    torch.testing.assert_close(nll, crf(clean, tags, mask, reduction="none"))
    nll.sum().backward()
    assert torch.isfinite(dirty.grad).all()
    assert crf.decode(dirty, mask) == crf.decode(clean, mask)
    torch.testing.assert_close(crf.marginals(dirty, mask), crf.marginals(clean, mask))


def test_marginals_sum_to_one_and_equal_the_gradient_of_log_z():
    gen = torch.Generator().manual_seed(4)
    emissions = torch.randn(6, 9, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    mask = length_mask([9, 4, 1, 0, 7, 9], 9)
    scores = random_scores(gen, 5, True)
    marg = crf_marginals(emissions, mask, *scores)
    torch.testing.assert_close(marg.sum(-1), mask.to(marg.dtype))
    assert (marg[~mask] == 0).all() and (marg >= 0).all()
    (grad,) = torch.autograd.grad(crf_log_partition(emissions, mask, *scores).sum(), emissions)
    torch.testing.assert_close(marg, grad)


def test_training_learns_transitions_and_decode_recovers_gold_tags():
    """Word 1 is a name word, tagged B-PER at the start of a run and I-PER inside it: the
    emissions see only the word, so only learned transitions can tell B from I."""
    torch.manual_seed(0)
    words = torch.randint(2, (16, 8))
    gold = torch.zeros_like(words)
    gold[:, 0] = words[:, 0]
    gold[:, 1:] = torch.where(words[:, 1:] == 1, torch.where(words[:, :-1] == 1, 2, 1), 0)
    mask = length_mask(torch.randint(1, 9, (16,)).tolist(), 8)
    embed = torch.nn.Embedding(2, 3)
    crf = CRF(3)
    opt = torch.optim.Adam(list(embed.parameters()) + list(crf.parameters()), lr=0.1)
    first = None
    for _ in range(200):
        opt.zero_grad()
        loss = crf(embed(words), gold, mask)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.05 * first
    lengths = mask.sum(1).tolist()
    assert crf.decode(embed(words), mask) == [g[:n] for g, n in zip(gold.tolist(), lengths)]


def test_reductions():
    torch.manual_seed(2)
    crf = CRF(3)
    emissions, tags = torch.randn(4, 6, 3), torch.randint(3, (4, 6))
    mask = length_mask([6, 2, 0, 5], 6)
    nll = crf(emissions, tags, mask, reduction="none")
    assert nll.shape == (4,) and (nll[[0, 1, 3]] > 0).all() and nll[2] == 0
    torch.testing.assert_close(crf(emissions, tags, mask, reduction="sum"), nll.sum())
    torch.testing.assert_close(crf(emissions, tags, mask), nll.mean())
    torch.testing.assert_close(crf(emissions, tags, mask, reduction="token_mean"), nll.sum() / 13)
    torch.testing.assert_close(
        crf(emissions, tags, reduction="token_mean"),
        crf(emissions, tags, reduction="sum") / 24,
    )


def test_empty_sequences_and_empty_batches():
    crf = CRF(3)
    emissions = torch.randn(2, 4, 3)
    mask = torch.zeros(2, 4, dtype=torch.bool)
    tags = torch.zeros(2, 4, dtype=torch.long)
    assert crf(emissions, tags, mask, reduction="none").tolist() == [0.0, 0.0]
    assert crf(emissions, tags, mask, reduction="token_mean").item() == 0.0
    assert crf.decode(emissions, mask) == [[], []]
    assert (crf.marginals(emissions, mask) == 0).all()
    paths, scores = viterbi_decode(emissions, mask, *crf.scores())
    assert paths == [[], []] and scores.tolist() == [0.0, 0.0]
    no_steps = torch.randn(3, 0, 3)
    no_tags = torch.zeros(3, 0, dtype=torch.long)
    assert crf(no_steps, no_tags, reduction="none").tolist() == [0.0] * 3
    assert crf.decode(no_steps) == [[], [], []]
    assert crf.marginals(no_steps).shape == (3, 0, 3)
    assert crf.decode(torch.randn(0, 5, 3)) == []


def test_ties_go_to_the_lowest_tag_id():
    crf = CRF(4)
    torch.nn.init.zeros_(crf.transitions)
    torch.nn.init.zeros_(crf.start_transitions)
    torch.nn.init.zeros_(crf.end_transitions)
    emissions = torch.zeros(2, 5, 4)
    emissions[1, 2, 3] = 1.0
    assert crf.decode(emissions) == [[0] * 5, [0, 0, 3, 0, 0]]


def test_chunked_recursion_gives_the_same_results(monkeypatch):
    gen = torch.Generator().manual_seed(9)
    emissions, tags, mask = random_batch(gen, 5, 11, 4, full=False)
    scores = random_scores(gen, 4, True)

    def run():
        return (
            crf_log_likelihood(emissions, tags, mask, *scores),
            viterbi_decode(emissions, mask, *scores),
            crf_marginals(emissions, mask, *scores),
        )

    whole = run()
    monkeypatch.setattr(crf_module, "_CHUNK_ELEMENTS", 4 * 4 * 5 * 3)  # 3 steps per chunk
    chunked = run()
    torch.testing.assert_close(chunked[0], whole[0])
    assert chunked[1][0] == whole[1][0]
    torch.testing.assert_close(chunked[1][1], whole[1][1])
    torch.testing.assert_close(chunked[2], whole[2])


def test_half_precision_is_computed_in_float32():
    torch.manual_seed(6)
    crf = CRF(5)
    emissions, tags = torch.randn(3, 7, 5), torch.randint(5, (3, 7))
    nll = crf(emissions.bfloat16(), tags, reduction="none")
    assert nll.dtype == torch.float32
    torch.testing.assert_close(
        nll, crf(emissions.bfloat16().float(), tags, reduction="none"), rtol=0, atol=1e-5
    )


def test_module_parameters_and_state_dict():
    crf = CRF(5, IOB2_LABELS, constraints="iob2", use_start_end=False)
    assert [n for n, _ in crf.named_parameters()] == ["transitions"]
    assert list(crf.state_dict()) == ["transitions"]  # constraints are rebuilt from labels
    _, start, end = crf.scores()
    assert start[2] == DISALLOWED and start[1] == 0 and (end == 0).all()
    plain = CRF(5)
    assert sorted(plain.state_dict()) == ["end_transitions", "start_transitions", "transitions"]
    assert all(p.abs().max() <= 0.1 for p in plain.parameters())
    assert plain.scores()[0] is plain.transitions


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda c: c(torch.randn(2, 3), torch.zeros(2, 3, dtype=torch.long)), "emissions must"),
        (lambda c: c(torch.randn(2, 3, 5), torch.zeros(2, 3, dtype=torch.long)), "num_tags=4"),
        (lambda c: c(torch.randn(2, 3, 4), torch.zeros(2, 4, dtype=torch.long)), "tags must"),
        (
            lambda c: c(torch.randn(2, 3, 4), torch.zeros(2, 3).long(), torch.ones(3, 2)),
            "mask must",
        ),
        (
            lambda c: c(
                torch.randn(2, 3, 4),
                torch.zeros(2, 3, dtype=torch.long),
                torch.tensor([[True, True, True], [False, True, True]]),
            ),
            "row 1 starts with padding",
        ),
        (
            lambda c: c(
                torch.randn(2, 3, 4),
                torch.zeros(2, 3, dtype=torch.long),
                torch.tensor([[True, False, True], [True, True, False]]),
            ),
            "row 0 is not right-padded: position 1",
        ),
        (
            lambda c: c(
                torch.randn(2, 3, 4),
                torch.tensor([[0, 1, 2], [3, 4, -100]]),
                torch.tensor([[True, True, True], [True, True, False]]),
            ),
            "tag 4 at row 1, position 1 is out of range",
        ),
        (
            lambda c: c(torch.randn(1, 2, 4), torch.tensor([[0, -1]])),
            "tag -1 at row 0, position 1",
        ),
        (
            lambda c: c(torch.randn(1, 2, 4), torch.zeros(1, 2).long(), torch.ones(1, 2)),
            "mask must be bool",
        ),
        (
            lambda c: c(torch.randn(1, 2, 4), torch.zeros(1, 2).long(), reduction="avg"),
            "unknown reduction",
        ),
        (lambda c: c.decode(torch.randn(1, 2, 4), torch.tensor([[False, True]])), "row 0 starts"),
        (lambda c: CRF(0), "num_tags must be positive"),
        (lambda c: CRF(3, labels=["O", "B-X"]), "2 labels given for num_tags=3"),
        (lambda c: CRF(3, constraints="iob2"), "need the labels"),
    ],
)
def test_invalid_input_raises_a_clear_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make(CRF(4))


def test_functional_shape_checks():
    emissions = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match=r"transitions must be \(4, 4\)"):
        crf_log_partition(emissions, None, torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"end scores must be \(4,\)"):
        viterbi_decode(emissions, None, torch.zeros(4, 4), None, torch.zeros(5))
    with pytest.raises(ValueError, match="must be a float tensor"):
        crf_marginals(emissions.long(), None, torch.zeros(4, 4))
