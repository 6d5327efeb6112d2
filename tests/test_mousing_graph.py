"""MOUSING's graph modules (poster Eq. 2, 6, 7, 9) against brute force and hand-computed
answers: edges, normalisation, the four intervention modes, message averaging over V, padding,
seeding, and batched == one graph at a time."""

from __future__ import annotations

import math

import pytest
import torch

from mner.config import from_dict
from mner.errors import MNERError
from mner.models.mousing import (
    GraphConfig,
    GraphLayer,
    InterventionConfig,
    InterventionGenerator,
    MultiViewUpdate,
    SimilarityGraph,
    UpdateConfig,
    cosine_adjacency,
    normalize_adjacency,
    threshold_edges,
)

MODES = ("learned", "random", "gaussian", "none")
D = 8


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _batch(lengths=(5, 3, 1), n=6, d=D, seed=0):
    g = torch.Generator().manual_seed(seed)
    nodes = torch.randn(len(lengths), n, d, generator=g)
    mask = torch.arange(n)[None, :] < torch.tensor(lengths)[:, None]
    return nodes, mask


def _generator(mode, seed=0, environments=3, temperature=0.5, **kw):
    torch.manual_seed(seed)
    return InterventionGenerator(D, environments, temperature, mode=mode, rank=4, **kw)


def _pipeline(nodes, mask, mode="learned", seed=0, train=False, layers=2, delta=0.0, per_environment=True):
    """Graph -> intervention -> update with fixed parameters (seed) and fixed draws (seed)."""
    graph = SimilarityGraph(delta)
    gen = _generator(mode, seed)
    torch.manual_seed(seed)
    update = MultiViewUpdate(D, layers, dropout=0.0)
    gen.train(train)
    update.train(train)
    g1 = graph(nodes, mask)
    g2 = gen(nodes, g1, mask, generator=torch.Generator().manual_seed(seed + 1))
    out = update(nodes, mask, g1.adjacency, g2.adjacency, per_environment=per_environment)
    return g1, g2, out


def _assert_symmetric(x):
    torch.testing.assert_close(x, x.transpose(-1, -2), rtol=0, atol=1e-6)


# ============================================================================ graph (Eq. 2)
@pytest.mark.parametrize("delta", [-0.3, 0.0, 0.25, 0.6])
@pytest.mark.parametrize("self_loops", [True, False])
def test_threshold_edges_match_brute_force(delta, self_loops):
    nodes, mask = _batch(lengths=(6, 4, 1), d=3)
    nodes[0, 2] = nodes[0, 1] * 2.0            # similarity exactly 1 across a pair
    out = SimilarityGraph(delta, normalization="none", self_loops=self_loops)(nodes, mask)
    weights = threshold_edges(cosine_adjacency(nodes, mask), mask, delta, self_loops)
    torch.testing.assert_close(weights, out.weights)
    B, N, _ = nodes.shape
    for b in range(B):
        for i in range(N):
            for j in range(N):
                real = bool(mask[b, i] and mask[b, j])
                hi, hj = nodes[b, i].tolist(), nodes[b, j].tolist()
                dot = sum(x * y for x, y in zip(hi, hj))
                cos = dot / math.sqrt(sum(x * x for x in hi) * sum(y * y for y in hj))
                if i == j:
                    keep, weight = real and self_loops, 1.0 if real and self_loops else 0.0
                else:
                    keep = real and cos >= delta - 1e-6
                    weight = cos if keep else 0.0
                if i != j and real and abs(cos - delta) < 1e-5:
                    continue                       # on the threshold: float rounding decides
                assert bool(out.edges[b, i, j]) == keep, (b, i, j, cos)
                assert out.weights[b, i, j].item() == pytest.approx(weight, abs=1e-5), (b, i, j)


def test_negative_similarities_below_delta_vanish_and_kept_weights_have_gradients():
    nodes = torch.tensor([[[1.0, 0.0], [-1.0, 0.1], [1.0, 1.0]]], requires_grad=True)
    mask = torch.ones(1, 3, dtype=torch.bool)
    out = SimilarityGraph(0.5, normalization="none")(nodes, mask)
    assert out.weights[0, 0, 1] == 0 and not out.edges[0, 0, 1]        # cos < 0 < delta
    assert out.weights[0, 0, 2].item() == pytest.approx(1 / math.sqrt(2))
    out.weights[0, 0, 2].backward()
    assert nodes.grad is not None and nodes.grad[0, 0].abs().sum() > 0


