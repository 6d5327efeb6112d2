"""``mner tag --engine local``: every core runs the model.

On a CPU device, ``--workers N`` spawned worker processes each load the model once (one
*replica* per worker, ``torch.set_num_threads(--threads or cores // N)``) and do the whole of a
window: parse its rows, decode its images (:func:`mner.batch.prepare.prepare_rows`) and tag it
(:func:`mner.batch.job.tag_window`). The main process reads each shard's raw rows (cheap: no
parsing), hands the windows to the workers a few ahead, and commits each shard when its windows
are in. It holds no model: the copy :func:`mner.batch.run.run_tag` loaded to learn the model's
views is dropped before the workers start.

On a GPU (or another accelerator) one model in the main process is the fast path: there the
workers only parse rows and decode images a few windows ahead of it, and never import torch.

``--workers 0``: everything in the main process. Workers are spawned (not forked: the parent has
torch's threads running), ignore Ctrl-C (the main process stops them) and exit when the main
process dies, however it dies.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import signal
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

from mner.batch.job import Collector, Outcome, TagOptions, WindowPlan, cpu_cores, default_workers, tag_window
from mner.batch.prepare import PrepareSettings, prepare_rows
from mner.batch.sources import Record, Shard
from mner.errors import MNERError, is_user_error

__all__ = ["LocalPlan", "plan_local", "run_local"]


@dataclass(frozen=True)
class LocalPlan:
    """How a local run uses the machine. ``replicas``: each of the ``workers`` processes holds a
    model and runs it with ``threads`` torch threads (CPU); otherwise the model runs in the main
    process (with ``threads`` torch threads) and the ``workers`` only prepare windows."""

    workers: int
    threads: int
    replicas: bool
    device: str = "cpu"


def plan_local(opts: TagOptions, settings: PrepareSettings, device) -> LocalPlan:
    """The plan for a model on ``device`` (a ``torch.device`` or a string) under ``opts``."""
    import torch

    device = torch.device(device)
    cores = cpu_cores()
    replicas = device.type == "cpu"
    if opts.workers is not None:
        workers = max(0, opts.workers)
    elif replicas:
        workers = default_workers(replicas=True)
    else:  # without images to decode, a worker would only parse JSON: not worth a process
        workers = default_workers(replicas=False) if settings.pixels else 0
    if replicas and workers:
        return LocalPlan(workers, opts.threads or max(1, cores // workers), True, str(device))
    threads = opts.threads or torch.get_num_threads()
    if workers and not opts.threads:  # leave the decoding workers their cores
        threads = min(threads, max(1, cores - workers))
    return LocalPlan(workers, threads, False, str(device))


def _windows(pending: Sequence[Shard], cut: WindowPlan) -> Iterator[tuple[Shard, int, int, Sequence[Record]]]:
    for shard in pending:
        parts = cut(shard)
        for w, part in enumerate(parts):
            yield shard, w, len(parts), part


def run_local(opts: TagOptions, settings: PrepareSettings, plan: LocalPlan, pipe, pending: Sequence[Shard],
              collector: Collector, log: Callable[[str], None], cut: WindowPlan) -> None:
    """Tag the windows of ``pending`` into ``collector``. ``pipe``: the model, used when it runs in
    this process (``plan.replicas`` false); None otherwise."""
    work = _windows(pending, cut)
    if plan.replicas:
        log(f"local: {plan.workers} worker process(es), each holding one model replica ({plan.device}) "
            f"and running it on {plan.threads} torch thread(s)")
        fn, initargs = _tag_in_replica, (opts, plan.threads)
    else:
        if _torch_threads() != plan.threads:
            import torch

            torch.set_num_threads(plan.threads)
        log(f"local: the model in this process ({pipe.device}, {plan.threads} torch thread(s)), "
            f"{plan.workers} image-decoding worker process(es)")
        fn, initargs = prepare_rows, (None, None)
    if plan.workers == 0:
        for shard, w, n, part in work:
            prepared = prepare_rows(shard.path, shard.format, part, settings)
            collector.add(shard, w, n, tag_window(pipe, prepared))
        return
    from concurrent.futures import ProcessPoolExecutor

    ahead = 2 * plan.workers + (0 if plan.replicas else 2)
    pool = ProcessPoolExecutor(max_workers=plan.workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=initargs)
    inflight: collections.deque[tuple[Shard, int, int, Future]] = collections.deque()
    died = "a worker process of mner tag died (killed, or out of memory" + (
        ": each worker holds a copy of the model; try fewer --workers)" if plan.replicas else ")")
    finished = False
    try:
        for shard, w, n, part in work:
            inflight.append((shard, w, n, pool.submit(fn, shard.path, shard.format, part, settings)))
            if len(inflight) >= ahead:
                _collect_next(inflight, pipe, collector, died)
        while inflight:
            _collect_next(inflight, pipe, collector, died)
        finished = True
    finally:
        for *_, fut in inflight:
            fut.cancel()
        if finished:
            pool.shutdown(wait=True)
        else:  # Ctrl-C or an error: the windows still running would be thrown away; stop them now
            _stop(pool)


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _collect_next(inflight: collections.deque, pipe, collector: Collector, died: str) -> None:
    """Wait for the oldest window (shards are committed in input order, --strict names the first
    bad row) and hand it to ``collector``, tagging it here when the workers only prepared it."""
    from concurrent.futures.process import BrokenProcessPool

    shard, w, n, fut = inflight.popleft()
    try:
        result = fut.result()
    except BrokenProcessPool:
        raise MNERError(died) from None
    collector.add(shard, w, n, result if isinstance(result, Outcome) else tag_window(pipe, result))


def _stop(pool) -> None:
    """Shut ``pool`` down without waiting for the windows its workers are running."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        if p.is_alive():
            p.terminate()
    for p in processes:
        p.join(timeout=10)


# ------------------------------------------------------------------------------ the workers
_OPTS: TagOptions | None = None
_PIPE = None


def _init_worker(opts: TagOptions | None, threads: int | None) -> None:
    """Runs once in each worker: Ctrl-C is the main process's to handle; exit with the main
    process; a replica worker sets its torch threads (its model is loaded with the first window)."""
    global _OPTS
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    if opts is not None:
        import torch

        torch.set_num_threads(threads)
        _OPTS = opts


def _exit_with_parent() -> None:
    """A thread that ends this worker as soon as the main process is gone (``kill -9``, a crash):
    an orphaned worker would otherwise wait for work forever, holding its model and the main
    process's standard output and error."""
    import threading
    from multiprocessing.connection import wait

    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="mner-exit-with-parent", daemon=True).start()


def _tag_in_replica(path: str, fmt: str, records: Sequence[Record], settings: PrepareSettings) -> Outcome:
    """One window in a replica worker: prepare its rows and tag them with this worker's model."""
    global _PIPE
    try:
        if _PIPE is None:
            from mner.batch.job import load_pipeline

            _PIPE = load_pipeline(_OPTS, device="cpu")
        return tag_window(_PIPE, prepare_rows(path, fmt, records, settings))
    except Exception as err:  # noqa: BLE001 - sent to the main process as it is, if it can travel
        travels = _picklable(err)
        if travels:
            raise
        if is_user_error(err):  # e.g. an MNERError subclass whose constructor takes other arguments
            raise MNERError(str(err)) from None
        raise RuntimeError(f"{type(err).__name__}: {err}") from err


def _picklable(err: BaseException) -> bool:
    import pickle

    try:
        pickle.loads(pickle.dumps(err))
        return True
    except Exception:  # noqa: BLE001 - any failure means it cannot cross to the main process
        return False
