"""Bounded concurrency: N workers fed by a bounded queue, never a task per item."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

__all__ = ["run_workers"]

T = TypeVar("T")
R = TypeVar("R")


async def run_workers(
    inputs: Iterable[T], work: Callable[[T], Awaitable[R]], *, concurrency: int
) -> list[R]:
    """Apply ``work`` to every input with at most ``concurrency`` running; keep order.

    The first exception cancels the other workers and propagates (as the
    TaskGroup's ``ExceptionGroup``); callers that want every outcome catch
    inside ``work``.
    """
    items = list(inputs)
    results: dict[int, R] = {}
    queue: asyncio.Queue[tuple[int, T]] = asyncio.Queue(maxsize=max(1, concurrency) * 2)

    async def worker() -> None:
        while True:
            idx, item = await queue.get()
            try:
                results[idx] = await work(item)
            finally:
                queue.task_done()

    async with asyncio.TaskGroup() as tg:
        workers = [tg.create_task(worker()) for _ in range(max(1, min(concurrency, len(items))))]
        for pair in enumerate(items):
            await queue.put(pair)
        await queue.join()
        for w in workers:
            w.cancel()
    return [results[i] for i in range(len(items))]
