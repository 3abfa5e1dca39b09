"""How long a run may work and how often it asks AWS: the deadline and the poll loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["Deadline", "Polling", "poll_until"]


@dataclass(frozen=True, slots=True)
class Polling:
    """DescribeExport backoff: ``initial`` seconds, times ``factor``, at most ``maximum``."""

    initial: float = 5.0
    maximum: float = 60.0
    factor: float = 1.5


@dataclass(frozen=True, slots=True)
class Deadline:
    """The loop time by which a call answers (None: no deadline)."""

    at: float | None

    @classmethod
    def after(cls, seconds: float | None) -> Deadline:
        if seconds is None:
            return cls(None)
        return cls(asyncio.get_running_loop().time() + max(0.0, seconds))

    def remaining(self) -> float | None:
        if self.at is None:
            return None
        return self.at - asyncio.get_running_loop().time()

    def time_left(self) -> bool:
        remaining = self.remaining()
        return remaining is None or remaining > 0


#: One round of a poll loop: (something changed, something still to wait for).
Step = Callable[[], Awaitable[tuple[bool, bool]]]


async def poll_until(
    step: Step, *, save: Callable[[], Awaitable[None]], deadline: Deadline, polling: Polling
) -> None:
    """Run ``step`` until it has nothing to wait for or the deadline comes;
    ``save`` after every round that changed something, backing off in between."""
    interval = polling.initial
    while True:
        changed, waiting = await step()
        if not waiting:
            return
        if changed:
            await save()
        remaining = deadline.remaining()
        if remaining is not None and remaining <= 0:
            return
        await asyncio.sleep(interval if remaining is None else min(interval, remaining))
        interval = min(interval * polling.factor, polling.maximum)