def test_symmetric_normalisation_equals_the_formula_on_a_hand_made_graph():
    adj = torch.tensor([[[1.0, 0.5, 0.0, 0.0], [0.5, 1.0, 0.4, 0.0], [0.0, 0.4, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])
    mask = torch.tensor([[True, True, True, False]])
    deg = [1.5, 1.9, 1.4]
    expected = torch.zeros(1, 4, 4)
    for i in range(3):
        for j in range(3):
            expected[0, i, j] = adj[0, i, j] / math.sqrt(deg[i] * deg[j])
    torch.testing.assert_close(normalize_adjacency(adj, mask, "symmetric"), expected)
    row = normalize_adjacency(adj, mask, "row")
    torch.testing.assert_close(row[0, :3].sum(-1), torch.ones(3))
    assert row[0, 0, 1].item() == pytest.approx(0.5 / 1.5)
    torch.testing.assert_close(normalize_adjacency(adj, mask, "none"), adj)
    # the same per environment: (B, V, N, N)
    stacked = torch.stack([adj, 2 * adj], dim=1)
    torch.testing.assert_close(normalize_adjacency(stacked, mask, "symmetric")[:, 1], expected)


def test_degree_zero_rows_stay_zero():
    adj = torch.tensor([[[0.0, 0.0], [0.0, 1.0]]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    for mode in ("symmetric", "row", "none"):
        out = normalize_adjacency(adj, mask, mode)
        assert torch.isfinite(out).all() and (out[0, 0] == 0).all() and out[0, 1, 1] == 1
    # delta < 0 may keep negative weights; a node of negative degree gets a zero row too
    negative = torch.tensor([[[0.0, -0.5], [-0.5, 0.0]]])
    for mode in ("symmetric", "row"):
        assert (normalize_adjacency(negative, mask, mode) == 0).all()


def test_a_similarity_equal_to_delta_keeps_its_edge():
    nodes = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])          # orthogonal: cos exactly 0
    mask = torch.ones(1, 2, dtype=torch.bool)
    out = SimilarityGraph(0.0, normalization="none")(nodes, mask)
    assert out.edges[0, 0, 1] and out.weights[0, 0, 1] == 0  # kept, with weight 0
    assert not SimilarityGraph(1e-6)(nodes, mask).edges[0, 0, 1]


def test_zero_vector_node_and_single_node_graphs_give_no_nan():
    nodes, mask = _batch(lengths=(4, 1, 0))
    nodes[0, 1] = 0.0                             # an all-zero real node
    nodes.requires_grad_(True)
    sim = cosine_adjacency(nodes, mask)
    assert (sim[0, 1] == 0).all()
    for mode in MODES:
        g1, g2, out = _pipeline(nodes, mask, mode=mode, train=True)
        loss = out.view1.sum() + out.view2.sum() + out.environments.sum() + g2.weights.sum()
        grads = torch.autograd.grad(loss, nodes)[0]
        outputs = (g1.weights, g1.adjacency, g2.weights, g2.adjacency, out.view1, out.view2, out.environments)
        for t in (*outputs, grads):
            assert torch.isfinite(t).all(), mode
        assert g1.adjacency[1, 0, 0] == 1 and g1.edges[1].sum() == 1     # the one node: its self-loop
        assert not g1.edges[2].any()                                      # an empty graph


def test_similarity_graph_is_symmetric():
    nodes, mask = _batch()
    out = SimilarityGraph(0.1)(nodes, mask)
    for t in (out.weights, out.edges.float(), out.adjacency):
        _assert_symmetric(t)


def test_soft_threshold_weighs_every_pair_and_passes_gradients_below_delta():
    from mner.models.mousing.similarity_graph import soft_threshold_edges

    nodes, mask = _batch()
    nodes.requires_grad_(True)
    hard = SimilarityGraph(0.5)(nodes, mask)
    soft = SimilarityGraph(0.5, threshold="soft", sharpness=0.05)(nodes, mask)
    sim = cosine_adjacency(nodes, mask)
    off = (mask[:, :, None] & mask[:, None, :]) & ~torch.eye(mask.shape[1], dtype=torch.bool)
    expected = sim * torch.sigmoid((sim - 0.5) / 0.05)
    torch.testing.assert_close(soft.weights[off], expected[off])
    torch.testing.assert_close(soft.edges, hard.edges)            # an edge counts as kept where s >= delta
    below = off & (sim < 0.5) & (sim > 0.3)
    assert below.any() and (hard.weights[below] == 0).all() and (soft.weights[below] != 0).all()
    soft.weights[below].sum().backward()
    assert nodes.grad.abs().sum() > 0
    torch.testing.assert_close(soft_threshold_edges(sim, mask, 0.5, 0.05)[off], expected[off])


def test_similarity_is_measured_on_the_features_given():
    nodes, mask = _batch()
    feats = torch.randn(*nodes.shape[:2], 12)
    graph = SimilarityGraph(0.2)
    out = graph(nodes, mask, feats)
    torch.testing.assert_close(out.similarity, cosine_adjacency(feats, mask))
    torch.testing.assert_close(out.weights, threshold_edges(cosine_adjacency(feats, mask), mask, 0.2))
    assert not torch.equal(out.weights, graph(nodes, mask).weights)


# ============================================================================ intervention (Eq. 6, 7)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("train", [True, False])
def test_every_mode_keeps_the_graph_contract(mode, train):
    nodes, mask = _batch()
    g1 = SimilarityGraph(0.0)(nodes, mask)
    gen = _generator(mode).train(train)
    out = gen(nodes, g1, mask)
    B, N = mask.shape
    assert out.weights.shape == out.adjacency.shape == (B, 3, N, N)
    for t in (out.weights, out.adjacency) + ((out.masks,) if out.masks is not None else ()):
        _assert_symmetric(t)
    not_edges = ~g1.edges.unsqueeze(1).expand_as(out.weights)
    assert (out.weights[not_edges] == 0).all()
    eye = torch.eye(N, dtype=torch.bool).expand_as(out.weights)
    torch.testing.assert_close(out.weights[eye], g1.weights.unsqueeze(1).expand_as(out.weights)[eye])
    padded = ~mask[:, None, :, None] | ~mask[:, None, None, :]
    padded = padded.expand_as(out.weights)
    assert (out.weights[padded] == 0).all() and (out.adjacency[padded] == 0).all()
    if out.masks is not None:
        assert ((out.masks >= 0) & (out.masks <= 1)).all()
        assert (out.masks[padded] == 0).all()
        assert (out.masks[eye & ~padded] == 1).all()
        torch.testing.assert_close(out.weights, g1.weights.unsqueeze(1) * out.masks)
    torch.testing.assert_close(out.adjacency, normalize_adjacency(out.weights, mask, "symmetric"))


def test_none_mode_is_the_original_graph():
    nodes, mask = _batch()
    g1 = SimilarityGraph(0.2)(nodes, mask)
    out = _generator("none").train()(nodes, g1, mask)
    real = (mask[:, :, None] & mask[:, None, :]).unsqueeze(1).expand_as(out.masks)
    assert (out.masks[real] == 1).all()
    for v in range(3):
        torch.testing.assert_close(out.weights[:, v], g1.weights)
        torch.testing.assert_close(out.adjacency[:, v], g1.adjacency)


@pytest.mark.parametrize("mode", ["random", "gaussian", "none"])
def test_ablation_modes_have_no_scorer(mode):
    gen = _generator(mode)
    assert gen.scorer is None and not list(gen.parameters())


def test_random_mode_ignores_the_nodes_and_stays_random_in_eval():
    nodes, mask = _batch()
    other = torch.randn_like(nodes)
    g1 = SimilarityGraph(-1.0)(nodes, mask)
    gen = _generator("random").eval()
    a = gen(nodes, g1, mask, generator=torch.Generator().manual_seed(3)).masks
    b = gen(other, g1, mask, generator=torch.Generator().manual_seed(3)).masks
    c = gen(nodes, g1, mask, generator=torch.Generator().manual_seed(4)).masks
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)
    assert a[0, 0, :5, :5][~torch.eye(5, dtype=torch.bool)].std() > 0.1     # uniform, not constant


def test_gaussian_mode_has_no_mask_and_no_noise_in_eval():
    nodes, mask = _batch()
    g1 = SimilarityGraph(0.0)(nodes, mask)
    gen = _generator("gaussian", noise_std=0.3)
    out = gen.eval()(nodes, g1, mask)
    assert out.masks is None
    torch.testing.assert_close(out.weights, g1.weights.unsqueeze(1).expand_as(out.weights))
    noisy = gen.train()(nodes, g1, mask).weights
    edges = g1.edges & ~torch.eye(mask.shape[1], dtype=torch.bool)
    changed = (noisy - g1.weights.unsqueeze(1)).abs() > 0
    assert changed[edges.unsqueeze(1).expand_as(changed)].float().mean() > 0.9
    assert not changed[~edges.unsqueeze(1).expand_as(changed)].any()
    assert (noisy >= 0).all()
    assert not torch.equal(noisy[:, 0], noisy[:, 1])        # environments differ


def test_learned_mode_trains_the_scorer_and_is_deterministic_in_eval():
    nodes, mask = _batch()
    nodes.requires_grad_(True)
    g1 = SimilarityGraph(0.0)(nodes, mask)
    gen = _generator("learned").train()
    out = gen(nodes, g1, mask)
    assert ((out.masks >= 0) & (out.masks <= 1)).all()
    assert not torch.equal(out.masks[:, 0], out.masks[:, 1])       # V different environments
    out.adjacency.pow(2).sum().backward()
    for name, p in gen.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert nodes.grad.abs().sum() > 0
    gen.eval()
    with torch.no_grad():
        first, second = gen(nodes, g1, mask), gen(nodes, g1, mask)
    torch.testing.assert_close(first.masks, second.masks, rtol=0, atol=0)
    real_off = g1.edges & ~torch.eye(mask.shape[1], dtype=torch.bool)
    # environment v keeps the edges with probability sigmoid(l + c_v), c = (-1, 0, 1) (spread 1)
    for v, shift in enumerate((-1.0, 0.0, 1.0)):
        expected = torch.sigmoid(first.logits + shift)
        torch.testing.assert_close(first.masks[:, v][real_off], expected[real_off])
    means = [first.masks[:, v][real_off].mean().item() for v in range(3)]
    assert means[0] < means[1] < means[2]            # the environments cut more or fewer edges
    # init_bias None = logit(keep_rate 0.7): the first masks keep edges near the prior rate
    assert abs(torch.sigmoid(first.logits)[real_off].mean().item() - 0.7) < 0.15


def test_environment_shifts_are_evenly_spaced_and_shared_by_every_tweet():
    from mner.models.mousing.causal_intervention import environment_shifts

    torch.testing.assert_close(environment_shifts(4, 1.5), torch.tensor([-1.5, -0.5, 0.5, 1.5]))
    torch.testing.assert_close(environment_shifts(1, 1.5), torch.zeros(1))
    nodes, mask = _batch()
    g1 = SimilarityGraph(-1.0)(nodes, mask)
    gen = _generator("learned", environment_spread=0.0).eval()
    out = gen(nodes, g1, mask)
    torch.testing.assert_close(out.masks[:, 0], out.masks[:, 2])   # no spread: one environment thrice


def test_keep_rate_prior_is_the_mean_kl_over_the_edges_and_trains_the_scorer():
    from mner.models.mousing.causal_intervention import bernoulli_kl

    nodes, mask = _batch()
    g1 = SimilarityGraph(0.1)(nodes, mask)
    gen = _generator("learned", keep_rate=0.3).train()
    out = gen(nodes, g1, mask)
    off = g1.edges & ~torch.eye(mask.shape[1], dtype=torch.bool)
    p = torch.sigmoid(out.logits)[off]
    expected = (p * torch.log(p / 0.3) + (1 - p) * torch.log((1 - p) / 0.7)).mean()
    torch.testing.assert_close(out.prior, expected)
    assert out.prior.item() > 0
    torch.testing.assert_close(bernoulli_kl(torch.tensor([0.3]), 0.3), torch.zeros(1))
    out.prior.backward()
    assert gen.scorer.bias.grad is not None and gen.scorer.bias.grad.abs() > 0
    # with the prior alone, gradient steps move the keep probabilities towards r
    opt = torch.optim.SGD(gen.parameters(), lr=1.0)
    for _ in range(50):
        opt.zero_grad()
        gen(nodes, g1, mask).prior.backward()
        opt.step()
    with torch.no_grad():
        after = torch.sigmoid(gen(nodes, g1, mask).logits)[off].mean().item()
    assert abs(after - 0.3) < abs(p.mean().item() - 0.3) and abs(after - 0.3) < 0.05
    for mode in ("random", "gaussian", "none"):
        assert _generator(mode)(nodes, g1, mask).prior is None


def test_random_mode_keeps_edges_at_the_environments_rates():
    nodes, mask = _batch(lengths=(6, 6, 6))
    g1 = SimilarityGraph(-1.0)(nodes, mask)
    gen = _generator("random", environments=2, keep_rate=0.7, environment_spread=1.0, temperature=0.01).train()
    torch.manual_seed(0)
    masks = torch.cat([gen(nodes, g1, mask).masks for _ in range(200)])
    off = ~torch.eye(6, dtype=torch.bool)
    logit = math.log(0.7 / 0.3)
    for v, shift in enumerate((-1.0, 1.0)):
        rate = (masks[:, v][:, off] > 0.5).float().mean().item()
        assert abs(rate - 1 / (1 + math.exp(-(logit + shift)))) < 0.03


def test_random_mode_outside_training_is_seeded_per_tweet_whatever_the_batch():
    nodes, mask = _batch(lengths=(5, 3, 1))
    g1 = SimilarityGraph(-1.0)(nodes, mask)
    gen = _generator("random").eval()
    seeds = torch.tensor([11, 22, 33])
    a = gen(nodes, g1, mask, seeds=seeds).masks
    again = gen(nodes, g1, mask, seeds=seeds).masks
    torch.testing.assert_close(a, again, rtol=0, atol=0)
    # the second tweet alone, padded to another width, gets the same masks on its real nodes
    alone_nodes = torch.zeros(1, 4, D)
    alone_nodes[0, :3] = nodes[1, :3]
    alone_mask = torch.tensor([[True, True, True, False]])
    b = gen(alone_nodes, SimilarityGraph(-1.0)(alone_nodes, alone_mask), alone_mask, seeds=seeds[1:2]).masks
    torch.testing.assert_close(b[0, :, :3, :3], a[1, :, :3, :3], rtol=0, atol=0)
    other = gen(nodes, g1, mask, seeds=torch.tensor([11, 23, 33])).masks
    assert not torch.equal(other[1], a[1]) and torch.equal(other[0], a[0])


def test_learned_masks_become_binary_as_the_temperature_goes_to_zero():
    nodes, mask = _batch(lengths=(6, 6, 6))
    g1 = SimilarityGraph(-1.0)(nodes, mask)
    off = ~torch.eye(6, dtype=torch.bool).expand(3, 3, 6, 6)
    spread = {}
    for gamma in (1e-3, 1.0):
        masks = _generator("learned", temperature=gamma, init_bias=0.0).train()(nodes, g1, mask).masks
        near_binary = torch.minimum(masks, 1 - masks)[off] < 1e-2
        spread[gamma] = near_binary.float().mean().item()
    assert spread[1e-3] > 0.95 and spread[1.0] < 0.5


@pytest.mark.parametrize("mode", ["learned", "random", "gaussian"])
def test_the_same_seed_gives_the_same_environments(mode):
    nodes, mask = _batch()
    g1 = SimilarityGraph(0.0)(nodes, mask)
    gen = _generator(mode).train()
    torch.manual_seed(11)
    a = gen(nodes, g1, mask).weights
    torch.manual_seed(11)
    b = gen(nodes, g1, mask).weights
    c = gen(nodes, g1, mask).weights
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)


