"""BatchWriteItem with bounded concurrency, retries that give up honestly, and
a dead-letter object for whatever still fails.

* At most ``max_workers`` batches are in flight (a semaphore; ``submit`` waits
  for a free slot, so a fast reader cannot run ahead of DynamoDB).
* UnprocessedItems, throttling, 5xx and connection errors are retried with
  exponential backoff and *full* jitter (``uniform(0, min(cap, base * 2**n))``).
  A call that made progress (some items accepted) does not use up the budget;
  ``max_attempts`` calls in a row without progress do.
* A non-retryable error (e.g. ``ValidationException``: one bad item poisons
  its batch) splits the batch in halves until the bad items stand alone, so
  good neighbours are still written.
* Items still failing go to a :class:`DeadLetterSink`: gzipped lines in the
  export's own format (``{"Item": {...}}``) plus an AWS-style
  ``manifest-files.json``, i.e. a folder ``restore_export`` can restore later.

The sender is pluggable: ``sender(table, wire_requests) -> unprocessed
wire_requests``, raising botocore's ``ClientError`` (or connection errors).
:func:`default_sender` picks :func:`~ddb_backup.restore.sender.direct_sender`
(the client's credentials, endpoint and HTTP session, SigV4 per batch, the
body orjson-encoded from the parsed items) when the client offers it, else
:func:`generic_sender` (botocore's ordinary ``batch_write_item``: its hooks
and Stubbers apply).

Retries are decided here. The direct sender makes one HTTP attempt per call;
the generic one goes through the client, whose own retries multiply with these
(``A`` client attempts per call), which is why the restore builds its
DynamoDB client with ``max_attempts=1`` (see
:func:`ddb_backup.restore.restore_clients`).
"""

from __future__ import annotations

import asyncio
import random
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from botocore.exceptions import ClientError, ParamValidationError

from ddb_backup.aws import error_code, is_retryable, raise_aws_error
from ddb_backup.items import (
    Request,
    WireItem,
    WireRequest,
    request_from_botocore,
    request_to_botocore,
    wire_request,
)
from ddb_backup.log import get_logger
from ddb_backup.manifest import DataFile
from ddb_backup.restore.ratelimit import WriteControl
from ddb_backup.restore.sender import (
    BatchSender,
    CanonicalLineSender,
    Unprocessed,
    consumed_units,
    direct_sender,
    supports_direct_path,
)
from ddb_backup.restore.transport import ReqwestPoster
from ddb_backup.storage import Storage, content_md5

__all__ = [
    "MAX_BATCH",
    "BatchSender",
    "BatchWriter",
    "DeadLetterSink",
    "RetryPolicy",
    "WireRequest",
    "call_with_retries",
    "default_sender",
    "generic_sender",
    "put_request",
    "request_item",
]

log = get_logger("writer")

#: BatchWriteItem's limit.
MAX_BATCH = 25

#: Refusals for capacity: retried at the table's pace (see ``BatchWriter``).
CAPACITY_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter; ``max_attempts`` calls without progress."""

    max_attempts: int = 10
    base_delay: float = 0.05
    max_delay: float = 5.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError("RetryPolicy needs max_attempts >= 1 and 0 <= base <= max delay")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Sleep before retry number ``attempt`` (1-based): full jitter."""
        cap = min(self.max_delay, self.base_delay * 2 ** min(attempt, 32))
        return (rng or random).uniform(0, cap)


async def call_with_retries(
    policy: RetryPolicy,
    call: Callable[[], Awaitable[T]],
    *,
    operation: str,
    table: str | None = None,
) -> T:
    """Run ``call`` retrying throttling/5xx/connection errors; translate the last error."""
    attempt = 0
    while True:
        try:
            return await call()
        except Exception as exc:
            attempt += 1
            if not is_retryable(exc) or attempt >= policy.max_attempts:
                raise_aws_error(exc, operation=operation, table=table)
            await asyncio.sleep(policy.delay(attempt))


