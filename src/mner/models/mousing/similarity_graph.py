"""Multimodal graph construction, MOUSING poster "Multimodal graph construction", Eq. 2.

Every word and every visual token (image patch/region, or caption token) of a tweet is a node;
a batch holds B such graphs padded to N nodes: ``nodes (B, N, d)``, ``node_mask (B, N)``.
Edge weights are the cosine similarities of every pair of nodes, intra- and inter-modal, and
Eq. 2 keeps an edge only where its similarity reaches the threshold delta:

    s_ij = <f_i, f_j> / (|f_i| |f_j|)
    A_ij = s_ij  if s_ij >= delta  else 0                              (Eq. 2)

``f`` are the features the similarity is measured on. The poster measures it in CLIP's joint
space, where words and patches already meet; :class:`SimilarityGraph` takes them as
``features`` (the model passes the encoders' own states, where both modalities share a space:
``GraphConfig.space``), else the node features themselves.

Our reading where the poster is silent, each marked **(ours)**:

- ``threshold="soft"``: every pair of real nodes weighs ``s_ij * sigmoid((s_ij - delta) / t)``
  (sharpness ``t``), a smooth version of Eq. 2 whose gradient does not vanish below delta, for
  similarities measured in a learned space; an edge *counts* as kept (``edges``) where
  ``s_ij >= delta``;

- self-loops of weight 1 on every real node (``self_loops=True``); with ``self_loops=False``
  the diagonal is empty (no node keeps an edge to itself);
- a kept edge carries its similarity as weight (a hard 0/1 mask times ``s_ij``), so the weights
  stay differentiable w.r.t. the node features; with delta < 0 kept edges may have negative
  weights;
- the adjacency used for message passing is normalised: ``symmetric`` D^-1/2 A D^-1/2 (GCN-style,
  the default), ``row`` D^-1 A, or ``none``; a node of degree <= 0 gets a zero row (no NaN);
- a zero feature vector has similarity 0 with every node (eps in the norm).

Padded nodes have no edge at all, not even a self-loop, and every output is 0 in their rows and
columns, so a padded node's features never reach a real node.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from mner.models.mousing.config import NORMALIZATIONS, GraphConfig

__all__ = [
    "GraphOut",
    "SimilarityGraph",
    "cosine_adjacency",
    "kept_edges",
    "normalize_adjacency",
    "pair_mask",
    "soft_threshold_edges",
    "threshold_edges",
]


def pair_mask(node_mask: torch.Tensor) -> torch.Tensor:
    """``node_mask (B, N)`` bool -> ``(B, N, N)`` bool, True where both nodes are real."""
    return node_mask.unsqueeze(-1) & node_mask.unsqueeze(-2)


def cosine_adjacency(nodes: torch.Tensor, node_mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Cosine similarity of every pair of nodes of each graph.

    Args:
        nodes: ``(B, N, d)`` node features.
        node_mask: ``(B, N)`` bool, True for real nodes.
        eps: floor of the norms, so that a zero vector has similarity 0 with every node.

    Returns:
        ``(B, N, N)`` similarities in [-1, 1]; 0 in the rows and columns of padded nodes.
    """
    unit = F.normalize(nodes, p=2.0, dim=-1, eps=eps)
    sim = unit @ unit.transpose(-1, -2)
    return sim.masked_fill(~pair_mask(node_mask), 0.0)


def kept_edges(sim: torch.Tensor, node_mask: torch.Tensor, delta: float, self_loops: bool = True) -> torch.Tensor:
    """The edges Eq. 2 keeps: ``(B, N, N)`` bool, True where ``sim >= delta`` between two real
    nodes; the diagonal holds the self-loops of real nodes if ``self_loops``, else nothing."""
    pairs = pair_mask(node_mask)
    eye = torch.eye(sim.shape[-1], dtype=torch.bool, device=sim.device)
    edges = (sim >= delta) & pairs & ~eye
    if self_loops:
        edges = edges | (eye & pairs)
    return edges


def threshold_edges(
    sim: torch.Tensor, node_mask: torch.Tensor, delta: float, self_loops: bool = True
) -> torch.Tensor:
    """Eq. 2: ``(B, N, N)`` edge weights, ``sim`` where ``sim >= delta`` and 0 elsewhere.

    Self-loops of real nodes weigh 1 when ``self_loops`` (ours), else the diagonal is 0; padded
    nodes have no edge. Kept weights are ``mask * sim``, differentiable w.r.t. ``sim``.
    """
    edges = kept_edges(sim, node_mask, delta, self_loops)
    eye = torch.eye(sim.shape[-1], dtype=torch.bool, device=sim.device)
    weights = sim * (edges & ~eye).to(sim.dtype)
    if self_loops:
        weights = weights + (edges & eye).to(sim.dtype)
    return weights


