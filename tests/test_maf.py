"""MAF: each paper module against its equation, every view x ablation end to end on tiny
encoders (forward, loss parts, backward, save/load, decode), and the checkpoint format."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from mner.config import ConfigError
from mner.data.example import Example
from mner.models import CheckpointError, MAFModel, load_model
from mner.models.checkpoint import WEIGHTS_NAME
from mner.models.maf.cross_modal_alignment import AlignmentProjection, ContrastiveAlignmentLoss
from mner.models.maf.cross_modal_interaction import CrossModalInteraction
from mner.models.maf.cross_modal_matching import (CrossModalMatching, MatchingLoss, SimilarityMatching,
                                                  sample_negatives)
from mner.models.maf.fusion_gate import FusionGate
from mner.pipeline import Pipeline
from model_fixtures import SWITCHES, VIEWS, encoders, maf_config, one_thread, random_image  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ============================================================================ cross-modal matching
def _pairs(perm: torch.Tensor) -> set[tuple[int, int]]:
    return {(min(i, int(j)), max(i, int(j))) for i, j in enumerate(perm.tolist()) if i != j}


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 15, 16, 63, 64])
@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5, 0.9, 0.999])
def test_sample_negatives_swaps_k_disjoint_pairs(n, fraction):
    perm, labels = sample_negatives(n, fraction, generator=_gen(n))
    k = min(math.floor(fraction * n / 2 + 1e-9), (n - 1) // 2)
    assert perm.shape == labels.shape == (n,)
    assert labels.dtype.is_floating_point
    assert sorted(perm.tolist()) == list(range(n)), "perm must be a permutation of the batch"
    # the first k chosen are swapped with the last k: perm is an involution made of k 2-cycles
    assert torch.equal(perm[perm], torch.arange(n))
    assert len(_pairs(perm)) == k
    swapped = perm != torch.arange(n)
    assert int(swapped.sum()) == 2 * k
    # labels are 0 exactly on the swapped items, 1 elsewhere
    assert torch.equal(labels, (~swapped).float())
    # k < N/2: at least one matched pair remains
    assert 2 * k < n and labels.sum() >= 1


def test_sample_negatives_paper_numbers_and_edge_cases():
    perm, labels = sample_negatives(64, 0.25, generator=_gen(0))  # the authors' 16 of 64
    assert int((labels == 0).sum()) == 16 and len(_pairs(perm)) == 8
    perm, labels = sample_negatives(1, 0.99, generator=_gen(0))   # nothing to swap with
    assert perm.tolist() == [0] and labels.tolist() == [1.0]
    perm, labels = sample_negatives(2, 0.99, generator=_gen(0))   # k < N/2 = 1: no pair at all
    assert perm.tolist() == [0, 1] and labels.tolist() == [1.0, 1.0]
    perm, labels = sample_negatives(3, 0.99, generator=_gen(0))   # one pair, one positive left
    assert int((labels == 0).sum()) == 2 and int(labels.sum()) == 1


def test_sample_negatives_follows_its_generator():
    a = sample_negatives(32, 0.25, generator=_gen(5))
    b = sample_negatives(32, 0.25, generator=_gen(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    chosen = {tuple(sample_negatives(32, 0.25, generator=_gen(s))[0].tolist()) for s in range(6)}
    assert len(chosen) > 1, "different seeds must choose different negatives"


@pytest.mark.parametrize("pooling", ["mean", "max"])
@pytest.mark.parametrize("length", [1, 7, 200])
def test_matching_pooling_any_length_and_ignores_padding(pooling, length):
    torch.manual_seed(0)
    cm = CrossModalMatching(8, pooling=pooling, max_len=128, dropout=0.0).eval()
    t, c = torch.randn(3, length, 8), torch.randn(3, length, 8)
    mask = torch.ones(3, length, dtype=torch.bool)
    mask[1, (length + 1) // 2:] = False
    logits = cm(t, c, mask)
    assert logits.shape == (3,) and torch.isfinite(logits).all()
    # what the logit is: the classifier on the pooled [T; C] of the real words
    for i in range(3):
        real = torch.cat([t[i], c[i]], -1)[mask[i]]
        pooled = real.mean(0) if pooling == "mean" else real.amax(0)
        expected = cm.classifier(pooled)
        torch.testing.assert_close(logits[i], expected.squeeze(-1))
    # padding words do not count: change them, the logits stay
    t2, c2 = t.clone(), c.clone()
    t2[~mask] = 1e3
    c2[~mask] = -1e3
    torch.testing.assert_close(cm(t2, c2, mask), logits)


def test_matching_flatten_is_the_reference_form_and_refuses_long_batches():
    torch.manual_seed(0)
    cm = CrossModalMatching(4, pooling="flatten", max_len=6, dropout=0.0).eval()
    assert cm.classifier.in_features == 2 * 4 * 6
    t, c = torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[0, 3:] = False
    logits = cm(t, c, mask)
    flat = F.pad(torch.cat([t, c], -1) * mask[..., None], (0, 0, 0, 1)).flatten(1)
    torch.testing.assert_close(logits, cm.classifier(flat).squeeze(-1))
    # exactly max_len words is fine, one more is refused with an error that says what to do
    assert cm(torch.randn(2, 6, 4), torch.randn(2, 6, 4), torch.ones(2, 6, dtype=torch.bool)).shape == (2,)
    with pytest.raises(ValueError, match=r"flatten.*6 words.*7.*mean") as err:
        cm(torch.randn(2, 7, 4), torch.randn(2, 7, 4), torch.ones(2, 7, dtype=torch.bool))
    assert "matching_max_len" in str(err.value)
    with pytest.raises(ValueError, match="pooling"):
        CrossModalMatching(4, pooling="sum")


def test_similarity_matching_compares_the_two_sides():
    """The variant's logit is w * cos(P_t mean(t), P_v v) + b: at the start (identity maps, w = 10,
    b = 0) exactly 10 x the cosine of the mean sub-token state and the visual vector, padding left
    out; so a pair scores higher with its own vector than with an orthogonal one, which a sum
    f(text) + g(visual) could not do for every pairing at once."""
    torch.manual_seed(0)
    cm = SimilarityMatching(8, 8)
    tokens = torch.randn(3, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=torch.bool)
    text = torch.stack([tokens[i, mask[i]].mean(0) for i in range(3)])
    own = cm(tokens, mask, text)
    assert torch.allclose(own, torch.full((3,), 10.0), atol=1e-5)
    other = cm(tokens, mask, text.roll(1, 0))
    expected = 10 * F.cosine_similarity(text, text.roll(1, 0), dim=-1)
    assert torch.allclose(other, expected, atol=1e-5) and (own > other).all()
    padded = tokens.clone()
    padded[~mask] = 100.0  # padding does not count
    assert torch.allclose(cm(padded, mask, text), own, atol=1e-5)
    # widths that differ: a learned map (no identity), still a cosine in [-w, w] + b
    wide = SimilarityMatching(8, 12)
    assert wide(tokens, mask, torch.randn(3, 12)).abs().max() <= 10.0 + 1e-5
    with pytest.raises(ConfigError, match="matching_score"):
        from mner.models.maf.config import MAFConfig
        MAFConfig(matching_score="dot")


def test_similarity_matching_closes_the_gate_without_a_view(encoders, examples):
    """A tweet without caption or image gets the variant's match probability ~0 (its cosine with
    nothing would be 0, sigmoid(b) an open gate); the tweets with a view keep their own score."""
    torch.manual_seed(0)
    model = MAFModel(maf_config(encoders, view="caption", matching_score="similarity")).eval()
    seen = []
    handle = model.matching.register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        model(model.processor()(examples))
    handle.remove()
    probs = torch.sigmoid(seen[-1])
    assert probs[3] < 1e-6                      # the fourth example has neither image nor caption
    assert (probs[[0, 1, 2, 4, 5, 6, 7]] > 1e-3).all()


def test_matching_loss_is_binary_cross_entropy():
    logits = torch.tensor([2.0, -1.0, 0.3, -3.0], dtype=torch.float64)
    labels = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    p = torch.sigmoid(logits)
    direct = -(labels * p.log() + (1 - labels) * (1 - p).log()).mean()
    torch.testing.assert_close(MatchingLoss()(logits, labels), direct)


# ============================================================================ cross-modal alignment
def _info_nce(text: torch.Tensor, visual: torch.Tensor, tau: float, lam: float) -> torch.Tensor:
    """The slides' formula, term by term."""
    n = text.shape[0]

    def sim(a, b):
        return (a @ b) / (a.norm() * b.norm())

    total = torch.zeros((), dtype=torch.float64)
    for i in range(n):
        v_to_t = -torch.log(torch.exp(sim(visual[i], text[i]) / tau)
                            / sum(torch.exp(sim(visual[i], text[j]) / tau) for j in range(n)))
        t_to_v = -torch.log(torch.exp(sim(text[i], visual[i]) / tau)
                            / sum(torch.exp(sim(text[i], visual[j]) / tau) for j in range(n)))
        total = total + lam * v_to_t + (1 - lam) * t_to_v
    return total / n


