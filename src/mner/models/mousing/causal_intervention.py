"""Intervention graph generation of MCIS, MOUSING poster "Multimodal causal intervention
strategy", Eq. 6 (V environments) and Eq. 7 (temperature gamma).

The poster: MCIS "simulate[s] multiple training environments to perform causal interventions"
so as to remove the unstable, biased associations that few-shot sampling creates between words
and visual tokens, and keep the stable ones. It gives no formula; this is our reading
(docs/models/mousing.md, "MCIS"), every piece **(ours)** except the names V and gamma:

- an edge scorer gives each edge (i, j) of G1 a stability logit from its two node features
  (ours: low-rank bilinear plus the edge's similarity, symmetrised, cheap on B*N*N)::

      l_ij = 1/2 (<W_q h_i, W_k h_j> + <W_q h_j, W_k h_i>) / sqrt(r) + w_s * A_ij + b

- V environments (Eq. 6) are V intervention strengths: environment v shifts every logit by
  ``c_v`` (V values evenly spaced in ``[-s, s]``, ``s`` the environment spread), the same for
  every tweet of an episode, so that the environments differ systematically (one cuts more
  edges than another) and not only by their noise draws;
- each environment's mask is a relaxed-Bernoulli (binary Concrete / Gumbel-sigmoid) sample at
  temperature gamma (Eq. 7)::

      m^v_ij = sigmoid((l_ij + c_v + log u - log(1 - u)) / gamma),   u ~ U(0, 1), one u per edge and v

  sampled on the upper triangle and mirrored, so every mask is symmetric;
- environment v's graph is the original graph times its mask: ``A^v = A * m^v`` (self-loops
  always kept: m^v_ii = 1), normalised like G1;
- a keep-rate prior keeps the intervention from collapsing to "keep every edge" (unconstrained,
  the scorer learned logits of 10 to 34 on every edge, masks of 1): the mean over the edges of G1
  of ``KL(Bernoulli(sigmoid(l_ij)) || Bernoulli(r))`` (``InterventionOut.prior``, weighted by
  beta in the model's loss), as GSAT (Miao et al., ICML 2022) regularises stochastic edge
  attention: an edge is kept with certainty only where the tagging loss pays for it.

Outside training the ``learned`` masks are deterministic: environment v gets ``sigmoid(l_ij +
c_v)``, the keep probability of the Bernoulli its Concrete relaxes (the mean of a Concrete sample
has no closed form; a deterministic evaluation is repeatable).

The poster's ablations are the other modes (a config switch, ``InterventionConfig.mode``):

- ``random`` (w/ Random Intervention): the same environments and Concrete masks with a constant
  logit ``logit(r)`` instead of the scorer's: edges dropped at the same rates, but at random. No
  parameters. Outside training the masks are drawn too, each tweet from a generator seeded with
  ``seed`` and its row of ``seeds`` (the model passes a hash of the tweet's word ids), so a
  tweet's masks do not depend on its batch and evaluation is reproducible;
- ``gaussian`` (w/ Gaussian Intervention): no mask; each kept edge (not the self-loops) gets
  N(0, noise_std^2) noise (symmetric), clamped to >= 0; no noise outside training;
- ``none`` (w/o Intervention): every environment is the original graph (masks of ones).

Only the ``learned`` mode has parameters (the scorer) and a prior: the ablations leave no unused
parameter behind (distributed data parallel expects every parameter in the graph of every step).
Masks and weights are 0 in the rows and columns of padded nodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from mner.models.mousing.config import GraphConfig, InterventionConfig
from mner.models.mousing.similarity_graph import GraphOut, normalize_adjacency, pair_mask

__all__ = ["EdgeScorer", "InterventionGenerator", "InterventionOut", "bernoulli_kl", "environment_shifts"]


class EdgeScorer(nn.Module):
    """The stability logit of every pair of nodes (ours), symmetric.

    ``l_ij = 1/2 (<W_q h_i, W_k h_j> + <W_q h_j, W_k h_i>) / sqrt(r) + w_s * A_ij + b`` with
    ``W_q, W_k: d -> r`` (nn.Linear's default init, no bias), ``w_s`` initialised to 1 and ``b``
    to ``init_bias`` (the model passes ``logit(keep_rate)``, so the first masks keep edges at the
    prior rate).
    """

    def __init__(self, dim: int, rank: int = 64, init_bias: float = 0.8473):
        super().__init__()
        self.rank = rank
        self.query = nn.Linear(dim, rank, bias=False)
        self.key = nn.Linear(dim, rank, bias=False)
        self.similarity_weight = nn.Parameter(torch.tensor(1.0))
        self.bias = nn.Parameter(torch.tensor(float(init_bias)))

    def forward(self, nodes: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``nodes (B, N, d)``, ``weights (B, N, N)`` the edge weights of G1 -> logits ``(B, N, N)``."""
        bilinear = self.query(nodes) @ self.key(nodes).transpose(-1, -2) / math.sqrt(self.rank)
        bilinear = 0.5 * (bilinear + bilinear.transpose(-1, -2))
        return bilinear + self.similarity_weight * weights + self.bias


@dataclass
class InterventionOut:
    """The V intervened graphs G2 of a batch.

    Attributes:
        masks: ``(B, V, N, N)`` edge masks in [0, 1], symmetric, 1 on the diagonal of real nodes,
            0 in the rows/columns of padded nodes; None in ``gaussian`` mode (no mask).
        weights: ``(B, V, N, N)`` the environments' edge weights (``graph.weights * masks``),
            symmetric, 0 off the kept edges of G1 and on padded nodes.
        adjacency: ``(B, V, N, N)`` the normalised ``weights``.
        logits: ``(B, N, N)`` the scorer's stability logits (``learned`` mode), else None.
        prior: the keep-rate prior, mean ``KL(Bernoulli(sigmoid(l)) || Bernoulli(r))`` over the
            off-diagonal edges of G1 (``learned`` mode; a scalar tensor), else None.
    """

    masks: torch.Tensor | None
    weights: torch.Tensor
    adjacency: torch.Tensor
    logits: torch.Tensor | None = None
    prior: torch.Tensor | None = None


def _symmetric(x: torch.Tensor) -> torch.Tensor:
    """Mirror the strict upper triangle of the last two dims onto the lower one (diagonal 0)."""
    upper = torch.triu(x, diagonal=1)
    return upper + upper.transpose(-1, -2)


def bernoulli_kl(p: torch.Tensor, r: float, eps: float = 1e-6) -> torch.Tensor:
    """``KL(Bernoulli(p) || Bernoulli(r))`` elementwise, ``p`` clamped to [eps, 1 - eps]."""
    p = p.clamp(eps, 1.0 - eps)
    return p * torch.log(p / r) + (1.0 - p) * torch.log((1.0 - p) / (1.0 - r))


def environment_shifts(environments: int, spread: float) -> torch.Tensor:
    """The V logit shifts ``c_v``: evenly spaced in ``[-spread, spread]``; ``[0]`` for V = 1."""
    if environments == 1:
        return torch.zeros(1)
    return torch.linspace(-spread, spread, environments)


def _logistic_noise(shape, generator, device, dtype) -> torch.Tensor:
    eps = torch.finfo(dtype).eps
    u = torch.rand(shape, generator=generator, device=device, dtype=dtype).clamp(eps, 1.0 - eps)
    return _symmetric(torch.log(u) - torch.log1p(-u))


class InterventionGenerator(nn.Module):
    """Generates V intervened graphs from G1 (Eq. 6, 7); see the module docstring.

    Args:
        dim: node feature width d.
        environments: V (Eq. 6).
        temperature: gamma (Eq. 7).
        mode: ``learned`` | ``random`` | ``gaussian`` | ``none``.
        rank: of the :class:`EdgeScorer` (``learned`` mode only).
        noise_std: of the ``gaussian`` mode.
        init_bias: the scorer's initial bias; None = ``logit(keep_rate)``.
        normalization: of the environments' adjacencies; use G1's (``GraphConfig.normalization``).
        keep_rate: r, the prior keep probability (``learned``) or the keep rate (``random``).
        environment_spread: s, the environments' logit shifts span ``[-s, s]``.
        seed: of the ``random`` mode's draws outside training.
    """

    def __init__(
        self,
        dim: int,
        environments: int,
        temperature: float,
        mode: str = "learned",
        rank: int = 64,
        noise_std: float = 0.1,
        init_bias: float | None = None,
        normalization: str = "symmetric",
        keep_rate: float = 0.7,
        environment_spread: float = 1.0,
        seed: int = 0,
    ):
        super().__init__()
        cfg = InterventionConfig(environments, temperature, mode, keep_rate, 0.0, environment_spread, rank,
                                 noise_std, init_bias, seed)  # range checks
        GraphConfig(normalization=normalization)
        self.environments = environments
        self.temperature = float(temperature)
        self.mode = mode
        self.noise_std = float(noise_std)
        self.normalization = normalization
        self.keep_rate = float(keep_rate)
        self.environment_spread = float(environment_spread)
        self.seed = int(seed)
        self.register_buffer("shifts", environment_shifts(environments, environment_spread), persistent=False)
        self.scorer = EdgeScorer(dim, rank, cfg.bias) if mode == "learned" else None

    @classmethod
    def from_config(
        cls, cfg: InterventionConfig, dim: int, normalization: str = "symmetric"
    ) -> InterventionGenerator:
        return cls(
            dim,
            environments=cfg.environments,
            temperature=cfg.temperature,
            mode=cfg.mode,
            rank=cfg.rank,
            noise_std=cfg.noise_std,
            init_bias=cfg.init_bias,
            normalization=normalization,
            keep_rate=cfg.keep_rate,
            environment_spread=cfg.environment_spread,
            seed=cfg.seed,
        )

    def extra_repr(self) -> str:
        return (
            f"environments={self.environments}, temperature={self.temperature}, mode={self.mode!r}, "
            f"keep_rate={self.keep_rate}, environment_spread={self.environment_spread}, "
            f"noise_std={self.noise_std}, normalization={self.normalization!r}"
        )

    def _seeded_noise(self, shape, node_mask: torch.Tensor, seeds: torch.Tensor, dtype) -> torch.Tensor:
        """Logistic noise ``(B, V, N, N)`` drawn per tweet from ``seed`` and its row of ``seeds``,
        over its real nodes only, so it does not depend on the batch or the padding."""
        B, V, N, _ = shape
        noise = torch.zeros(shape, dtype=dtype)
        for b in range(B):
            idx = node_mask[b].nonzero().flatten().cpu()
            n = int(idx.numel())
            if n == 0:
                continue
            gen = torch.Generator().manual_seed((self.seed * 1_000_003 + int(seeds[b])) % (2**63 - 1))
            row = _logistic_noise((V, n, n), gen, "cpu", dtype)
            noise[b][:, idx[:, None], idx[None, :]] = row
        return noise.to(node_mask.device)

    def forward(
        self,
        nodes: torch.Tensor,
        graph: GraphOut,
        node_mask: torch.Tensor,
        generator: torch.Generator | None = None,
        seeds: torch.Tensor | None = None,
    ) -> InterventionOut:
        """``nodes (B, N, d)``, ``graph`` G1 of these nodes, ``node_mask (B, N)`` -> V environments.

        Random draws in training use ``generator`` if given, else torch's global generator; the
        ``random`` mode's draws outside training use ``seeds (B,)`` (one integer per tweet) when
        given, else ``generator``.
        """
        node_mask = node_mask.bool()
        B, N = node_mask.shape
        V = self.environments
        base = graph.weights.unsqueeze(1)                      # (B, 1, N, N)
        dtype, device = base.dtype, base.device
        shape = (B, V, N, N)
        pairs = pair_mask(node_mask).unsqueeze(1)              # (B, 1, N, N)
        eye = torch.eye(N, dtype=torch.bool, device=device)
        logits = prior = None
        masks: torch.Tensor | None

        if self.mode == "none":
            masks = pairs.to(dtype).expand(shape)
        elif self.mode in ("learned", "random"):
            if self.mode == "learned":
                assert self.scorer is not None
                logits = self.scorer(nodes, graph.weights)     # (B, N, N)
                edges = (graph.edges & ~eye).to(dtype)
                kl = bernoulli_kl(torch.sigmoid(logits), self.keep_rate)
                prior = (kl * edges).sum() / edges.sum().clamp_min(1.0)
                env_logits = logits.unsqueeze(1)
            else:
                r = self.keep_rate
                env_logits = torch.full((B, 1, N, N), math.log(r / (1.0 - r)), dtype=dtype, device=device)
            env_logits = env_logits + self.shifts.to(dtype).view(1, V, 1, 1)   # (B, V, N, N): Eq. 6
            if self.training:
                noise = _logistic_noise(shape, generator, device, dtype)
                masks = torch.sigmoid((env_logits + noise) / self.temperature)   # Eq. 7
            elif self.mode == "learned":
                masks = torch.sigmoid(env_logits).expand(shape)
            else:
                noise = (self._seeded_noise(shape, node_mask, seeds, dtype) if seeds is not None
                         else _logistic_noise(shape, generator, device, dtype))
                masks = torch.sigmoid((env_logits + noise) / self.temperature)
        else:  # gaussian
            masks = None

        if masks is not None:
            masks = torch.where(eye, torch.ones((), dtype=dtype, device=device), masks)
            masks = masks * pairs.to(dtype)
            weights = base * masks
        elif self.training and self.noise_std > 0:
            noise = _symmetric(torch.randn(shape, generator=generator, device=device, dtype=dtype))
            noisy = (base + self.noise_std * noise).clamp_min(0.0)
            off_diagonal_edges = (graph.edges & ~eye).unsqueeze(1)
            weights = torch.where(off_diagonal_edges, noisy, base)
        else:
            weights = base.expand(shape)
        adjacency = normalize_adjacency(weights, node_mask, self.normalization)
        return InterventionOut(masks=masks, weights=weights, adjacency=adjacency, logits=logits, prior=prior)