# --- wire <-> botocore ------------------------------------------------------


def put_request(item: WireItem) -> WireRequest:
    """``{"PutRequest": {"Item": item}}`` for an item :func:`~ddb_backup.items.check_item_line`
    returned: request bodies are built from parsed values, never from a line's bytes."""
    return {"PutRequest": {"Item": item}}


def request_item(request: Request) -> WireItem:
    """The item of a put request."""
    put: WireItem = wire_request(request)["PutRequest"]["Item"]
    return put


def taking_canonical_lines(sender: BatchSender) -> CanonicalLineSender:
    """``sender`` if it sends :data:`~ddb_backup.items.CanonicalLine` requests as
    they stand (the direct sender), else ``sender`` behind a step decoding them:
    any sender, a user's or a test's, sees parsed wire requests only."""
    if getattr(sender, "takes_canonical_lines", False):
        return sender  # type: ignore[return-value]  # it says so: its signature is wider

    async def send(table: str, requests: Sequence[Request]) -> list[WireRequest]:
        return await sender(table, [wire_request(r) for r in requests])

    return send


def generic_sender(dynamodb: Any) -> BatchSender:
    """Send through ``dynamodb.batch_write_item`` (base64 -> bytes exactly once)."""

    async def send(table: str, requests: list[WireRequest]) -> list[WireRequest]:
        resp = await dynamodb.batch_write_item(
            RequestItems={table: [request_to_botocore(r) for r in requests]},
            ReturnConsumedCapacity="TOTAL",
        )
        unprocessed = (resp.get("UnprocessedItems") or {}).get(table, [])
        return Unprocessed(
            [request_from_botocore(r) for r in unprocessed], consumed_units(resp, table)
        )

    return send


def default_sender(dynamodb: Any, http: ReqwestPoster | None = None) -> BatchSender:
    """The direct path (one signed POST per batch with the client's credentials,
    endpoint and HTTP session, or through ``http``; retries are this module's)
    when the client supports it, else :func:`generic_sender`."""
    if supports_direct_path(dynamodb):
        return direct_sender(dynamodb, http)
    return generic_sender(dynamodb)


# --- dead letters -----------------------------------------------------------


class DeadLetterSink:
    """Failed put requests as gzipped export lines under ``folder/data/``.

    Parts are uploaded as they fill (memory stays bounded however many items
    fail) and on :meth:`flush`; :meth:`flush` also rewrites
    ``folder/manifest-files.json`` listing every part with its count and MD5,
    so the folder verifies and restores like an AWS export.
    """

    PART_BYTES = 4 * 1024 * 1024

    def __init__(
        self,
        storage: Storage,
        folder: str,
        *,
        part_prefix: str = "part",
        files: list[DataFile] | None = None,
    ) -> None:
        self._storage = storage
        self.folder = folder.rstrip("/")
        self._part_prefix = part_prefix
        self.files: list[DataFile] = list(files or [])
        self._lock = asyncio.Lock()
        self._reset()

    def _reset(self) -> None:
        self._gz = zlib.compressobj(6, zlib.DEFLATED, zlib.MAX_WBITS | 16)
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._pending = 0

    @property
    def count(self) -> int:
        return sum(f.item_count for f in self.files) + self._pending

    @property
    def keys(self) -> list[str]:
        return [f.key for f in self.files]

    def _lines(self, requests: Sequence[Request], seq: int) -> list[bytes]:
        """The lines to keep for ``requests`` (a subclass's hook; ``seq``: the
        first line's sequence number). Here puts only, each as an export line
        (the value the check returned); deletes are dropped."""
        wire = map(wire_request, requests)
        return [orjson.dumps({"Item": r["PutRequest"]["Item"]}) for r in wire if "PutRequest" in r]

    async def add(self, requests: Sequence[Request]) -> None:
        if not requests:
            return
        async with self._lock:
            # Encoded under the lock: ``seq`` must not change until the lines are buffered.
            for line in self._lines(requests, self.count):
                chunk = self._gz.compress(line + b"\n")
                self._out.append(chunk)
                self._out_bytes += len(chunk)
                self._pending += 1
            if self._out_bytes >= self.PART_BYTES:
                await self._upload()

    def _files_manifest(self) -> bytes:
        """``manifest-files.json``: one line per part with its count and MD5."""
        return b"".join(
            orjson.dumps(
                {
                    "itemCount": f.item_count,
                    "md5Checksum": f.md5,
                    "etag": None,
                    "dataFileS3Key": f.key,
                }
            )
            + b"\n"
            for f in self.files
        )

    async def _write_manifests(self) -> None:
        """Write the folder's manifests (a subclass's hook; called with parts)."""
        await self._storage.put_bytes(f"{self.folder}/manifest-files.json", self._files_manifest())

    async def flush(self) -> None:
        """Upload what is buffered and the folder's manifests; nothing is written
        while nothing failed."""
        async with self._lock:
            if self._pending:
                await self._upload()
            if self.files:
                await self._write_manifests()

    async def _upload(self) -> None:
        body = b"".join([*self._out, self._gz.flush()])
        key = f"{self.folder}/data/{self._part_prefix}-{len(self.files) + 1:05d}.json.gz"
        await self._storage.put_bytes(key, body, content_type="application/gzip")
        self.files.append(
            DataFile(key=key, item_count=self._pending, md5=content_md5(body), size=len(body))
        )
        log.warning(
            "dead-letter part written",
            extra={"key": key, "items": self._pending, "bytes": len(body)},
        )
        self._reset()