@pytest.mark.parametrize("tau,lam", [(0.179, 0.7), (1.0, 0.5), (0.05, 1.0), (0.3, 0.0)])
def test_contrastive_alignment_loss_is_the_slides_formula(tau, lam):
    g = _gen(3)
    text, visual = torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randn(6, 5, generator=g, dtype=torch.float64)
    loss = ContrastiveAlignmentLoss(tau, lam)(text, visual)
    torch.testing.assert_close(loss, _info_nce(text, visual, tau, lam))


def test_contrastive_alignment_loss_direction_weight_is_asymmetric():
    g = _gen(4)
    text, visual = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    v_to_t = ContrastiveAlignmentLoss(0.2, 1.0)(text, visual)
    t_to_v = ContrastiveAlignmentLoss(0.2, 0.0)(text, visual)
    assert not torch.isclose(v_to_t, t_to_v)
    torch.testing.assert_close(ContrastiveAlignmentLoss(0.2, 1.0)(visual, text), t_to_v)
    torch.testing.assert_close(ContrastiveAlignmentLoss(0.2, 0.7)(text, visual), 0.7 * v_to_t + 0.3 * t_to_v)


def test_contrastive_alignment_loss_leaves_out_pairs_without_image():
    g = _gen(5)
    text, visual = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64)
    valid = torch.tensor([True, False, True, True, False, True])
    loss = ContrastiveAlignmentLoss()(text, visual, valid)
    torch.testing.assert_close(loss, _info_nce(text[valid], visual[valid], 0.179, 0.7))
    # fewer than two pairs: zero, but still differentiable (every parameter in the graph)
    t = text.clone().requires_grad_(True)
    zero = ContrastiveAlignmentLoss()(t, visual, torch.tensor([True] + [False] * 5))
    assert float(zero.detach()) == 0.0
    zero.backward()
    assert t.grad is not None and torch.equal(t.grad, torch.zeros_like(t))


