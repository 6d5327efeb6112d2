"""Input files of ``mner tag``: which files, how many rows, which shard holds which rows, and
the rows of one shard with where each came from.

Formats (by file name): JSONL (``.jsonl``, ``.ndjson``, ``.json``: one JSON object a line), CSV
(``.csv``: a header line, then one row a record; quoted fields may hold newlines), Parquet
(``.parquet``, ``.pq``) and the benchmark formats (``.txt``, ``.conll``: Twitter-2015/2017 or CoNLL
columns, read by :func:`mner.data.formats.read_file`). A folder stands for the files of these
formats directly in it, in name order.

Every row has a provenance: its file, its ``row`` (1-based number of the record in the file:
the n-th non-blank line of a JSONL file, the n-th data row of a CSV or Parquet file, the n-th
tweet of a benchmark file) and, for files read by lines, its ``line`` (1-based physical line
where it starts), so that an error names the place to look.

Shards cut each file into runs of ``shard_size`` consecutive rows (a shard never spans two files),
numbered in input order. The cut depends only on the files and the shard size: a run started
again finds the same shards. For JSONL and CSV the plan keeps the byte offset where each shard
starts, so that reading a shard (in a worker process or a Ray task) seeks there directly.

Reading never parses a row's fields: a row is handed on raw (a JSONL line, a CSV or Parquet
record, a benchmark :class:`~mner.data.example.Example`) together with any problem found while
reading it (bytes that are not UTF-8, a CSV record with the wrong number of fields);
:mod:`mner.batch.prepare` turns it into a tweet or a reason why it cannot be tagged.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from mner.errors import MNERError
from mner.fileio import require_regular_file

__all__ = [
    "FORMAT_BY_SUFFIX",
    "Columns",
    "InputFile",
    "InputWatch",
    "InputsChanged",
    "Record",
    "Shard",
    "expand_inputs",
    "plan_shards",
    "read_shard",
    "require_pyarrow",
]

FORMAT_BY_SUFFIX = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet", ".pq": "parquet",
    ".txt": "text", ".conll": "text",
}
#: How many JSONL objects are looked at to check that the named columns exist.
_COLUMN_PROBE = 20
csv.field_size_limit(1 << 27)  # a CSV field (a long text, a token list) may exceed the 128 KiB default


def require_pyarrow(what: str):
    """``pyarrow.parquet``, or a :class:`MNERError` saying how to install it."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MNERError(f"{what} needs pyarrow, which is not installed: pip install 'mner[distributed]' "
                        "(or pyarrow alone)" + ("; or write JSONL with --format jsonl" if "output" in what else "")
                        ) from None
    return pq


@dataclass(frozen=True)
class Columns:
    """Which input columns hold what. ``explicit``: the ones named by the user, which must exist
    (the others are looked for under their default names and are optional, except that a row
    needs a text or its tokens)."""

    id: str = "id"
    text: str = "text"
    tokens: str = "tokens"
    image: str = "image"
    caption: str = "caption"
    explicit: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if k != "explicit"}


@dataclass(frozen=True)
class InputFile:
    """One input file as planned: absolute path, format, size and modification time (what the
    manifest compares on a restart) and its number of rows."""

    path: str
    format: str
    size: int
    mtime_ns: int
    rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Shard:
    """Rows ``start .. start + count - 1`` (0-based) of input file ``file``; ``offset``/``line``:
    the byte offset and 1-based line where the shard's first row starts (JSONL and CSV)."""

    index: int
    file: int
    path: str
    format: str
    start: int
    count: int
    offset: int = 0
    line: int = 1
    header: tuple[str, ...] = ()  # CSV: the file's header

    @property
    def name(self) -> str:
        return f"part-{self.index:06d}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Shard":
        return cls(**{**d, "header": tuple(d.get("header") or ())})


@dataclass
class Record:
    """One raw input row: its number in the file (``row``, 1-based), its first physical line
    (``line``; None for Parquet), the raw value and a problem found while reading it, if any."""

    row: int
    line: int | None
    raw: Any
    problem: tuple[str, str] | None = None
    where: str = field(default="", repr=False)


def where(path: str, row: int, line: int | None) -> str:
    """``file:line`` for files read by lines, ``file row N`` otherwise."""
    return f"{path}:{line}" if line is not None else f"{path} row {row}"


