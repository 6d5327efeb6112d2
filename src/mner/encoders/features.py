"""The outputs of the encoders: word features of a tweet and visual features of its image.

Both are small dataclasses of tensors with ``to(...)``; a visual view (image regions, or the
sub-tokens of a caption) always has the same three fields so that a fusion model does not need to
know which encoder produced it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

__all__ = ["VisualFeatures", "WordFeatures"]


@dataclass
class VisualFeatures:
    """A visual view of a batch: a set of region (or caption sub-token) vectors and a global one.

    Attributes:
        tokens: ``(B, R, D)`` region grid cells / patches / caption sub-token states.
        mask: ``(B, R)`` bool, True for a real region (False for padding).
        pooled: ``(B, D)`` one global vector per item.
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor

    def __post_init__(self) -> None:
        if self.tokens.dim() != 3 or self.mask.shape != self.tokens.shape[:2]:
            raise ValueError(f"VisualFeatures: tokens must be (B, R, D) and mask (B, R); "
                             f"got {tuple(self.tokens.shape)} and {tuple(self.mask.shape)}")
        if self.pooled.shape != (self.tokens.shape[0], self.tokens.shape[2]):
            raise ValueError(f"VisualFeatures: pooled must be (B, D) = "
                             f"{(self.tokens.shape[0], self.tokens.shape[2])}; got {tuple(self.pooled.shape)}")

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @property
    def dim(self) -> int:
        return self.tokens.shape[2]

    def to(self, *args, **kwargs) -> "VisualFeatures":
        """Like ``Tensor.to``; a dtype applies to ``tokens`` and ``pooled`` only (``mask`` stays bool)."""
        tokens = self.tokens.to(*args, **kwargs)
        return VisualFeatures(tokens, self.mask.to(tokens.device), self.pooled.to(*args, **kwargs))


@dataclass
class WordFeatures:
    """Text encoder output for a batch of tweets.

    Attributes:
        states: ``(B, W, H + casing_dim)`` one vector per word (pooled sub-token states, then the
            casing embedding); zero for padding words.
        mask: ``(B, W)`` bool, True for a real word.
        sentence: ``(B, H)`` the first special token's state ``t_0`` (MAF's text vector is its tanh).
        tokens: ``(B, S, H)`` every sub-token's state, special tokens included (zero for padding).
    """

    states: torch.Tensor
    mask: torch.Tensor
    sentence: torch.Tensor
    tokens: torch.Tensor

    def to(self, *args, **kwargs) -> "WordFeatures":
        """Like ``Tensor.to``; a dtype applies to the float fields only (masks stay bool)."""
        states = self.states.to(*args, **kwargs)
        moved = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            moved[f.name] = value.to(states.device) if value.dtype == torch.bool else value.to(*args, **kwargs)
        return WordFeatures(**moved)
