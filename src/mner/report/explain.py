"""``mner explain``: one tweet's entities and, for each, what it looked at, as one PNG.

The same explanation as the web page (:mod:`mner.serve.explain`): the cross-modal interaction's
attention ``a = softmax([W_q T]^T [W_k V] / sqrt(d/m))`` (MAF, "Cross-Modal Interaction";
heads averaged, last block) of the entity's words over the image regions, drawn as a heatmap
over the image (pixels view), or over the caption's sub-tokens, drawn as bars (caption view).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# One palette for the web page and these pictures: mner/serve/static/palette.json.
from mner.serve.palette import ATTENTION, TYPE_COLOURS, type_colours

__all__ = ["TYPE_COLOURS", "explain_figure"]


def explain_figure(text: str, result: dict[str, Any], image: Image.Image | None, out: str | Path,
                   max_entities: int = 6) -> Path:
    """Draw ``result`` (a :class:`~mner.serve.predictor.Predictor` answer with explanations) of
    ``text`` (and its ``image``) into the PNG ``out``; one panel per entity (at most
    ``max_entities``). Returns the path written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ents = result["entities"][:max_entities]
    n = max(1, len(ents))
    cols = min(3, n)
    rows = 1 + (n + cols - 1) // cols
    fig = plt.figure(figsize=(4.2 * cols, 1.4 + 3.6 * (rows - 1)), dpi=100)
    grid = fig.add_gridspec(rows, cols, height_ratios=[0.45] + [1.0] * (rows - 1))
    head = fig.add_subplot(grid[0, :])
    head.axis("off")
    _draw_tweet(head, text, result["entities"])
    match = result.get("match_probability")
    head.set_title("no image: the text alone" if image is None else
                   ("the image fits the text: %.2f" % match if match is not None else ""), loc="left", fontsize=10)
    if not ents:
        head.text(0.0, 0.05, "no entity found", transform=head.transAxes, fontsize=10, color="#5f6368")
    for k, e in enumerate(ents):
        ax = fig.add_subplot(grid[1 + k // cols, k % cols])
        ax.set_title(f"{e['text']} ({e['type']}, {e['confidence']:.2f})", fontsize=10)
        ex = e.get("explanation") or {}
        if "pixels" in ex and image is not None:
            _draw_heatmap(ax, image, ex["pixels"])
        elif "caption" in ex:
            _draw_caption(ax, ex["caption"])
        else:
            ax.axis("off")
            ax.text(0.5, 0.5, "nothing to look at\n(no image or caption)", ha="center", va="center", fontsize=9)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    plt.close(fig)
    return out


def _draw_tweet(ax, text: str, entities: list[dict]) -> None:
    """The tweet on one line (wrapped by width), each entity in its type's colour."""
    colours = type_colours(e["type"] for e in entities)
    pieces, at = [], 0
    for e in entities:
        pieces.append((text[at:e["start"]], None))
        pieces.append((text[e["start"]:e["end"]] + f" [{e['type']}]", e["type"]))
        at = e["end"]
    pieces.append((text[at:], None))
    x, y = 0.0, 0.55
    renderer = ax.figure.canvas.get_renderer()
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
    h, w = px["grid"]
    weights = np.asarray(px["weights"], dtype=float).reshape(h, w)
    span = weights.max() - weights.min()
    norm = (weights - weights.min()) / span if span > 0 else np.zeros_like(weights)
    ax.imshow(image)
    ax.imshow(norm, cmap="inferno", alpha=0.55, extent=(0, image.width, image.height, 0),
              interpolation="bilinear")
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_caption(ax, cap: dict) -> None:
    tokens = cap.get("tokens") or [f"#{i}" for i in range(len(cap["weights"]))]
    ys = np.arange(len(tokens))
    ax.barh(ys, cap["weights"], color=ATTENTION)
    ax.set_yticks(ys, tokens, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("attention", fontsize=8)