# ------------------------------------------------------------------------------------- inputs
def expand_inputs(paths: Sequence[str | Path], notes: list[str] | None = None) -> list[tuple[Path, str]]:
    """``(absolute path, format)`` of every input file: files as given, folders as the files of a
    known format directly in them (name order; hidden files, names starting with ``_`` and other
    formats are left out, and ``notes`` gets a line saying how many). Unknown formats, missing
    paths, empty folders and a file given twice are refused."""
    out: list[tuple[Path, str]] = []
    seen: dict[Path, str] = {}
    if not paths:
        raise MNERError("no input given: name one or more JSONL, CSV or Parquet files (or folders of them)")
    for given in paths:
        p = Path(given)
        if not p.exists():
            raise MNERError(f"{p}: no such file or folder")
        if p.is_dir():
            found = sorted(c for c in p.iterdir()
                           if c.is_file() and not c.name.startswith((".", "_")) and c.suffix.lower() in FORMAT_BY_SUFFIX)
            if not found:
                raise MNERError(f"{p}: a folder with no input file in it (looked for "
                                f"{', '.join(sorted(FORMAT_BY_SUFFIX))})")
            left = sum(1 for c in p.iterdir() if c not in found)
            if left and notes is not None:
                notes.append(f"{p}: {len(found)} input file(s); {left} other entr{'y' if left == 1 else 'ies'} "
                             "(folders, hidden or _-prefixed names, other formats) left out")
            files = found
        else:
            require_regular_file(p, "input")  # a device or a FIFO has no end, or cannot be read twice
            if p.suffix.lower() not in FORMAT_BY_SUFFIX:
                raise MNERError(f"{p}: unknown input format {p.suffix or '(no extension)'!r}; give JSONL (.jsonl), "
                                "CSV (.csv) or Parquet (.parquet) files, or Twitter/CoNLL (.txt, .conll) ones")
            files = [p]
        for f in files:
            absolute = f.resolve()
            if absolute in seen:
                raise MNERError(f"{f}: given twice (also as {seen[absolute]}); name each input once")
            seen[absolute] = str(given)
            out.append((absolute, FORMAT_BY_SUFFIX[f.suffix.lower()]))
    return out


def plan_shards(files: Sequence[tuple[Path, str]], shard_size: int, columns: Columns
                ) -> tuple[list[InputFile], list[Shard]]:
    """Count each file's rows, check that the named columns exist, and cut the files into shards."""
    if shard_size < 1:
        raise MNERError(f"--shard-size must be >= 1, got {shard_size}")
    inputs: list[InputFile] = []
    shards: list[Shard] = []
    for k, (path, fmt) in enumerate(files):
        st = path.stat()
        starts, header, rows = _SCANNERS[fmt](path, shard_size, columns)
        inputs.append(InputFile(str(path), fmt, st.st_size, st.st_mtime_ns, rows))
        for j, (offset, line) in enumerate(starts):
            begin = j * shard_size
            shards.append(Shard(len(shards), k, str(path), fmt, begin, min(shard_size, rows - begin),
                                offset, line, tuple(header)))
    return inputs, shards


def read_shard(shard: Shard, columns: Columns | None = None) -> list[Record]:
    """The raw rows of one shard, in file order (see the module docstring)."""
    records = list(_READERS[shard.format](shard, columns or Columns()))
    if len(records) != shard.count:
        raise InputsChanged(f"{shard.path}: shard {shard.name} should hold {shard.count} rows from row "
                            f"{shard.start + 1} but {len(records)} were found: the input changed while mner tag ran; "
                            "tag a copy that nothing writes to, or start again with --overwrite once the file is final")
    for rec in records:
        rec.where = where(shard.path, rec.row, rec.line)
    return records


def _missing_columns(path: Path, have: Sequence[str], columns: Columns, kind: str = "column") -> None:
    have = list(have)
    if columns.text not in have and columns.tokens not in have:
        raise MNERError(f"{path}: no {kind} {columns.text!r} (text) or {columns.tokens!r} (tokens); it has "
                        f"{', '.join(map(repr, have[:20])) or 'none'}: name the text {kind} with --text-column "
                        "(or the tokens one with --tokens-column)")
    for role in columns.explicit:
        name = getattr(columns, role)
        if name not in have and role not in ("text", "tokens"):
            raise MNERError(f"{path}: no {kind} {name!r} (given with --{role}-column); it has "
                            f"{', '.join(map(repr, have[:20]))}")


# ---------------------------------------------------------------------------------- JSONL
def _jsonl_lines(fh, line: int) -> Iterator[tuple[int, int, bytes]]:
    """``(byte offset, line number, line)`` of each non-blank line from the current position."""
    pos = fh.tell()
    for raw in fh:
        start, pos = pos, pos + len(raw)
        if raw.strip():
            yield start, line, raw
        line += 1


