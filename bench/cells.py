"""What every benchmark cell of mner records about how it ran, written once for both benchmark
scripts (``maf_benchmark.py``, ``fewshot_benchmark.py``; issue 23, item 6, first part).

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

The hash is plain sha256 over ``path NUL bytes NUL`` of each covered file in path order; no
library does this (the code's identity here is the set of files a cell imports, not a package
version), hence our own.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["Fingerprint", "Versions", "changed_files", "code_fingerprint", "fingerprint_at", "git_commit", "machine"]


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
    as (every figure of the re-run cell identical); :meth:`canonical` follows the chain."""

    spec: Fingerprint
    equivalent: dict[str, str] = field(default_factory=dict)

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

    def add_evidence(self, entries: list[dict]) -> None:
        """Re-runs ``{"old": {...}, "new": {...}}`` whose figures agree make ``new``'s code count as
        ``old``'s. An entry names each side's ``code_fingerprint`` or its ``git_commit``."""
        for e in entries:
            old, new = e["old"], e["new"]
            if any(old.get(k) != new.get(k) for k in ("dev_f1", "test_f1")):
                continue
            a, b = self.of(old), self.of(new)
            if a and b and a != b:
                self.equivalent[b] = self.canonical(a)