def test_alignment_settings_are_checked():
    with pytest.raises(ValueError, match="temperature"):
        ContrastiveAlignmentLoss(temperature=0.0)
    with pytest.raises(ValueError, match="direction weight"):
        ContrastiveAlignmentLoss(direction_weight=1.5)
    proj = AlignmentProjection(7, 3, hidden_dim=5)
    assert proj(torch.randn(4, 7)).shape == (4, 3)
    assert [type(m).__name__ for m in proj.net] == ["Linear", "ReLU", "Linear"]


# ============================================================================ cross-modal interaction
def test_cross_modal_interaction_shapes_and_masking():
    torch.manual_seed(0)
    ci = CrossModalInteraction(16, heads=4, ffn_dim=24, dropout=0.0, layers=2).eval()
    text, visual = torch.randn(3, 9, 16), torch.randn(3, 5, 16)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 1, 0, 1]], dtype=torch.bool)
    out = ci(text, visual, mask)
    assert out.shape == (3, 9, 16) and torch.isfinite(out).all()
    # C = LN(V' + FFN(V')): every word state is layer-normalised (weight 1, bias 0 at init)
    torch.testing.assert_close(out.mean(-1), torch.zeros(3, 9), atol=1e-5, rtol=0)
    # masked visual tokens do not count
    visual2 = visual.clone()
    visual2[~mask] = 50.0
    torch.testing.assert_close(ci(text, visual2, mask), out)
    # tweets of a batch do not see each other
    torch.testing.assert_close(ci(text[1:2], visual[1:2], mask[1:2]), out[1:2])
    with pytest.raises(ValueError, match="divisible"):
        CrossModalInteraction(10, heads=4)