# ============================================================================ multi-view update (Eq. 9)
def test_message_averaging_over_v_equals_the_mean_of_per_environment_messages():
    torch.manual_seed(0)
    layer = GraphLayer(D, dropout=0.0, activation="none")
    h = torch.randn(2, 5, D)
    adj = torch.rand(2, 4, 5, 5)
    mask = torch.ones(2, 5, dtype=torch.bool)
    averaged = layer.linear(layer.messages(h, adj))
    per_env = torch.stack([layer.linear(adj[:, v] @ h) for v in range(4)], dim=1).mean(dim=1)
    torch.testing.assert_close(averaged, per_env)
    torch.testing.assert_close(layer(h, adj, mask), layer.norm(h + per_env))


def test_zero_layers_is_the_identity():
    nodes, mask = _batch()
    g1, g2, out = _pipeline(nodes, mask, layers=0)
    expected = nodes * mask.unsqueeze(-1)
    torch.testing.assert_close(out.view1, expected)
    torch.testing.assert_close(out.view2, expected)
    torch.testing.assert_close(out.environments, expected.unsqueeze(1).expand(-1, 3, -1, -1))
    assert not list(MultiViewUpdate(D, 0).parameters())


def test_per_environment_runs_each_environment_graph_separately():
    nodes, mask = _batch()
    g1, g2, out = _pipeline(nodes, mask, train=False)
    torch.manual_seed(0)
    update = MultiViewUpdate(D, 2, dropout=0.0).eval()
    for v in range(3):
        single = update(nodes, mask, g2.adjacency[:, v]).view1
        torch.testing.assert_close(out.environments[:, v], single)
    assert out.environments.shape == (3, 3, 6, D)


