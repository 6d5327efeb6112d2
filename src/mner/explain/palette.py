"""The colours of entity types: one palette, in one file, for the web page and the pictures.

``mner/serve/static/palette.json`` holds it; the web page (``app.js``, which fetches it from
``/static/palette.json``) and ``mner explain`` / ``mner report`` (:mod:`mner.report.explain`,
through this module) read the same file, so a type has the same colour everywhere. The usual
types have colours of their own; any other type (a new type of the few-shot tab, a dataset's
own) takes the ``more`` colours in turn, in the order the types first appear.

Attention is drawn on one scale, relative to uniform attention (:func:`attention_levels`,
:func:`attention_summary`): the page and the pictures of ``mner explain`` / ``mner report`` colour
a region (or a caption word) by how many times its uniform share it got, on a log scale from 1x
(clear) to ``ATTENTION_TOP`` x (full colour), and call attention *near uniform* when no region
gets ``NEAR_UNIFORM`` times its share.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable, Sequence

__all__ = ["ATTENTION", "ATTENTION_RAMP", "ATTENTION_TOP", "MORE", "NEAR_UNIFORM", "TYPE_COLOURS",
           "attention_levels", "attention_rgba", "attention_summary", "type_colours"]

# the file the web page serves (mner/serve/static/palette.json), read as a file: no import of the service
_PALETTE = json.loads((Path(__file__).resolve().parents[1] / "serve" / "static" / "palette.json").read_text(encoding="utf-8"))

#: the usual types' colours
TYPE_COLOURS: dict[str, str] = dict(_PALETTE["types"])
#: the colours other types take in turn
MORE: tuple[str, ...] = tuple(_PALETTE["more"])
#: the colour a caption's words are shaded with by their attention
ATTENTION: str = _PALETTE["attention"]
#: the attention scale's top, in multiples of the uniform share (full colour at and above it)
ATTENTION_TOP: float = float(_PALETTE["attention_scale"]["top"])
#: attention is near uniform when its largest share is under this many times the uniform one
NEAR_UNIFORM: float = float(_PALETTE["attention_scale"]["near_uniform"])
#: the colours of the attention scale: ``low`` (just above uniform) to ``high`` (the top), and the top's opacity
ATTENTION_RAMP: dict = dict(_PALETTE["attention_ramp"])


def type_colours(types: Iterable[str]) -> dict[str, str]:
    """Each type's colour: the palette's own for the usual types, the ``more`` colours in turn
    for the others, in the order given (as the web page assigns them)."""
    out: dict[str, str] = {}
    k = 0
    for t in types:
        if t in out:
            continue
        if t in TYPE_COLOURS:
            out[t] = TYPE_COLOURS[t]
        else:
            out[t] = MORE[k % len(MORE)]
            k += 1
    return out


def attention_levels(weights: Sequence[float]) -> list[float]:
    """Each weight's level on the shared scale: ``log2(w / uniform) / log2(ATTENTION_TOP)`` clipped
    to [0, 1], where ``uniform = 1 / len(weights)`` (the weights of a view sum to 1). A uniform map
    is all 0, whatever its own range; a region with ``ATTENTION_TOP`` times its share is 1."""
    n = len(weights)
    if n == 0:
        return []
    top = math.log2(ATTENTION_TOP)
    return [min(1.0, max(0.0, math.log2(float(w) * n) / top)) if w > 0 else 0.0 for w in weights]


def attention_rgba(level: float) -> tuple[float, float, float, float]:
    """The colour of a level (0..1) as RGBA fractions: ``low`` to ``high``, opacity ``max_alpha * level``."""
    lo, hi = (tuple(int(ATTENTION_RAMP[k][i:i + 2], 16) / 255 for i in (1, 3, 5)) for k in ("low", "high"))
    r, g, b = (a + (z - a) * level for a, z in zip(lo, hi))
    return r, g, b, float(ATTENTION_RAMP["max_alpha"]) * level


def attention_summary(weights: Sequence[float]) -> dict:
    """``{"uniform": 1/n, "max_ratio": max(w) / uniform, "near_uniform": max_ratio < NEAR_UNIFORM}``."""
    n = len(weights)
    if n == 0:
        return {"uniform": None, "max_ratio": None, "near_uniform": True}
    ratio = float(max(weights)) * n
    return {"uniform": round(1.0 / n, 6), "max_ratio": round(ratio, 3), "near_uniform": bool(ratio < NEAR_UNIFORM)}