def test_cross_modal_interaction_tweet_without_visual_token_is_finite():
    torch.manual_seed(1)
    ci = CrossModalInteraction(8, heads=2, dropout=0.0).eval()
    text = torch.randn(2, 4, 8, requires_grad=True)
    visual = torch.randn(2, 3, 8)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    out = ci(text, visual, mask)
    assert torch.isfinite(out).all()
    # the empty tweet attends to one all-zero token, whatever its (masked) tokens hold
    alone = ci(text[1:2], torch.zeros(1, 1, 8), torch.ones(1, 1, dtype=torch.bool))
    torch.testing.assert_close(out[1:2], alone)
    torch.testing.assert_close(out[0:1], ci(text[0:1], visual[0:1], mask[0:1]))
    out.sum().backward()
    assert torch.isfinite(text.grad).all()
    assert mask.tolist() == [[True, True, False], [False, False, False]], "the caller's mask was changed"


# ============================================================================ fusion gate
def test_fusion_gate_is_text_then_gated_visual():
    torch.manual_seed(2)
    gate = FusionGate(6)
    t, m = torch.randn(2, 3, 6), torch.randn(2, 3, 6)
    h = gate(t, m)
    g = torch.sigmoid(t @ gate.w_text.weight.T + gate.w_text.bias + m @ gate.w_visual.weight.T)
    assert h.shape == (2, 3, 12)
    assert torch.equal(h[..., :6], t)
    torch.testing.assert_close(h[..., 6:], g * m)
    assert gate.w_visual.bias is None
    # a zero visual stream adds nothing
    assert torch.equal(gate(t, torch.zeros_like(m))[..., 6:], torch.zeros_like(m))


# ============================================================================ the whole model
_TEXTS = [
    ["Obama", "meets", "Merkel", "in", "Berlin"],
    ["RT", "@user", ":", "Paris", "at", "night"],
    ["Rob", "after", "a", "fish", "dinner"],
    ["Google", "is", "in", "London"],
    ["two", "people", "holding", "hands"],
    ["Jordan", "takes", "the", "last", "shot"],
    ["Nothing", "beats", "Luna", "on", "a", "Sunday", "!"],
    ["New", "York", "city"],
]
_TAGS = [
    ["B-PER", "O", "B-PER", "O", "B-LOC"],
    ["O", "O", "O", "B-LOC", "O", "O"],
    ["B-MISC", "O", "O", "O", "O"],
    ["B-ORG", "O", "O", "B-LOC"],
    ["O", "O", "O", "O"],
    ["B-PER", "O", "O", "O", "O"],
    ["O", "O", "B-MISC", "O", "O", "O", "O"],
    ["B-LOC", "I-LOC", "O"],
]


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> list[Example]:
    """8 tagged tweets with image files and captions; the fourth has neither (an empty view)."""
    folder = tmp_path_factory.mktemp("images")
    out = []
    for i, (tokens, tags) in enumerate(zip(_TEXTS, _TAGS)):
        path = folder / f"t{i}.png"
        random_image(i).save(path)
        has_visual = i != 3
        out.append(Example(f"t{i}", tuple(tokens), tuple(tags), image=str(path) if has_visual else None,
                           caption=f"a photo number {i}" if has_visual else None))
    return out


def _expected_parts(options: dict) -> set[str]:
    parts = {"mner"}
    if not options.get("no_image"):
        if not options.get("no_alignment"):
            parts.add("ca")
        if not options.get("no_matching"):
            parts.add("cm")
    return parts


_CASES = [(view, name) for view in VIEWS for name in SWITCHES]
_EXTRA = [("pixels", "swap-interaction"), ("both", "flatten-pooling"), ("caption", "cm-similarity"),
          ("pixels", "cm-similarity")]
_EXTRA_OPTIONS = {"swap-interaction": {"negative_swap": "interaction"},
                  "flatten-pooling": {"matching_pooling": "flatten", "matching_max_len": 12},
                  "cm-similarity": {"matching_score": "similarity"}}


