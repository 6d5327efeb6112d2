"""``_manifest.json`` of an ``mner tag`` output folder: what made it (model, inputs, options,
mner version), how far it got and what it counted.

A run started again over an existing folder goes on only when the folder was made by the same
model (a content hash of the checkpoint's files), from the same inputs (paths, sizes,
modification times, row counts) and with the same options that change the output (format,
shard size, columns, image folder and policy, pixel limit). Anything else would mix two runs'
rows in one folder: it is refused, naming what changed. Options that change only the speed
(engine, batch size, workers, actors) may differ between runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

from mner import __version__
from mner.batch.sources import InputFile
from mner.errors import MNERError

__all__ = ["MANIFEST_NAME", "model_fingerprint", "new_manifest", "check_same_run", "read_manifest",
           "write_json_atomic"]

MANIFEST_NAME = "_manifest.json"
FORMAT_VERSION = 1


def model_fingerprint(model_dir: str | Path) -> dict[str, Any]:
    """``{"path", "sha256", "files"}``: a SHA-256 over the relative path, size and content of every
    file of the model folder (a copy of the checkpoint elsewhere has the same hash)."""
    model_dir = Path(model_dir)
    digest = hashlib.sha256()
    files = sorted(p for p in model_dir.rglob("*") if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(model_dir).parts))
    for p in files:
        rel = p.relative_to(model_dir).as_posix()
        digest.update(f"{rel}\0{p.stat().st_size}\0".encode())
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return {"path": str(model_dir.resolve()), "sha256": digest.hexdigest(), "files": len(files)}


def new_manifest(model: dict[str, Any], inputs: Sequence[InputFile], options: dict[str, Any],
                 shards: int) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return {"mner_version": __version__, "format_version": FORMAT_VERSION, "status": "running",
            "created": now, "updated": now, "model": model,
            "inputs": [f.to_dict() for f in inputs], "options": options,
            "shards": {"total": shards, "done": 0}, "counts": {}, "runs": []}


def read_manifest(out: Path) -> dict[str, Any] | None:
    path = out / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise MNERError(f"{path}: unreadable ({err}); this folder's run cannot be resumed: give a new --out, "
                        "or --overwrite to start again") from None


def _short(h: str) -> str:
    return h[:12]


def check_same_run(old: dict[str, Any], new: dict[str, Any], out: Path) -> None:
    """Raise :class:`MNERError` when ``old`` (the folder's manifest) and ``new`` (this run's) differ
    in model, inputs or output options."""
    tail = (f"; its finished shards would be mixed with this run's. Give a new --out, or --overwrite "
            f"to delete {out}'s output and start again")
    if old.get("format_version") != FORMAT_VERSION:
        raise MNERError(f"{out}: written by another version of mner tag (format "
                        f"{old.get('format_version')!r}, this one writes {FORMAT_VERSION})" + tail)
    om, nm = old.get("model", {}), new["model"]
    if om.get("sha256") != nm["sha256"]:
        raise MNERError(f"{out}: was tagged with another model ({om.get('path')}, content "
                        f"{_short(om.get('sha256') or '?')}); this run's model {nm['path']} is "
                        f"{_short(nm['sha256'])}" + tail)
    before = {f["path"]: f for f in old.get("inputs", [])}
    now = {f["path"]: f for f in new["inputs"]}
    if list(before) != list(now):
        added = [p for p in now if p not in before]
        gone = [p for p in before if p not in now]
        what = []
        if added:
            what.append(f"new input {', '.join(added[:3])}" + (" ..." if len(added) > 3 else ""))
        if gone:
            what.append(f"input {', '.join(gone[:3])}" + (" ..." if len(gone) > 3 else "") + " no longer given")
        if not what:
            what.append("the inputs are given in another order")
        raise MNERError(f"{out}: was tagged from other inputs ({'; '.join(what)})" + tail)
    for path, f in now.items():
        o = before[path]
        changed = [f"{k} {o.get(k)} -> {f[k]}" for k in ("size", "mtime_ns", "rows") if o.get(k) != f[k]]
        if changed:
            raise MNERError(f"{out}: input {path} changed since the folder was started ({', '.join(changed)})" + tail)
    oo, no = old.get("options", {}), new["options"]
    diff = [f"{k} {oo.get(k)!r} -> {no.get(k)!r}" for k in sorted(set(oo) | set(no)) if oo.get(k) != no.get(k)]
    if diff:
        raise MNERError(f"{out}: was tagged with other options ({', '.join(diff)})" + tail)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file beside ``path``, flush it to disk and rename it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, ensure_ascii=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