# --- the writer -------------------------------------------------------------


@dataclass(slots=True)
class WriterStats:
    """What a writer did; counts of requests, never their contents."""

    written: int = 0
    failed: int = 0
    batches: int = 0
    calls: int = 0
    retried_calls: int = 0
    refused_calls: int = 0  # refused for capacity (throttled, or items left unprocessed)
    error_codes: dict[str, int] = field(default_factory=dict)

    def note_error(self, exc: BaseException) -> None:
        code = error_code(exc) or type(exc).__name__
        self.error_codes[code] = self.error_codes.get(code, 0) + 1


#: ``on_done(written, failed)`` called once per submitted batch, after any
#: failed requests are in the dead-letter sink.
BatchDone = Callable[[int, int], None]


class BatchWriter:
    """Writes batches of at most 25 requests to one table, ``max_workers`` at a time.

    Use as ``async with BatchWriter(...) as w: await w.submit(requests, on_done)``;
    leaving the block waits for every batch in flight and re-raises the first
    unexpected error (a dead-letter upload that failed, a bug), never a
    DynamoDB error: those end in ``failed`` counts and dead letters.
    """

    def __init__(
        self,
        table: str,
        sender: BatchSender,
        *,
        max_workers: int = 5,
        retry: RetryPolicy | None = None,
        dead_letters: DeadLetterSink | None = None,
        rng: random.Random | None = None,
        control: WriteControl | None = None,
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be >= 1")
        self.table = table
        # The table's budget and adaptive concurrency (shared by its clear and writes).
        self.control = control or WriteControl(max_workers)
        self._accepted = 0  # requests of this table accepted so far, every batch
        self._sender = taking_canonical_lines(sender)
        self._retry = retry or RetryPolicy()
        self._dead = dead_letters
        self._rng = rng or random.Random()
        self._slots = asyncio.Semaphore(max_workers)
        self._tasks: set[asyncio.Task[None]] = set()
        self._error: BaseException | None = None
        self.stats = WriterStats()

    async def __aenter__(self) -> BatchWriter:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc is not None:
            for task in self._tasks:
                task.cancel()
        await self.drain()

    async def drain(self) -> None:
        """Wait for every batch in flight; raise the first unexpected error."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._error is not None:
            raise self._error

    async def submit(self, requests: Sequence[Request], on_done: BatchDone | None = None) -> None:
        """Queue one batch; waits while ``max_workers`` batches are in flight."""
        if not requests:
            if on_done:
                on_done(0, 0)
            return
        if len(requests) > MAX_BATCH:
            raise ValueError(f"a batch holds at most {MAX_BATCH} requests")
        if self._error is not None:
            raise self._error
        await self._slots.acquire()
        task = asyncio.create_task(self._run(requests, on_done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, requests: Sequence[Request], on_done: BatchDone | None) -> None:
        try:
            failed = await self._write(requests)
            if failed and self._dead is not None:
                await self._dead.add(failed)
            written = len(requests) - len(failed)
            self.stats.batches += 1
            self.stats.written += written
            self.stats.failed += len(failed)
            if on_done:
                on_done(written, len(failed))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if self._error is None:
                self._error = exc
        finally:
            self._slots.release()

    async def _write(self, requests: Sequence[Request]) -> Sequence[Request]:
        """Write until done or the budget is spent; return what could not be written."""
        pending = requests
        stalls = 0  # calls in a row that made no progress
        refusals = 0  # calls in a row of this batch refused, for the backoff
        calls = 0
        mark = self._accepted  # the table's progress when this batch last looked
        while pending:
            calls += 1
            self.stats.calls += 1
            sent = await self._send(pending)
            if isinstance(sent, Exception):
                exc = sent
                self.stats.note_error(exc)
                if not is_retryable(exc):
                    if isinstance(exc, ClientError | ParamValidationError | ValueError):
                        # Refusals of the request itself (DynamoDB's, or botocore's and
                        # base64's on the generic path) are isolated to the bad item.
                        return await self._isolate(pending, exc)
                    raise exc
                unprocessed, capacity = pending, error_code(exc) in CAPACITY_CODES
            else:
                unprocessed, capacity = sent, bool(sent)
            if not unprocessed:
                return []
            accepted = len(pending) - len(unprocessed)
            # A refusal for capacity while the table keeps taking items (other
            # batches, or part of this one) is the table's pace, not a failure:
            # it does not use up the retry budget.
            progressed = accepted > 0 or (capacity and self._accepted > mark)
            mark = self._accepted
            stalls = 0 if progressed else stalls + 1
            refusals = 0 if accepted else refusals + 1
            if stalls >= self._retry.max_attempts:
                log.warning(
                    "retry budget spent",
                    extra={"table": self.table, "requests": len(unprocessed), "calls": calls},
                )
                return unprocessed
            self.stats.retried_calls += 1
            pending = unprocessed
            await asyncio.sleep(self._retry.delay(max(1, refusals), self._rng))
        return []

    async def _send(self, pending: Sequence[Request]) -> Sequence[Request] | Exception:
        """One call under the table's budget and concurrency: what it left
        unprocessed, or the exception it raised (nothing consumed)."""
        control = self.control
        estimated = await control.before(pending)
        async with control.aimd.slot() as epoch:
            try:
                answer = await self._sender(self.table, pending)
            except Exception as exc:
                control.after(estimated, 0.0, pending, pending)
                if error_code(exc) in CAPACITY_CODES:
                    self.stats.refused_calls += 1
                    control.refused(epoch)
                return exc
        unprocessed = answer
        consumed = answer.consumed if isinstance(answer, Unprocessed) else None
        units = control.after(estimated, consumed, pending, unprocessed)
        self._accepted += len(pending) - len(unprocessed)
        if unprocessed:
            self.stats.refused_calls += 1
            control.refused(epoch)
        else:
            control.accepted(units)
        return unprocessed

    async def _isolate(self, requests: Sequence[Request], exc: Exception) -> Sequence[Request]:
        """A request DynamoDB refuses (not throttling): find it by halving the batch."""
        if len(requests) == 1:
            log.warning(
                "request refused",
                extra={"table": self.table, "code": error_code(exc) or type(exc).__name__},
            )
            return requests
        mid = len(requests) // 2
        return [*await self._write(requests[:mid]), *await self._write(requests[mid:])]
