"""An entity's explanation: the cross-modal interaction's attention
``a = softmax([W_q T]^T [W_k V] / sqrt(d/m))`` (MAF section "Cross-Modal Interaction", averaged
over the ``m`` heads, last block) of the entity's words over the visual tokens, split by view:
image regions (pixels view) or caption sub-tokens (caption view).

The attention is a field of the model's output, asked for as transformers' ``output_attentions``
(:attr:`mner.models.base.TaggerOutput.attentions`, :meth:`mner.pipeline.Pipeline.run`): read from
the forward pass that tagged the tweet.
"""

from __future__ import annotations

import math
from typing import Any

from mner.explain.palette import attention_summary

__all__ = ["entity_explanation"]


def entity_explanation(prediction, entity: dict, present: dict[str, bool],
                       caption_tokens: list[str] | None) -> dict[str, Any] | None:
    """The attention of an entity's words (mean over its words) per visual view present:
    ``{"pixels": {"grid": [h, w], "weights": [...]}, "caption": {"tokens": [...], "weights": [...]}}``
    (weights of a view renormalised to sum to 1 over that view's tokens), each view with where it
    stands against uniform attention (:func:`mner.explain.palette.attention_summary`): ``uniform``
    (1 / its tokens), ``max_ratio`` (its largest weight over the uniform one) and ``near_uniform``.

    ``prediction``: a :class:`~mner.pipeline.Prediction` run with ``output_attentions``."""
    attn = prediction.attention
    if attn is None:
        return None
    words = attn[entity["token_start"]:entity["token_end"]].mean(0)                # (R,)
    out: dict[str, Any] = {}
    offset = 0
    for view, n in prediction.visual_layout:
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
