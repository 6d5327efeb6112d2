"""Batch tagging of many tweets: ``mner tag`` (see docs/batch-tagging.md).

- :mod:`.sources`: the input files (JSONL, CSV, Parquet, Twitter/CoNLL), their rows with
  provenance, and the shards they are cut into;
- :mod:`.prepare`: raw rows -> tweets with decoded images, or the reason they cannot be tagged;
- :mod:`.tagging`: :func:`tag_batch`, the one per-batch function every engine runs;
- :mod:`.shards`, :mod:`.manifest`: the output folder, resumed, refused when the model, the inputs
  or the options changed;
- :mod:`.run`: one run, whatever the engine; :mod:`.engine_local` and :mod:`.engine_ray`, and
  :mod:`.job`, what they share (options, windows, the collector; it imports no engine).

Nothing heavy is imported here: the CPU-side modules run in worker processes without torch, and
Ray is imported only by the Ray engine.
"""

from __future__ import annotations

import importlib

__all__ = ["TagOptions", "run_tag", "tag_batch", "read_output"]

_LAZY = {"TagOptions": "mner.batch.job", "run_tag": "mner.batch.run", "tag_batch": "mner.batch.tagging",
         "read_output": "mner.batch.shards"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mner.batch' has no attribute {name!r}")
