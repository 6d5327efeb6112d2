"""Cross-modal alignment (CA), MAF section "Cross-Modal Alignment Module".

The text vector ``T_s = tanh(t_0)`` and the global image vector each pass through a two-layer
MLP projection (ReLU) into a shared space; a symmetric InfoNCE loss over the batch pulls
matched pairs together and pushes the other pairs of the batch apart:

    L_i(V->T) = -log exp(sim(V_i, T_i)/tau) / sum_j exp(sim(V_i, T_j)/tau)
    L_i(T->V) = -log exp(sim(T_i, V_i)/tau) / sum_j exp(sim(T_i, V_j)/tau)
    L_ca      = 1/N sum_i ( lambda_c L_i(V->T) + (1 - lambda_c) L_i(T->V) )

with ``sim`` the cosine similarity. Defaults from the authors' code: tau = 0.179,
lambda_c = 0.7. Pairs without a visual side are left out of the batch of the loss.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mner.config import ConfigError

__all__ = ["AlignmentProjection", "ContrastiveAlignmentLoss"]


class AlignmentProjection(nn.Module):
    """The two-layer MLP projection ``Linear -> ReLU -> Linear``."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int | None = None):
        super().__init__()
        hidden_dim = hidden_dim or out_dim
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ContrastiveAlignmentLoss(nn.Module):
    """``L_ca``, the symmetric InfoNCE of the module docstring."""

    def __init__(self, temperature: float = 0.179, direction_weight: float = 0.7):
        super().__init__()
        if temperature <= 0:
            raise ConfigError(f"alignment temperature must be > 0, got {temperature}")
        if not 0.0 <= direction_weight <= 1.0:
            raise ConfigError(f"alignment direction weight must be in [0, 1], got {direction_weight}")
        self.temperature = temperature
        self.direction_weight = direction_weight

    def forward(self, text: torch.Tensor, visual: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """``text``, ``visual`` (N, p) projected vectors; ``valid`` (N,) bool keeps pairs that
        have a visual side. Fewer than two pairs give 0 (no negatives to contrast)."""
        if valid is not None:
            text, visual = text[valid], visual[valid]
        if text.shape[0] < 2:
            # zero, but still a function of the projections: distributed data parallel
            # expects every parameter in the graph of every step
            return (text.sum() + visual.sum()) * 0.0
        t = F.normalize(text, dim=-1)
        v = F.normalize(visual, dim=-1)
        logits = v @ t.T / self.temperature        # row i: sim(V_i, T_j) / tau
        target = torch.arange(logits.shape[0], device=logits.device)
        v_to_t = F.cross_entropy(logits, target)     # 1/N sum_i L_i(V->T)
        t_to_v = F.cross_entropy(logits.T, target)   # 1/N sum_i L_i(T->V)
        return self.direction_weight * v_to_t + (1.0 - self.direction_weight) * t_to_v