def _scan_jsonl(path: Path, shard_size: int, columns: Columns):
    starts: list[tuple[int, int]] = []
    probe: set[str] = set()
    probed = 0
    rows = 0
    with open(path, "rb") as fh:
        for offset, line, raw in _jsonl_lines(fh, 1):
            if rows == 0 and raw.lstrip(b"\xef\xbb\xbf \t").startswith(b"["):
                raise MNERError(f"{path}:{line}: a JSON array, not JSON Lines; mner tag reads one JSON object a "
                                "line: convert the file (e.g. jq -c '.[]' FILE > FILE.jsonl)")
            if rows % shard_size == 0:
                starts.append((offset, line))
            if probed < _COLUMN_PROBE:
                try:
                    obj = json.loads(raw.decode("utf-8-sig" if offset == 0 else "utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    obj = None
                if isinstance(obj, dict):
                    probe.update(obj)
                    probed += 1
            rows += 1
    if probed:
        _missing_columns(path, sorted(probe), columns, kind="field")
    return starts, (), rows


def _read_jsonl(shard: Shard, columns: Columns) -> Iterator[Record]:
    with open(shard.path, "rb") as fh:
        fh.seek(shard.offset)
        for k, (offset, line, raw) in enumerate(_jsonl_lines(fh, shard.line)):
            if k == shard.count:
                break
            row = shard.start + k + 1
            try:
                text = raw.decode("utf-8-sig" if offset == 0 else "utf-8")
            except UnicodeDecodeError as err:
                yield Record(row, line, None, ("malformed", f"not valid UTF-8 (byte {raw[err.start]:#04x})"))
                continue
            yield Record(row, line, text)


# ------------------------------------------------------------------------------------ CSV
class _CountingLines:
    """Lines of a binary file decoded for :mod:`csv`, counting the bytes and lines handed out (the
    C reader takes exactly the lines of one record per ``next``)."""

    def __init__(self, fh, pos: int, line: int):
        self.fh, self.pos, self.line = fh, pos, line - 1
        self.first = pos == 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        raw = self.fh.readline()
        if not raw:
            raise StopIteration
        self.pos += len(raw)
        self.line += 1
        text = raw.decode("utf-8", "surrogateescape")
        if self.first:
            text, self.first = text.removeprefix("\ufeff"), False
        return text


def _csv_records(fh, pos: int, line: int) -> Iterator[tuple[int, int, list[str]]]:
    """``(byte offset, first line, fields)`` of each non-empty CSV record from ``pos``."""
    fh.seek(pos)
    src = _CountingLines(fh, pos, line)
    reader = csv.reader(src)
    while True:
        start, first = src.pos, src.line + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:  # e.g. a quote left open at the end of the file
            yield start, first, [f"\x00csv-error: {err}"]
            return
        if fields:
            yield start, first, fields


def _scan_csv(path: Path, shard_size: int, columns: Columns):
    starts: list[tuple[int, int]] = []
    rows = 0
    header: list[str] | None = None
    with open(path, "rb") as fh:
        for offset, line, fields in _csv_records(fh, 0, 1):
            if header is None:
                header = [f.strip() for f in fields]
                _missing_columns(path, header, columns)
                continue
            if rows % shard_size == 0:
                starts.append((offset, line))
            rows += 1
    if header is None:
        raise MNERError(f"{path}: an empty CSV file (no header line); the first line names the columns")
    return starts, header, rows


def _read_csv(shard: Shard, columns: Columns) -> Iterator[Record]:
    header = list(shard.header)
    with open(shard.path, "rb") as fh:
        for k, (_, line, fields) in enumerate(_csv_records(fh, shard.offset, shard.line)):
            if k == shard.count:
                break
            row = shard.start + k + 1
            if fields and fields[0].startswith("\x00csv-error: "):
                yield Record(row, line, None, ("malformed", fields[0][len("\x00csv-error: "):]))
                continue
            if len(fields) != len(header):
                yield Record(row, line, None, ("malformed", f"{len(fields)} fields, but the header has {len(header)}"))
                continue
            try:
                "".join(fields).encode("utf-8")
            except UnicodeEncodeError:
                yield Record(row, line, None, ("malformed", "not valid UTF-8"))
                continue
            yield Record(row, line, dict(zip(header, fields)))


# -------------------------------------------------------------------------------- Parquet
def _scan_parquet(path: Path, shard_size: int, columns: Columns):
    pq = require_pyarrow("reading Parquet input")
    try:
        meta = pq.ParquetFile(path)
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a broken file
        raise MNERError(f"{path}: not a readable Parquet file ({err})") from None
    _missing_columns(path, meta.schema_arrow.names, columns)
    rows = meta.metadata.num_rows
    return [(0, 1)] * ((rows + shard_size - 1) // shard_size), (), rows


def _read_parquet(shard: Shard, columns: Columns) -> Iterator[Record]:
    pq = require_pyarrow("reading Parquet input")
    pf = pq.ParquetFile(shard.path)
    names = set(pf.schema_arrow.names)
    wanted = [c for c in dict.fromkeys((columns.id, columns.text, columns.tokens, columns.image, columns.caption))
              if c in names]
    first, end = shard.start, shard.start + shard.count
    begin = 0
    for g in range(pf.metadata.num_row_groups):
        size = pf.metadata.row_group(g).num_rows
        lo, hi = max(first, begin), min(end, begin + size)
        if lo < hi:
            table = pf.read_row_group(g, columns=wanted).slice(lo - begin, hi - lo)
            for k, values in enumerate(table.to_pylist()):
                yield Record(lo + k + 1, None, values)
        begin += size
        if begin >= end:
            break


# ------------------------------------------------------------------ Twitter / CoNLL files
def _read_examples(path: str):
    from mner.data.formats import read_file

    return read_file(path)


def _scan_text(path: Path, shard_size: int, columns: Columns):
    rows = len(_read_examples(str(path)))
    return [(0, 1)] * ((rows + shard_size - 1) // shard_size), (), rows


def _read_text(shard: Shard, columns: Columns) -> Iterator[Record]:
    examples = _read_examples(shard.path)[shard.start:shard.start + shard.count]
    for k, ex in enumerate(examples):
        line = int(ex.source.rsplit(":", 1)[1]) if ex.source and ex.source.rsplit(":", 1)[-1].isdigit() else None
        yield Record(shard.start + k + 1, line, ex)


_SCANNERS = {"jsonl": _scan_jsonl, "csv": _scan_csv, "parquet": _scan_parquet, "text": _scan_text}
_READERS = {"jsonl": _read_jsonl, "csv": _read_csv, "parquet": _read_parquet, "text": _read_text}


def file_stat(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class InputsChanged(MNERError):
    """An input file changed while ``mner tag`` ran (see :class:`InputWatch`)."""


class InputWatch:
    """What each input file was when the run planned it (size, modification time, inode and a
    SHA-256 of its bytes), so that the run notices an input changed under it: a cheap look
    (size, time, inode) before each shard is committed, and the full one (with the hash) at the
    end. A file edited while its rows are read would give rows of two versions of it, rows never
    tagged and valid rows blamed: the run stops with :class:`InputsChanged` instead."""

    def __init__(self, inputs: Sequence[InputFile]):
        self.planned = {f.path: (f.size, f.mtime_ns) for f in inputs}
        self.start = {f.path: self._look(f.path) for f in inputs}
        self.digest = {f.path: file_sha256(f.path) for f in inputs}
        for f in inputs:  # changed while it was being planned (counted, cut into shards)
            if self.start[f.path] is None or self.start[f.path][:2] != (f.size, f.mtime_ns):
                self._changed(f.path, "while its rows were counted")

    @staticmethod
    def _look(path: str) -> tuple[int, int, int] | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns, st.st_ino

    def _changed(self, path: str, what: str) -> None:
        raise InputsChanged(
            f"{path}: the input changed while mner tag ran ({what}); rows tagged from it could mix two versions "
            "of the file, miss rows or blame valid ones, so the run stops here. Tag a copy that nothing "
            "writes to, or start again with --overwrite once the file is final")

    def check(self, path: str) -> None:
        """Raise :class:`InputsChanged` if ``path`` is no longer the file that was planned."""
        now, then = self._look(path), self.start.get(path)
        if then is None or now == then:
            return
        if now is None:
            self._changed(path, "it is gone")
        parts = []
        if now[0] != then[0]:
            parts.append(f"size {then[0]} -> {now[0]} bytes")
        if now[1] != then[1]:
            parts.append("modified")
        if now[2] != then[2]:
            parts.append("replaced by another file")
        self._changed(path, ", ".join(parts))

    def check_all(self) -> None:
        """Every input: the cheap look, then its bytes' hash."""
        for path in self.start:
            self.check(path)
            if file_sha256(path) != self.digest[path]:
                self._changed(path, "its bytes differ, with the same size and modification time")
