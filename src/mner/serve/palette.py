"""The colours of entity types: one palette, in one file, for the web page and the pictures.

``mner/serve/static/palette.json`` holds it; the web page (``app.js``, which fetches it from
``/static/palette.json``) and ``mner explain`` / ``mner report`` (:mod:`mner.report.explain`,
through this module) read the same file, so a type has the same colour everywhere. The usual
types have colours of their own; any other type (a new type of the few-shot tab, a dataset's
own) takes the ``more`` colours in turn, in the order the types first appear.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Iterable

__all__ = ["ATTENTION", "MORE", "TYPE_COLOURS", "type_colours"]

_PALETTE = json.loads((resources.files("mner.serve") / "static" / "palette.json").read_text(encoding="utf-8"))

#: the usual types' colours
TYPE_COLOURS: dict[str, str] = dict(_PALETTE["types"])
#: the colours other types take in turn
MORE: tuple[str, ...] = tuple(_PALETTE["more"])
#: the colour a caption's words are shaded with by their attention
ATTENTION: str = _PALETTE["attention"]


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
