"""Cross-modal interaction (CI), MAF section "Cross-Modal Interaction Module".

A transformer cross-attention block: the text states are the queries, the (projected) visual
tokens the keys and values, and the output ``C`` has the length of the text:

    a_i  = softmax( [W_qi T]^T [W_ki V] / sqrt(d/m) )        (one head i of m)
    CV_i = a_i [W_vi V]^T
    CV   = W' [CV_1; ...; CV_m]^T
    V'   = LN(T + CV)
    C    = LN(V' + FFN(V'))

(The slides write ``W_vi T`` for the values, a typo: the authors' code, like every
cross-attention, takes values from the visual side.)

A tweet with no visual token at all (no image, no caption) attends to a single all-zero token,
so that its ``C`` is well defined (``V' = LN(T + W' b_v)``); the matching probability then
learns to switch such a visual stream off.

``output_attentions=True`` also returns the last block's ``a`` averaged over the ``m`` heads (for an
explanation; transformers' ``output_attentions``). The block's output is computed as without it
(the fused attention kernel, which gives no weights); the weights come from the same ``W_q`` and
``W_k`` projections of the same inputs, so the tags never depend on whether they were asked for.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mner.config import ConfigError

__all__ = ["CrossModalInteraction"]


class CrossModalInteraction(nn.Module):
    """``C = CI(T, V)``: text queries attend over visual tokens (one block, ``layers`` deep).

    Args:
        dim: width ``d`` of text and visual states.
        heads: number of attention heads ``m``.
        ffn_dim: hidden width of the position-wise feed-forward network.
        dropout: dropout on attention weights and sub-layer outputs.
        layers: number of stacked blocks (the paper uses one).
    """

    def __init__(self, dim: int, heads: int = 8, ffn_dim: int | None = None, dropout: float = 0.1,
                 layers: int = 1):
        super().__init__()
        if dim % heads:
            raise ConfigError(f"cross-modal interaction: dim {dim} is not divisible by heads {heads}")
        self.blocks = nn.ModuleList(_Block(dim, heads, ffn_dim or 4 * dim, dropout) for _ in range(layers))

    def forward(self, text: torch.Tensor, visual: torch.Tensor, visual_mask: torch.Tensor,
                output_attentions: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``text`` (B, W, d), ``visual`` (B, R, d), ``visual_mask`` (B, R) bool -> ``C`` (B, W, d);
        with ``output_attentions``, ``(C, a)``: ``a`` (B, W, R) the last block's weights, heads averaged."""
        # a tweet with no visual token attends to one zero token (no NaN from an all-masked softmax);
        # written without a branch on the data, so that the graph exports (mner export) as it runs
        empty = ~visual_mask.any(dim=1)
        visual = visual.masked_fill(empty[:, None, None], 0.0)
        first = torch.zeros_like(visual_mask)
        first[:, 0] = True
        visual_mask = visual_mask | (first & empty[:, None])
        out = text
        weights = None
        for k, block in enumerate(self.blocks):
            if output_attentions and k == len(self.blocks) - 1:
                weights = block.attention_weights(out, visual, ~visual_mask)
            out = block(out, visual, ~visual_mask)
        return (out, weights) if output_attentions else out


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def attention_weights(self, text: torch.Tensor, visual: torch.Tensor, key_padding: torch.Tensor) -> torch.Tensor:
        """``a = softmax([W_q T]^T [W_k V] / sqrt(d/m))`` of this block's attention, the mean of its
        ``m`` heads: (B, W, R), padded visual tokens at 0."""
        att = self.attention
        d, m = att.embed_dim, att.num_heads
        (b, w, _), r = text.shape, visual.shape[1]
        q = F.linear(text, att.in_proj_weight[:d], att.in_proj_bias[:d]).view(b, w, m, d // m).transpose(1, 2)
        k = F.linear(visual, att.in_proj_weight[d:2 * d], att.in_proj_bias[d:2 * d]).view(b, r, m, d // m).transpose(1, 2)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(d // m)                    # (B, m, W, R)
        scores = scores.masked_fill(key_padding[:, None, None, :], float("-inf"))
        return scores.softmax(-1).mean(1)

    def forward(self, text: torch.Tensor, visual: torch.Tensor, key_padding: torch.Tensor) -> torch.Tensor:
        cv, _ = self.attention(text, visual, visual, key_padding_mask=key_padding, need_weights=False)
        v_prime = self.norm1(text + self.dropout(cv))                      # V' = LN(T + CV)
        return self.norm2(v_prime + self.dropout(self.ffn(v_prime)))      # C = LN(V' + FFN(V'))
