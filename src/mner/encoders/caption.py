"""The caption view: an image caption encoded by a text model as a sequence of "visual tokens".

A caption ("two people holding hands at a wedding") is the image's content as text. Encoding it
with a (frozen, by default) text model gives the same :class:`~mner.encoders.features.VisualFeatures`
an image encoder gives (``tokens`` = sub-token states, ``mask`` = attention mask, ``pooled`` = first
token or mean), so a fusion model can use image content where the pixels are missing.

An empty caption (they exist in the data) is just the special tokens: a valid, non-empty mask.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

import torch
from torch import nn

from mner.encoders.features import VisualFeatures
from mner.encoders.fingerprint import WeightsDigest
from mner.encoders.frozen import FrozenBackboneMixin
from mner.encoders.offline import resolve_text_model
from mner.encoders.text import model_max_length

__all__ = ["CaptionEncoderConfig", "CaptionEncoder", "caption_key", "tokenize_captions"]

logger = logging.getLogger(__name__)


def caption_key(caption: str | None) -> str:
    """A cache key for a caption's text (SHA-256 of its UTF-8 bytes, 32 hex characters)."""
    return "caption-sha256:" + hashlib.sha256((caption or "").encode("utf-8")).hexdigest()[:32]


def tokenize_captions(tokenizer, captions: Sequence[str | None], max_length: int) -> dict[str, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` (B, S) of captions (None: an empty caption), padded to the
    longest; captions over ``max_length`` sub-tokens are truncated with a warning. Shared by
    :class:`CaptionEncoder` and the exported caption encoders of :mod:`mner.backends`."""
    texts = [c or "" for c in captions]
    if not texts:
        raise ValueError("CaptionEncoder: empty batch")
    encoded = tokenizer(texts, add_special_tokens=True, verbose=False, return_token_type_ids=False)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    too_long = sum(n > max_length for n in lengths)
    if too_long:  # rare: tokenize again, with truncation
        logger.warning("%d of %d captions exceed %d sub-tokens and are truncated (longest: %d)",
                       too_long, len(texts), max_length, max(lengths))
        encoded = tokenizer(texts, add_special_tokens=True, padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt", return_token_type_ids=False)
    else:
        encoded = tokenizer.pad(encoded, padding=True, return_tensors="pt")
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


@dataclass
class CaptionEncoderConfig:
    """How to build a :class:`CaptionEncoder`.

    Attributes:
        name: text model: ``"minilm"`` (offline default), ``"mpnet"``, a hub name or a folder.
        pooling: ``pooled`` is the ``"first"`` token's state or the ``"mean"`` over the caption's
            sub-tokens (special tokens included, as sentence-transformers pools).
        max_length: most sub-tokens per caption; ``None`` = the model's limit. Longer captions are
            truncated with a warning (captions are about ten words).
        trainable: fine-tune the text model; False (default) freezes it and makes it cacheable.
    """

    name: str = "minilm"
    pooling: Literal["first", "mean"] = "mean"
    max_length: int | None = None
    trainable: bool = False

    def __post_init__(self) -> None:
        if self.pooling not in ("first", "mean"):
            raise ValueError(f"CaptionEncoderConfig.pooling must be 'first' or 'mean', not {self.pooling!r}")
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"CaptionEncoderConfig.max_length must be >= 2, not {self.max_length}")


class CaptionEncoder(FrozenBackboneMixin, nn.Module):
    """Captions -> :class:`VisualFeatures` (see the module docstring).

    Args:
        config: what to build.
        model, tokenizer: an already loaded text model and its tokenizer, instead of ``config.name``.
    """

    def __init__(self, config: CaptionEncoderConfig | None = None, *, model: nn.Module | None = None,
                 tokenizer=None) -> None:
        super().__init__()
        self.config = config = config or CaptionEncoderConfig()
        if (model is None) != (tokenizer is None):
            raise ValueError("CaptionEncoder: pass both model and tokenizer, or neither (to load config.name)")
        if model is None:
            from transformers import AutoModel, AutoTokenizer

            resolved = resolve_text_model(config.name)
            tokenizer = AutoTokenizer.from_pretrained(resolved)
            model = AutoModel.from_pretrained(resolved)
        self.tokenizer = tokenizer
        self.model = model
        self.output_dim: int = int(model.config.hidden_size)
        self.max_length = config.max_length or model_max_length(model.config, tokenizer)
        self._digest = WeightsDigest()
        self.freeze_backbone()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def fingerprint(self) -> str:
        """Model name + pooling + length limit + a hash of the weights."""
        return (f"caption:{self.config.name}:pooling={self.config.pooling}:max_length={self.max_length}"
                f":sha256={self._digest(self.model)}")

    def tokenize(self, captions: Sequence[str | None]) -> dict[str, torch.Tensor]:
        """``input_ids`` and ``attention_mask`` (B, S), padded to the longest caption."""
        return tokenize_captions(self.tokenizer, captions, self.max_length)

    def forward(self, captions: Sequence[str | None] | Mapping[str, torch.Tensor]) -> VisualFeatures:
        """Encode a batch of captions (strings, or the output of :meth:`tokenize`)."""
        if isinstance(captions, Mapping):
            inputs = dict(captions)
        else:
            if isinstance(captions, str):
                raise TypeError("CaptionEncoder takes a batch (a list) of captions, not one string")
            inputs = self.tokenize(captions)
        input_ids = inputs["input_ids"].to(self.device)
        attention_mask = inputs["attention_mask"].to(self.device)
        with torch.set_grad_enabled(self.config.trainable and torch.is_grad_enabled()):
            states = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.bool()
        states = states * mask[..., None].to(states.dtype)
        if self.config.pooling == "first":
            pooled = states[:, 0]
        else:
            pooled = states.sum(1) / mask.sum(1, keepdim=True).clamp(min=1).to(states.dtype)
        return VisualFeatures(tokens=states, mask=mask, pooled=pooled)

    def encode(self, captions: Sequence[str | None]) -> VisualFeatures:
        return self(captions)
