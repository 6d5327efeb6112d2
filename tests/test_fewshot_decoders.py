"""Tests of the few-shot decoding math: prototypes, nearest neighbour, abstract transitions and
MOUSING's prototype CRF, against hand-computed values and brute-force loops on tiny tensors."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from mner.crf import DISALLOWED
from mner.models.fewshot.abstract_transitions import (
    ABSTRACT_KINDS,
    IO_ABSTRACT_KINDS,
    AbstractTransitions,
    StructShotIOTransitions,
    StructShotTransitions,
    estimate_abstract_transitions,
    estimate_io_transitions,
    expand_abstract,
    project_io_transitions,
    split_over_types,
)
from mner.models.fewshot.metric import (
    EMPTY_CLASS_SCORE,
    EpisodeCrossEntropy,
    class_prototypes,
    nearest_neighbour_scores,
    prototype_scores,
    squared_euclidean,
    type_fallback,
)
from mner.models.mousing.prototype_crf import PrototypeCRF

LABELS_1 = ("O", "B-a", "I-a")
LABELS_2 = ("O", "B-a", "I-a", "B-b", "I-b")
LABELS_3 = ("O", "B-a", "I-a", "B-b", "I-b", "B-c", "I-c")
P = -100  # padding tag


def two_episode_support():
    """Episode 0: tweets 0 and 1; episode 1: tweet 2. d = 2, C = 3 (O, B-a, I-a)."""
    s = torch.tensor(
        [
            [[1.0, 0.0], [2.0, 2.0], [4.0, 0.0], [9.0, 9.0]],
            [[3.0, 0.0], [0.0, 4.0], [7.0, 7.0], [7.0, 7.0]],
            [[0.0, 1.0], [5.0, 5.0], [6.0, 5.0], [1.0, 1.0]],
        ]
    )
    s_tags = torch.tensor([[0, 1, 2, P], [0, 1, P, P], [0, 1, 2, 0]])
    s_episode = torch.tensor([0, 0, 1])
    return s, s_tags, s_episode


# --------------------------------------------------------------------------------------------
# metric.py
# --------------------------------------------------------------------------------------------


def test_squared_euclidean_pairwise_and_broadcast():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64)
    b = torch.randn(3, 2, 5, generator=gen, dtype=torch.float64)
    got = squared_euclidean(a, b)
    want = ((a.unsqueeze(2) - b.unsqueeze(1)) ** 2).sum(-1)
    torch.testing.assert_close(got, want)
    same = squared_euclidean(a[0], a[0])
    assert bool((same >= 0).all()) and torch.allclose(same.diagonal(), torch.zeros(4, dtype=torch.float64))
    half = squared_euclidean(a.half(), b.half())
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, want.float(), atol=5e-2, rtol=1e-2)


def test_class_prototypes_hand_computed_two_episodes():
    s, s_tags, s_episode = two_episode_support()
    protos, counts = class_prototypes(s, s_tags, s_episode, num_episodes=2, num_classes=3)
    want = torch.tensor(
        [
            [[2.0, 0.0], [1.0, 3.0], [4.0, 0.0]],  # O: (1,0),(3,0); B: (2,2),(0,4); I: (4,0)
            [[0.5, 1.0], [5.0, 5.0], [6.0, 5.0]],  # O: (0,1),(1,1); B: (5,5); I: (6,5)
        ]
    )
    torch.testing.assert_close(protos, want)
    torch.testing.assert_close(counts, torch.tensor([[2.0, 2.0, 1.0], [2.0, 1.0, 1.0]]))

    # episode 0's tokens never reach episode 1's prototypes (values and gradients)
    s = s.clone().requires_grad_(True)
    protos, _ = class_prototypes(s, s_tags, s_episode, 2, 3)
    protos[1].sum().backward()
    assert bool((s.grad[:2] == 0).all()) and bool((s.grad[2] != 0).any())
    moved = s.detach().clone()
    moved[:2] += 100.0
    torch.testing.assert_close(class_prototypes(moved, s_tags, s_episode, 2, 3)[0][1], want[1])


def test_type_fallback_fills_empty_classes_from_their_type():
    # N = 2; episode 0: B-a has tokens, I-a none; B-b none, I-b two tokens. Episode 1: type b empty
    s = torch.tensor(
        [
            [[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 4.0]],
            [[1.0, 1.0], [3.0, 3.0], [5.0, 5.0], [9.0, 9.0]],
        ]
    )
    s_tags = torch.tensor([[0, 1, 4, 4], [0, 1, 2, P]])
    protos, counts = class_prototypes(s, s_tags, torch.tensor([0, 1]), 2, 5)
    filled = type_fallback(protos, counts)
    want = torch.tensor(
        [
            [[0.0, 0.0], [2.0, 0.0], [2.0, 0.0], [0.0, 3.0], [0.0, 3.0]],
            [[1.0, 1.0], [3.0, 3.0], [5.0, 5.0], [0.0, 0.0], [0.0, 0.0]],
        ]
    )
    torch.testing.assert_close(filled, want)
    # a class with tokens is never changed, and O is never filled from a type
    s_tags_no_o = torch.tensor([[1, 1, 2, P], [1, 2, 2, P]])
    protos, counts = class_prototypes(s, s_tags_no_o, torch.tensor([0, 1]), 2, 3)
    filled = type_fallback(protos, counts)
    torch.testing.assert_close(filled[:, 0], torch.zeros(2, 2))
    torch.testing.assert_close(filled[:, 1:], protos[:, 1:])


def test_prototype_scores_equal_a_loop():
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(3, 4, 6, generator=gen)
    protos = torch.randn(2, 5, 6, generator=gen)
    q_episode = torch.tensor([1, 0, 1])
    got = prototype_scores(q, q_episode, protos)
    assert got.shape == (3, 4, 5)
    for i in range(3):
        for w in range(4):
            for m in range(5):
                d = float(((q[i, w] - protos[q_episode[i], m]) ** 2).sum())
                assert got[i, w, m].item() == pytest.approx(-d, abs=1e-4)


def brute_nearest(q, q_episode, s, s_tags, s_episode, num_classes):
    """The NNShot rule written as plain loops, with the empty-class fallback."""
    out = torch.empty(q.shape[0], q.shape[1], num_classes, dtype=torch.float64)
    for i in range(q.shape[0]):
        for w in range(q.shape[1]):
            best = {}
            for k in range(s.shape[0]):
                if s_episode[k] != q_episode[i]:
                    continue
                for v in range(s.shape[1]):
                    tag = int(s_tags[k, v])
                    if tag == P:
                        continue
                    d = float(((q[i, w].double() - s[k, v].double()) ** 2).sum())
                    best[tag] = min(best.get(tag, math.inf), d)
            for m in range(num_classes):
                if m in best:
                    out[i, w, m] = -best[m]
                    continue
                partner = None if m == 0 else (m + 1 if m % 2 == 1 else m - 1)
                out[i, w, m] = -best[partner] if partner in best else EMPTY_CLASS_SCORE
    return out


def test_nearest_neighbour_equals_brute_force_and_respects_episodes():
    gen = torch.Generator().manual_seed(2)
    s = torch.randn(5, 6, 3, generator=gen)
    # episode 0: tweets 0, 3 (no I-b: falls back to B-b); episode 1: tweets 1, 2, 4 (type b empty)
    s_tags = torch.tensor(
        [
            [0, 1, 2, 0, 3, P],
            [0, 0, 1, 2, 2, 0],
            [1, 0, P, P, P, P],
            [0, 3, 0, 1, P, P],
            [0, 0, 0, 0, 0, 2],
        ]
    )
    s_episode = torch.tensor([0, 1, 1, 0, 1])
    q = torch.randn(4, 5, 3, generator=gen)
    q_episode = torch.tensor([1, 0, 0, 1])
    got = nearest_neighbour_scores(q, q_episode, s, s_tags, s_episode, num_classes=5)
    want = brute_nearest(q, q_episode, s, s_tags, s_episode, 5)
    torch.testing.assert_close(got.double(), want, atol=1e-4, rtol=1e-5)
    assert bool((got[0, :, 3:] == EMPTY_CLASS_SCORE).all())  # episode 1 has no type b
    torch.testing.assert_close(got[1, :, 4], got[1, :, 3])  # episode 0: I-b takes B-b's score

    # moving episode 1's support never changes episode 0's queries
    moved = s.clone()
    moved[s_episode == 1] += 50.0
    again = nearest_neighbour_scores(q, q_episode, moved, s_tags, s_episode, num_classes=5)
    torch.testing.assert_close(again[1:3], got[1:3])
    assert not torch.allclose(again[0], got[0])

    # gradients are finite despite the empty classes
    q_grad = q.clone().requires_grad_(True)
    s_grad = s.clone().requires_grad_(True)
    nearest_neighbour_scores(q_grad, q_episode, s_grad, s_tags, s_episode, 5).sum().backward()
    assert bool(torch.isfinite(q_grad.grad).all()) and bool(torch.isfinite(s_grad.grad).all())
    assert bool((s_grad.grad != 0).any())


def test_nearest_neighbour_exact_hit_is_zero():
    s, s_tags, s_episode = two_episode_support()
    q = torch.tensor([[[2.0, 2.0], [6.0, 5.0]]])  # a B-a token of ep 0; an I-a token of ep 1
    scores = nearest_neighbour_scores(q, torch.tensor([0]), s, s_tags, s_episode, 3)
    assert scores[0, 0, 1].item() == 0.0
    # (6, 5) in episode 0: O (3, 0): 9 + 25; B-a (2, 2): 16 + 9; I-a (4, 0): 4 + 25
    assert scores[0, 1].tolist() == pytest.approx([-34.0, -25.0, -29.0])


def test_episode_cross_entropy():
    gen = torch.Generator().manual_seed(3)
    scores = torch.randn(2, 3, 5, generator=gen, requires_grad=True)
    tags = torch.tensor([[0, 3, P], [4, 1, 2]])
    mask = torch.tensor([[True, True, False], [True, True, False]])
    loss = EpisodeCrossEntropy()(scores, tags, mask)
    logp = torch.log_softmax(scores, -1)
    want = -(logp[0, 0, 0] + logp[0, 1, 3] + logp[1, 0, 4] + logp[1, 1, 1]) / 4
    torch.testing.assert_close(loss, want)
    empty = EpisodeCrossEntropy()(scores, torch.full((2, 3), P))
    assert empty.item() == 0.0 and empty.requires_grad


def test_bad_support_tag_says_where():
    s, s_tags, s_episode = two_episode_support()
    s_tags = s_tags.clone()
    s_tags[2, 1] = 3
    with pytest.raises(ValueError, match="support tweet 2, word 1"):
        class_prototypes(s, s_tags, s_episode, 2, 3)
    with pytest.raises(ValueError, match="2N \\+ 1"):
        class_prototypes(s, s_tags, s_episode, 2, 4)


def test_io_classes_have_no_fallback_an_empty_type_stays_empty():
    """Under IO (C = N + 1) a class is a type: nothing to fall back to. The same tags read as BIO
    (C = 2N + 1 with N = 1) fill the empty class from its type, so the two schemes must differ."""
    s, _, s_episode = two_episode_support()
    # IO, N = 2: 0 = O, 1 = type a, 2 = type b; episode 0 has no token of type b
    s_tags = torch.tensor([[0, 1, 1, P], [0, 1, P, P], [0, 1, 2, 0]])
    protos, counts = class_prototypes(s, s_tags, s_episode, 2, 3, scheme="io")
    want = torch.tensor(
        [
            [[2.0, 0.0], [2.0, 2.0], [0.0, 0.0]],  # O: (1,0),(3,0); a: (2,2),(4,0),(0,4); b: none
            [[0.5, 1.0], [5.0, 5.0], [6.0, 5.0]],  # O: (0,1),(1,1); a: (5,5); b: (6,5)
        ]
    )
    torch.testing.assert_close(protos, want)
    torch.testing.assert_close(counts, torch.tensor([[2.0, 3.0, 0.0], [2.0, 1.0, 1.0]]))
    torch.testing.assert_close(type_fallback(protos, counts, scheme="io"), want)
    bio = type_fallback(protos, counts)  # the same numbers read as O, B-a, I-a: I-a <- B-a
    torch.testing.assert_close(bio[0, 2], torch.tensor([2.0, 2.0]))

    # (6, 5) in episode 0: O (3, 0): 9 + 25; a (2, 2): 16 + 9; b: no token
    q = torch.tensor([[[6.0, 5.0]]])
    io = nearest_neighbour_scores(q, torch.tensor([0]), s, s_tags, s_episode, 3, scheme="io")
    assert io[0, 0].tolist() == pytest.approx([-34.0, -25.0, EMPTY_CLASS_SCORE])
    bio = nearest_neighbour_scores(q, torch.tensor([0]), s, s_tags, s_episode, 3)
    assert bio[0, 0].tolist() == pytest.approx([-34.0, -25.0, -25.0])
    q2 = torch.randn(2, 3, 2, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(  # with every class present, io = a loop without fallback
        nearest_neighbour_scores(q2, torch.tensor([1, 1]), s, s_tags, s_episode, 3, scheme="io").double(),
        brute_nearest(q2, torch.tensor([1, 1]), s, s_tags, s_episode, 3),
        atol=1e-4, rtol=1e-5,
    )

    # N + 1 classes need not be odd under IO; BIO still refuses an even count
    s_tags4 = torch.tensor([[0, 1, 3, P], [0, 1, P, P], [0, 1, 2, 0]])
    protos4, counts4 = class_prototypes(s, s_tags4, s_episode, 2, 4, scheme="io")
    assert protos4.shape == (2, 4, 2) and counts4[0].tolist() == [2.0, 2.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="2N \\+ 1"):
        class_prototypes(s, s_tags4, s_episode, 2, 4)
    with pytest.raises(ValueError, match="scheme"):
        class_prototypes(s, s_tags4, s_episode, 2, 4, scheme="bioes")


# --------------------------------------------------------------------------------------------
# abstract_transitions.py
# --------------------------------------------------------------------------------------------

SCORE = {kind: float(i + 1) for i, kind in enumerate(ABSTRACT_KINDS)}  # distinct values
X = DISALLOWED


def k(kind: str) -> float:
    return SCORE[kind]


def test_expand_abstract_hand_written_n2():
    trans, start, end = expand_abstract(SCORE, LABELS_2)
    #          O            B-a                 I-a        B-b                 I-b
    want = [
        [k("O->O"), k("O->B"), 0 + X, k("O->B"), 0 + X],  # from O
        [k("B->O"), k("B->B(same)"), k("B->I"), k("B->B(other)"), 0 + X],  # from B-a
        [k("I->O"), k("I->B(same)"), k("I->I"), k("I->B(other)"), 0 + X],  # from I-a
        [k("B->O"), k("B->B(other)"), 0 + X, k("B->B(same)"), k("B->I")],  # from B-b
        [k("I->O"), k("I->B(other)"), 0 + X, k("I->B(same)"), k("I->I")],  # from I-b
    ]
    torch.testing.assert_close(trans, torch.tensor(want))
    want_start = [k("start->O"), k("start->B"), X, k("start->B"), X]
    want_end = [k("O->end"), k("B->end"), k("I->end"), k("B->end"), k("I->end")]
    torch.testing.assert_close(start, torch.tensor(want_start))
    torch.testing.assert_close(end, torch.tensor(want_end))

    # the tensor form gives the same, N = 1 by hand
    vector = torch.tensor([SCORE[kind] for kind in ABSTRACT_KINDS])
    torch.testing.assert_close(expand_abstract(vector, LABELS_2)[0], trans)
    trans1, start1, end1 = expand_abstract(vector, LABELS_1)
    want1 = [
        [k("O->O"), k("O->B"), X],
        [k("B->O"), k("B->B(same)"), k("B->I")],
        [k("I->O"), k("I->B(same)"), k("I->I")],
    ]
    torch.testing.assert_close(trans1, torch.tensor(want1))
    torch.testing.assert_close(start1, torch.tensor([k("start->O"), k("start->B"), X]))
    torch.testing.assert_close(end1, torch.tensor(want_end[:3]))


def rule_score(prev: str, cur: str) -> float:
    """The abstract-kind rule read directly off the label strings."""
    pp, pt = (prev, "") if prev == "O" else prev.split("-", 1)
    cp, ct = (cur, "") if cur == "O" else cur.split("-", 1)
    if cp == "I":
        return k(f"{pp}->I") if pp != "O" and pt == ct else X
    if cp == "O":
        return k(f"{pp}->O")
    if pp == "O":
        return k("O->B")
    return k(f"{pp}->B(same)") if pt == ct else k(f"{pp}->B(other)")


def test_expand_abstract_n3_and_shuffled_labels_follow_the_rule():
    for labels in (LABELS_3, ("B-c", "O", "I-a", "I-c", "B-a")):
        trans, start, end = expand_abstract(SCORE, labels)
        want = [[rule_score(a, b) for b in labels] for a in labels]
        torch.testing.assert_close(trans, torch.tensor(want))
        assert start.tolist() == [X if l[0] == "I" else k(f"start->{l[0]}") for l in labels]
        assert end.tolist() == [k(f"{l[0]}->end") for l in labels]


def test_expand_abstract_rejects_bad_input():
    with pytest.raises(ValueError, match="missing kinds"):
        expand_abstract({"O->O": 0.0}, LABELS_1)
    with pytest.raises(ValueError, match="not an IOB2 tag"):
        expand_abstract(SCORE, ("O", "S-a"))


def test_abstract_transitions_module_is_learned_and_differentiable():
    module = AbstractTransitions()
    assert module.scores.shape == (len(ABSTRACT_KINDS),) and bool((module.scores == 0).all())
    trans, start, end = module(LABELS_2)
    (trans.sum() + start.sum() + end.sum()).backward()
    grad = dict(zip(ABSTRACT_KINDS, module.scores.grad.tolist()))
    # each kind's gradient = how many entries of the N=2 matrices it fills
    assert grad["O->B"] == 2 and grad["B->I"] == 2 and grad["B->B(other)"] == 2
    assert grad["O->O"] == 1 and grad["start->B"] == 2 and grad["I->end"] == 2
    init = AbstractTransitions(SCORE)
    assert init.as_dict() == SCORE


# StructShot estimate on a tiny corpus (counts by hand):
#   start->O 2, start->B 2 | O->O 0, O->B 1, O->end 2 | B->O 0, B->I 2, B->B(same) 1,
#   B->B(other) 1, B->end 1 | I->O 1, I->I 0, I->B(same) 0, I->B(other) 0, I->end 1
CORPUS = [
    ["B-PER", "I-PER", "O"],
    ["O", "B-LOC", "B-PER"],
    ["B-LOC", "B-LOC", "I-LOC"],
    ["O"],
    [],
]


def test_structshot_estimate_hand_computed():
    got = estimate_abstract_transitions(CORPUS, smoothing=1.0)
    want = {
        "start->O": 3 / 6, "start->B": 3 / 6,
        "O->O": 1 / 6, "O->B": 2 / 6, "O->end": 3 / 6,
        "B->O": 1 / 10, "B->I": 3 / 10, "B->B(same)": 2 / 10, "B->B(other)": 2 / 10,
        "B->end": 2 / 10,
        "I->O": 2 / 7, "I->I": 1 / 7, "I->B(same)": 1 / 7, "I->B(other)": 1 / 7, "I->end": 2 / 7,
    }
    assert list(got) == list(ABSTRACT_KINDS)
    for kind, p in want.items():
        assert got[kind] == pytest.approx(math.log(p)), kind

    raw = estimate_abstract_transitions(CORPUS, smoothing=0.0)
    assert raw["O->O"] == DISALLOWED and raw["I->I"] == DISALLOWED
    assert raw["O->B"] == pytest.approx(math.log(1 / 3))
    assert raw["B->I"] == pytest.approx(math.log(2 / 5))
    assert raw["I->O"] == pytest.approx(math.log(1 / 2))

    with pytest.raises(ValueError, match="tag sequence 1, position 1"):
        estimate_abstract_transitions([["O"], ["O", "I-PER"]])
    with pytest.raises(ValueError, match="smoothing > 0"):
        estimate_abstract_transitions([["O"]], smoothing=0.0)  # no B, no I


def test_structshot_transitions_split_mass_into_distributions():
    estimate = estimate_abstract_transitions(CORPUS, smoothing=1.0)
    model = StructShotTransitions(estimate, temperature=0.5)
    trans, start, end = model(LABELS_2)
    assert trans[0, 1].item() == pytest.approx(math.log(2 / 6 / 2))  # O -> B-a: half of O->B
    assert trans[1, 3].item() == pytest.approx(math.log(2 / 10))  # B-a -> B-b: the 1 other type
    for labels in (LABELS_2, LABELS_3):
        trans, start, end = model(labels)
        rows = trans.double().exp().sum(1) + end.double().exp()
        torch.testing.assert_close(rows, torch.ones(len(labels), dtype=torch.float64))
        assert start.double().exp().sum().item() == pytest.approx(1.0)
    split = split_over_types(estimate, 3)
    assert split["B->B(other)"] == pytest.approx(estimate["B->B(other)"] - math.log(2))
    assert split["start->B"] == pytest.approx(estimate["start->B"] - math.log(3))

    scores = torch.tensor([[[0.0, 1.0, -1.0], [2.0, 0.0, 0.5]]])
    torch.testing.assert_close(model.emissions(scores), torch.log_softmax(scores / 0.5, -1))
    # start -> I is forbidden, so a best-I first word is decoded as B
    assert model.decode(torch.tensor([[[-9.0, 0.0, 5.0]]]), None, LABELS_1) == [[1]]


# StructShot over IO (the reference code). The same CORPUS read as IO, counts by hand:
#   PER PER O -> start->I, I->I(same), I->O;   O LOC PER -> start->O, O->I, I->I(other);
#   LOC LOC LOC -> start->I, I->I(same) x2;    O -> start->O;   [] -> nothing
#   start->O 2, start->I 2 | O->O 0, O->I 1 | I->O 1, I->I(same) 3, I->I(other) 1


def test_structshot_io_estimate_hand_computed():
    got = estimate_io_transitions(CORPUS)
    assert list(got) == list(IO_ABSTRACT_KINDS)
    want = {"start->O": 2 / 4, "start->I": 2 / 4, "O->O": 0 / 1, "O->I": 1 / 1,
            "I->O": 1 / 5, "I->I(same)": 3 / 5, "I->I(other)": 1 / 5}
    assert got == pytest.approx(want)
    smoothed = estimate_io_transitions(CORPUS, smoothing=1.0)
    assert smoothed == pytest.approx({"start->O": 3 / 6, "start->I": 3 / 6, "O->O": 1 / 3, "O->I": 2 / 3,
                                      "I->O": 2 / 8, "I->I(same)": 4 / 8, "I->I(other)": 2 / 8})
    # only the types matter: the IO tags of the corpus (and IOB1's orphan I-) give the same
    io_corpus = [["I-PER", "I-PER", "O"], ["O", "I-LOC", "I-PER"], ["I-LOC", "I-LOC", "I-LOC"], ["O"]]
    assert estimate_io_transitions(io_corpus) == got
    with pytest.raises(ValueError, match="'I'"):
        estimate_io_transitions([["O", "O"], ["O"]])  # no entity: the I row is undefined
    with pytest.raises(ValueError, match="tag sequence 1"):
        estimate_io_transitions([["O"], ["O", "PER"]])


IO_PROBS = {"start->O": 0.5, "start->I": 0.5, "O->O": 0.6, "O->I": 0.4,
            "I->O": 0.2, "I->I(same)": 0.5, "I->I(other)": 0.3}
#                        O    I-a   I-b
IO_N2 = torch.tensor([[0.5, 0.25, 0.25],  # start
                      [0.6, 0.2, 0.2],  # O
                      [0.2, 0.5, 0.3],  # I-a
                      [0.2, 0.3, 0.5]], dtype=torch.float64)  # I-b
#                        O    I-a   I-b   I-c
IO_N3 = torch.tensor([[0.5, 1 / 6, 1 / 6, 1 / 6],
                      [0.6, 0.4 / 3, 0.4 / 3, 0.4 / 3],
                      [0.2, 0.5, 0.15, 0.15],
                      [0.2, 0.15, 0.5, 0.15],
                      [0.2, 0.15, 0.15, 0.5]], dtype=torch.float64)


def _powered(matrix: torch.Tensor, tau: float) -> torch.Tensor:
    p = matrix**tau
    return p / p.sum(1, keepdim=True)


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * p.log()).sum(-1)


def test_structshot_io_projection_hand_written_n2_n3_and_tau_as_a_row_power():
    for labels, matrix in ((("O", "I-a", "I-b"), IO_N2), (("O", "I-a", "I-b", "I-c"), IO_N3)):
        trans, start = project_io_transitions(IO_PROBS, labels)  # tau = 1: the plain projection
        torch.testing.assert_close(start.double().exp(), matrix[0], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(trans.double().exp(), matrix[1:], atol=1e-6, rtol=1e-6)
        previous = None
        for tau in (2.0, 1.0, 0.5, 0.1):
            trans, start = project_io_transitions(IO_PROBS, labels, temperature=tau)
            rows = torch.cat([start.unsqueeze(0), trans]).double().exp()
            torch.testing.assert_close(rows.sum(1), torch.ones(len(labels) + 1, dtype=torch.float64))
            torch.testing.assert_close(rows, _powered(matrix, tau), atol=1e-6, rtol=1e-6)
            if previous is not None:  # a smaller tau flattens every row
                assert bool((_entropy(rows) > _entropy(previous) + 1e-6).all()), tau
            previous = rows
    # the rule does not depend on the label order
    trans, start = project_io_transitions(IO_PROBS, ("I-b", "O", "I-a"), temperature=0.5)
    order = [2, 0, 1]
    torch.testing.assert_close(trans.double().exp(), _powered(IO_N2, 0.5)[1:][order][:, order], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(start.double().exp(), _powered(IO_N2, 0.5)[0][order], atol=1e-6, rtol=1e-6)


def test_structshot_io_projection_floors_zeros_and_handles_one_type():
    probs = dict(IO_PROBS, **{"O->O": 0.0, "O->I": 1.0})
    trans, start = project_io_transitions(probs, ("O", "I-a", "I-b"), temperature=0.3)
    assert trans[0, 0].item() == pytest.approx(math.log(1e-6))  # the reference's floor, no -inf
    assert bool(torch.isfinite(trans).all()) and bool(torch.isfinite(start).all())
    # N = 1: no other type to move to; I's row is renormalised over I->O and I->I (no 0 / 0)
    trans1, start1 = project_io_transitions(IO_PROBS, ("O", "I-a"))
    assert trans1.double().exp().tolist() == [pytest.approx([0.6, 0.4]), pytest.approx([0.2 / 0.7, 0.5 / 0.7])]
    assert start1.double().exp().tolist() == pytest.approx([0.5, 0.5])
    with pytest.raises(ValueError, match="not an IO tag"):
        project_io_transitions(IO_PROBS, ("O", "B-a", "I-a"))
    with pytest.raises(ValueError, match="missing kinds"):
        project_io_transitions({"O->O": 1.0}, ("O", "I-a"))
    with pytest.raises(ValueError, match="> 0"):
        project_io_transitions(IO_PROBS, ("O", "I-a"), temperature=0.0)


def test_structshot_io_decoding_equals_brute_force_over_all_io_paths():
    labels = ("O", "I-a", "I-b")
    tau = 3.0
    scores = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(0)) * 2
    mask = torch.tensor([[True] * 4, [True, True, True, False]])
    model = StructShotIOTransitions(IO_PROBS, temperature=tau)
    # the emissions are NNShot's log-probabilities, with no temperature on them
    emissions = model.emissions(scores)
    torch.testing.assert_close(emissions, torch.log_softmax(scores, -1))
    trans, start, end = model(labels)
    assert end is None
    paths = model.decode(scores, mask, labels)

    rows = _powered(IO_N2, tau).log()  # hand-written matrix, power, renormalised: independent of the code
    want_start, want_trans = rows[0], rows[1:]
    for b in range(2):
        n = int(mask[b].sum())
        e = torch.log_softmax(scores[b, :n].double(), -1)

        def path_score(y):
            return want_start[y[0]] + sum(e[t, y[t]] for t in range(n)) + sum(
                want_trans[y[t - 1], y[t]] for t in range(1, n))

        best = max(itertools.product(range(3), repeat=n), key=lambda y: float(path_score(y)))
        assert paths[b] == list(best), b
    assert paths != [row[: int(m.sum())] for row, m in zip(scores.argmax(-1).tolist(), mask)]  # transitions matter
    assert paths != StructShotIOTransitions(IO_PROBS).decode(scores, mask, labels)  # and so does tau


# --------------------------------------------------------------------------------------------
# mousing/prototype_crf.py
# --------------------------------------------------------------------------------------------


def hand_episode():
    """One N=2 episode whose prototypes are the five corners below (d = 2)."""
    corners = torch.tensor([[0.0, 0.0], [10.0, 0.0], [10.0, 1.0], [0.0, 10.0], [1.0, 10.0]])
    s = corners.unsqueeze(0)  # one support tweet holding one token per class
    s_tags = torch.tensor([[0, 1, 2, 3, 4]])
    return corners, s, s_tags, torch.tensor([0])


def test_prototype_crf_decodes_words_on_prototypes():
    corners, s, s_tags, s_episode = hand_episode()
    crf = PrototypeCRF()
    gold = [[1, 2, 0, 3, 4], [0, 3, 0, 1, 0]]
    q = torch.stack([corners[g] for g in gold])
    q_mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    emissions = crf.emissions(s, s_tags, s_episode, q, torch.tensor([0, 0]), num_classes=5)
    assert emissions.shape == (2, 5, 5)
    torch.testing.assert_close(emissions[0, 0], -((corners[1] - corners) ** 2).sum(-1))
    assert crf.decode(emissions, q_mask, LABELS_2) == [gold[0], gold[1][:3]]


def test_prototype_crf_forbids_o_to_i_even_when_its_emission_is_best():
    corners, s, s_tags, s_episode = hand_episode()
    crf = PrototypeCRF()
    q = torch.stack([corners[0], corners[2]]).unsqueeze(0)  # words on O, then on I-a
    emissions = crf.emissions(s, s_tags, s_episode, q, torch.tensor([0]), num_classes=5)
    assert emissions[0, 1].argmax().item() == 2  # I-a is the best emission of word 1 ...
    path = crf.decode(emissions, torch.ones(1, 2, dtype=torch.bool), LABELS_2)
    assert path == [[0, 1]]  # ... but O -> I-a is forbidden: B-a (1 away) wins
    # brute force over the allowed paths agrees
    trans, start, end = (t.detach() for t in crf.transitions(LABELS_2))
    emissions = emissions.detach()
    best = max(
        itertools.product(range(5), repeat=2),
        key=lambda y: float(start[y[0]] + emissions[0, 0, y[0]] + trans[y[0], y[1]]
                            + emissions[0, 1, y[1]] + end[y[1]]),
    )
    assert list(best) == path[0]


def test_prototype_crf_loss_matches_brute_force_and_reaches_all_parameters():
    corners, s, s_tags, s_episode = hand_episode()
    crf = PrototypeCRF(scale_init=0.5)
    with torch.no_grad():
        crf.abstract.scores.copy_(torch.linspace(-1, 1, len(ABSTRACT_KINDS)))
    gen = torch.Generator().manual_seed(4)
    q = corners[torch.tensor([[1, 2, 0]])] + 0.3 * torch.randn(1, 3, 2, generator=gen)
    s_in = s.clone().requires_grad_(True)
    emissions = crf.emissions(s_in, s_tags, s_episode, q, torch.tensor([0]), 5)
    tags = torch.tensor([[1, 2, 0]])
    loss = crf.loss(emissions, tags, torch.ones(1, 3, dtype=torch.bool), LABELS_2)

    trans, start, end = (t.detach() for t in crf.transitions(LABELS_2))
    e = emissions.detach()[0]

    def path_score(y):
        return (start[y[0]] + end[y[-1]] + sum(e[t, y[t]] for t in range(3))
                + sum(trans[y[t], y[t + 1]] for t in range(2)))

    log_z = torch.logsumexp(torch.stack([path_score(y) for y in itertools.product(range(5), repeat=3)]), 0)
    assert loss.item() == pytest.approx(float(log_z - path_score([1, 2, 0])), rel=1e-5)

    loss.backward()
    assert crf.abstract.scores.grad is not None and bool((crf.abstract.scores.grad != 0).any())
    assert crf.log_scale.grad is not None and crf.log_scale.grad.item() != 0.0
    assert s_in.grad is not None and bool(torch.isfinite(s_in.grad).all())
    assert crf.scale.item() == pytest.approx(0.5)

    frozen = PrototypeCRF(learn_transitions=False)
    assert not frozen.abstract.scores.requires_grad
    assert bool((frozen.transitions(LABELS_1)[0] == torch.tensor([[0, 0, X], [0, 0, 0], [0, 0, 0]])).all())


def test_half_precision_inputs():
    corners, s, s_tags, s_episode = hand_episode()
    crf = PrototypeCRF()
    q = corners[torch.tensor([[1, 2, 0, 3]])]
    mask = torch.ones(1, 4, dtype=torch.bool)
    e32 = crf.emissions(s, s_tags, s_episode, q, torch.tensor([0]), 5)
    e16 = crf.emissions(s.half(), s_tags, s_episode, q.half(), torch.tensor([0]), 5)
    assert e16.dtype == torch.float32
    torch.testing.assert_close(e16, e32)  # these corners are exact in half precision
    loss = crf.loss(e16, torch.tensor([[1, 2, 0, 3]]), mask, LABELS_2)
    assert torch.isfinite(loss)
    assert crf.decode(e16, mask, LABELS_2) == [[1, 2, 0, 3]]
    nn16 = nearest_neighbour_scores(q.half(), torch.tensor([0]), s.half(), s_tags, s_episode, 5)
    assert nn16.dtype == torch.float32
    torch.testing.assert_close(nn16, e32)  # one token per class: nearest token = prototype
    protos, _ = class_prototypes(s.bfloat16(), s_tags, s_episode, 1, 5)
    assert protos.dtype == torch.float32
