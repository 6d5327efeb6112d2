"""The output folder of ``mner tag``: shards written atomically, resumed, summed up.

Layout::

    OUT/_manifest.json              what made the folder and what it counted (mner.batch.manifest)
    OUT/data/part-000000.parquet    the tagged rows of shard 0 (or .jsonl with --format jsonl)
    OUT/errors.jsonl                every row that could not be tagged, with file, row, line, reason
    OUT/_shards/part-000000.json    shard 0 is finished: its counts (the commit mark)
    OUT/_shards/part-000000.errors.jsonl   its rows that could not be tagged

``pandas.read_parquet("OUT/data")`` (or ``pyarrow.dataset``, ``ray.data.read_parquet``, Spark)
reads the whole output. A shard is committed in three steps, each a write to a temporary file
renamed into place: its errors, its data, then its mark. A run stopped at any point (Ctrl-C,
``kill -9``, a lost machine) leaves at most temporary files and a data file without a mark; both
are redone by the next run, which skips exactly the marked shards. Rows of a shard are in input
order, and shard ``k`` holds the same input rows in every run, so no row is ever written twice or
missed. ``errors.jsonl`` is assembled from the shards' error files when a run ends.

One run at a time writes into a folder (an advisory lock on ``OUT/.lock``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from mner.batch.manifest import MANIFEST_NAME, check_same_run, read_manifest, write_json_atomic
from mner.batch.sources import Shard, require_pyarrow
from mner.errors import MNERError

__all__ = ["OutputFolder", "OUTPUT_FORMATS", "read_output"]

OUTPUT_FORMATS = ("parquet", "jsonl")
DATA, SHARDS, ERRORS, LOCK = "data", "_shards", "errors.jsonl", ".lock"
_COUNT_KEYS = ("read", "tagged", "failed", "dropped", "blanked")
#: Test hook: "N" ends the process (as kill -9 would) right after shard commit number N of this
#: process; "N:before-mark" ends it after that shard's data file is written, before its mark.
CRASH_ENV = "MNER_TAG_CRASH_AFTER"


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _jsonl_text(rows: Sequence[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


class OutputFolder:
    """One ``mner tag`` output folder (see the module docstring)."""

    def __init__(self, out: str | Path, fmt: str = "parquet"):
        if fmt not in OUTPUT_FORMATS:
            raise MNERError(f"unknown output format {fmt!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
        self.out = Path(out)
        self.format = fmt
        self.suffix = ".parquet" if fmt == "parquet" else ".jsonl"
        self.manifest: dict[str, Any] = {}
        self._lock_fd: int | None = None
        self._commits = 0
        if fmt == "parquet":
            require_pyarrow("Parquet output")

    # ----------------------------------------------------------------------------- opening
    def open(self, manifest: dict[str, Any], overwrite: bool = False) -> dict[str, int]:
        """Take the folder for this run: create it, or check that it holds the same run (or empty it
        with ``overwrite``). Returns ``{shard index: rows}`` of the shards already finished."""
        out = self.out
        if out.exists() and not out.is_dir():
            raise MNERError(f"--out {out}: is a file; give a folder (new, or one mner tag wrote)")
        out.mkdir(parents=True, exist_ok=True)
        self._lock()
        old = read_manifest(out)
        ours = {MANIFEST_NAME, DATA, SHARDS, ERRORS, LOCK}
        others = sorted(p.name for p in out.iterdir() if p.name not in ours and not p.name.startswith("."))
        if old is None and (others or (out / DATA).exists()):
            raise MNERError(f"--out {out}: a folder that mner tag did not write (it holds "
                            f"{', '.join(others[:5]) or DATA}); give a new or empty folder")
        if old is not None and overwrite:
            if others:
                raise MNERError(f"--out {out}: holds files mner tag did not write ({', '.join(others[:5])}); "
                                "--overwrite deletes only mner tag's own output: move them, or give a new folder")
            for name in (DATA, SHARDS):
                shutil.rmtree(out / name, ignore_errors=True)
            (out / ERRORS).unlink(missing_ok=True)
            (out / MANIFEST_NAME).unlink(missing_ok=True)
            old = None
        if old is not None:
            check_same_run(old, manifest, out)
            manifest = {**manifest, "created": old.get("created", manifest["created"]), "runs": old.get("runs", [])}
        (out / DATA).mkdir(exist_ok=True)
        (out / SHARDS).mkdir(exist_ok=True)
        for folder in (out / DATA, out / SHARDS, out):
            for tmp in folder.glob(".*.tmp"):  # left by a run that was stopped while writing
                tmp.unlink(missing_ok=True)
        self.manifest = manifest
        write_json_atomic(out / MANIFEST_NAME, manifest)
        return self.done()

    def _lock(self) -> None:
        import fcntl

        fd = os.open(self.out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise MNERError(f"--out {self.out}: another mner tag is writing into this folder; wait for it to "
                            "end, or give another --out") from None
        self._lock_fd = fd

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ------------------------------------------------------------------------------ shards
    def data_path(self, name: str) -> Path:
        return self.out / DATA / f"{name}{self.suffix}"

    def done(self) -> dict[int, int]:
        """``{shard index: rows read}`` of the finished shards (a mark and its data file)."""
        out: dict[int, int] = {}
        for mark in (self.out / SHARDS).glob("part-*.json"):
            name = mark.name[:-len(".json")]
            if not self.data_path(name).is_file():
                continue
            try:
                counts = json.loads(mark.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue  # redone
            out[int(counts["shard"])] = int(counts["read"])
        return out

    def commit(self, shard: Shard, rows: Sequence[dict], failed: Sequence[dict], counts: dict[str, Any]) -> None:
        """Write shard ``shard``'s tagged ``rows`` and ``failed`` rows, then its mark with ``counts``."""
        name = shard.name
        errors = self.out / SHARDS / f"{name}.errors.jsonl"
        if failed:
            _write_atomic(errors, lambda p: p.write_text(_jsonl_text(failed), encoding="utf-8"))
        else:
            errors.unlink(missing_ok=True)
        _write_atomic(self.data_path(name), lambda p: self._write_rows(p, rows))
        self._commits += 1
        crash = os.environ.get(CRASH_ENV, "")
        if crash and crash.split(":")[0] == str(self._commits) and crash.endswith(":before-mark"):
            os._exit(137)
        mark = {"shard": shard.index, "file": shard.path, "rows": [shard.start + 1, shard.start + shard.count],
                **counts}
        _write_atomic(self.out / SHARDS / f"{name}.json",
                      lambda p: p.write_text(json.dumps(mark, ensure_ascii=False), encoding="utf-8"))
        if crash and crash == str(self._commits):
            os._exit(137)

    def _write_rows(self, path: Path, rows: Sequence[dict]) -> None:
        if self.format == "jsonl":
            path.write_text(_jsonl_text(rows), encoding="utf-8")
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        from mner.batch.tagging import output_schema

        schema = output_schema()
        table = pa.Table.from_pylist([{c: r.get(c) for c in schema.names} for r in rows], schema=schema)
        pq.write_table(table, path)

    # ------------------------------------------------------------------------------ ending
    def counts(self) -> dict[str, Any]:
        """The counts of every finished shard, summed: read, tagged, failed, dropped, blanked and
        per reason (``failed_by_reason``, ``dropped_by_reason``, ``blanked_by_reason``)."""
        total: Counter = Counter()
        reasons = {k: Counter() for k in ("failed", "dropped", "blanked")}
        for mark in sorted((self.out / SHARDS).glob("part-*.json")):
            if not self.data_path(mark.name[:-len(".json")]).is_file():
                continue
            c = json.loads(mark.read_text(encoding="utf-8"))
            for k in _COUNT_KEYS:
                total[k] += c.get(k, 0)
            for k in reasons:
                reasons[k].update(c.get(f"{k}_by_reason", {}))
        out: dict[str, Any] = {k: total[k] for k in _COUNT_KEYS}
        for k, counter in reasons.items():
            out[f"{k}_by_reason"] = dict(sorted(counter.items()))
        return out

    def write_errors(self) -> int:
        """Assemble ``errors.jsonl`` from the finished shards' error files; returns its row count."""
        done = set(self.done())
        n = 0
        dest = self.out / ERRORS

        def write(tmp: Path) -> None:
            nonlocal n
            with open(tmp, "w", encoding="utf-8") as fh:
                for k in sorted(done):
                    part = self.out / SHARDS / f"part-{k:06d}.errors.jsonl"
                    if part.is_file():
                        text = part.read_text(encoding="utf-8")
                        n += text.count("\n")
                        fh.write(text)

        _write_atomic(dest, write)
        return n

    def finish(self, status: str, run: dict[str, Any]) -> dict[str, Any]:
        """Write ``errors.jsonl`` and the manifest (``status``: complete, stopped or failed)."""
        self.write_errors()
        done = self.done()
        counts = self.counts()
        manifest = dict(self.manifest)
        manifest.update(status=status, updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"), counts=counts,
                        shards={**manifest.get("shards", {}), "done": len(done)},
                        runs=list(manifest.get("runs", [])) + [run])
        self.manifest = manifest
        write_json_atomic(self.out / MANIFEST_NAME, manifest)
        return manifest


def read_output(out: str | Path) -> list[dict[str, Any]]:
    """Every tagged row of a finished output folder, in shard order (Parquet or JSONL)."""
    folder = Path(out) / DATA
    rows: list[dict[str, Any]] = []
    for path in sorted(folder.glob("part-*")):
        if path.suffix == ".parquet":
            pq = require_pyarrow("reading Parquet output")
            rows += pq.read_table(path).to_pylist()
        elif path.suffix == ".jsonl":
            # split on "\n" only: a JSON string may hold U+2028 or U+0085, which splitlines() cuts at
            rows += [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
    return rows
