"""Micro-batching: concurrent requests gathered into model batches (as Ray Serve's
``@serve.batch``, LitServe's ``max_batch_size``/``batch_timeout`` and TorchServe's
``batchSize``/``maxBatchDelay`` do).

Two knobs: a batch holds at most ``max_batch_size`` items, and the first item of a batch waits
at most ``max_wait_ms`` for others to join it. Items wait in a bounded queue (``max_queue``);
a submission that does not fit is refused as a whole (:class:`QueueFull`), never dropped later.
The model runs in one worker thread, so the event loop keeps answering (``/health``, new
requests) while a batch is computed; every item taken from the queue gets an answer.

If a batch fails, its items are run again one by one, so one bad item cannot fail the others.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import time
from typing import Any, Callable, Sequence

__all__ = ["MicroBatcher", "QueueFull"]

log = logging.getLogger("mner.serve")


class QueueFull(Exception):
    """The queue cannot take the submitted items now."""


class MicroBatcher:
    """Gathers items into calls of ``fn(items) -> results`` (one result per item, in order).

    Args:
        fn: the batch function (runs in a worker thread).
        max_batch_size: most items per call.
        max_wait_ms: longest wait of a batch's first item for others.
        max_queue: most items waiting (not yet in a running batch).
        on_batch: called with each batch's size and model seconds after it ran (metrics).
    """

    def __init__(self, fn: Callable[[list[Any]], Sequence[Any]], max_batch_size: int = 16,
                 max_wait_ms: float = 5.0, max_queue: int = 256,
                 on_batch: Callable[[int, float], None] | None = None):
        self.fn, self.max_batch_size, self.max_wait = fn, max_batch_size, max_wait_ms / 1000.0
        self.max_queue, self.on_batch = max_queue, on_batch
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        #: how many batches of each size ran so far (bounded: one count per size)
        self.size_counts: collections.Counter[int] = collections.Counter()

    # ------------------------------------------------------------------------------ life
    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mner-model")
        self._task = asyncio.create_task(self._loop(), name="mner-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._queue is not None:  # answer what still waits
            while not self._queue.empty():
                _, fut = self._queue.get_nowait()
                if not fut.done():
                    fut.set_exception(RuntimeError("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    @property
    def batches(self) -> int:
        return sum(self.size_counts.values())

    def stats(self) -> dict[str, Any]:
        items = sum(k * n for k, n in self.size_counts.items())
        return {"batches": self.batches, "items": items, "waiting": self.waiting,
                "mean_batch_size": round(items / self.batches, 2) if self.batches else None,
                "largest_batch": max(self.size_counts, default=None)}

    @property
    def waiting(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    # ------------------------------------------------------------------------------ use
    def submit(self, items: Sequence[Any]) -> list[asyncio.Future]:
        """Queue every item (or none: :class:`QueueFull`); a future per item."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        if self.waiting + len(items) > self.max_queue:
            raise QueueFull(f"{self.waiting} items wait, the queue holds {self.max_queue}")
        loop = asyncio.get_running_loop()
        futures = []
        for item in items:
            fut = loop.create_future()
            self._queue.put_nowait((item, fut))
            futures.append(fut)
        return futures

    async def _loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch_size:
                if not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                    continue
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), left))
                except asyncio.TimeoutError:
                    break
            self.size_counts[len(batch)] += 1
            items = [item for item, _ in batch]
            t0 = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self._run, items)
            except Exception as err:  # noqa: BLE001 - handed to the waiting requests
                results = [err] * len(items)
            if self.on_batch is not None:
                self.on_batch(len(items), time.perf_counter() - t0)
            for (_, fut), res in zip(batch, results):
                if fut.done():  # its request timed out or went away: nothing to answer
                    continue
                if isinstance(res, BaseException):
                    fut.set_exception(res)
                else:
                    fut.set_result(res)

    def _run(self, items: list[Any]) -> list[Any]:
        try:
            results = list(self.fn(items))
            if len(results) != len(items):
                raise RuntimeError(f"batch function gave {len(results)} results for {len(items)} items")
            return results
        except Exception:  # noqa: BLE001 - find the item at fault, answer the others
            if len(items) == 1:
                raise
            out: list[Any] = []
            for item in items:
                try:
                    out.append(self.fn([item])[0])
                except Exception as err:  # noqa: BLE001
                    out.append(err)
            return out
