"""The one per-batch function both engines run (and the one to wrap elsewhere, e.g. in Spark's
``predict_batch_udf``): ``tag_batch(pipeline, rows) -> rows``, and the columns of its output.

A row in is a dict with ``"text"`` (a string) or ``"tokens"`` (a list of words; with ``"text"``
and ``"offsets"`` too when the tokens come from that text), optionally ``"pixels"`` (a decoded
RGB image as a ``(H, W, 3)`` uint8 array, see :mod:`mner.batch.prepare`) or ``"image"`` (a path or
a PIL image, opened here when there are no pixels), and ``"caption"``. Every other key (``id``,
``file``, ``row``, ``image_problem`` ...) is copied to the row out, which adds:

* ``entities``: ``[{"text", "type", "start", "end", "confidence"}]``, character offsets into the
  text (``end`` exclusive), as :class:`~mner.pipeline.Pipeline` gives them;
* ``match_probability``: the image-text match probability of a MAF model (rounded to 4 digits),
  None for a model without one (every few-shot model) or a tweet with no image (nor caption) to match.

The rows go through the model as one batch when ``pipeline.batch_size`` is at least their
number (the engines see to it), so that the same rows give the same numbers whichever engine
runs them.
"""

from __future__ import annotations

from typing import Any, Sequence

from mner.data.example import Example

__all__ = ["ENTITY_FIELDS", "OUTPUT_COLUMNS", "tag_batch", "output_schema"]

#: What each entity of the output holds.
ENTITY_FIELDS = ("text", "type", "start", "end", "confidence")
#: The columns of ``mner tag``'s output, in order.
OUTPUT_COLUMNS = ("id", "file", "row", "entities", "match_probability", "image_problem")
_INPUT_KEYS = {"text", "tokens", "offsets", "pixels", "image", "caption"}


def _example(i: int, row: dict[str, Any]) -> Example:
    text, tokens, offsets = row.get("text"), row.get("tokens"), row.get("offsets")
    ex_id = str(row.get("id") if row.get("id") is not None else i)
    if tokens is not None and (text is None or offsets is not None):
        kwargs = {"text": text, "offsets": tuple(tuple(o) for o in offsets)} if text is not None else {}
        return Example(ex_id, tuple(tokens), caption=row.get("caption"), **kwargs)
    if text is None:
        raise ValueError(f"row {i}: no 'text' and no 'tokens'")
    from mner.data.tokenize import tokenize_text

    tokens, offsets = tokenize_text(text)
    return Example(ex_id, tokens, caption=row.get("caption"), text=text, offsets=tuple(offsets))


def tag_batch(pipeline, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tag ``rows`` with ``pipeline`` (a :class:`~mner.pipeline.Pipeline`); see the module docstring."""
    from PIL import Image

    if not rows:
        return []
    examples = [_example(i, r) for i, r in enumerate(rows)]
    images = None
    if "pixels" in pipeline.views:
        images = []
        for r in rows:
            pixels = r.get("pixels")
            images.append(Image.fromarray(pixels, "RGB") if pixels is not None else r.get("image"))
    out: list[dict[str, Any]] = []
    for row, pred in zip(rows, pipeline.run(examples, images)):
        kept = {key: value for key, value in row.items() if key not in _INPUT_KEYS}
        kept["entities"] = [{f: e[f] for f in ENTITY_FIELDS} for e in pred.entities]
        match = pred.match_probability  # None: no such module, or nothing to match (no visual view)
        kept["match_probability"] = None if match is None else round(float(match), 4)
        out.append(kept)
    return out


def output_schema():
    """The Arrow schema of the Parquet output."""
    import pyarrow as pa

    entity = pa.struct([("text", pa.string()), ("type", pa.string()), ("start", pa.int32()),
                        ("end", pa.int32()), ("confidence", pa.float64())])
    return pa.schema([("id", pa.string()), ("file", pa.string()), ("row", pa.int64()),
                      ("entities", pa.list_(entity)), ("match_probability", pa.float64()),
                      ("image_problem", pa.string())])