@pytest.mark.parametrize("view,case", _CASES + _EXTRA, ids=[f"{v}-{c}" for v, c in _CASES + _EXTRA])
def test_maf_forward_backward_save_load_decode(encoders, examples, tmp_path, view, case):
    options = dict(SWITCHES[case] if case in SWITCHES else _EXTRA_OPTIONS[case])
    torch.manual_seed(0)
    model = MAFModel(maf_config(encoders, view=view, **options))
    cfg = model.config
    batch = model.processor()(examples, train=True)
    assert (batch.visual is None) == bool(options.get("no_image"))

    # ---- training forward: the loss and its named parts
    model.train()
    out = model(batch)
    parts = _expected_parts(options)
    assert set(out.losses) == parts
    assert out.emissions.shape == (8, 7, len(cfg.labels))
    if options.get("no_image"):
        expected = out.losses["mner"]
    else:
        expected = (1 - cfg.alpha - cfg.beta) * out.losses["mner"]
        expected += cfg.alpha * out.losses.get("ca", 0.0) + cfg.beta * out.losses.get("cm", 0.0)
    assert float(out.loss.detach()) == pytest.approx(expected, rel=1e-5)
    assert all(math.isfinite(v) and v >= 0 for v in out.losses.values())

    # ---- backward: finite gradients in every module of the paper that the switches keep
    out.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(torch.isfinite(g).all() for g in grads.values() if g is not None)
    modules = {"text_proj", "emissions", "crf", "text_encoder.model.embeddings"}
    if not options.get("no_image"):
        modules |= {"interaction", "fusion", "visual_proj"}
        modules |= set() if options.get("no_matching") else {"matching"}
        modules |= set() if options.get("no_alignment") else {"align_text", "align_visual"}
    for module in modules:
        got = [g for n, g in grads.items() if n.startswith(module + ".") and g is not None]
        assert got and any(g.abs().sum() > 0 for g in got), f"no gradient reaches {module}"
    for name in ("image_encoder", "caption_encoder"):
        assert not any(n.startswith(name + ".") for n in grads), f"the frozen {name} is trained"

    # ---- evaluation: only L_mner, no negatives
    model.eval()
    eval_batch = model.processor()(examples)
    with torch.no_grad():
        ev = model(eval_batch)
    assert set(ev.losses) == {"mner"} and float(ev.loss) == pytest.approx(ev.losses["mner"], rel=1e-6)

    # ---- save, load, identical emissions
    folder = model.save_pretrained(tmp_path / "model")
    loaded = load_model(folder)
    assert type(loaded) is MAFModel and not loaded.training
    assert loaded.config == cfg
    with torch.no_grad():
        again = loaded(loaded.processor()(examples))
    assert torch.equal(again.emissions, ev.emissions)

    # ---- decode with confidences
    decoded = loaded.decode(eval_batch, confidences=True)
    assert [len(t) for t in decoded.tags] == [len(t) for t in _TEXTS]
    assert all(tag in cfg.labels for tags in decoded.tags for tag in tags)
    assert all(0.0 <= c <= 1.0 + 1e-6 for cs in decoded.confidences for c in cs)
    assert decoded.tags == model.decode(eval_batch).tags
    entities = Pipeline(loaded)("Obama meets Merkel in Berlin", image=random_image(9), caption="two men")
    assert isinstance(entities, list) and all(e["type"] in {"LOC", "MISC", "ORG", "PER"} for e in entities)


def _swap_first_two(n, fraction, generator=None, device=None):
    """A stand-in for ``sample_negatives``: the one swapped pair is always (0, 1)."""
    perm = torch.arange(n, device=device)
    perm[0], perm[1] = 1, 0
    labels = torch.ones(n, device=device)
    labels[:2] = 0.0
    return perm, labels


