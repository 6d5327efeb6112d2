"""``mner tag --engine local``: one process runs the model; ``--workers`` processes parse the rows
and decode the images of the next windows meanwhile (``--workers 0``: all in one process).

The main process reads each shard's raw rows (cheap: no parsing), hands its windows to the
workers a few ahead of the model, and tags the prepared windows in order. Workers are spawned
(not forked: the parent has torch's threads running) and never import torch.
"""

from __future__ import annotations

import collections
import multiprocessing
import signal
from typing import Callable, Iterator, Sequence

from mner.batch.job import Collector, TagOptions, default_workers, tag_window, windows
from mner.batch.prepare import PrepareSettings, prepare_rows
from mner.batch.sources import Record, Shard, read_shard

__all__ = ["run_local"]


def _windows(pending: Sequence[Shard], settings: PrepareSettings, batch_size: int
             ) -> Iterator[tuple[Shard, int, int, Sequence[Record]]]:
    for shard in pending:
        parts = windows(read_shard(shard, settings.columns), batch_size)
        for w, part in enumerate(parts):
            yield shard, w, len(parts), part


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle


def run_local(opts: TagOptions, settings: PrepareSettings, pipe, pending: Sequence[Shard],
              collector: Collector, log: Callable[[str], None]) -> None:
    if opts.workers is not None:
        workers = max(0, opts.workers)
    else:  # without images to decode, a worker would only parse JSON: not worth a process
        workers = default_workers() if settings.pixels else 0
    if workers and not opts.threads:
        import os

        import torch

        free = max(1, (os.cpu_count() or 1) - workers)
        if torch.get_num_threads() > free:  # leave the decoding workers their cores
            torch.set_num_threads(free)
    log(f"local: {workers} decoding worker process(es), {_threads()} torch thread(s)")
    work = _windows(pending, settings, opts.batch_size)
    if workers == 0:
        for shard, w, n, part in work:
            prepared = prepare_rows(shard.path, shard.format, part, settings)
            collector.add(shard, w, n, tag_window(pipe, prepared))
        return
    from concurrent.futures import ProcessPoolExecutor

    ahead = 2 * workers + 2
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_ignore_sigint)
    inflight: collections.deque = collections.deque()
    try:
        for item in work:
            shard, w, n, part = item
            inflight.append((shard, w, n, pool.submit(prepare_rows, shard.path, shard.format, part, settings)))
            if len(inflight) >= ahead:
                _tag_next(inflight, pipe, collector)
        while inflight:
            _tag_next(inflight, pipe, collector)
    finally:
        for *_, fut in inflight:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _tag_next(inflight: collections.deque, pipe, collector: Collector) -> None:
    shard, w, n, fut = inflight.popleft()
    collector.add(shard, w, n, tag_window(pipe, fut.result()))
