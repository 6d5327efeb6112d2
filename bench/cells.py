"""What every benchmark cell of mner records about how it ran, written once for both benchmark
scripts (``maf_benchmark.py``, ``fewshot_benchmark.py``; issue 23, item 6); the loop that runs
them is :mod:`runner`.

A *cell* is one trained model scored once (a dataset, a model or variant, an encoder or split, a
seed), stored as ``bench/results/<benchmark>/<cell>.json``. Beside its figures, each records:

- ``machine`` (:func:`machine`): the CPU model, its core count, the torch version (and the GPU);
- ``git_commit`` (:func:`git_commit`): the commit of the checkout that ran it;
- ``code_fingerprint`` (:func:`code_fingerprint`): a hash of the source files the cell's training
  and scoring run (each benchmark names them: a :class:`Fingerprint`), so that two cells with the
  same fingerprint ran the same code whatever else was committed between them; a cell stored
  before its benchmark recorded one gets it from its commit (:func:`fingerprint_at`, read from
  git), and :class:`Versions` says which versions a page's cells come from and which of them a
  same-host re-run showed to train alike (the evidence files of ``bench/results``).

Every stored cell is a :class:`Cell`: the fields both benchmarks share, typed and checked when a
cell is read or written (a malformed file is refused naming the file and the field), and the
benchmark's own fields (its key and figures) kept as they are, in their order, so a stored cell
reads back to the same bytes. A cell's large outputs (its test predictions) are stored beside it
as gzip files (:func:`store_gzip`: no timestamp, the same content gives the same bytes), recorded
by path, sha256 and size (:class:`StoredFile`). :func:`stale_reasons` says why a stored cell is
not what its benchmark would produce now (another code version, another configuration).

The hash is plain sha256 over ``path NUL bytes NUL`` of each covered file in path order; no
library does this (the code's identity here is the set of files a cell imports, not a package
version), hence our own.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import platform
import subprocess
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["Cell", "CellError", "Fingerprint", "Scores", "StoredFile", "Versions", "changed_files", "code_fingerprint",
           "comparable_config", "fingerprint_at", "git_commit", "load_cells", "machine", "stale_reasons", "store_gzip"]


@dataclass(frozen=True)
class Fingerprint:
    """The source files (under ``src/``) a benchmark's cells depend on: the paths that start with one
    of ``covered`` (a file or a folder, e.g. ``mner/models/``) and with none of ``excluded``."""

    covered: tuple[str, ...]
    excluded: tuple[str, ...] = ()

    def covers(self, rel: str) -> bool:
        return rel.endswith(".py") and rel.startswith(self.covered) and not rel.startswith(self.excluded)


def _digest(files: list[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for rel, data in sorted(files):
        h.update(rel.encode() + b"\0" + data + b"\0")
    return h.hexdigest()[:12]


def code_fingerprint(spec: Fingerprint, src: Path | None = None) -> str:
    """The fingerprint of the files of ``spec`` in ``src`` (default: the folder that holds the mner
    package this process imports)."""
    if src is None:
        import mner

        src = Path(mner.__file__).resolve().parents[1]
    files = []
    for f in (src / "mner").rglob("*.py"):
        rel = f.relative_to(src).as_posix()
        if spec.covers(rel):
            files.append((rel, f.read_bytes()))
    return _digest(files)


@lru_cache(maxsize=None)
def fingerprint_at(spec: Fingerprint, commit: str, repo: Path = ROOT) -> str | None:
    """The fingerprint of the files of ``spec`` as they were at ``commit`` (read from git), the same
    value :func:`code_fingerprint` gave in a checkout of it; None where git or the commit is not
    there (a shallow clone)."""
    def git(*args: str) -> bytes:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, check=True).stdout

    try:
        names = git("ls-tree", "-r", "--name-only", "-z", commit, "--", "src/mner").decode().split("\0")
        files = [(n[len("src/"):], git("show", f"{commit}:{n}")) for n in names
                 if n and spec.covers(n[len("src/"):])]
    except (OSError, subprocess.CalledProcessError):
        return None
    return _digest(files) if files else None


def changed_files(spec: Fingerprint, a: str, b: str, repo: Path = ROOT) -> list[str] | None:
    """The covered files that differ between commits ``a`` and ``b`` (None without git or them)."""
    try:
        out = subprocess.run(["git", "diff", "--name-only", a, b, "--", "src/mner"], cwd=repo, capture_output=True,
                             text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return None
    return [n[len("src/"):] for n in out if spec.covers(n[len("src/"):])]


def machine() -> str:
    """``<CPU model>, <cores> cores, torch <version>[, GPU <name>]``."""
    import torch

    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    desc = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}"
    if torch.cuda.is_available():
        desc += f", GPU {torch.cuda.get_device_name(0)}"
    return desc


def git_commit(repo: Path = ROOT) -> str:
    """The short commit of ``repo``'s checkout (``unknown`` without git)."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