def test_shared_and_separate_weights():
    torch.manual_seed(0)
    shared = MultiViewUpdate(D, 2, share_weights=True)
    separate = MultiViewUpdate(D, 2, share_weights=False)
    assert sum(p.numel() for p in separate.parameters()) == 2 * sum(p.numel() for p in shared.parameters())
    assert len(shared.state_dict()) == len({t.data_ptr() for t in shared.state_dict().values()})
    nodes, mask = _batch()
    adj = SimilarityGraph(0.0)(nodes, mask).adjacency
    out = shared.eval()(nodes, mask, adj, adj)
    torch.testing.assert_close(out.view1, out.view2)
    out = separate.eval()(nodes, mask, adj, adj)
    assert not torch.allclose(out.view1, out.view2)


# ============================================================================ padding and batching
@pytest.mark.parametrize("mode", MODES)
def test_padded_nodes_are_zero_and_never_reach_real_nodes(mode):
    nodes, mask = _batch()
    changed = nodes.clone()
    changed[~mask] = torch.randn(int((~mask).sum()), D) * 100
    first = _pipeline(nodes, mask, mode=mode, train=True)
    second = _pipeline(changed, mask, mode=mode, train=True)
    for a, b in zip(first[:2], second[:2]):
        for name in ("weights", "adjacency"):
            torch.testing.assert_close(getattr(a, name), getattr(b, name))
    for name in ("view1", "view2", "environments"):
        a, b = getattr(first[2], name), getattr(second[2], name)
        torch.testing.assert_close(a, b)
        pad = ~mask if a.dim() == 3 else ~mask.unsqueeze(1).expand(-1, a.shape[1], -1)
        assert (a[pad] == 0).all()


