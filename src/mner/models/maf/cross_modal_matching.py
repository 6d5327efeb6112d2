"""Cross-modal matching (CM), MAF section "Cross-Modal Matching Module".

Not every tweet's image fits its text. CM learns whether it does, and scales the visual
stream by that belief:

    negatives: pick 2k of the N pairs of a batch (0 < k < N/2) and swap the image side of
               the first k with the last k; these pairs get label 0, the other N - 2k label 1
    F_i    = Flatten([T(D_mi); C(D_mi)])
    y^_mi  = sigmoid(W_f^T F_i)
    L_cm   = -1/N sum_j ( y_mj log y^_mj + (1 - y_mj) log(1 - y^_mj) )
    M      = y^_m * C

The swapped pairs also flow into the tagging loss (the model learns to tag with a
mismatched image). What is swapped is a choice (:attr:`MAFConfig.negative_swap`): the image
(``"image"``, the paper's words: the visual tokens are permuted before the interaction) or the
interaction output ``C`` (``"interaction"``, what the authors' code does).

A variant that departs from the paper, with its own row (``matching_score: similarity``):
CM's classifier reads ``pool([T; C])`` through one linear layer, so its logit is
``f(mean T) + g(mean C)``, a sum with no term that compares the two sides, and it learns the
share of positives in its batches instead (``docs/results/maf-notes.md``, "Why CM does not
learn"). :class:`SimilarityMatching` scores the pair by comparing it:

    y^_mi = sigmoid(w * cos(P_t mean(t_i), P_v v_i) + b)

``mean(t_i)`` the mean of the text encoder's sub-token states (special tokens included, as the
sentence encoders pool), ``v_i`` the visual view's global vector (the frozen caption encoder's
mean-pooled vector, or the image's pooled features), ``P_t``, ``P_v`` linear maps (identities
at the start when the widths agree: the pair starts scored by the sentence encoder's own cosine),
``w``, ``b`` learned (``w`` starts at 10); a pair without visual content gets a closed gate
(a fixed logit of -20). It is trained by the same ``L_cm`` on the same swapped
negatives, and gates ``C`` as the paper's CM does.

``Flatten`` in the reference code flattens a sequence padded to a fixed 128 tokens, which ties
the model to one maximum length. Here the default pools ``[T; C]`` over the real words
(``pooling="mean"`` or ``"max"``), which works at any length; ``pooling="flatten"`` keeps the
faithful form with a fixed ``max_len`` (longer inputs are refused with an error, never cut).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from mner.config import ConfigError

__all__ = ["CrossModalMatching", "MatchingLoss", "SimilarityMatching", "sample_negatives"]


def sample_negatives(batch_size: int, fraction: float, generator: torch.Generator | None = None,
                     device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick ``2k = round(fraction * N)`` items (rounded down to even, ``k < N/2``) and pair the
    first ``k`` with the last ``k``.

    Returns ``perm`` (N,), the item whose image each pair uses (``perm[i] == i`` for positives),
    and ``labels`` (N,) float, 1 for matched pairs and 0 for swapped ones.
    """
    k = int(math.floor(fraction * batch_size / 2 + 1e-9))
    k = min(k, (batch_size - 1) // 2)
    perm = torch.arange(batch_size, device=device)
    labels = torch.ones(batch_size, device=device)
    if k <= 0:
        return perm, labels
    chosen = torch.randperm(batch_size, generator=generator)[: 2 * k].to(device or "cpu")
    first, second = chosen[:k], chosen[k:]
    perm[first], perm[second] = second, first
    labels[chosen] = 0.0
    return perm, labels


class CrossModalMatching(nn.Module):
    """Match classifier ``y^_m = sigmoid(W_f . pool([T; C]))``; returns the logit per pair.

    Args:
        dim: width of ``T`` and ``C`` (the classifier reads ``2 * dim`` per word).
        pooling: ``"mean"`` | ``"max"`` over real words, or ``"flatten"`` (reference form).
        max_len: the fixed length of ``"flatten"``.
    """

    def __init__(self, dim: int, pooling: str = "mean", max_len: int = 128, dropout: float = 0.1):
        super().__init__()
        if pooling not in ("mean", "max", "flatten"):
            raise ConfigError(f"matching pooling {pooling!r}: choose mean, max or flatten")
        self.pooling = pooling
        self.max_len = max_len
        width = 2 * dim * (max_len if pooling == "flatten" else 1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(width, 1)

    def forward(self, text: torch.Tensor, interaction: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``text``, ``interaction`` (B, W, d), ``mask`` (B, W) bool -> logits (B,)."""
        feats = torch.cat([text, interaction], dim=-1) * mask[..., None]
        if self.pooling == "mean":
            pooled = feats.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        elif self.pooling == "max":
            pooled = feats.masked_fill(~mask[..., None], float("-inf")).amax(1)
            pooled = torch.where(torch.isfinite(pooled), pooled, torch.zeros_like(pooled))
        else:
            length = feats.shape[1]
            if length > self.max_len:
                raise ConfigError(
                    f"matching pooling 'flatten' holds {self.max_len} words but the batch has "
                    f"{length}; use pooling 'mean' (any length) or a larger matching_max_len"
                )
            pooled = F.pad(feats, (0, 0, 0, self.max_len - length)).flatten(1)
        return self.classifier(self.dropout(pooled)).squeeze(-1)


#: the similarity variant's match logit for a pair without visual content (sigmoid: 2e-9)
NO_VIEW_LOGIT = -20.0


class SimilarityMatching(nn.Module):
    """Match logit ``w * cos(P_t mean(t), P_v v) + b`` (the ``similarity`` variant; see the module
    docstring); returns the logit per pair.

    Args:
        text_dim: width of the text encoder's sub-token states.
        visual_dim: width of the visual view's global vector.
        dim: width of the compared space; None = ``text_dim``.
        scale: the starting ``w``.
    """

    def __init__(self, text_dim: int, visual_dim: int, dim: int | None = None, scale: float = 10.0):
        super().__init__()
        dim = dim or text_dim
        self.text = nn.Linear(text_dim, dim)
        self.visual = nn.Linear(visual_dim, dim)
        for proj, width in ((self.text, text_dim), (self.visual, visual_dim)):
            if width == dim:  # start from the encoders' own space
                nn.init.eye_(proj.weight)
                nn.init.zeros_(proj.bias)
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        self.bias = nn.Parameter(torch.tensor(0.0))

    def forward(self, tokens: torch.Tensor, token_mask: torch.Tensor, visual: torch.Tensor,
                present: torch.Tensor | None = None) -> torch.Tensor:
        """``tokens`` (B, S, h) sub-token states, ``token_mask`` (B, S), ``visual`` (B, g), ``present``
        (B,) bool: the pair has visual content -> logits (B,). A pair without any gets
        :data:`NO_VIEW_LOGIT` (a cosine with nothing is 0, and ``sigmoid(b)`` would leave the gate
        open on an empty stream)."""
        m = token_mask[..., None].to(tokens.dtype)
        text = (tokens * m).sum(1) / m.sum(1).clamp(min=1)
        cos = F.cosine_similarity(self.text(text), self.visual(visual.to(tokens.dtype)), dim=-1)
        logits = self.scale * cos + self.bias
        if present is not None:
            logits = logits.masked_fill(~present, NO_VIEW_LOGIT)
        return logits


class MatchingLoss(nn.Module):
    """``L_cm``: binary cross-entropy between the match logits and the pair labels."""

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, labels)