@dataclass
class Versions:
    """The code versions of a page's cells.

    ``equivalent`` maps a fingerprint to the earlier one a same-host re-run showed it trains exactly
    as (every figure of the re-run cell identical); :meth:`canonical` follows the chain. ``shown_by``
    names, for each such fingerprint (every key of ``equivalent`` among them), the re-run cell that
    showed it, and ``evidence`` the entry of
    an evidence file that did (where one did)."""

    spec: Fingerprint
    equivalent: dict[str, str] = field(default_factory=dict)
    shown_by: dict[str, str] = field(default_factory=dict)
    evidence: dict[str, dict] = field(default_factory=dict)

    def of(self, cell: dict) -> str | None:
        """A cell's fingerprint: recorded, or computed from its commit."""
        return cell.get("code_fingerprint") or (fingerprint_at(self.spec, cell["git_commit"])
                                                if cell.get("git_commit") not in (None, "unknown") else None)

    def canonical(self, fingerprint: str | None) -> str | None:
        seen = set()
        while fingerprint in self.equivalent and fingerprint not in seen:
            seen.add(fingerprint)
            fingerprint = self.equivalent[fingerprint]
        return fingerprint

    def same(self, a: str | None, b: str | None) -> bool:
        return a is not None and b is not None and self.canonical(a) == self.canonical(b)

    def _add(self, new: str, old: str, cell: str) -> None:
        """Make ``new`` count as ``old``: their classes merge (a fingerprint shown equal to two others
        keeps both links), the first re-run that showed it named."""
        root_new, root_old = self.canonical(new), self.canonical(old)
        if root_new != root_old:
            self.equivalent[root_new] = root_old
            self.shown_by.setdefault(root_new, cell)
        self.shown_by.setdefault(new, cell)

    def add_evidence(self, entries: list[dict]) -> None:
        """Re-runs ``{"cell", "old": {...}, "new": {...}}`` whose figures agree make ``new``'s code count
        as ``old``'s. An entry names each side's ``code_fingerprint`` or its ``git_commit``."""
        for e in entries:
            old, new = e["old"], e["new"]
            if any(old.get(k) != new.get(k) for k in ("dev_f1", "test_f1")):
                continue
            a, b = self.of(old), self.of(new)
            if a and b and a != b:
                self._add(b, a, e.get("cell", ""))
                self.evidence[b] = e

    def add_reruns(self, cells: Iterable[dict]) -> None:
        """Cells re-run by ``--rerun-stale`` (their ``previous``: the stored cell they replaced) that gave
        exactly the stored dev and test F1 at another code version of the same configuration make the
        new code count as the old (oldest re-runs first, so chains resolve)."""
        for c in sorted(cells, key=lambda c: c.get("finished") or ""):
            prev = c.get("previous") or {}
            old, new = prev.get("code_fingerprint"), c.get("code_fingerprint")
            if (old and new and old != new and prev.get("test_f1") == c["test"]["f1"]
                    and prev.get("dev_f1") == c["dev_f1"] and "configuration" not in (prev.get("stale") or [])):
                self._add(new, old, c["cell"])


# ----------------------------------------------------------------------------------------------
# The typed cell


class CellError(ValueError):
    """A stored cell that does not have the schema: names the file and the field."""


_NUMBER = (int, float)
_NONE = type(None)


