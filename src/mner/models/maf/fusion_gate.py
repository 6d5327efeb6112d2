"""Cross-modal fusion gate, MAF section "Cross-Modal Fusion Module".

A token-level gate decides how much of the (matching-scaled) visual stream ``M`` each word
takes:

    g = sigmoid(W_gt^T T + W_gm^T M)
    R = g * M
    H = [T; R]
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FusionGate"]


class FusionGate(nn.Module):
    """``H = [T; sigmoid(W_gt T + W_gm M) * M]``; output width ``2 * dim``."""

    def __init__(self, dim: int):
        super().__init__()
        self.w_text = nn.Linear(dim, dim)
        self.w_visual = nn.Linear(dim, dim, bias=False)

    def forward(self, text: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.w_text(text) + self.w_visual(visual))
        return torch.cat([text, gate * visual], dim=-1)