@pytest.mark.parametrize("swap", ["image", "interaction"])
def test_negatives_see_the_swapped_visual_side(encoders, examples, monkeypatch, swap):
    """With negatives fixed to the pair (0, 1): under ``image`` tweet 0 is tagged exactly as if
    tweet 1's photo were attached to it; under ``interaction`` it gets tweet 1's CI output; the
    other tweets are tagged as without negatives."""
    import mner.models.maf.modeling_maf as modeling

    monkeypatch.setattr(modeling, "sample_negatives", _swap_first_two)
    torch.manual_seed(0)
    model = MAFModel(maf_config(encoders, negative_swap=swap, dropout=0.0))
    # the CI output C as the matching module receives it (before y^_m scales it into M)
    seen: list[torch.Tensor] = []
    model.matching.register_forward_pre_hook(lambda module, args: seen.append(args[1].clone()))
    batch = model.processor()(examples)
    model.eval()
    with torch.no_grad():
        clean = model(batch).emissions
        clean_c = seen.pop()
        other = examples[0].replace(image=examples[1].image)
        as_if = model(model.processor()([other] + examples[1:])).emissions
        as_if_c = seen.pop()
    model.train()
    model.text_encoder.model.eval()  # no dropout in BERT: the comparison is exact
    with torch.no_grad():
        out = model(batch)
    neg_c = seen.pop()
    assert not seen
    assert out.losses["cm"] > 0
    torch.testing.assert_close(out.emissions[2:], clean[2:])
    torch.testing.assert_close(neg_c[2:], clean_c[2:])
    assert not torch.allclose(out.emissions[0], clean[0])
    assert not torch.allclose(clean_c[0], clean_c[1])  # the swap is visible in C
    if swap == "image":
        torch.testing.assert_close(out.emissions[0], as_if[0])
        torch.testing.assert_close(neg_c[0], as_if_c[0])     # C = CI(T_0, V_1)
    else:
        torch.testing.assert_close(neg_c[0], clean_c[1])     # tweet 0 gets tweet 1's C
        torch.testing.assert_close(neg_c[1], clean_c[0])     # and vice versa


def test_pairs_without_visual_side_are_not_matches(encoders, examples, monkeypatch):
    """Tweet 3 has no image and no caption: as a positive it is labelled 0 (the gate should close
    on an empty visual stream), and so is a swapped pair; the other positives stay 1."""
    import mner.models.maf.modeling_maf as modeling

    monkeypatch.setattr(modeling, "sample_negatives", _swap_first_two)
    torch.manual_seed(0)
    model = MAFModel(maf_config(encoders, view="both"))
    seen = []
    model.matching_loss.register_forward_pre_hook(lambda module, args: seen.append(args[1]))
    model.train()
    model(model.processor()(examples, train=True))
    assert seen[0].tolist() == [0, 0, 1, 0, 1, 1, 1, 1]


def test_efficientnet_lite0_random_model_round_trip(encoders, examples, tmp_path):
    from mner.encoders import ImageEncoderConfig

    torch.manual_seed(0)
    model = MAFModel(maf_config(encoders, image_encoder=ImageEncoderConfig(name="efficientnet-lite0",
                                                                           pretrained=False, image_size=32)))
    model.eval()
    batch = model.processor()(examples[:3])
    folder = model.save_pretrained(tmp_path / "eff")
    assert json.loads((folder / "assets" / "image_encoder" / "mner_image_encoder.json").read_text())["kind"] == "efficientnet"
    loaded = load_model(folder)
    with torch.no_grad():
        assert torch.equal(loaded(batch).emissions, model(batch).emissions)


def test_config_checks_and_variants():
    from mner.models import MAFConfig

    assert MAFConfig().variant == "MAF"
    assert MAFConfig(no_alignment=True).variant == "MAF w/o CA"
    assert MAFConfig(no_matching=True).variant == "MAF w/o CM"
    assert MAFConfig(no_alignment=True, no_matching=True).variant == "MAF w/o CA+CM"
    assert MAFConfig(no_image=True).variant == "text-only CRF"
    for bad, match in [({"visual_view": "pictures"}, "visual_view"), ({"negative_swap": "text"}, "negative_swap"),
                       ({"negative_fraction": 1.0}, "negative_fraction"), ({"alpha": 0.6, "beta": 0.5}, "alpha")]:
        with pytest.raises(ValueError, match=match):
            MAFConfig(**bad)
    # the authors' code: 0.62 L_crf + 0.38 L_cm + 0.38 L_ca, as alpha, beta, 1 - alpha - beta
    cfg = MAFConfig()
    weights = torch.tensor([1 - cfg.alpha - cfg.beta, cfg.beta, cfg.alpha])
    torch.testing.assert_close(weights / weights[0] * 0.62, torch.tensor([0.62, 0.38, 0.38]))
    assert cfg.alpha == pytest.approx(0.38 / 1.38) and cfg.beta == pytest.approx(0.38 / 1.38)
    assert (cfg.temperature, cfg.direction_weight, cfg.negative_fraction) == (0.179, 0.7, 0.25)


