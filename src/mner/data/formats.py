"""Readers and writers: file -> :class:`~mner.data.example.Example` and back.

Three formats, one function pair each, and :func:`read_file` / :func:`write_file` that pick
the format from the file:

``twitter``
    The Twitter-2015/2017 benchmark format (Zhang et al. 2018; the UMT release): a line
    ``IMGID:<id>``, then one ``token<TAB>tag`` line per token, a blank line between tweets.
    The image of tweet ``<id>`` is ``<id>.jpg``. Quirks handled here: the 2015 files do not end
    with a blank line (the last tweet is still read); tokens may be a non-breaking space or
    other invisible characters (lines are split on TAB only, and files on ``\\n`` only, never on
    Unicode line separators); extra TAB columns are allowed (``tag_column`` picks the tag,
    default the last one, so ``token<TAB>gold<TAB>pred`` files read as predictions), but every
    token line of a file must have as many columns as its first one: a line with another count
    is an error at its line (never read silently with a stray column as its tag).
``conll``
    Column files: one token per line, columns separated by a TAB (or, when a line has no TAB,
    by runs of spaces), the tag in ``tag_column`` (default: last), a blank line between
    sentences, ``-DOCSTART-`` lines skipped; every token line has the same number of columns. Optional comment lines before a sentence carry
    its metadata: ``# id = ...``, ``# image = ...``, ``# caption = ...``. Without ``# id``,
    sentences are numbered ``1, 2, ...`` in file order.
``jsonl``
    One JSON object per line: ``{"id", "tokens", "tags"?, "image"?, "caption"?}`` (plus
    ``"text"`` and ``"offsets"`` when the tokens come from a raw text). Every field is
    type-checked (:data:`_JSONL_FIELDS`); a wrong type is an error at its line.

Entity types are kept as written unless ``type_map`` says otherwise. Twitter-2015 writes
``OTHER`` where Twitter-2017 writes ``MISC``; ``type_map={"OTHER": "MISC"}`` (or the preset
``"other-to-misc"``, or the pair ``"OTHER=MISC"``) renames them at reading time. Nothing is renamed by default.

Errors: a malformed file raises :class:`DataFormatError` naming the file and line and what
to do. Validation (:mod:`mner.data.validate`) passes an ``errors`` list instead, so that
every problem of a file is reported at once; the offending lines are then skipped and counted
in that list, never silently. It also passes a ``token_lines`` list, to which the readers
append, for each example they return, the 1-based line of each of its tokens (so that lines
after a skipped one are still named right).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from mner.data.example import Example, TextError
from mner.errors import MNERError
from mner.fileio import require_regular_file, write_output

__all__ = [
    "DataFormatError",
    "FORMATS",
    "TYPE_MAP_PRESETS",
    "resolve_type_map",
    "detect_format",
    "read_file",
    "write_file",
    "read_twitter",
    "write_twitter",
    "read_conll",
    "write_conll",
    "read_jsonl",
    "write_jsonl",
]

FORMATS = ("twitter", "conll", "jsonl")

#: Named type maps accepted wherever a ``type_map`` is.
TYPE_MAP_PRESETS: dict[str, dict[str, str]] = {
    "none": {},
    "other-to-misc": {"OTHER": "MISC"},
    "misc-to-other": {"MISC": "OTHER"},
}
# also accepted in config files (on a command line, ``>`` would redirect the output)
_PRESET_ALIASES = {"other->misc": "other-to-misc", "misc->other": "misc-to-other"}

_CONLL_META_KEYS = ("id", "image", "caption")
#: File name endings that mean JSONL, for reading (``detect_format``) and writing alike.
_JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")


class DataFormatError(MNERError, ValueError):
    """A file that does not follow its format. ``file``/``line`` say where (1-based)."""

    def __init__(self, file: str | Path, line: int | None, message: str, hint: str = ""):
        self.file = str(file)
        self.line = line
        self.message = message
        self.hint = hint
        where = f"{self.file}:{line}" if line is not None else self.file
        super().__init__(f"{where}: {message}" + (f" ({hint})" if hint else ""))


def resolve_type_map(type_map: str | Mapping[str, str] | None) -> dict[str, str]:
    """A dict from a preset name, a ``"A=B,C=D"`` string, a mapping, or None."""
    if type_map is None:
        return {}
    if isinstance(type_map, str):
        key = type_map.strip().lower()
        key = _PRESET_ALIASES.get(key, key)
        if key in TYPE_MAP_PRESETS:
            return dict(TYPE_MAP_PRESETS[key])
        out = {}
        for part in type_map.split(","):
            if "=" not in part:
                raise MNERError(
                    f"type map {type_map!r}: expected a preset ({', '.join(TYPE_MAP_PRESETS)}) "
                    "or pairs like OTHER=MISC,PERSON=PER"
                )
            src, dst = (p.strip() for p in part.split("=", 1))
            out[src] = dst
        return out
    return dict(type_map)


def _map_tag(tag: str, type_map: Mapping[str, str]) -> str:
    if not type_map or "-" not in tag:
        return tag
    prefix, typ = tag.split("-", 1)
    return f"{prefix}-{type_map.get(typ, typ)}"


def _read_lines(path: Path) -> list[str]:
    """The file's lines, split on ``\\n`` only (tokens may hold U+2028, U+0085...). A device, a
    FIFO or a folder is refused before reading (:func:`mner.fileio.require_regular_file`)."""
    require_regular_file(path, "data file")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataFormatError(
            path, line, f"not valid UTF-8 (byte {data[err.start]:#04x} at offset {err.start})",
            "re-encode the file as UTF-8",
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def _leaves_folder(ref: str) -> bool:
    """Whether an image reference would resolve outside the folder it is relative to."""
    ref = ref.replace("\\", "/")
    return ref.startswith("/") or os.path.isabs(ref) or os.path.normpath(ref).split("/")[0] == ".."


def _fail(errors: list | None, path: Path, line: int, message: str, hint: str = "") -> None:
    err = DataFormatError(path, line, message, hint)
    if errors is None:
        raise err
    errors.append(err)


def _token_and_tag(cols: list[str], line: str, path: Path, n: int, tag_column: int,
                   tmap: Mapping[str, str], errors: list | None) -> tuple[str, str] | None:
    """The token (first column) and the tag (``tag_column``) of a column line, or None after
    reporting why the line has none."""
    if len(cols) < 2:
        _fail(errors, path, n, f"expected token<TAB>tag, got {line!r}", "separate the columns with a TAB")
        return None
    try:
        tag = cols[tag_column]
    except IndexError:
        _fail(errors, path, n, f"no column {tag_column} in {line!r}")
        return None
    if (tag_column if tag_column >= 0 else len(cols) + tag_column) == 0:
        msg = f"tag column {tag_column} of {line!r} is its token column"
        if tag_column < 0:
            msg += f" (the line has {len(cols)} columns): this file has no gold+pred columns"
        _fail(errors, path, n, msg, "a gold+pred file has token<TAB>gold<TAB>pred lines; "
              "otherwise give the gold and the predictions as two files")
        return None
    return cols[0], _map_tag(tag.strip(), tmap)


class _Columns:
    """The column count of a file's token lines, fixed by its first one: a line with another
    count is an error at its line (a stray third column is never read silently as the tag)."""

    def __init__(self) -> None:
        self.count: int | None = None
        self.line = 0

    def check(self, cols: list[str], path: Path, n: int, errors: list | None) -> bool:
        if len(cols) < 2:  # reported by _token_and_tag
            return True
        if self.count is None:
            self.count, self.line = len(cols), n
            return True
        if len(cols) == self.count:
            return True
        _fail(errors, path, n,
              f"{len(cols)} TAB-separated columns, but the file's token lines have {self.count} "
              f"(as line {self.line})",
              "give every token line the same columns: token<TAB>tag, or token<TAB>gold<TAB>pred "
              "in every line; a TAB inside a token is not allowed")
        return False


# ----------------------------------------------------------------------------- twitter


def read_twitter(
    path: str | Path,
    type_map: str | Mapping[str, str] | None = None,
    tag_column: int = -1,
    errors: list | None = None,
    token_lines: list | None = None,
) -> list[Example]:
    """Read a Twitter-2015/2017 file. ``Example.source`` is ``file:<line after IMGID>``."""
    path = Path(path)
    tmap = resolve_type_map(type_map)
    lines = _read_lines(path)
    examples: list[Example] = []
    cur_id: str | None = None
    cur_line = 0
    tokens: list[str] = []
    tags: list[str] = []
    tok_lines: list[int] = []
    columns = _Columns()

    def flush() -> None:
        nonlocal cur_id, tokens, tags, tok_lines
        if cur_id is not None:
            examples.append(
                Example(
                    id=cur_id, tokens=tuple(tokens), tags=tuple(tags),
                    image=None if _leaves_folder(cur_id) else cur_id,
                    source=f"{path}:{cur_line + 1}",
                )
            )
            if token_lines is not None:
                token_lines.append(tuple(tok_lines))
        cur_id, tokens, tags, tok_lines = None, [], [], []

    for n, line in enumerate(lines, start=1):
        if line.startswith("IMGID:") and "\t" not in line:  # a token "IMGID:..." has its TAB and tag
            if cur_id is not None and tokens:
                _fail(errors, path, n, "IMGID line inside a tweet",
                      "put a blank line between tweets")
            flush()
            cur_id = line[len("IMGID:"):].strip()
            cur_line = n
            if not cur_id:
                _fail(errors, path, n, "empty IMGID", "give each tweet its image id")
                cur_id = f"line{n}"
            elif _leaves_folder(cur_id):
                _fail(errors, path, n, f"IMGID {cur_id!r} names a file outside the image folder",
                      "an IMGID is the id of an image inside the image folder (<id>.jpg): "
                      "no '..' and no absolute path")
            continue
        if line == "":
            flush()
            continue
        if cur_id is None:
            _fail(errors, path, n, "token line outside a tweet",
                  "each tweet starts with a line IMGID:<id>")
            continue
        cols = line.split("\t")
        if not columns.check(cols, path, n, errors):
            continue
        parsed = _token_and_tag(cols, line, path, n, tag_column, tmap, errors)
        if parsed is not None:
            tokens.append(parsed[0])
            tags.append(parsed[1])
            tok_lines.append(n)
    flush()
    return examples


def write_twitter(
    examples: Iterable[Example], path: str | Path, predictions: Sequence[Sequence[str]] | None = None
) -> None:
    """Write the Twitter format (always ending with a blank line); with ``predictions``, a third
    column holds the predicted tags (``read_twitter(tag_column=-2)`` reads the gold back)."""
    out: list[str] = []
    for ex, pred in _with_predictions(examples, predictions):
        _check_field(ex, "id", ex.id, "twitter")
        if ex.id != ex.id.strip() or not ex.id:
            raise MNERError(f"{ex.where}: id {ex.id!r} is empty or begins or ends with spaces and cannot be written "
                            "in the twitter format (IMGID:<id> is read back stripped); fix the id, or write JSONL "
                            "(.jsonl) instead")
        out.append(f"IMGID:{ex.id}")
        out.extend(_column_lines(ex, pred))
        out.append("")
    _atomic_write(Path(path), "\n".join(out) + ("\n" if out else ""))


def _with_predictions(examples: Iterable[Example], predictions: Sequence[Sequence[str]] | None):
    examples = list(examples)
    if predictions is not None and len(predictions) != len(examples):
        raise ValueError(f"{len(examples)} examples but {len(predictions)} predictions")
    return zip(examples, predictions if predictions is not None else [None] * len(examples))


def _column_lines(ex: Example, pred: Sequence[str] | None) -> list[str]:
    """``token<TAB>gold`` lines (``O`` without gold), plus ``<TAB>pred`` when given."""
    _check_writable(ex, "\t")
    gold = ex.tags if ex.tags is not None else ("O",) * len(ex.tokens)
    if pred is None:
        return [f"{t}\t{g}" for t, g in zip(ex.tokens, gold)]
    if len(pred) != len(ex.tokens):
        raise ValueError(f"{ex.where}: {len(ex.tokens)} tokens but {len(pred)} predicted tags")
    return [f"{t}\t{g}\t{p}" for t, g, p in zip(ex.tokens, gold, pred)]


# ----------------------------------------------------------------------------- conll


def read_conll(
    path: str | Path,
    type_map: str | Mapping[str, str] | None = None,
    tag_column: int = -1,
    errors: list | None = None,
    token_lines: list | None = None,
) -> list[Example]:
    """Read a CoNLL column file (see the module docstring)."""
    path = Path(path)
    tmap = resolve_type_map(type_map)
    examples: list[Example] = []
    meta: dict[str, str] = {}
    tokens: list[str] = []
    tags: list[str] = []
    tok_lines: list[int] = []
    first_line = 0
    columns = _Columns()

    def flush() -> None:
        nonlocal meta, tokens, tags, tok_lines
        if tokens:
            sid = meta.get("id", str(len(examples) + 1))
            examples.append(
                Example(
                    id=sid, tokens=tuple(tokens), tags=tuple(tags),
                    image=meta.get("image"), caption=meta.get("caption"),
                    source=f"{path}:{first_line}",
                )
            )
            if token_lines is not None:
                token_lines.append(tuple(tok_lines))
        elif meta:
            _fail(errors, path, first_line or 1, f"metadata {sorted(meta)} with no tokens after it")
        meta, tokens, tags, tok_lines = {}, [], [], []

    for n, line in enumerate(_read_lines(path), start=1):
        if line.strip() == "" and "\t" not in line:
            flush()
            continue
        if line.startswith("-DOCSTART-"):
            continue
        if not tokens and line.startswith("# ") and " = " in line:
            key, value = line[2:].split(" = ", 1)
            if key.strip() in _CONLL_META_KEYS:
                meta[key.strip()] = value
                first_line = n + 1
                continue
        cols = line.split("\t") if "\t" in line else [c for c in line.split(" ") if c != ""]
        if not columns.check(cols, path, n, errors):
            continue
        parsed = _token_and_tag(cols, line, path, n, tag_column, tmap, errors)
        if parsed is None:
            continue
        if not tokens:
            first_line = n
        tokens.append(parsed[0])
        tags.append(parsed[1])
        tok_lines.append(n)
    flush()
    return examples


def write_conll(
    examples: Iterable[Example],
    path: str | Path,
    predictions: Sequence[Sequence[str]] | None = None,
    metadata: bool = True,
) -> None:
    """Write ``token<TAB>tag`` (or ``token<TAB>gold<TAB>pred`` with ``predictions``).

    With ``metadata``, each sentence is preceded by ``# id = ...`` (and ``# image``,
    ``# caption`` when known) so that reading the file back restores the examples.
    """
    out: list[str] = []
    for ex, pred in _with_predictions(examples, predictions):
        for i, tok in enumerate(ex.tokens):
            # what read_conll would take for a document marker or a metadata line
            if tok.startswith("-DOCSTART-") or (i == 0 and tok.startswith("# ") and " = " in tok):
                raise MNERError(f"{ex.where}: token {tok!r} would be read back as a "
                                f"{'document marker' if i or tok.startswith('-') else 'metadata line'} "
                                "in CoNLL and cannot be written; write JSONL (.jsonl) instead")
        if metadata:
            _check_field(ex, "id", ex.id, "conll")
            if ex.image is not None:
                _check_field(ex, "image", ex.image, "conll")
            out.append(f"# id = {ex.id}")
            if ex.image is not None:
                out.append(f"# image = {ex.image}")
            if ex.caption is not None:
                out.append(f"# caption = {_one_line(ex.caption)}")
        out.extend(_column_lines(ex, pred))
        out.append("")
    _atomic_write(Path(path), "\n".join(out) + ("\n" if out else ""))


# ----------------------------------------------------------------------------- jsonl


def read_jsonl(
    path: str | Path,
    type_map: str | Mapping[str, str] | None = None,
    errors: list | None = None,
    require_tokens: bool = True,
    token_lines: list | None = None,
) -> list[Example]:
    """Read JSONL examples. Without an ``"id"``, the 1-based line number is the id.

    With ``require_tokens=False`` (inference input) a line may give only ``"text"``; it is then
    tokenized by :func:`mner.data.tokenize.tokenize_text`. A line with a ``"text"`` and ``"tokens"``
    but no ``"offsets"`` keeps its text too, as ``mner tag`` does: the text is tokenized and the
    offsets index it (the tokens, which say nothing of where they are in the text, are not used).
    """
    path = Path(path)
    tmap = resolve_type_map(type_map)
    examples: list[Example] = []
    for n, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            _fail(errors, path, n, f"not valid JSON: {err.msg}", "one JSON object per line")
            continue
        if not isinstance(obj, dict):
            _fail(errors, path, n, "expected a JSON object")
            continue
        obj.setdefault("id", str(n))
        problem = _jsonl_field_problem(obj)
        if problem is not None:
            _fail(errors, path, n, problem[0], problem[1])
            continue
        try:
            if not require_tokens and "text" in obj and "offsets" not in obj:
                # the user's text wins, as in mner tag (tags of other tokens would not fit: inputs are not scored)
                obj = {k: v for k, v in obj.items() if k not in ("tokens", "tags")}
            if "tokens" not in obj:
                if require_tokens or "text" not in obj:
                    raise KeyError("tokens")
                from mner.data.tokenize import tokenize_text

                toks, offs = tokenize_text(str(obj["text"]))
                obj = {**obj, "tokens": toks, "offsets": offs}
            if not isinstance(obj["tokens"], list) or not all(isinstance(t, str) for t in obj["tokens"]):
                raise TypeError("'tokens' must be a list of strings")
            if obj.get("tags") is not None:
                obj["tags"] = [_map_tag(str(t), tmap) for t in obj["tags"]]
            examples.append(Example.from_dict(obj, source=f"{path}:{n}"))
            if token_lines is not None:
                token_lines.append((n,) * len(examples[-1].tokens))
        except KeyError as err:
            _fail(errors, path, n, f"missing field {err}",
                  'each line needs "tokens" (a list of words)' + ("" if require_tokens else ' or "text"'))
        except TextError as err:  # the line names the place
            _fail(errors, path, n, f"tweet {obj.get('id')!r}: {err.detail}")
        except (TypeError, ValueError) as err:
            _fail(errors, path, n, str(err))
    return examples


#: JSONL fields and what each must be (``None`` is allowed for the optional ones).
_JSONL_FIELDS = {
    "id": "a string or an integer",
    "text": "a string",
    "tokens": "a list of strings",
    "tags": "a list of strings (one tag per token) or null",
    "image": "a string (an image path or id) or null",
    "caption": "a string or null",
    "offsets": "a list of [start, end] integer pairs",
}


_JSON_TYPE_NAMES = {int: "a number", float: "a number", str: "a string", list: "an array",
                    dict: "an object", bool: "a boolean", type(None): "null"}


def _jsonl_field_problem(obj: dict) -> tuple[str, str] | None:
    """``(message, hint)`` for the first field of a JSONL object with the wrong type, else None."""

    def is_int(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    def strings(v) -> bool:
        return isinstance(v, list) and all(isinstance(t, str) for t in v)

    checks = {
        "id": lambda v: isinstance(v, str) or is_int(v),
        "text": lambda v: isinstance(v, str),
        "tokens": strings,
        "tags": lambda v: v is None or strings(v),
        "image": lambda v: v is None or isinstance(v, str),
        "caption": lambda v: v is None or isinstance(v, str),
        "offsets": lambda v: isinstance(v, list) and all(
            isinstance(o, list) and len(o) == 2 and all(is_int(x) for x in o) for o in v),
    }
    for name, ok in checks.items():
        if name in obj and not ok(obj[name]):
            got = json.dumps(obj[name], ensure_ascii=False)
            got = got if len(got) <= 40 else got[:37] + "..."
            kind = _JSON_TYPE_NAMES.get(type(obj[name]), type(obj[name]).__name__)
            return (f'field "{name}" must be {_JSONL_FIELDS[name]}, got {kind} {got}',
                    f'fix the "{name}" of this line')
    return None


def write_jsonl(examples: Iterable[Example], path: str | Path) -> None:
    lines = [json.dumps(ex.to_dict(), ensure_ascii=False) for ex in examples]
    _atomic_write(Path(path), "\n".join(lines) + ("\n" if lines else ""))


# ----------------------------------------------------------------------------- dispatch


def detect_format(path: str | Path) -> str:
    """``jsonl`` by extension (.jsonl/.json/.ndjson) or a first line starting with ``{``; ``twitter``
    when the first non-blank line starts with ``IMGID:``; ``conll`` otherwise. A UTF-8 byte-order
    mark is skipped, as the readers skip it."""
    path = Path(path)
    if path.suffix.lower() in _JSONL_SUFFIXES:
        return "jsonl"
    with open(path, "rb") as fh:
        for k, raw in enumerate(fh):
            if k == 0 and raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 BOM: _read_lines drops it too
                raw = raw[3:]
            line = raw.strip()
            if not line:
                continue
            if line.startswith(b"{"):
                return "jsonl"
            if line.startswith(b"IMGID:"):
                return "twitter"
            return "conll"
    return "conll"


def read_file(
    path: str | Path,
    format: str = "auto",
    type_map: str | Mapping[str, str] | None = None,
    tag_column: int = -1,
    errors: list | None = None,
    token_lines: list | None = None,
) -> list[Example]:
    """Read any supported file (``format="auto"`` detects it).

    ``tag_column`` picks the tag column of the column formats; JSONL has no columns (its tags
    are the ``"tags"`` field), so any other value than the default -1 is refused for it.
    """
    path = require_regular_file(path, "data file")
    fmt = detect_format(path) if format == "auto" else format
    if fmt == "jsonl" and tag_column != -1:
        raise DataFormatError(
            path, None,
            f"tag column {tag_column} asked of a JSONL file: JSONL has one \"tags\" field, so "
            "this file has no gold+pred columns",
            "give the gold and the predictions as two files: mner score GOLD PRED",
        )
    if fmt == "twitter":
        return read_twitter(path, type_map, tag_column, errors, token_lines)
    if fmt == "conll":
        return read_conll(path, type_map, tag_column, errors, token_lines)
    if fmt == "jsonl":
        return read_jsonl(path, type_map, errors, token_lines=token_lines)
    raise MNERError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)} or auto")


def write_file(examples: Iterable[Example], path: str | Path, format: str = "auto") -> None:
    """Write examples; ``auto`` picks jsonl for .jsonl/.json/.ndjson, conll for .conll/.tsv,
    twitter otherwise."""
    path = Path(path)
    fmt = format
    if fmt == "auto":
        suffix = path.suffix.lower()
        fmt = "jsonl" if suffix in _JSONL_SUFFIXES else "conll" if suffix in (".conll", ".tsv") else "twitter"
    if fmt == "twitter":
        write_twitter(examples, path)
    elif fmt == "conll":
        write_conll(examples, path)
    elif fmt == "jsonl":
        write_jsonl(examples, path)
    else:
        raise MNERError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _one_line(s: str) -> str:
    return s.replace("\r", " ").replace("\n", " ")


def _check_field(ex: Example, name: str, value: str, fmt: str) -> None:
    """An id or image path with a line break or a TAB would read back as other lines (an id
    ``"a\\nIMGID:b"`` as an empty tweet and an injected one): refused, naming the tweet."""
    bad = next((c for c in value if c in "\n\r\t"), None)
    if bad is not None:
        raise MNERError(f"{ex.where}: {name} {value!r} holds a {'TAB' if bad == chr(9) else 'line break'} and cannot "
                        f"be written in the {fmt} format (it would read back as other lines); fix the {name}, or "
                        "write JSONL (.jsonl) instead")


def _check_writable(ex: Example, sep: str) -> None:
    for tok in ex.tokens:
        if sep in tok or "\n" in tok:
            raise MNERError(f"{ex.where}: token {tok!r} contains a separator and cannot be written; "
                            "write JSONL (.jsonl) instead")


def _atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with :func:`mner.fileio.write_output`: a temporary file renamed
    into place (a kill or a full disk leaves no partial file under ``path``; a full disk is an
    :class:`MNERError` naming it), through a symbolic link to its target, streamed to a device."""
    write_output(path, text, hint="free some space or write elsewhere")
