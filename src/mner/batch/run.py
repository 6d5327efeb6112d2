"""One ``mner tag`` run, whatever the engine: plan the shards, take the output folder (or resume
it), hand the unfinished shards to an engine (:mod:`.engine_local`, :mod:`.engine_ray`), commit each
shard when all of its windows are tagged (:class:`~mner.batch.job.Collector`), and write the
manifest and the final counts. The only module of ``batch/`` that imports an engine.
"""

from __future__ import annotations

import dataclasses
import gc
import sys
import time
from pathlib import Path
from typing import Any, Callable

from mner.batch.job import (ENGINES, WINDOW_ORDERS, Collector, TagOptions, check_task, load_pipeline, prepare_settings,
                            window_plan)
from mner.batch.manifest import model_fingerprint, new_manifest
from mner.batch.prepare import POLICIES
from mner.batch.shards import OUTPUT_FORMATS, OutputFolder
from mner.batch.sources import InputsChanged, InputWatch, expand_inputs, plan_shards
from mner.errors import MNERError

__all__ = ["run_tag"]


def _default_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _check(opts: TagOptions) -> None:
    if opts.engine not in ENGINES:
        raise MNERError(f"unknown engine {opts.engine!r}; choose one of {', '.join(ENGINES)}")
    if opts.format not in OUTPUT_FORMATS:
        raise MNERError(f"unknown output format {opts.format!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
    if opts.image_policy not in POLICIES:
        raise MNERError(f"unknown image policy {opts.image_policy!r}; choose one of {', '.join(POLICIES)}")
    if opts.batch_size < 1 or opts.shard_size < 1:
        raise MNERError("--batch-size and --shard-size must be >= 1")
    if opts.window_order not in WINDOW_ORDERS:
        raise MNERError(f"unknown window order {opts.window_order!r}; choose one of {', '.join(WINDOW_ORDERS)}")
    if opts.image_root is not None and not Path(opts.image_root).is_dir():
        raise MNERError(f"--image-root {opts.image_root}: no such folder")
    if opts.ray_address and opts.engine != "ray":
        raise MNERError("--ray-address goes with --engine ray")


def run_tag(opts: TagOptions, log: Callable[[str], None] = _default_log) -> dict[str, Any]:
    """Tag every row of ``opts.inputs`` into ``opts.out``; returns the final summary (also the
    manifest's counts). Raises :class:`MNERError` for what the user can fix."""
    from mner.models.checkpoint import resolve_model_dir

    from mner.backends import resolve_backend

    _check(opts)
    if opts.strict and opts.window_order != "input":  # --strict names the file's first row that cannot be tagged
        opts = dataclasses.replace(opts, window_order="input")
    started = time.time()
    # the folder the manifest fingerprints (and the ray engine ships): a checkpoint's model folder, or
    # an export folder (mner export), which runs on ONNX Runtime
    exported = resolve_backend(opts.checkpoint, opts.backend) == "onnxruntime"
    model_dir = Path(opts.checkpoint) if exported else resolve_model_dir(opts.checkpoint)
    check_task(opts)
    notes: list[str] = []
    files = expand_inputs(opts.inputs, notes)
    for note in notes:
        log(f"note: {note}")
    inputs, shards = plan_shards(files, opts.shard_size, opts.columns)
    watch = InputWatch(inputs)
    if opts.threads:
        import torch

        torch.set_num_threads(opts.threads)
    pipe = load_pipeline(opts, device="cpu" if opts.engine == "ray" else None)
    settings = prepare_settings(opts, pipe)
    cut = window_plan(opts, pipe)
    manifest = new_manifest(model_fingerprint(model_dir), inputs, opts.output_options(), len(shards))
    folder = OutputFolder(opts.out, opts.format)
    try:
        done = folder.open(manifest, overwrite=opts.overwrite)
        pending = [s for s in shards if s.index not in done]
        total = sum(f.rows for f in inputs)
        todo = sum(s.count for s in pending)
        log(f"mner tag: {total} rows in {len(inputs)} file(s), {len(shards)} shard(s) of up to {opts.shard_size}"
            + (f"; {len(shards) - len(pending)} finished earlier, {todo} rows to go" if len(pending) < len(shards) else "")
            + f"; engine {opts.engine}, batch size {opts.batch_size}, windows in {opts.window_order} order")
        if getattr(pipe, "task", "supervised") == "episodic":
            log(f"support: {len(pipe.support)} tweets, types {', '.join(pipe.types)}")
        if not settings.pixels:
            log(f"note: this model does not look at pixels (views: {', '.join(pipe.views) or 'none'}); "
                "image columns are not read")
        progress = _progress(opts, todo)
        collector = Collector(folder, opts.strict, progress, opts.batch_size, opts.engine, opts.max_errors, watch)
        status = "failed"
        changed = False
        t0 = time.time()
        try:
            if pending:
                if opts.engine == "local":
                    from mner.batch.engine_local import plan_local, run_local

                    plan = plan_local(opts, settings, pipe.device)
                    if plan.replicas:  # each worker loads its own copy: this one would only hold memory
                        pipe = None
                        gc.collect()
                    run_local(opts, settings, plan, pipe, pending, collector, log, cut)
                else:
                    from mner.batch.engine_ray import run_ray

                    del pipe
                    run_ray(opts, settings, model_dir, pending, collector, log, cut)
            watch.check_all()
            status = "complete"
        except KeyboardInterrupt:
            status = "stopped"
            raise
        except InputsChanged:
            changed = True
            raise
        finally:
            if progress is not None:
                progress.close()
            seconds = time.time() - t0
            run = {"engine": opts.engine, "batch_size": opts.batch_size, "window_order": opts.window_order, "started": time.strftime(
                "%Y-%m-%dT%H:%M:%S%z", time.localtime(started)), "seconds": round(seconds, 3),
                "rows": collector.rows_done, "shards": collector.shards_done, "status": status}
            manifest = folder.finish(status, run)
            if status != "complete":
                done_now = manifest["shards"]["done"]
                log(f"mner tag: {status} with {done_now} of {len(shards)} shards finished; "
                    + ("an input changed: tag it again with --overwrite (or a new --out)" if changed else
                       "run the same command again to tag the rest"))
    finally:
        folder.close()
    counts = manifest["counts"]
    summary = {"out": str(opts.out), "engine": opts.engine, "status": manifest["status"],
               "shards": len(shards), "shards_skipped": len(shards) - len(pending), **counts,
               "rows_this_run": collector.rows_done, "seconds": round(seconds, 3),
               "tweets_per_second": round(collector.rows_done / seconds, 2) if seconds > 0 else None}
    return summary


def _progress(opts: TagOptions, total: int):
    show = opts.progress if opts.progress is not None else sys.stderr.isatty()
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="tweet", desc="tagging", file=sys.stderr, dynamic_ncols=True, smoothing=0.05)
