"""Intervention graph generation of MCIS, MOUSING poster "Multimodal causal intervention
strategy", Eq. 6 (V environments) and Eq. 7 (temperature gamma).

The poster: MCIS "simulate[s] multiple training environments to perform causal interventions"
so as to remove the unstable, biased associations that few-shot sampling creates between words
and visual tokens, and keep the stable ones. It gives no formula; this is our reading
(docs/mousing.md, "MCIS"), every piece **(ours)** except the names V and gamma:

- an edge scorer gives each kept edge (i, j) of G1 a stability logit from its two node features
  (ours: low-rank bilinear plus the edge's similarity, symmetrised, cheap on B*N*N)::

      l_ij = 1/2 (<W_q h_i, W_k h_j> + <W_q h_j, W_k h_i>) / sqrt(r) + w_s * A_ij + b

- V environments (Eq. 6) are V relaxed-Bernoulli (binary Concrete / Gumbel-sigmoid) edge masks
  sampled from those logits at temperature gamma (Eq. 7)::

      m^v_ij = sigmoid((l_ij + log u - log(1 - u)) / gamma),   u ~ U(0, 1), one u per edge and v

  sampled on the upper triangle and mirrored, so every mask is symmetric;
- environment v's graph is the original graph times its mask: ``A^v = A * m^v`` (self-loops
  always kept: m^v_ii = 1), normalised like G1.

In eval mode the ``learned`` masks are deterministic: every environment gets ``sigmoid(l_ij)``,
the keep probability of the Bernoulli the Concrete relaxes (ours; the mean of a Concrete sample
is not sigmoid(l / gamma) in closed form, and a deterministic eval makes evaluation repeatable).

The poster's ablations are the other modes (a config switch, ``InterventionConfig.mode``):

- ``random`` (w/ Random Intervention): masks drawn U(0, 1) per edge (symmetric), no scorer; also
  in eval mode (the caller seeds torch's global generator, or passes ``generator``);
- ``gaussian`` (w/ Gaussian Intervention): no mask; each kept edge (not the self-loops) gets
  N(0, noise_std^2) noise (symmetric), clamped to >= 0; no noise in eval mode;
- ``none`` (w/o Intervention): every environment is the original graph (masks of ones).

Only the ``learned`` mode has parameters (the scorer): the ablations leave no unused parameter
behind (distributed data parallel expects every parameter in the graph of every step).
Masks and weights are 0 in the rows and columns of padded nodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from mner.models.mousing.config import GraphConfig, InterventionConfig
from mner.models.mousing.similarity_graph import GraphOut, normalize_adjacency, pair_mask

__all__ = ["EdgeScorer", "InterventionGenerator", "InterventionOut"]


class EdgeScorer(nn.Module):
    """The stability logit of every pair of nodes (ours), symmetric.

    ``l_ij = 1/2 (<W_q h_i, W_k h_j> + <W_q h_j, W_k h_i>) / sqrt(r) + w_s * A_ij + b`` with
    ``W_q, W_k: d -> r`` (nn.Linear's default init, no bias), ``w_s`` initialised to 1 and ``b``
    to ``init_bias`` (> 0, so that the first masks keep most edges).
    """

    def __init__(self, dim: int, rank: int = 64, init_bias: float = 2.0):
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
    """

    masks: torch.Tensor | None
    weights: torch.Tensor
    adjacency: torch.Tensor
    logits: torch.Tensor | None = None


def _symmetric(x: torch.Tensor) -> torch.Tensor:
    """Mirror the strict upper triangle of the last two dims onto the lower one (diagonal 0)."""
    upper = torch.triu(x, diagonal=1)
    return upper + upper.transpose(-1, -2)


class InterventionGenerator(nn.Module):
    """Generates V intervened graphs from G1 (Eq. 6, 7); see the module docstring.

    Args:
        dim: node feature width d.
        environments: V (Eq. 6).
        temperature: gamma (Eq. 7).
        mode: ``learned`` | ``random`` | ``gaussian`` | ``none``.
        rank, init_bias: of the :class:`EdgeScorer` (``learned`` mode only).
        noise_std: of the ``gaussian`` mode.
        normalization: of the environments' adjacencies; use G1's (``GraphConfig.normalization``).
    """

    def __init__(
        self,
        dim: int,
        environments: int,
        temperature: float,
        mode: str = "learned",
        rank: int = 64,
        noise_std: float = 0.1,
        init_bias: float = 2.0,
        normalization: str = "symmetric",
    ):
        super().__init__()
        InterventionConfig(environments, temperature, mode, rank, noise_std, init_bias)  # range checks
        GraphConfig(normalization=normalization)
        self.environments = environments
        self.temperature = float(temperature)
        self.mode = mode
        self.noise_std = float(noise_std)
        self.normalization = normalization
        self.scorer = EdgeScorer(dim, rank, init_bias) if mode == "learned" else None

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
        )

    def extra_repr(self) -> str:
        return (
            f"environments={self.environments}, temperature={self.temperature}, mode={self.mode!r}, "
            f"noise_std={self.noise_std}, normalization={self.normalization!r}"
        )

    def forward(
        self,
        nodes: torch.Tensor,
        graph: GraphOut,
        node_mask: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> InterventionOut:
        """``nodes (B, N, d)``, ``graph`` G1 of these nodes, ``node_mask (B, N)`` -> V environments.

        Random draws use ``generator`` if given, else torch's global generator.
        """
        node_mask = node_mask.bool()
        B, N = node_mask.shape
        V = self.environments
        base = graph.weights.unsqueeze(1)                      # (B, 1, N, N)
        dtype, device = base.dtype, base.device
        shape = (B, V, N, N)
        pairs = pair_mask(node_mask).unsqueeze(1)              # (B, 1, N, N)
        eye = torch.eye(N, dtype=torch.bool, device=device)
        logits = None
        masks: torch.Tensor | None

        if self.mode == "none":
            masks = pairs.to(dtype).expand(shape)
        elif self.mode == "random":
            masks = _symmetric(torch.rand(shape, generator=generator, device=device, dtype=dtype))
        elif self.mode == "learned":
            assert self.scorer is not None
            logits = self.scorer(nodes, graph.weights)         # (B, N, N)
            if self.training:
                eps = torch.finfo(dtype).eps
                u = torch.rand(shape, generator=generator, device=device, dtype=dtype).clamp(eps, 1.0 - eps)
                noise = _symmetric(torch.log(u) - torch.log1p(-u))     # logistic noise, Eq. 7
                masks = torch.sigmoid((logits.unsqueeze(1) + noise) / self.temperature)
            else:
                masks = torch.sigmoid(logits).unsqueeze(1).expand(shape)
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
        return InterventionOut(masks=masks, weights=weights, adjacency=adjacency, logits=logits)