@pytest.mark.parametrize("mode", ["learned", "gaussian", "none"])
def test_batched_equals_one_graph_at_a_time(mode):
    lengths = (6, 4, 2)
    nodes, mask = _batch(lengths=lengths)
    g1, g2, out = _pipeline(nodes, mask, mode=mode)
    for b, n in enumerate(lengths):
        s1, s2, single = _pipeline(nodes[b : b + 1, :n], mask[b : b + 1, :n], mode=mode)
        torch.testing.assert_close(g1.adjacency[b, :n, :n], s1.adjacency[0])
        torch.testing.assert_close(g2.adjacency[b, :, :n, :n], s2.adjacency[0])
        torch.testing.assert_close(out.view1[b, :n], single.view1[0])
        torch.testing.assert_close(out.view2[b, :n], single.view2[0])
        torch.testing.assert_close(out.environments[b, :, :n], single.environments[0])


# ============================================================================ configs
@pytest.mark.parametrize(
    "cls, field, value",
    [
        (GraphConfig, "delta", 1.5),
        (GraphConfig, "delta", -1.01),
        (GraphConfig, "normalization", "sym"),
        (InterventionConfig, "environments", 0),
        (InterventionConfig, "temperature", 0.0),
        (InterventionConfig, "mode", "learnt"),
        (InterventionConfig, "rank", 0),
        (InterventionConfig, "noise_std", -0.1),
        (UpdateConfig, "layers", -1),
        (UpdateConfig, "dropout", 1.0),
        (UpdateConfig, "activation", "swish"),
    ],
)
def test_configs_refuse_out_of_range_values_naming_the_field(cls, field, value):
    with pytest.raises(MNERError, match=field):
        cls(**{field: value})
    with pytest.raises(MNERError, match=f"model.graph: {field}"):
        from_dict(cls, {field: value}, path="model.graph")


def test_from_config_builds_the_modules():
    graph = SimilarityGraph.from_config(GraphConfig(delta=0.5, normalization="row"))
    assert graph.delta == 0.5 and graph.normalization == "row"
    gen = InterventionGenerator.from_config(InterventionConfig(environments=2, rank=3), D, normalization="row")
    assert gen.environments == 2 and gen.scorer.rank == 3 and gen.normalization == "row"
    update = MultiViewUpdate.from_config(UpdateConfig(layers=3, share_weights=False), D)
    assert update.num_layers == 3 and update.view2_layers is not None
    with pytest.raises(MNERError, match="normalization"):
        InterventionGenerator(D, 2, 0.5, normalization="col")