def _check(where: str, name: str, value: Any, types: tuple) -> None:
    if isinstance(value, bool) and bool not in types:
        ok = False
    else:
        ok = isinstance(value, types)
    if not ok:
        want = " or ".join("null" if t is _NONE else t.__name__ for t in types)
        raise CellError(f"{where}: field {name!r} is {type(value).__name__} {value!r:.60}, expected {want}")


class _Record:
    """A dataclass read from / written to a JSON object: the declared fields typed and checked, the
    others kept in ``extra``, the keys in the order they were read (new keys after)."""

    TYPES: dict[str, tuple] = {}
    REQUIRED: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, d: dict, where: str = "cell"):
        if not isinstance(d, dict):
            raise CellError(f"{where}: a JSON object expected, got {type(d).__name__}")
        missing = [k for k in cls.REQUIRED if k not in d]
        if missing:
            raise CellError(f"{where}: missing field(s) {', '.join(missing)} (re-run the cell, or restore the file "
                            "from git)")
        kw, extra = {}, {}
        for k, v in d.items():
            if k in cls.TYPES:
                _check(where, k, v, cls.TYPES[k])
                kw[k] = cls._field(k, v, where)
            else:
                extra[k] = v
        obj = cls(**kw, extra=extra)
        obj._order = tuple(d)
        return obj

    @classmethod
    def _field(cls, name: str, value: Any, where: str) -> Any:
        return value

    def to_dict(self) -> dict:
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name in self.TYPES}
        own = {k: (v.to_dict() if isinstance(v, _Record) else v) for k, v in own.items()}
        present = {k: v for k, v in own.items() if k in self.REQUIRED or v is not None or k in self._order}
        out = {}
        for k in self._order:
            if k in present:
                out[k] = present[k]
            elif k in self.extra:
                out[k] = self.extra[k]
        for k, v in list(present.items()) + list(self.extra.items()):
            out.setdefault(k, v)
        return out


@dataclass(eq=False)
class Scores(_Record):
    """A cell's figures on one test set: micro P/R/F1 (fractions) and F1 per type; the benchmark's own
    figures (e.g. per-episode counts) in ``extra``."""

    precision: float
    recall: float
    f1: float
    per_type: dict | None = None
    extra: dict = field(default_factory=dict)
    _order: tuple = field(default=(), repr=False)

    TYPES = {"precision": _NUMBER, "recall": _NUMBER, "f1": _NUMBER, "per_type": (dict,)}
    REQUIRED = ("precision", "recall", "f1")


@dataclass(eq=False)
class StoredFile(_Record):
    """A file stored beside a cell (its test predictions): the path (relative to the repository),
    sha256 and size of the gzip bytes; what it holds (``tweets``, ``episodes``) in ``extra``."""

    path: str
    sha256: str
    bytes: int
    extra: dict = field(default_factory=dict)
    _order: tuple = field(default=(), repr=False)

    TYPES = {"path": (str,), "sha256": (str,), "bytes": (int,)}
    REQUIRED = ("path", "sha256", "bytes")

    def read(self, root: Path = ROOT) -> bytes | str:
        """The file's uncompressed bytes, or why not (missing, or not the bytes the cell recorded)."""
        path = Path(self.path) if Path(self.path).is_absolute() else root / self.path
        if not path.is_file():
            return f"predictions file missing: {self.path}"
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != self.sha256:
            return f"{self.path}: sha256 differs from the cell's record"
        return gzip.decompress(data)


