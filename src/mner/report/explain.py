"""``mner explain``: one tweet's entities and, for each, what it looked at, as one PNG.

The same explanation as the web page (:mod:`mner.explain.attention`): the cross-modal interaction's
attention ``a = softmax([W_q T]^T [W_k V] / sqrt(d/m))`` (MAF, "Cross-Modal Interaction";
heads averaged, last block) of the entity's words over the image regions, drawn as a heatmap
over the image (pixels view), or over the caption's sub-tokens, drawn as bars (caption view).

Every map is drawn on one scale, relative to uniform attention (:mod:`mner.explain.palette`, shared
with the web page): a region is coloured by how many times its uniform share it got, from 1x (clear)
to 8x or more (full colour), so a near-uniform map stays near clear instead of being stretched to
its own range; a colour bar shows the scale, and an entity whose attention is near uniform says so.
With ``gold`` (``mner report``'s worst tweets), the gold entities are drawn above the predicted
ones and each panel names the gold type of its span.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# One palette for the web page and these pictures: mner/serve/static/palette.json.
from mner.explain.palette import (ATTENTION_TOP, NEAR_UNIFORM, TYPE_COLOURS, attention_levels, attention_rgba,
                                type_colours)

__all__ = ["TYPE_COLOURS", "attention_overlay", "explain_figure", "figure_of"]

#: what the pictures' colour bar and caption say (the web page says the same)
SCALE_NOTE = ("colour: how many times its uniform share of the entity's attention a region got "
              "(clear: its share or less); cross-modal interaction, last block, heads averaged")


def explain_figure(text: str, result: dict[str, Any], image: Image.Image | None, out: str | Path,
                   max_entities: int = 6, gold: list[dict] | None = None, attention: bool = True) -> Path:
    """Draw ``result`` (a :class:`~mner.explain.predictor.Predictor` answer with explanations) of
    ``text`` (and its ``image``) into the PNG ``out``; one panel per entity (at most
    ``max_entities``); with ``gold`` (entity dicts with ``start``, ``end``, ``type``), the gold
    entities beside the predicted ones; ``attention`` False: a model without cross-modal attention
    (a few-shot one), whose panels say so. Returns the path written."""
    import matplotlib.pyplot as plt

    fig = figure_of(text, result, image, max_entities, gold, attention)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    plt.close(fig)
    return out


def figure_of(text: str, result: dict[str, Any], image: Image.Image | None, max_entities: int = 6,
              gold: list[dict] | None = None, attention: bool = True):
    """The matplotlib figure :func:`explain_figure` saves (the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ents = result["entities"][:max_entities]
    n = max(1, len(ents))
    cols = min(3, n)
    panel_rows = (n + cols - 1) // cols
    drawn = any(_shown_view(e, image) for e in ents)
    head_h = 0.75 if gold is not None else 0.45
    ratios = [head_h] + [1.0] * panel_rows + ([0.1] if drawn else [])
    fig = plt.figure(figsize=(4.2 * cols, 1.4 + 3.6 * panel_rows + (0.6 if drawn else 0) + (0.4 if gold is not None else 0)),
                     dpi=100)
    grid = fig.add_gridspec(len(ratios), cols, height_ratios=ratios)
    head = fig.add_subplot(grid[0, :])
    head.axis("off")
    if gold is not None:
        _draw_tweet(head, text, gold, y=0.72, label="gold:")
        _draw_tweet(head, text, result["entities"], y=0.22, label="predicted:")
    else:
        _draw_tweet(head, text, result["entities"])
    match = result.get("match_probability")
    head.set_title("no image: the text alone" if image is None else
                   ("the image fits the text: %.2f" % match if match is not None else ""), loc="left", fontsize=10)
    if not ents:
        head.text(0.0, 0.05, "no entity found", transform=head.transAxes, fontsize=10, color="#5f6368")
    gold_at = {(g["start"], g["end"]): g["type"] for g in gold or []}
    for k, e in enumerate(ents):
        ax = fig.add_subplot(grid[1 + k // cols, k % cols])
        title = f"{e['text']} ({e['type']}, {e['confidence']:.2f})"
        if gold is not None:
            title += f"\ngold: {gold_at.get((e['start'], e['end']), 'not an entity')}"
        ax.set_title(title, fontsize=10)
        ex = e.get("explanation") or {}
        if "pixels" in ex and image is not None:
            _draw_heatmap(ax, image, ex["pixels"])
        elif "caption" in ex:
            _draw_caption(ax, ex["caption"])
        else:
            ax.axis("off")
            why = ("nothing to look at\n(no image or caption)" if attention else
                   "this model has no cross-modal attention\n(a few-shot model: its entities alone)")
            ax.text(0.5, 0.5, why, ha="center", va="center", fontsize=9)
    if drawn:
        _draw_scale(fig.add_subplot(grid[-1, :]))
    fig.tight_layout()
    return fig


def _shown_view(e: dict, image) -> bool:
    ex = e.get("explanation") or {}
    return ("pixels" in ex and image is not None) or "caption" in ex


def attention_overlay(px: dict) -> np.ndarray:
    """The (h, w, 4) RGBA overlay of a pixels explanation on the shared scale (relative to uniform)."""
    h, w = px["grid"]
    return np.asarray([attention_rgba(v) for v in attention_levels(px["weights"])], dtype=float).reshape(h, w, 4)


def _uniform_note(view: dict, unit: str) -> str:
    ratio = view.get("max_ratio")
    if ratio is None:
        ratio = max(view["weights"]) * len(view["weights"]) if view["weights"] else 0.0
    if ratio < NEAR_UNIFORM:
        return f"near uniform: no {unit} got {NEAR_UNIFORM:g}x its share (at most {ratio:.1f}x)"
    return f"the most-attended {unit}: {ratio:.1f}x its uniform share"


def _draw_tweet(ax, text: str, entities: list[dict], y: float = 0.55, label: str | None = None) -> None:
    """The tweet on one line (wrapped by width), each entity in its type's colour, after ``label``."""
    colours = type_colours(e["type"] for e in entities)
    pieces, at = [], 0
    for e in entities:
        pieces.append((text[at:e["start"]], None))
        pieces.append((text[e["start"]:e["end"]] + f" [{e['type']}]", e["type"]))
        at = e["end"]
    pieces.append((text[at:], None))
    x = 0.0
    renderer = ax.figure.canvas.get_renderer()
    if label:
        t = ax.text(x, y, label + " ", transform=ax.transAxes, fontsize=10, va="center", color="#5f6368",
                    fontweight="bold")
        x += t.get_window_extent(renderer).transformed(ax.transAxes.inverted()).width
    for chunk, etype in pieces:
        if not chunk:
            continue
        box = dict(boxstyle="round,pad=0.2", fc=colours[etype], ec="none") if etype else None
        t = ax.text(x, y, chunk, transform=ax.transAxes, fontsize=11, va="center", bbox=box)
        width = t.get_window_extent(renderer).transformed(ax.transAxes.inverted()).width
        if x + width > 1.0 and x > 0:  # wrap
            t.remove()
            x, y = 0.0, y - 0.35
            t = ax.text(x, y, chunk.lstrip(), transform=ax.transAxes, fontsize=11, va="center", bbox=box)
            width = t.get_window_extent(renderer).transformed(ax.transAxes.inverted()).width
        x += width + (0.008 if etype else 0.0)


def _draw_heatmap(ax, image: Image.Image, px: dict) -> None:
    ax.imshow(image)
    ax.imshow(attention_overlay(px), extent=(0, image.width, image.height, 0), interpolation="bilinear")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(_uniform_note(px, "region"), fontsize=8, color="#5f6368")


def _draw_caption(ax, cap: dict) -> None:
    tokens = cap.get("tokens") or [f"#{i}" for i in range(len(cap["weights"]))]
    n = len(cap["weights"])
    ratios = [w * n for w in cap["weights"]]
    ys = np.arange(len(tokens))
    ax.barh(ys, ratios, color=[attention_rgba(max(v, 0.25)) for v in attention_levels(cap["weights"])],
            edgecolor="#5f6368", linewidth=0.5)
    ax.axvline(1.0, color="#1d1d1f", lw=1, ls="--")
    ax.set_yticks(ys, tokens, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("times its uniform share (dashed: uniform)\n" + _uniform_note(cap, "word"), fontsize=8)


def _draw_scale(ax) -> None:
    """The colour bar of the shared scale: 1x (uniform) to ATTENTION_TOP x."""
    import math

    levels = np.linspace(0.0, 1.0, 256)
    bar = np.asarray([attention_rgba(v) for v in levels])[None, :, :]
    ax.imshow(bar, aspect="auto", extent=(0, 1, 0, 1))
    top = math.log2(ATTENTION_TOP)
    ticks = [2 ** k for k in range(int(top) + 1)]
    ax.set_xticks([math.log2(t) / top for t in ticks],
                  [("1x (uniform)" if t == 1 else f"{t:g}x" + ("+" if t == ATTENTION_TOP else "")) for t in ticks],
                  fontsize=8)
    ax.set_yticks([])
    ax.set_xlabel(SCALE_NOTE, fontsize=8)
