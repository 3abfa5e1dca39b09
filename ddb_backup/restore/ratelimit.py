"""A restore's write budget and its adaptive concurrency, per table.

* :class:`TokenBucket`: at most ``rate`` write units per second. A writer
  :meth:`~TokenBucket.acquire`\\ s a batch's estimated cost before sending it
  and :meth:`~TokenBucket.settle`\\ s with what DynamoDB reported consumed
  (``ConsumedCapacity``) afterwards: an estimate too high is given back, one
  too low is owed (the bucket goes below zero and the next batches wait).
  What the table refused stays paid for, so retries are paced too.
  The bucket holds at most one second of units and starts empty, so no
  second ever carries more than ``rate`` units on top of what was saved up
  while idle.
* :class:`Aimd`: the batches sent at once, adapted as TCP does: one more
  after a window of calls without a refusal (additive increase), halved on a
  refusal for capacity (``ProvisionedThroughputExceededException``,
  ``ThrottlingException``, unprocessed items: multiplicative decrease). A
  refusal of a call started before the last decrease does not decrease again
  (it reports the congestion already answered), so a burst of refusals from
  one overload counts once.
* The same refusal also sets the bucket's rate (budget or not) to a fraction
  of the rate measured just before it, which then grows by a small step per
  second of calls accepted, up to the budget: a restore into a provisioned
  table thus settles on what the table gives instead of spending its retries
  (a few refusals per cycle of growth, not one per call).
* :class:`RateMeter`: write units per second over the last few seconds, for
  the progress line.
* :class:`WriteControl`: the three for one table, and the cost estimate
  (1 write unit per started KB of an item by DynamoDB's size rules, at least
  1; a delete 1).

Clocks and sleeps are injectable: the tests drive them by hand.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence

from ddb_backup.items import Request, wire_item_size, wire_request

__all__ = ["Aimd", "RateMeter", "TokenBucket", "WriteControl", "request_cost"]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

#: Bytes per write unit (DynamoDB: 1 WCU per started 1 KB of item).
WRITE_UNIT_BYTES = 1024


def request_cost(request: Request) -> int:
    """Estimated write units of one request: a put 1 per started KB (at least 1), a delete 1."""
    put = wire_request(request).get("PutRequest")
    if put is None:
        return 1
    return max(1, math.ceil(wire_item_size(put["Item"]) / WRITE_UNIT_BYTES))


def batch_cost(requests: Iterable[Request]) -> int:
    return sum(request_cost(r) for r in requests)


class TokenBucket:
    """``rate`` units per second (``None``: no limit); :meth:`acquire` waits,
    :meth:`settle` corrects."""

    def __init__(
        self,
        rate: float | None,
        *,
        burst_seconds: float = 1.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if (rate is not None and rate <= 0) or burst_seconds <= 0:
            raise ValueError("a token bucket needs a positive rate and burst")
        self._burst = burst_seconds
        self._clock = clock
        self._sleep = sleep
        self.rate: float | None = None
        self._tokens = 0.0  # starts empty: no burst before the first second
        self._at = clock()
        self._lock = asyncio.Lock()  # waiters served in turn
        self.set_rate(rate)

    @property
    def capacity(self) -> float:
        return 0.0 if self.rate is None else self.rate * self._burst

    @property
    def limited(self) -> bool:
        return self.rate is not None

    @property
    def tokens(self) -> float:
        self._refill()
        return self._tokens

    def set_rate(self, rate: float | None) -> None:
        """Change the rate from now on (what was saved up is kept, up to the new capacity)."""
        self._refill()
        self.rate = None if rate is None else float(rate)
        self._tokens = min(self._tokens, self.capacity)

    def _refill(self) -> None:
        now = self._clock()
        if self.rate is not None:
            self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now

    async def acquire(self, cost: float) -> None:
        """Wait until ``cost`` units are there (a batch dearer than a full bucket
        waits for a full bucket and leaves a debt), then take them."""
        async with self._lock:
            while self.rate is not None:
                self._refill()
                need = min(cost, self.capacity)
                if self._tokens >= need:
                    self._tokens -= cost
                    return
                await self._sleep((need - self._tokens) / self.rate)

    def settle(self, estimated: float, actual: float) -> None:
        """The call took ``actual`` units where ``estimated`` were taken."""
        self._refill()
        if self.rate is not None:
            self._tokens = min(self.capacity, self._tokens + estimated - actual)


class Aimd:
    """Batches in flight: +1 per window of calls without a refusal, halved on one."""

    def __init__(self, maximum: int, *, minimum: int = 1, decrease: float = 0.5) -> None:
        if not 1 <= minimum <= maximum or not 0 < decrease < 1:
            raise ValueError("Aimd needs 1 <= minimum <= maximum and 0 < decrease < 1")
        self.maximum = maximum
        self.minimum = minimum
        self._decrease = decrease
        self.limit = float(maximum)
        self.in_flight = 0
        self.epoch = 0  # bumped by each decrease
        self.decreases = 0
        self._successes = 0  # accepted calls since the last change
        self._cond = asyncio.Condition()
        self._waiting = 0  # calls waiting for a place

    @property
    def allowed(self) -> int:
        return max(self.minimum, int(self.limit))

    def success(self) -> None:
        """A call accepted in full: one more in flight per ``allowed`` such calls."""
        self._successes += 1
        if self._successes >= self.allowed:
            self._successes = 0
            self.limit = min(float(self.maximum), float(self.allowed + 1))

    def refused(self, epoch: int) -> bool:
        """A refusal for capacity of a call started in ``epoch``: halve, once per
        overload (True when it did)."""
        if epoch < self.epoch:
            return False
        self.limit = max(float(self.minimum), self.limit * self._decrease)
        self._successes = 0
        self.epoch += 1
        self.decreases += 1
        return True

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[int]:
        """Hold one of the ``allowed`` places while a call is sent; yields its epoch."""
        # The lock only when a call must wait (the limit was cut): taking it for
        # every call cost more than the rest of this class.
        if self.in_flight >= self.allowed or self._waiting:
            async with self._cond:
                self._waiting += 1
                try:
                    await self._cond.wait_for(lambda: self.in_flight < self.allowed)
                finally:
                    self._waiting -= 1
                self.in_flight += 1
        else:
            self.in_flight += 1
        try:
            yield self.epoch
        finally:
            self.in_flight -= 1
            if self._waiting:
                async with self._cond:
                    self._cond.notify_all()


class RateMeter:
    """Units per second over the last ``window`` seconds."""

    def __init__(self, window: float = 5.0, *, clock: Clock = time.monotonic) -> None:
        self.window = window
        self.total = 0.0
        self._clock = clock
        self._start = clock()
        self._events: collections.deque[tuple[float, float]] = collections.deque()

    @property
    def age(self) -> float:
        """Seconds since the meter started."""
        return self._clock() - self._start

    def add(self, units: float) -> None:
        self.total += units
        self._events.append((self._clock(), units))

    def rate(self, window: float | None = None) -> float:
        """Units per second over the last ``window`` (at most the meter's) seconds."""
        now = self._clock()
        while self._events and self._events[0][0] <= now - self.window:
            self._events.popleft()
        span = min(window or self.window, self.window, now - self._start)
        if span <= 0:
            return 0.0
        return sum(u for t, u in self._events if t > now - span) / span


class WriteControl:
    """One table's budget (``max_write_units`` per second, or none), its
    adaptive concurrency (at most ``max_workers``) and rate, and its meter."""

    #: The rate after a refusal, as a fraction of the rate measured before it.
    DECREASE = 0.8
    #: Growth of the rate after a decrease, per second of accepted calls, as a
    #: fraction of the rate set by that decrease.
    INCREASE = 0.03
    #: Seconds over which the rate is measured at a refusal.
    MEASURE_SECONDS = 2.0
    #: At most one cut of the rate per this many seconds (a table refusing part
    #: of every call, e.g. a hot partition, must not drive the rate to nothing).
    CUT_SECONDS = 1.0
    #: The rate is never cut below this share of the best rate measured.
    FLOOR = 0.5

    def __init__(
        self,
        max_workers: int,
        max_write_units: int | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.max_write_units = max_write_units
        self.bucket = TokenBucket(max_write_units, clock=clock, sleep=sleep)
        self.aimd = Aimd(max_workers)
        self.meter = RateMeter(clock=clock)
        self._clock = clock
        self._cut_at: float | None = None
        self._peak = 0.0  # the best rate measured at a refusal
        self._step = 0.0  # units/s gained per second of accepted calls
        self.refusals = 0
        self.calls = 0

    @property
    def rate_limit(self) -> float | None:
        """The rate the bucket lets through now (the budget, or less after refusals)."""
        return self.bucket.rate

    async def before(self, requests: Sequence[Request]) -> int:
        """Wait for the budget of a call sending ``requests``; its estimated cost
        (0 while nothing limits the rate: sizes are only computed when needed)."""
        self.calls += 1
        if not self.bucket.limited:
            return 0
        cost = batch_cost(requests)
        await self.bucket.acquire(cost)
        return cost

    def after(
        self,
        estimated: int,
        consumed: float | None,
        sent: Sequence[Request],
        unprocessed: Sequence[Request],
    ) -> float:
        """Record what a call consumed: DynamoDB's figure, else the estimate of
        what it accepted (at least 1 unit per accepted request; 1 each while no
        rate limit applies); returns it."""
        accepted = len(sent) - len(unprocessed)
        if consumed is not None:
            # Every write costs at least 1 unit: a lower figure is not DynamoDB's
            # (an emulator's flat 1.0 per call), and would starve the bucket.
            consumed = max(consumed, float(accepted))
        elif accepted <= 0:
            consumed = 0.0
        elif estimated:
            consumed = float(max(accepted, estimated - batch_cost(unprocessed)))
        else:
            consumed = float(accepted)  # no limit: not worth sizing every item
        self.meter.add(consumed)
        # What was refused stays paid for: the bucket bounds what is offered,
        # so a refusal is not retried at once at any speed.
        refused = batch_cost(unprocessed) if estimated and unprocessed else 0
        self.bucket.settle(estimated, consumed + refused)
        return consumed

    def accepted(self, consumed: float) -> None:
        """A call accepted in full: more batches in flight, and more rate (up to the budget)."""
        self.aimd.success()
        rate = self.bucket.rate
        if rate is None or not self._step:
            return
        grown = rate + self._step * consumed / rate
        if self.max_write_units is None or grown < self.max_write_units:
            self.bucket.set_rate(grown)
        else:
            self.bucket.set_rate(self.max_write_units)
            self._step = 0.0

    def refused(self, epoch: int) -> None:
        """A refusal for capacity (throttling, unprocessed items) of a call started in ``epoch``."""
        self.refusals += 1
        if not self.aimd.refused(epoch):
            return  # this overload was answered already
        now = self._clock()
        if self._cut_at is not None and now - self._cut_at < self.CUT_SECONDS:
            return  # the rate was just cut: let the measure catch up first
        if self.meter.age < self.CUT_SECONDS:
            return  # too soon to tell a rate from a burst: fewer batches in flight only
        measured = self.meter.rate(self.MEASURE_SECONDS)
        current = self.bucket.rate
        if not measured and current is None:
            return  # nothing measured to set a rate from: fewer batches in flight only
        self._cut_at = now
        self._peak = max(self._peak, measured)
        base = min(current or measured, measured or current or 0.0)
        # Never below a share of the best rate seen: refusals that do not come
        # from the rate (a hot key, injected faults) must not drive it to nothing.
        rate = max(1.0, base * self.DECREASE, self._peak * self.FLOOR)
        if self.max_write_units is not None:
            rate = min(rate, float(self.max_write_units))
        self.bucket.set_rate(rate)
        self._step = max(1.0, rate * self.INCREASE)
