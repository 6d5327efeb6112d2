"""What a served prediction adds to the pipeline's entities, read from the model while it runs:
MAF's image-text match probability ``y^_m = sigmoid(matching logits)`` (MAF section
"Cross-Modal Matching") and, for an explanation, the cross-modal interaction's attention
``a = softmax([W_q T]^T [W_k V] / sqrt(d/m))`` (section "Cross-Modal Interaction", averaged over
the ``m`` heads, last block) of each word over the visual tokens: image regions (pixels view)
or caption sub-tokens (caption view).

Read by forward hooks installed for the duration of one pipeline call (:meth:`Inspector.capture`):
the model's code and numerics are untouched. The attention weights are recomputed from the
attention module's own inputs with ``need_weights=True`` (the model calls it without weights);
in eval mode (no dropout) these are the weights the model used.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch import nn

from mner.explain.palette import attention_summary

__all__ = ["Capture", "Inspector", "entity_explanation"]


@dataclass
class Capture:
    """What one pipeline call showed, one entry per model forward (a pipeline chunk).

    ``match``: (B,) match probabilities; ``attention``: (B, W, R) word-over-visual-token weights;
    ``views``: per forward, ``[(view, R_view), ...]`` in the order the visual tokens are laid out.
    """

    match: list[torch.Tensor] = field(default_factory=list)
    attention: list[torch.Tensor] = field(default_factory=list)
    views: list[list[tuple[str, int]]] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        """Per tagged (non-empty) input in order: ``{"match": float | None, "attention": (W, R) | None,
        "views": [(view, R_view), ...]}``."""
        out: list[dict[str, Any]] = []
        n_forward = max(len(self.match), len(self.attention), len(self.views))
        for k in range(n_forward):
            match = self.match[k] if k < len(self.match) else None
            attn = self.attention[k] if k < len(self.attention) else None
            views = self.views[k] if k < len(self.views) else []
            size = match.shape[0] if match is not None else attn.shape[0] if attn is not None else 0
            for i in range(size):
                out.append({"match": float(match[i]) if match is not None else None,
                            "attention": attn[i] if attn is not None else None, "views": views})
        return out


class Inspector:
    """Hooks on a MAF model's matching, interaction and visual projections (other models: none)."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.matching = getattr(model, "matching", None)
        interaction = getattr(model, "interaction", None)
        blocks = getattr(interaction, "blocks", None) if interaction is not None else None
        self.attention = blocks[-1].attention if blocks else None
        self.visual_proj = getattr(model, "visual_proj", None)
        self.views = tuple(getattr(model, "views", ()) or ())

    @property
    def has_match(self) -> bool:
        return self.matching is not None

    @property
    def has_attention(self) -> bool:
        return self.attention is not None

    @contextlib.contextmanager
    def capture(self, attention: bool = False) -> Iterator[Capture]:
        rec = Capture()
        handles = []
        pending_views: list[tuple[str, int]] = []
        if self.matching is not None:
            def on_match(_m, _args, out):
                rec.match.append(torch.sigmoid(out.detach().float()).cpu())
                rec.views.append(list(pending_views))
                pending_views.clear()
            handles.append(self.matching.register_forward_hook(on_match))
        if self.visual_proj is not None:
            for view in self.views:
                if view in self.visual_proj:
                    def on_proj(_m, _args, out, view=view):
                        pending_views.append((view, int(out.shape[1])))
                    handles.append(self.visual_proj[view].register_forward_hook(on_proj))
        if attention and self.attention is not None:
            busy = [False]

            def on_attention(module, args, kwargs, _out):
                if busy[0]:
                    return
                busy[0] = True
                try:
                    q, k, v = args[:3]
                    _, weights = module(q, k, v, key_padding_mask=kwargs.get("key_padding_mask"),
                                        need_weights=True, average_attn_weights=True)
                    rec.attention.append(weights.detach().float().cpu())      # (B, W, R)
                finally:
                    busy[0] = False
                if self.matching is None:
                    rec.views.append(list(pending_views))
                    pending_views.clear()
            handles.append(self.attention.register_forward_hook(on_attention, with_kwargs=True))
        try:
            yield rec
        finally:
            for h in handles:
                h.remove()


def entity_explanation(row: dict[str, Any], entity: dict, present: dict[str, bool],
                       caption_tokens: list[str] | None) -> dict[str, Any] | None:
    """The attention of an entity's words (mean over its words) per visual view present:
    ``{"pixels": {"grid": [h, w], "weights": [...]}, "caption": {"tokens": [...], "weights": [...]}}``
    (weights of a view renormalised to sum to 1 over that view's tokens), each view with where it
    stands against uniform attention (:func:`mner.explain.palette.attention_summary`): ``uniform``
    (1 / its tokens), ``max_ratio`` (its largest weight over the uniform one) and ``near_uniform``."""
    attn = row.get("attention")
    if attn is None:
        return None
    words = attn[entity["token_start"]:entity["token_end"]].mean(0)                # (R,)
    out: dict[str, Any] = {}
    offset = 0
    for view, n in row["views"]:
        part = words[offset:offset + n]
        offset += n
        if not present.get(view):
            continue
        if view == "caption" and caption_tokens is not None:
            part = part[:len(caption_tokens)]
        total = float(part.sum())
        weights = [round(float(x) / total, 5) if total > 0 else 0.0 for x in part]
        if view == "pixels":
            side = int(math.isqrt(len(weights)))
            grid = [side, side] if side * side == len(weights) else [1, len(weights)]
            out["pixels"] = {"grid": grid, "weights": weights, **attention_summary(weights)}
        else:
            out[view] = {"tokens": caption_tokens, "weights": weights, **attention_summary(weights)}
    return out or None