def soft_threshold_edges(
    sim: torch.Tensor, node_mask: torch.Tensor, delta: float, sharpness: float, self_loops: bool = True
) -> torch.Tensor:
    """The soft Eq. 2 **(ours)**: ``(B, N, N)`` weights ``sim * sigmoid((sim - delta) / sharpness)``
    between real nodes (diagonal: 1 with ``self_loops``, else 0); differentiable everywhere."""
    pairs = pair_mask(node_mask)
    eye = torch.eye(sim.shape[-1], dtype=torch.bool, device=sim.device)
    weights = sim * torch.sigmoid((sim - delta) / sharpness)
    weights = weights.masked_fill(~pairs | eye, 0.0)
    if self_loops:
        weights = weights + (eye & pairs).to(sim.dtype)
    return weights


def normalize_adjacency(adj: torch.Tensor, node_mask: torch.Tensor, mode: str = "symmetric") -> torch.Tensor:
    """Normalise weighted adjacencies for message passing (ours).

    Args:
        adj: ``(B, N, N)`` or ``(B, V, N, N)`` edge weights (one per environment).
        node_mask: ``(B, N)`` bool, True for real nodes.
        mode: ``symmetric`` D^-1/2 A D^-1/2, ``row`` D^-1 A (each row sums to 1), or ``none``;
            D is the diagonal of row sums (degrees). A node of degree <= 0 gets a zero row and,
            in ``symmetric`` mode, a zero column.

    Returns:
        a tensor of ``adj``'s shape, 0 in the rows and columns of padded nodes.
    """
    if mode not in NORMALIZATIONS:
        raise ValueError(f"normalization {mode!r} is not known: choose one of {', '.join(NORMALIZATIONS)}")
    pairs = pair_mask(node_mask)
    while pairs.dim() < adj.dim():   # (B, N, N) -> (B, 1, N, N) for (B, V, N, N) inputs
        pairs = pairs.unsqueeze(1)
    adj = adj.masked_fill(~pairs, 0.0)
    if mode == "none":
        return adj
    degree = adj.sum(dim=-1)
    positive = degree > 0
    tiny = torch.finfo(adj.dtype).tiny
    if mode == "symmetric":
        inv_sqrt = torch.where(positive, degree.clamp_min(tiny).rsqrt(), torch.zeros_like(degree))
        return inv_sqrt.unsqueeze(-1) * adj * inv_sqrt.unsqueeze(-2)
    inv = torch.where(positive, 1.0 / degree.clamp_min(tiny), torch.zeros_like(degree))
    return inv.unsqueeze(-1) * adj


@dataclass
class GraphOut:
    """The multimodal graph G1 of a batch.

    Attributes:
        weights: ``(B, N, N)`` thresholded similarities (Eq. 2), un-normalised; the intervention
            scores and masks these edges.
        edges: ``(B, N, N)`` bool, the kept edges (self-loops included when enabled); a kept edge
            may weigh 0 when delta <= 0.
        adjacency: ``(B, N, N)`` the normalised ``weights`` used for message passing.
        similarity: ``(B, N, N)`` the cosine similarities before the threshold (diagnostics).
    """

    weights: torch.Tensor
    edges: torch.Tensor
    adjacency: torch.Tensor
    similarity: torch.Tensor | None = None


class SimilarityGraph(nn.Module):
    """Builds G1 from node features: cosine similarities, Eq. 2 threshold, normalisation.

    No parameters; ``forward(nodes (B, N, d), node_mask (B, N), features=None) -> GraphOut``, the
    similarities measured on ``features (B, N, d')`` when given (a space the modalities share),
    else on ``nodes``.
    """

    def __init__(self, delta: float, normalization: str = "symmetric", self_loops: bool = True,
                 threshold: str = "hard", sharpness: float = 0.05):
        super().__init__()
        GraphConfig(delta=delta, normalization=normalization, self_loops=self_loops,  # range checks
                    threshold=threshold, sharpness=sharpness)
        self.delta = float(delta)
        self.normalization = normalization
        self.self_loops = self_loops
        self.threshold = threshold
        self.sharpness = float(sharpness)

    @classmethod
    def from_config(cls, cfg: GraphConfig) -> SimilarityGraph:
        return cls(delta=cfg.delta, normalization=cfg.normalization, self_loops=cfg.self_loops,
                   threshold=cfg.threshold, sharpness=cfg.sharpness)

    def extra_repr(self) -> str:
        return (f"delta={self.delta}, threshold={self.threshold!r}, normalization={self.normalization!r}, "
                f"self_loops={self.self_loops}")

    def forward(self, nodes: torch.Tensor, node_mask: torch.Tensor,
                features: torch.Tensor | None = None) -> GraphOut:
        node_mask = node_mask.bool()
        sim = cosine_adjacency(nodes if features is None else features, node_mask)
        edges = kept_edges(sim, node_mask, self.delta, self.self_loops)
        if self.threshold == "soft":
            weights = soft_threshold_edges(sim, node_mask, self.delta, self.sharpness, self.self_loops)
        else:
            weights = threshold_edges(sim, node_mask, self.delta, self.self_loops)
        adjacency = normalize_adjacency(weights, node_mask, self.normalization)
        return GraphOut(weights=weights, edges=edges, adjacency=adjacency, similarity=sim)