# ============================================================================ checkpoints
@pytest.fixture(scope="module")
def saved(encoders, examples, tmp_path_factory):
    """A 'both'-view model saved from *copies* of the encoder folders, which are then deleted:
    loading must need nothing but the checkpoint folder (and no network)."""
    root = tmp_path_factory.mktemp("ckpt")
    copies = {k: Path(shutil.copytree(v, root / "src" / k)) for k, v in encoders.items()}
    torch.manual_seed(0)
    model = MAFModel(maf_config(copies, view="both")).eval()
    batch = model.processor()(examples)
    with torch.no_grad():
        emissions = model(batch).emissions
    folder = model.save_pretrained(root / "model")
    shutil.rmtree(root / "src")
    return folder, emissions


def test_checkpoint_layout_and_offline_load(saved, examples):
    folder, emissions = saved
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {"config.json", WEIGHTS_NAME, "assets/text_encoder/config.json", "assets/text_encoder/tokenizer.json",
            "assets/caption_encoder/config.json", "assets/image_encoder/config.json",
            "assets/image_encoder/preprocessor_config.json"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))], "a pickle was written"
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")], "a temporary folder was left"
    data = json.loads((folder / "config.json").read_text())
    assert data["model_type"] == "maf" and data["config"]["visual_view"] == "both"
    from safetensors.torch import load_file

    state = load_file(str(folder / WEIGHTS_NAME))
    assert any(k.startswith("image_encoder.") for k in state), "frozen encoder weights belong in the checkpoint"
    loaded = load_model(folder)
    with torch.no_grad():
        assert torch.equal(loaded(loaded.processor()(examples)).emissions, emissions)
    assert MAFModel.from_pretrained(folder).config == loaded.config


def test_checkpoint_save_replaces_atomically(encoders, tmp_path):
    model = MAFModel(maf_config(encoders, no_image=True))
    target = tmp_path / "m"
    model.save_pretrained(target)
    (target / "stale.txt").write_text("from an older save")
    model.save_pretrained(target)
    assert not (target / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def _copy(saved, tmp_path) -> Path:
    return Path(shutil.copytree(saved[0], tmp_path / "copy"))


def test_pickle_only_folder_is_refused(saved, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    state = load_model(saved[0]).state_dict()
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin.*safetensors") as err:
        load_model(folder)
    assert "pickle" in str(err.value)
    # the same with the config beside it: still no safetensors, still refused
    shutil.copy(saved[0] / "config.json", folder / "config.json")
    with pytest.raises(CheckpointError, match="pytorch_model.bin"):
        load_model(folder)
    with pytest.raises(CheckpointError, match="no such model folder"):
        load_model(tmp_path / "nowhere")


def test_garbled_config_json_gives_a_clear_error(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    text = (folder / "config.json").read_text()
    (folder / "config.json").write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError, match=r"config\.json: not valid JSON"):
        load_model(folder)
    (folder / "config.json").write_text(json.dumps(["not", "a", "config"]))
    with pytest.raises(CheckpointError, match="model_type"):
        load_model(folder)
    data = json.loads(text)
    data["config"]["interaction_headz"] = 2
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"config\.interaction_headz"):
        load_model(folder)
    data = json.loads(text)
    data["model_type"] = "umt"
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="unknown model type 'umt'"):
        load_model(folder)


def test_weights_without_their_modules_are_refused(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    data = json.loads((folder / "config.json").read_text())
    data["config"]["no_matching"] = True  # the matching classifier's weights are now unexpected
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=r"do not fit the config.*unexpected.*matching\.classifier"):
        load_model(folder)
    data["config"]["no_matching"] = False
    data["config"]["no_alignment"] = True  # the alignment projections are now unexpected
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=r"unexpected \['align_"):
        load_model(folder)


