"""``mner tag --engine ray``: the same windows as the local engine, on Ray Data.

The dataset is one row per unfinished shard; then

1. ``map_batches(_prepare_shard)`` (Ray tasks, CPU): read the shard's rows from its file, cut
   them into windows, parse them and decode their images (:func:`mner.batch.prepare.prepare_rows`),
   one output row per window;
2. ``map_batches(_Tagger, compute=ActorPoolStrategy(size=--concurrency), num_gpus=...)``: an actor
   pool, each actor loads the model once and tags one window per call
   (:func:`mner.batch.job.tag_window`, i.e. :func:`mner.batch.tagging.tag_batch`);
3. the driver streams the tagged windows back and commits each shard when all of its windows are
   in (:class:`mner.batch.job.Collector`), so that the output folder, its resume and its refusals
   are those of the local engine.

Ray's own ``read_*`` and ``write_parquet`` are not used: they number neither the rows of a file
(which errors.jsonl and resuming need) nor the files they write, so a restart could not tell
which rows are done. Reading happens in the tasks of step 1 instead, and writing in the driver
(the rows out are small: ids, entities, a probability).

Without ``--ray-address`` a Ray runtime is started on this machine (and stopped at the end); with
it the run joins that cluster, and the model folder travels to the actors through Ray's object
store (the inputs and images must be readable by the same paths on every node).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mner.batch.job import Collector, TagOptions, WindowPlan
from mner.batch.prepare import PrepareSettings
from mner.batch.sources import Shard
from mner.errors import MNERError

__all__ = ["run_ray", "import_ray"]


def import_ray():
    """``ray`` with Ray Data, or a :class:`MNERError` saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise MNERError("--engine ray needs Ray Data, which is not installed: pip install 'mner[distributed]' "
                        "(or use --engine local)") from None
    return ray


# ---------------------------------------------------------------------------- step 1: tasks
def _prepare_shard(batch: dict[str, np.ndarray], settings: bytes, cut: bytes):
    """One shard spec in, one row per window of it out: ``shard``, ``window``, ``windows`` and the
    pickled :class:`~mner.batch.prepare.Prepared` (rows with decoded images)."""
    from mner.batch.prepare import prepare_rows

    conf: PrepareSettings = pickle.loads(settings)
    windows_of = pickle.loads(cut)
    for spec in batch["shard"]:
        shard = Shard.from_dict(json.loads(spec))
        parts = windows_of(shard)
        for w, part in enumerate(parts):
            prepared = prepare_rows(shard.path, shard.format, part, conf)
            yield {"shard": np.array([spec], dtype=object), "window": np.array([w]),
                   "windows": np.array([len(parts)]),
                   "prepared": np.array([pickle.dumps(prepared, protocol=5)], dtype=object)}


# --------------------------------------------------------------------------- step 2: actors
def _materialise(files: dict[str, bytes], sha: str) -> Path:
    """Write a shipped model folder to this node's temporary folder once (by content hash)."""
    import tempfile

    dest = Path(tempfile.gettempdir()) / f"mner-model-{sha[:16]}"
    if not (dest / ".complete").is_file():
        tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
        for rel, data in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        (tmp / ".complete").write_text(sha)
        try:
            os.replace(tmp, dest)
        except OSError:  # another actor of this node got there first
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return dest


class _Tagger:
    """An actor of the pool: the model, loaded once; one window per call."""

    def __init__(self, checkpoint: str, shipped: Any, sha: str, batch_size: int, threads: int | None,
                 use_gpu: bool, support: bytes | None = None, decoding: dict | None = None):
        import torch

        from mner.pipeline import Pipeline

        if threads:
            torch.set_num_threads(threads)
        path = checkpoint
        if shipped is not None:
            import ray

            files = ray.get(shipped) if isinstance(shipped, ray.ObjectRef) else shipped
            path = str(_materialise(files, sha))
        device = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
        if support is not None:  # a few-shot model, bound to the support set the driver read (tweets, images)
            from mner.batch.job import bound_pipeline

            self.pipe = bound_pipeline(path, pickle.loads(support), decoding, batch_size, device)
        else:
            self.pipe = Pipeline.from_pretrained(path, device=device, batch_size=batch_size)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from mner.batch.job import tag_window

        results = [pickle.dumps(tag_window(self.pipe, pickle.loads(p)), protocol=5) for p in batch["prepared"]]
        return {"shard": batch["shard"], "window": batch["window"], "windows": batch["windows"],
                "outcome": np.array(results, dtype=object)}


# ---------------------------------------------------------------------------------- driver
def _model_files(model_dir: Path) -> dict[str, bytes]:
    return {p.relative_to(model_dir).as_posix(): p.read_bytes()
            for p in sorted(model_dir.rglob("*")) if p.is_file()}


def _unwrap(err: BaseException) -> BaseException:
    """The user error inside a Ray task error, if that is what it carries."""
    seen = 0
    cause: BaseException | None = err
    while cause is not None and seen < 10:
        if isinstance(cause, MNERError):
            return cause
        cause = getattr(cause, "cause", None) or cause.__cause__
        seen += 1
    return err


