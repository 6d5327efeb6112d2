"""Raw rows -> tweets ready for the model, on the CPU side: parse each row, tokenize its text,
open and decode its image, apply the image policy. Runs in worker processes (``--engine local``)
or Ray tasks (``--engine ray``), never imports torch.

A row that cannot be tagged is not tagged and not lost: it comes back with a ``reason`` (one of
:data:`REASONS`, or ``image-<kind>`` for an image problem, the kinds of
:class:`~mner.data.images.ImageError`) and a ``detail``, and the engines write it to
``errors.jsonl``. The image policy (``--image-policy``) decides what an unusable image does:

* ``error`` (default): the row is not tagged; it goes to ``errors.jsonl``;
* ``blank``: the row is tagged without its image; its ``image_problem`` column says why;
* ``drop``: the row is left out and counted (per reason) in the manifest and the final line.

An image reference that leaves the image folder (``image-outside``) is never read, whatever the
policy: the row goes to ``errors.jsonl``. A row that fails in a way nobody foresaw goes there too,
as ``internal-error`` with the exception's type and message, and the rows after it go on.

Images are decoded here and resized to the shorter side the model's evaluation transform resizes
to (:class:`~mner.encoders.transforms.EvalTransform` then resizes them to the same size, which
PIL does as a copy), so that less than a megapixel per tweet travels to the model, and the
tensors the model sees are the ones ``mner predict`` gives it.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from mner.batch.sources import Columns, Record
from mner.data.example import surrogate_problem
from mner.data.images import DEFAULT_MAX_PIXELS, MAX_ASPECT, ImageError, ImageStore, resize_shorter
from mner.data.tokenize import tokenize_text

__all__ = ["POLICIES", "REASONS", "PrepareSettings", "Prepared", "describe_exception", "prepare_rows", "presize",
           "row_lengths"]

POLICIES = ("error", "blank", "drop")
#: Why a row is not tagged, besides ``image-<kind>``.
REASONS = {
    "malformed": "the row cannot be read (not JSON, not an object, a field of the wrong type, a bad CSV record, "
                 "a string that is not Unicode text)",
    "no-text": "the row has neither a text nor tokens",
    "empty-text": "the text has no token (empty or only spaces)",
    "internal-error": "a failure nobody foresaw (a bug in mner or a library): its detail is the exception's type "
                      "and message; the other rows go on, and the run ends with exit code 1",
}


@dataclass(frozen=True)
class PrepareSettings:
    """What the CPU side needs to know (picklable, no model).

    ``pixels``: the model looks at images (otherwise they are not opened); ``resize``: the shorter
    side and interpolation of the model's evaluation transform (None: keep the decoded size);
    ``image_root``: the folder relative image paths are in (None: the input file's folder)."""

    columns: Columns = field(default_factory=Columns)
    policy: str = "error"
    image_root: str | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    pixels: bool = True
    resize: tuple[int, str] | None = None


@dataclass
class Prepared:
    """The outcome of one window of rows: ``rows`` to tag (in input order, with their input
    ``lines``), ``failed`` rows for ``errors.jsonl``, and the counts of ``dropped`` and ``blanked``
    rows per reason."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    lines: list[int | None] = field(default_factory=list)  # the input line of each of ``rows``
    dropped: Counter = field(default_factory=Counter)
    blanked: Counter = field(default_factory=Counter)
    read: int = 0


class _Bad(Exception):
    def __init__(self, reason: str, detail: str, row_id: str | None = None):
        super().__init__(detail)
        self.reason, self.detail, self.row_id = reason, detail, row_id


def presize(img: Image.Image, resize: tuple[int, str]) -> Image.Image:
    """Resize ``img`` as the first step of :class:`~mner.encoders.transforms.EvalTransform` does
    (:func:`~mner.data.images.resize_shorter`: shorter side to ``short``, the other side in
    proportion, at least ``short`` and at most ``MAX_ASPECT * short``, its centre)."""
    short, interpolation = resize
    w, h = img.size
    if min(w, h) == short and max(w, h) <= MAX_ASPECT * short:
        return img
    return resize_shorter(img, short, interpolation)


_STORES: dict[tuple[str, int], ImageStore] = {}


def _store(root: str, max_pixels: int) -> ImageStore:
    key = (root, max_pixels)
    if key not in _STORES:
        _STORES[key] = ImageStore(root, max_pixels=max_pixels, allow_absolute=True)
    return _STORES[key]


def _kind(value: Any) -> str:
    return {str: "a string", int: "a number", float: "a number", bool: "a boolean", list: "an array",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)


def _optional_str(value: Any, name: str) -> str | None:
    if value is None or (isinstance(value, float) and value != value):  # NaN: a missing CSV/pandas value
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)) or (name != "id" and not isinstance(value, str)):
        raise _Bad("malformed", f"field {name!r} must be a string{' or a number' if name == 'id' else ''} or null, "
                                f"got {_kind(value)}")
    value = str(value)
    _check_text(value, name)
    return value if value != "" else None


def _check_text(value: str, name: str) -> None:
    """A string with an unpaired surrogate (``"\\ud800"`` in JSON) is no text: the row is malformed."""
    problem = surrogate_problem(value)
    if problem:
        raise _Bad("malformed", f"field {name!r} holds {problem}, which is not Unicode text (a JSON \\ud800-style "
                                "escape without its pair); fix it in the input")


def _fields(rec: Record, fmt: str, columns: Columns) -> dict[str, Any]:
    """``{"id", "text", "tokens", "offsets", "image", "caption"}`` of one raw row, or :class:`_Bad`."""
    if rec.problem is not None:
        raise _Bad(*rec.problem)
    if fmt == "text":  # a benchmark Example: already tokenized
        ex = rec.raw
        return {"id": ex.id, "text": ex.text, "tokens": list(ex.tokens), "offsets": [list(o) for o in ex.offsets],
                "image": ex.image, "caption": ex.caption}
    obj = rec.raw
    if fmt == "jsonl":
        try:
            obj = json.loads(rec.raw)
        except json.JSONDecodeError as err:
            raise _Bad("malformed", f"not valid JSON: {err.msg} (column {err.colno})") from None
        if not isinstance(obj, dict):
            raise _Bad("malformed", f"expected a JSON object, got {_kind(obj)}")
    row_id = _optional_str(obj.get(columns.id), "id")
    try:
        return _text_fields(obj, fmt, columns, row_id)
    except _Bad as bad:
        bad.row_id = row_id
        raise


def _text_fields(obj: dict[str, Any], fmt: str, columns: Columns, row_id: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": row_id,
                           "image": _optional_str(obj.get(columns.image), columns.image),
                           "caption": _optional_str(obj.get(columns.caption), columns.caption)}
    text = obj.get(columns.text)
    if isinstance(text, float) and text != text:
        text = None
    if text is not None:
        if not isinstance(text, str):
            raise _Bad("malformed", f"field {columns.text!r} must be a string, got {_kind(text)}")
        _check_text(text, columns.text)
        tokens, offsets = tokenize_text(text)
        if not tokens:
            raise _Bad("empty-text", f"{columns.text!r} {text[:40]!r} has no token")
        out.update(text=text, tokens=tokens, offsets=[list(o) for o in offsets])
        return out
    tokens = obj.get(columns.tokens)
    if fmt == "csv" and isinstance(tokens, str):
        if tokens == "":
            tokens = None
        else:
            try:
                tokens = json.loads(tokens)
            except json.JSONDecodeError:
                raise _Bad("malformed", f"CSV field {columns.tokens!r} must hold a JSON array of strings, "
                                        f"e.g. [\"Paris\", \"in\", \"spring\"]") from None
    if tokens is None:
        raise _Bad("no-text", f"no {columns.text!r} and no {columns.tokens!r} in this row")
    if not isinstance(tokens, (list, tuple)) or not all(isinstance(t, str) for t in tokens):
        raise _Bad("malformed", f"field {columns.tokens!r} must be a list of strings, got {_kind(tokens)}")
    if not tokens:
        raise _Bad("empty-text", f"{columns.tokens!r} is an empty list")
    _check_text("".join(tokens), columns.tokens)
    out["tokens"] = list(tokens)
    return out


def _clean(value: Any) -> Any:
    """A string that can be written as UTF-8 (an unpaired surrogate becomes its ``\\ud800`` escape)."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(value, str) else value


def _failure(path: str, rec: Record, row_id: str | None, reason: str, detail: str) -> dict[str, Any]:
    return failure(path, rec.row, rec.line, row_id, reason, detail)


def failure(path: str, row: int, line: int | None, row_id: str | None, reason: str, detail: str) -> dict[str, Any]:
    """One line of ``errors.jsonl``."""
    return {"file": path, "row": row, "line": line, "id": _clean(row_id), "reason": reason, "detail": _clean(detail)}


def describe_exception(err: BaseException) -> str:
    """``"TypeError: message (at mner/batch/prepare.py:98, presize)"``: how an unforeseen failure is
    recorded in ``errors.jsonl`` (the exception and the line of code that raised it)."""
    import traceback

    frames = traceback.extract_tb(err.__traceback__)
    at = ""
    if frames:
        frame = frames[-1]
        parts = Path(frame.filename).parts
        short = "/".join(parts[parts.index("mner"):]) if "mner" in parts else "/".join(parts[-2:])
        at = f" (at {short}:{frame.lineno}, {frame.name})"
    return f"{type(err).__name__}: {err}"[:2000] + at


def prepare_rows(path: str, fmt: str, records: Sequence[Record], settings: PrepareSettings) -> Prepared:
    """Parse, tokenize and open the images of ``records`` (rows of file ``path``). A row that fails
    in a way nobody foresaw is recorded as ``internal-error`` with the exception, and the others go on."""
    out = Prepared(read=len(records))
    root = settings.image_root or os.path.dirname(path)
    for rec in records:
        try:
            _prepare_row(path, fmt, rec, settings, root, out)
        except Exception as err:  # noqa: BLE001 - one row's failure is that row's: recorded, the job goes on
            out.failed.append(_failure(path, rec, _id_of(rec, fmt, settings.columns), "internal-error",
                                       describe_exception(err)))
    return out


def row_lengths(fmt: str, records: Sequence[Record], columns: Columns, tokenizer: Any = None) -> list[int]:
    """The length of each row, the key of length-ordered windows (:class:`mner.batch.job.WindowPlan`):
    its sub-tokens under the model's tokenizer (``tokenizer``, a Hugging Face tokenizer; special
    tokens included: what the text encoder pads), or the characters of its words without one; 0
    for a row that cannot be tagged. Only the order of the rows depends on it, never what is written."""
    words: list[list[str] | None] = []
    for rec in records:
        try:
            words.append(list(_fields(rec, fmt, columns)["tokens"]) or None)
        except Exception:  # noqa: BLE001 - a row that cannot be tagged: prepare_rows says why
            words.append(None)
    lengths = [sum(len(w) + 1 for w in ws) if ws else 0 for ws in words]
    tok = tokenizer
    rows = [i for i, ws in enumerate(words) if ws]
    if tok is not None and rows:
        ids = tok([words[i] for i in rows], is_split_into_words=True, add_special_tokens=True)["input_ids"]
        for i, row_ids in zip(rows, ids):
            lengths[i] = len(row_ids)
    return lengths


def _id_of(rec: Record, fmt: str, columns: Columns) -> str | None:
    """The row's id when it can be read at all (for the record of a row that failed), else None."""
    try:
        if fmt == "text":
            return rec.raw.id
        obj = json.loads(rec.raw) if fmt == "jsonl" else rec.raw
        return _optional_str(obj.get(columns.id), "id")
    except Exception:  # noqa: BLE001 - no id then
        return None


def _prepare_row(path: str, fmt: str, rec: Record, settings: PrepareSettings, root: str, out: Prepared) -> None:
    """One row into ``out``: a row to tag, a failure, or a count of dropped or blanked rows."""
    try:
        f = _fields(rec, fmt, settings.columns)
    except _Bad as bad:
        out.failed.append(_failure(path, rec, bad.row_id, bad.reason, bad.detail))
        return
    row_id = f["id"]
    row = {"id": row_id, "file": path, "row": rec.row, "text": f.get("text"), "tokens": f["tokens"],
           "offsets": f.get("offsets"), "caption": f["caption"], "pixels": None, "image_problem": None}
    ref = f["image"]
    if settings.pixels and ref is not None:
        try:
            img = _store(root, settings.max_pixels).open(ref, row_id if row_id is not None else ref)
            if settings.resize is not None:
                img = presize(img, settings.resize)
            row["pixels"] = np.asarray(img, dtype=np.uint8)
        except ImageError as err:
            reason = f"image-{err.kind}"
            if err.kind == "outside" or settings.policy == "error":
                out.failed.append(_failure(path, rec, row_id, reason, str(err)))
                return
            if settings.policy == "drop":
                out.dropped[reason] += 1
                return
            out.blanked[reason] += 1
            row["image_problem"] = err.kind
    out.rows.append(row)
    out.lines.append(rec.line)