def test_save_load_keeps_the_image_preprocessing_of_a_folder_without_preprocessor_config(encoders, examples, tmp_path):
    torch.manual_seed(0)
    model = MAFModel(maf_config(encoders, image="resnet_bare")).eval()
    folder = model.save_pretrained(tmp_path / "bare")
    loaded = load_model(folder)
    assert loaded.image_encoder.eval_transform().signature == model.image_encoder.eval_transform().signature
    with torch.no_grad():
        assert torch.equal(loaded(loaded.processor()(examples)).emissions, model(model.processor()(examples)).emissions)


def test_weights_of_the_wrong_shape_are_refused_with_a_checkpoint_error(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    data = json.loads((folder / "config.json").read_text())
    data["config"]["labels"] = data["config"]["labels"] + ["B-EVENT", "I-EVENT"]
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="do not fit the config"):
        load_model(folder)


def test_truncated_weights_file_is_refused_with_a_checkpoint_error(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    blob = (folder / WEIGHTS_NAME).read_bytes()
    (folder / WEIGHTS_NAME).write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match=WEIGHTS_NAME):
        load_model(folder)


def test_fine_tuned_image_encoder_trains_from_pixels(encoders, examples, tmp_path):
    """``image_encoder.trainable``: the batch carries (augmented) pixels instead of cached
    features, the image encoder gets gradients and moves, its features are never cached, and the
    saved model predicts from image files like a frozen one."""
    from mner.encoders import ImageEncoderConfig
    from mner.encoders.cache import FeatureCache

    torch.manual_seed(0)
    cfg = maf_config(encoders, view="pixels",
                     image_encoder=ImageEncoderConfig(name=str(encoders["resnet"]), pretrained=False,
                                                      image_size=32, trainable=True))
    model = MAFModel(cfg)
    assert any(p in set(model.param_groups()["pretrained"]) for p in model.image_encoder.parameters())
    cache = FeatureCache()
    batch = model.processor(cache=cache, seed=3)(examples, train=True)
    assert batch.visual.pixel_values is not None and batch.visual.pixel_values.shape == (len(examples), 3, 32, 32)
    assert "pixels" not in batch.visual.features and len(cache) == 0
    assert not batch.visual.pixel_values[3].any()  # the tweet without image: zero pixels, not present
    again = model.processor(cache=cache, seed=3)(examples, train=True)
    assert torch.equal(batch.visual.pixel_values, again.visual.pixel_values)  # seeded augmentation
    before = {k: v.clone() for k, v in model.image_encoder.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    model(batch).loss.backward()
    grads = [p.grad for p in model.image_encoder.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    opt.step()
    after = model.image_encoder.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if after[k].is_floating_point())
    model.save_pretrained(tmp_path / "ft")
    loaded = load_model(tmp_path / "ft")
    assert loaded.config.image_encoder.trainable
    # the pipeline on the loaded model: from image files, like the eval-mode model in memory
    model.eval()
    captured: dict[str, list[torch.Tensor]] = {"loaded": [], "model": []}
    for name, m in (("loaded", loaded), ("model", model)):
        m.register_forward_hook(lambda module, args, out, name=name: captured[name].append(out.emissions))
    text = " ".join(examples[0].tokens)
    ents = Pipeline(loaded)(text, image=examples[0].image)
    assert isinstance(ents, list)
    assert ents == Pipeline(model)(text, image=examples[0].image)
    (got,), (want,) = captured["loaded"], captured["model"]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    with torch.no_grad():  # the pipeline's emissions are those of the eval batch with the same image
        torch.testing.assert_close(got, loaded(loaded.processor()(examples[:1])).emissions,
                                   atol=1e-5, rtol=0)
    other = Pipeline(loaded)(text, image=examples[1].image)  # the pixels are read: another image,
    assert not torch.allclose(captured["loaded"][-1], got)  # other emissions
    assert isinstance(other, list)
    evaluated = model.processor()(examples[:2])
    assert torch.allclose(model(evaluated).emissions, loaded(evaluated).emissions, atol=1e-5)