@dataclass(eq=False)
class Cell(_Record):
    """One stored benchmark cell: what both benchmarks record, typed; the benchmark's own fields (its
    key, e.g. dataset / variant / encoder or dataset / split / model / k, and its other figures) in
    ``extra``. ``Cell.load(path).to_dict()`` is the file's JSON object, key for key."""

    cell: str
    seed: int
    command: str
    config: dict
    test: Scores
    dev_f1: float | None
    best_epoch: int | None
    seconds_per_epoch: list
    wall_seconds: float
    machine: str
    git_commit: str
    finished: str
    code_fingerprint: str | None = None
    predictions: StoredFile | None = None
    previous: dict | None = None
    extra: dict = field(default_factory=dict)
    _order: tuple = field(default=(), repr=False)

    TYPES = {"cell": (str,), "seed": (int,), "command": (str,), "config": (dict,), "test": (dict,),
             "dev_f1": (*_NUMBER, _NONE), "best_epoch": (int, _NONE), "seconds_per_epoch": (list,),
             "wall_seconds": _NUMBER, "machine": (str,), "git_commit": (str,), "finished": (str,),
             "code_fingerprint": (str, _NONE), "predictions": (dict, _NONE), "previous": (dict, _NONE)}
    REQUIRED = ("cell", "seed", "command", "config", "test", "dev_f1", "best_epoch", "seconds_per_epoch",
                "wall_seconds", "machine", "git_commit", "finished")

    @classmethod
    def _field(cls, name: str, value: Any, where: str) -> Any:
        if name == "test":
            return Scores.from_dict(value, f"{where}, test")
        if name == "predictions" and value is not None:
            return StoredFile.from_dict(value, f"{where}, predictions")
        return value

    @classmethod
    def load(cls, path: Path) -> "Cell":
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise CellError(f"{path}: not JSON ({exc}); restore it from git or re-run the cell") from None
        cell = cls.from_dict(d, str(path))
        if cell.cell != Path(path).stem:
            raise CellError(f"{path}: holds cell {cell.cell!r}, not {Path(path).stem!r}")
        return cell

    def store(self, path: Path) -> None:
        """Write the cell (checked) atomically as indented JSON."""
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        Cell.from_dict(json.loads(text), str(path))
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)


def load_cells(results: Path) -> list[dict]:
    """The stored cells of a results folder, each checked against the schema, as their JSON objects."""
    return [Cell.load(p).to_dict() for p in sorted(Path(results).glob("*.json"))]


def store_gzip(data: bytes, target: Path, root: Path = ROOT, **holds: int) -> dict:
    """Store ``data`` gzipped at ``target`` (no timestamp: the same data gives the same bytes), written
    atomically; return its :class:`StoredFile` record (path relative to ``root`` when inside it, and
    ``holds``: what it holds, e.g. ``tweets=...``)."""
    packed = gzip.compress(data, compresslevel=9, mtime=0)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(packed)
    os.replace(tmp, target)
    try:
        shown = target.resolve().relative_to(root).as_posix()
    except ValueError:
        shown = str(target)
    return {"path": shown, "sha256": hashlib.sha256(packed).hexdigest(), "bytes": len(packed), **holds}


def _parent(tree: dict, dotted: str) -> tuple[dict | None, str]:
    """The dict that holds the dotted key ``a.b.c`` of ``tree`` (None where a level is missing), and ``c``."""
    *parents, last = dotted.split(".")
    node: Any = tree
    for p in parents:
        node = node.get(p) if isinstance(node, dict) else None
    return (node if isinstance(node, dict) else None), last


def comparable_config(raw: dict | None, volatile: Iterable[str], implied: dict[str, Any] | None = None) -> dict | None:
    """A cell's configuration without what depends on where it ran (``volatile``: dotted keys such as
    ``training.output_dir``), and with ``implied`` (dotted key -> value: what a key meant when a cell
    did not name it, e.g. a default written out later) filled in where absent, to tell whether a
    stored cell ran the configuration its benchmark runs now."""
    if raw is None:
        return None
    out = json.loads(json.dumps(raw))
    for dotted, value in (implied or {}).items():
        parent, last = _parent(out, dotted)
        if parent is not None:
            parent.setdefault(last, value)
    for dotted in volatile:
        parent, last = _parent(out, dotted)
        if parent is not None:
            parent.pop(last, None)
    return out


def stale_reasons(cell: dict, current: str, versions: Versions, config_now: dict | None,
                  volatile: Iterable[str] = (), implied: dict[str, Any] | None = None) -> list[str]:
    """Why a stored cell is not what its benchmark would produce now: ``code`` (another code version,
    not shown to train alike), ``configuration`` (another experiment than ``config_now``)."""
    reasons = []
    if not versions.same(versions.of(cell), current):
        reasons.append("code")
    volatile = tuple(volatile)
    if comparable_config(cell.get("config"), volatile, implied) != comparable_config(config_now, volatile, implied):
        reasons.append("configuration")
    return reasons