class _DropInfo(logging.Filter):
    """Ray Data's INFO lines (execution plans, "progress bars disabled") are not the user's business."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("ray.data"):
            return True                      # never another logger's record (a handler may be shared)
        return record.levelno > logging.INFO and "Progress bars disabled" not in record.getMessage()


def _quiet_ray_data() -> None:
    """Keep Ray Data's INFO lines in its log file, off the console.

    Only Ray's own console handlers get the filter: Ray Data also attaches the root logger's handlers
    to its logger, and a filter there would silence every INFO line of the process (a test of
    ``mner serve``'s first log line caught it)."""
    root = set(logging.getLogger().handlers)
    for handler in logging.getLogger("ray.data").handlers:
        if (handler in root or not type(handler).__module__.startswith("ray")
                or "File" in type(handler).__name__):
            continue
        if not any(isinstance(f, _DropInfo) for f in handler.filters):
            handler.addFilter(_DropInfo())


def run_ray(opts: TagOptions, settings: PrepareSettings, model_dir: Path, pending: Sequence[Shard],
            collector: Collector, log: Callable[[str], None], cut: WindowPlan) -> None:
    ray = import_ray()
    from mner.batch.manifest import model_fingerprint

    started_here = False
    actor_cpus = float(opts.cpus_per_actor)
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": "warning", "log_to_driver": True}
        if opts.ray_address:
            kwargs["address"] = opts.ray_address
        else:
            cpus = os.cpu_count() or 1
            wanted = (opts.concurrency or 1) * actor_cpus + 1  # the actors and one decoding task
            kwargs["num_cpus"] = int(max(cpus, np.ceil(wanted)))
        try:
            ray.init(**kwargs)
        except ConnectionError as err:
            raise MNERError(f"--ray-address {opts.ray_address}: cannot join the Ray cluster ({err})") from None
        started_here = True
    try:
        resources = ray.cluster_resources()
        gpus = opts.gpus_per_actor
        if gpus is None:
            gpus = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
        if gpus > 0 and resources.get("GPU", 0) < gpus:
            raise MNERError(f"--gpus-per-actor {gpus:g}: the Ray cluster has {resources.get('GPU', 0):g} GPUs")
        concurrency = opts.concurrency
        if concurrency is None:
            concurrency = (max(1, int(resources.get("GPU", 0) // gpus)) if gpus > 0
                           else max(1, int((resources.get("CPU", 1) - 1) // max(actor_cpus, 1e-9))))
        threads = opts.threads or max(1, int(actor_cpus))
        log(f"ray: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs; {concurrency} actor(s) with "
            f"{actor_cpus:g} CPU, {gpus:g} GPU, {threads} torch thread(s) each")

        shipped = None
        sha = ""
        if opts.ray_address:  # the actors may run where the checkpoint's path does not exist
            sha = model_fingerprint(model_dir)["sha256"]
            shipped = ray.put(_model_files(model_dir))

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # mner's own bar counts tweets
        ctx.print_on_execution_start = False
        ctx.enable_auto_log_stats = False
        _quiet_ray_data()
        specs = [{"shard": json.dumps(s.to_dict())} for s in pending]
        by_spec = {row["shard"]: shard for row, shard in zip(specs, pending)}
        ds = ray.data.from_items(specs, override_num_blocks=len(specs))
        # the decoding tasks ask for the memory of a window's images on top of their CPU: the request
        # differs from the actors', which also keeps Ray from fusing the two steps into the actors
        # (decoding would then stall the model)
        window_bytes = (256 << 20) + opts.batch_size * (1 << 20)
        ds = ds.map_batches(_prepare_shard, batch_size=1, num_cpus=1, memory=window_bytes,
                            fn_kwargs={"settings": pickle.dumps(settings), "cut": pickle.dumps(cut)})
        ds = ds.map_batches(_Tagger, batch_size=1, compute=ray.data.ActorPoolStrategy(size=concurrency),
                            num_cpus=actor_cpus, num_gpus=gpus,
                            fn_constructor_kwargs={"checkpoint": str(model_dir), "shipped": shipped, "sha": sha,
                                                   "batch_size": opts.batch_size, "threads": threads,
                                                   "use_gpu": gpus > 0,
                                                   "support": None if opts.support_set is None else
                                                   pickle.dumps(opts.support_set, protocol=5),
                                                   "decoding": dict(opts.decoding)})
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                for spec, w, n, blob in zip(batch["shard"], batch["window"], batch["windows"], batch["outcome"]):
                    collector.add(by_spec[spec], int(w), int(n), pickle.loads(blob))
        except Exception as err:  # noqa: BLE001 - a user error raised inside a task comes back wrapped
            user = _unwrap(err)
            if user is not err:
                raise user from None
            raise
    finally:
        if started_here:
            ray.shutdown()
