"""Bounded concurrency: N workers fed by a bounded queue, never a task per item;
and :func:`run`, the one event loop of each Lambda invocation or command."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

__all__ = ["first_error", "in_background", "run", "run_workers", "task_group"]

T = TypeVar("T")
R = TypeVar("R")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, on uvloop's event loop where uvloop is installed.

    Each handler invocation and each CLI command runs through this, once. The
    restore's writes go through reqwest (:mod:`ddb_backup.restore.transport`),
    whose answers reach the loop from its own threads: uvloop takes them for
    less CPU than the standard loop (docs/performance.md). Without uvloop (a
    platform it does not support) the standard loop runs the same code.
    """
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop has wheels wherever Lambda runs
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


async def run_workers(
    inputs: Iterable[T], work: Callable[[T], Awaitable[R]], *, concurrency: int
) -> list[R]:
    """Apply ``work`` to every input with at most ``concurrency`` running; keep order.

    The first exception cancels the other workers and propagates as itself
    (see :func:`task_group`); callers that want every outcome catch inside
    ``work``.
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

    async with task_group() as tg:
        workers = [tg.create_task(worker()) for _ in range(max(1, min(concurrency, len(items))))]
        for pair in enumerate(items):
            await queue.put(pair)
        await queue.join()
        for w in workers:
            w.cancel()
    return [results[i] for i in range(len(items))]


@contextlib.asynccontextmanager
async def task_group() -> AsyncIterator[asyncio.TaskGroup]:
    """An :class:`asyncio.TaskGroup` whose failure is raised as its first exception.

    Callers handle ``DdbBackupError`` and friends one at a time; an
    ``ExceptionGroup`` would slip past every ``except DdbBackupError``. The
    other exceptions of the group were raised by tasks cancelled because of
    the first, or are the same failure seen by sibling tasks.
    """
    try:
        async with asyncio.TaskGroup() as tg:
            yield tg
    except BaseExceptionGroup as group:
        raise first_error(group) from None


def first_error(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups, else ``exc`` itself."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


@contextlib.asynccontextmanager
async def in_background(work: Awaitable[None]) -> AsyncIterator[None]:
    """Run ``work`` as a task while the block runs; cancel it on leaving."""
    task = asyncio.ensure_future(work)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
