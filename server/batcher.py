"""Micro-batching: concurrent requests share one model forward.

Requests wait in an asyncio queue. One collector task takes the first, drains what else is
waiting, waits at most `max_wait_ms` for more while the batch has room, then runs the
batch in the model thread. While the model runs, new requests queue up and form the next
batch, so batches grow with load.

The wait only happens while traffic is concurrent (the last batch merged several jobs):
one client sending one request at a time never has a partner to wait for, so its requests
run at once instead of paying `max_wait_ms` each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any, Generic, TypeVar

J = TypeVar("J")
R = TypeVar("R")


class MicroBatcher(Generic[J, R]):
    """Runs `run_batch(jobs) -> results` (one result per job, same order) on merged jobs.

    `size(job)` is how many rows a job adds to a batch; a batch never exceeds
    `max_batch` rows unless a single job is bigger. `run_batch` may return an Exception
    instance for a job to fail that job alone.
    """

    def __init__(
        self,
        run_batch: Callable[[list[J]], Sequence[R | BaseException]],
        executor: Executor,
        *,
        max_batch: int = 64,
        max_wait_ms: float = 2.0,
        size: Callable[[J], int] = lambda job: 1,
    ) -> None:
        self._run_batch = run_batch
        self._executor = executor
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self._size = size
        self._queue: asyncio.Queue[tuple[J, asyncio.Future]] | None = None
        self._task: asyncio.Task | None = None
        self._carry: tuple[J, asyncio.Future] | None = None  # too big for the last batch
        self._batch: list[tuple[J, asyncio.Future]] = []  # being collected or run
        self._concurrent = False  # did the last batch merge more than one job?

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._collect_forever(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        pending = self._batch + ([self._carry] if self._carry is not None else [])
        self._batch, self._carry = [], None
        while self._queue is not None and not self._queue.empty():
            pending.append(self._queue.get_nowait())
        for _, fut in pending:
            if not fut.done():
                fut.set_exception(RuntimeError("server is shutting down"))

    async def submit(self, job: J) -> R:
        """Queue one job and wait for its result (or its exception)."""
        if self._queue is None or self._task is None or self._task.done():
            raise RuntimeError("micro-batcher is not running")
        fut = asyncio.get_running_loop().create_future()
        await self._queue.put((job, fut))
        return await fut

    async def _collect_forever(self) -> None:
        assert self._queue is not None
        while True:
            self._batch = []
            await self._collect(self._batch)
            await self._run(self._batch)

    async def _collect(self, batch: list[tuple[J, asyncio.Future]]) -> None:
        """Fill `batch` in place, so that stop() can fail whatever it holds."""
        assert self._queue is not None
        if self._carry is not None:
            batch.append(self._carry)
            self._carry = None
        else:
            batch.append(await self._queue.get())
        rows = self._size(batch[0][0])
        deadline = time.monotonic() + (self.max_wait if self._concurrent else 0.0)
        while rows < self.max_batch:
            if self._queue.empty():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            else:
                item = self._queue.get_nowait()
            if rows + self._size(item[0]) > self.max_batch:
                self._carry = item  # too big to join: it heads the next batch
                break
            batch.append(item)
            rows += self._size(item[0])

    async def _run(self, batch: list[tuple[J, asyncio.Future]]) -> None:
        jobs = [job for job, _ in batch]
        self._concurrent = len(jobs) > 1
        loop = asyncio.get_running_loop()
        try:
            results: Sequence[Any] = await loop.run_in_executor(
                self._executor, self._run_batch, jobs
            )
        except Exception as exc:  # the whole batch failed: every caller learns why
            results = [exc] * len(batch)
        for (_, fut), result in zip(batch, results, strict=True):
            if fut.done():  # the caller went away (cancelled)
                continue
            if isinstance(result, BaseException):
                fut.set_exception(result)
            else:
                fut.set_result(result)
