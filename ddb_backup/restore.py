"""Restore: verify first, then clear (if asked), then stream every item back.

Order of a run, per table::

    resolve the backup -> check the target table (exists, same keys) ->
    read back and verify every data file -> [create table] ->
    [clear existing data] -> stream files -> batches of 25 -> BatchWriter

A table whose backup does not verify, or whose target is missing or has
other keys, is neither cleared nor written. Files are streamed (S3 chunks ->
gunzip -> lines -> items) with a bound on files in flight and on batches in
flight, so memory does not grow with a file's size.

With a deadline (seconds), the run stops taking new work in time, lets the
batches in flight finish, writes a checkpoint and answers 202 with a
``resume_token``; a run given that token continues exactly there.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiobotocore.session import AioSession, get_session

from ddb_backup.aws import AwsClients, client_config
from ddb_backup.catalog import load_backup, resolve_backup
from ddb_backup.checkpoint import (
    checkpoint_key,
    load_checkpoint,
    load_state,
    plan_key,
    save_checkpoint,
    save_state,
)
from ddb_backup.clear import clear_existing_data, count_items
from ddb_backup.concurrency import run_workers
from ddb_backup.config import RestoreConfig
from ddb_backup.errors import (
    BackupNotFoundError,
    CheckpointError,
    ChecksumMismatchError,
    ConfigError,
    DataFileChangedError,
    DdbBackupError,
    ExportError,
    ItemCountMismatchError,
    LeaseHeldError,
    LeaseLostError,
    ManifestError,
    TableError,
    TableNotFoundError,
    UnsafeNameError,
    UnsupportedFormatError,
)
from ddb_backup.events import RestoreRequest
from ddb_backup.export_folder import ExportListing, read_export_folder
from ddb_backup.items import KeySpec, check_item_line
from ddb_backup.keys import (
    check_key,
    check_table_name,
    dead_letter_prefix,
    export_dead_letter_root,
)
from ddb_backup.lease import TableLeases
from ddb_backup.log import get_logger
from ddb_backup.manifest import BackupManifest, TableBackup, TableStatus
from ddb_backup.progress import (
    FileState,
    Phase,
    RestoreState,
    SkippedDate,
    TablePhase,
    TableProgress,
    TableState,
)
from ddb_backup.progress import TableStatus as ResultStatus
from ddb_backup.shards import make_shards, shard_state
from ddb_backup.storage import PinnedReads, S3Storage, Storage
from ddb_backup.stream import StreamStats, iter_line_blocks
from ddb_backup.tables import (
    TargetTable,
    check_key_schema,
    create_table_from_schema,
    describe_target,
    missing_table_error,
)
from ddb_backup.verify import DistinctKeys, schema_keys, verify_files, verify_table_backup
from ddb_backup.writer import (
    MAX_BATCH,
    BatchSender,
    BatchWriter,
    DeadLetterSink,
    RetryPolicy,
    WireRequest,
    default_sender,
    put_request,
)

__all__ = [
    "RestoreResult",
    "TableProgress",
    "finalize_restore",
    "new_restore_id",
    "plan_restore",
    "restore_clients",
    "restore_export",
    "run_restore",
]

log = get_logger("restore")

T = TypeVar("T")
ProgressCallback = Callable[[TableProgress], None]

#: Data files streamed at once per table (each holds one S3 chunk and its lines).
DEFAULT_FILES_IN_FLIGHT = 2
#: Files verified at once.
VERIFY_CONCURRENCY = 4
#: Items per shard of a fan-out restore: about what one 15-minute invocation
#: writes (see the README's limits); a shard that needs longer answers 202.
DEFAULT_ITEMS_PER_SHARD = 2_000_000
#: Seconds between progress log lines.
PROGRESS_INTERVAL = 10.0

# Errors that mean "the request cannot be served as asked" (400), not a fault.
_REQUEST_ERRORS = (
    BackupNotFoundError,
    CheckpointError,
    ManifestError,
    UnsafeNameError,
    UnsupportedFormatError,
    ExportError,
)


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """``status_code`` (200/202/207/400/500) and the response ``body``."""

    status_code: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.status_code == 200


def new_restore_id() -> str:
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


@contextlib.asynccontextmanager
async def restore_clients(
    max_workers: int = 5, *, session: AioSession | None = None, s3_max_attempts: int = 6
) -> AsyncIterator[AwsClients]:
    """Clients for a restore: DynamoDB without botocore retries (the writer's
    :class:`RetryPolicy` decides alone), S3 with botocore's standard retries;
    the pool sized for ``max_workers`` writers plus the S3 streams."""
    session = session or get_session()
    pool = max(10, max_workers * 2 + 4)
    async with (
        session.create_client("dynamodb", config=client_config(pool, max_attempts=1)) as ddb,
        session.create_client("s3", config=client_config(pool, s3_max_attempts)) as s3,
    ):
        yield AwsClients(dynamodb=ddb, s3=s3)


@contextlib.asynccontextmanager
async def _closing(it: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Close an async generator when leaving early (its S3 body with it)."""
    try:
        yield it
    finally:
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            await aclose()


class _Run:
    """One invocation's work on a :class:`RestoreState`."""

    def __init__(
        self,
        state: RestoreState,
        *,
        clients: AwsClients,
        storage: Storage,
        dead_letter_storage: Storage,
        dead_letter_root: str,
        sender: BatchSender,
        retry: RetryPolicy,
        max_workers: int,
        files_in_flight: int,
        dry_run: bool,
        clear: bool,
        create_missing: bool,
        deadline_seconds: float | None,
        max_batches: int | None,
        on_progress: ProgressCallback | None,
        progress_interval: float,
    ) -> None:
        self.state = state
        self.clients = clients
        # Every read pinned to the object verification read (see PinnedReads).
        self.storage = PinnedReads(storage)
        self.lease: TableLeases | None = None
        self.dead_storage = dead_letter_storage
        self.dead_root = dead_letter_root
        self.sender = sender
        self.retry = retry
        self.max_workers = max_workers
        self.files_in_flight = files_in_flight
        self.dry_run = dry_run
        self.clear = clear
        self.create_missing = create_missing
        self.deadline = deadline_seconds
        self.max_batches = max_batches
        self.on_progress = on_progress
        self.progress_interval = progress_interval
        self.t0 = time.monotonic()
        self.work_units = 0  # verified tables + submitted batches + scan pages this round
        self.batches = 0
        self.stopped = False
        self.current: tuple[TableState, Phase] | None = None

    # -- deadline ---------------------------------------------------------

    def should_stop(self) -> bool:
        """True once the deadline (or batch budget) is reached; always after some work."""
        if self.stopped:
            return True
        if self.lease is not None and self.lease.check() is not None:
            self.stopped = True  # another restore may own the table now: write no more
            return True
        if self.work_units == 0:
            return False  # every round makes progress, however short its deadline
        if self.deadline is not None and time.monotonic() - self.t0 >= self.deadline:
            self.stopped = True
        if self.max_batches is not None and self.batches >= self.max_batches:
            self.stopped = True
        return self.stopped

    # -- progress ---------------------------------------------------------

    def _phase(self, ts: TableState, phase: Phase) -> None:
        self.current = (ts, phase)
        self._report(ts, phase)

    def _report(self, ts: TableState, phase: Phase) -> None:
        elapsed = time.monotonic() - self.t0
        snap = TableProgress.of(ts, phase, elapsed)
        log.info(
            "restore progress",
            extra={
                "table": ts.target_table,
                "phase": phase,
                "items_written": ts.items_written,
                "items_expected": ts.items_expected,
                "items_failed": ts.items_failed,
                "items_cleared": ts.items_cleared,
                "files_done": snap.files_done,
                "files_total": snap.files_total,
                "elapsed_seconds": round(elapsed, 1),
                "items_per_second": round(ts.items_written / elapsed, 1) if elapsed > 0 else 0.0,
            },
        )
        if self.on_progress is not None:
            self.on_progress(snap)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.progress_interval)
            if self.current is not None:
                self._report(*self.current)

    # -- phase 1: verify and check ---------------------------------------

    @staticmethod
    def _set_keys(ts: TableState, keys: KeySpec) -> None:
        ts.key_names = [name for name, _ in keys]
        ts.key_types = [t for _, t in keys]

    @staticmethod
    def _keys(ts: TableState) -> KeySpec:
        types = ts.key_types if len(ts.key_types) == len(ts.key_names) else [""] * len(ts.key_names)
        return tuple(zip(ts.key_names, types, strict=True))

    async def prepare_backup_table(self, ts: TableState, tb: TableBackup) -> None:
        """Target check and verification of one table of a backup; never writes
        unless the table is to be created (and only after it verified)."""
        self._phase(ts, "verifying")
        started = time.monotonic()
        schema = tb.table_schema
        try:
            target = await describe_target(self.clients.dynamodb, ts.target_table, retry=self.retry)
            distinct: DistinctKeys | None = None
            if target is not None:
                keys = target.keys
                if schema is not None:
                    check_key_schema(target, schema)
                else:
                    # No captured schema (the replaced system's backups): the
                    # lines themselves must fit the target's keys, each key once.
                    distinct = DistinctKeys(keys)
            elif not self.create_missing:
                raise missing_table_error(ts.target_table)
            elif schema is None:
                raise TableError(
                    f"target table {ts.target_table} does not exist and the backup captured "
                    "no schema to create it from (legacy backup): create it first",
                    table=ts.target_table,
                )
            else:
                keys = schema_keys(schema)
            self._set_keys(ts, keys)
            verdict = await verify_table_backup(
                self.storage, tb, concurrency=VERIFY_CONCURRENCY, keys=keys, distinct=distinct
            )
            if not verdict.ok:
                ts.errors.extend(verdict.errors)
                ts.phase = TablePhase.FAILED
                return
            ts.files = [FileState.from_data_file(f) for f in verdict.files]
            ts.items_expected = tb.item_count if tb.item_count is not None else verdict.item_count
            await self._finish_prepare(ts, target, schema)
        except DdbBackupError as exc:
            ts.errors.append(str(exc))
            ts.phase = TablePhase.FAILED
        finally:
            self.work_units += 1
            ts.duration_seconds += time.monotonic() - started

    async def prepare_export_table(self, ts: TableState, listing: ExportListing) -> None:
        """The same for one export folder: keys come from the (existing) target."""
        self._phase(ts, "verifying")
        started = time.monotonic()
        try:
            target = await describe_target(self.clients.dynamodb, ts.target_table, retry=self.retry)
            if target is None:
                raise TableNotFoundError(
                    f"target table {ts.target_table} does not exist", table=ts.target_table
                )
            # Anyone's export: no schema to compare, so every line must carry the
            # target's keys with their types, and no key may come twice.
            self._set_keys(ts, target.keys)
            verdicts = await verify_files(
                self.storage,
                listing.files,
                concurrency=VERIFY_CONCURRENCY,
                keys=target.keys,
                distinct=DistinctKeys(target.keys),
            )
            errors = [str(v.error) for v in verdicts if v.error is not None]
            if errors:
                ts.errors.extend(errors)
                ts.phase = TablePhase.FAILED
                return
            files = [v.data_file for v in verdicts if v.data_file is not None]
            ts.files = [FileState.from_data_file(f) for f in files]
            counted = sum(f.item_count for f in files)
            expected = listing.item_count
            if expected is not None and expected != counted:
                ts.errors.append(
                    f"{listing.folder}: data files hold {counted} items, "
                    f"manifest-summary.json says {expected}"
                )
                ts.phase = TablePhase.FAILED
                return
            ts.items_expected = counted
            ts.verified_against_manifest = listing.has_aws_manifest
            if not listing.has_aws_manifest:
                ts.notes.append("no AWS manifest in the folder: counts learnt by reading the files")
            await self._finish_prepare(ts, target, None)
        except DdbBackupError as exc:
            ts.errors.append(str(exc))
            ts.phase = TablePhase.FAILED
        finally:
            self.work_units += 1
            ts.duration_seconds += time.monotonic() - started

    async def _finish_prepare(
        self, ts: TableState, target: TargetTable | None, schema: Any
    ) -> None:
        if target is None:
            if self.dry_run:
                ts.notes.append("target table does not exist: a real run would create it")
                ts.items_to_clear = 0 if self.clear else None
            else:
                await create_table_from_schema(
                    self.clients.dynamodb, ts.target_table, schema, retry=self.retry
                )
                ts.created = True
                ttl = (schema.time_to_live or {}) if schema is not None else {}
                if ttl.get("TimeToLiveStatus") in {"ENABLED", "ENABLING"}:
                    ts.notes.append(
                        f"time to live ({ttl.get('AttributeName')}) was not enabled on the new "
                        "table, so expiry cannot delete restored items; enable it when satisfied"
                    )
        elif self.dry_run and self.clear:
            ts.items_to_clear = await count_items(
                self.clients.dynamodb, ts.target_table, retry=self.retry
            )
        ts.phase = TablePhase.READY

    # -- phase 2: clear and write ------------------------------------------

    async def clear_table(self, ts: TableState) -> bool:
        """Clear (once) before any backup item is written; False if stopped early.

        Resumed in CLEARING: no backup item was written yet, so scanning again
        deletes only what the earlier round left.
        """
        ts.phase = TablePhase.CLEARING
        self._phase(ts, "clearing")

        def deleted(n: int, failed: int) -> None:
            ts.items_cleared += n
            ts.items_clear_failed += failed
            self.work_units += 1

        result = await clear_existing_data(
            self.clients.dynamodb,
            ts.target_table,
            tuple(ts.key_names),
            sender=self.sender,
            max_workers=self.max_workers,
            retry=self.retry,
            should_stop=self.should_stop,
            on_deleted=deleted,
        )
        if not result.complete:
            return False
        if ts.items_clear_failed:
            ts.errors.append(
                f"{ts.items_clear_failed} existing items could not be deleted (retry budget spent)"
            )
        ts.phase = TablePhase.WRITING
        return True

    async def restore_table(self, ts: TableState) -> None:
        started = time.monotonic()
        try:
            if self.dry_run:
                ts.phase = TablePhase.DONE
                return
            if (
                self.clear
                and ts.phase in (TablePhase.READY, TablePhase.CLEARING)
                and not await self.clear_table(ts)
            ):
                return
            ts.phase = TablePhase.WRITING
            self._phase(ts, "writing")
            await self._write_files(ts)
            if all(f.done for f in ts.files):
                ts.phase = TablePhase.DONE
        except DdbBackupError as exc:
            ts.errors.append(str(exc))
        finally:
            ts.duration_seconds += time.monotonic() - started
            self._report(ts, "done" if ts.phase is TablePhase.DONE else "writing")

    async def _write_files(self, ts: TableState) -> None:
        folder = dead_letter_prefix(self.dead_root, self.state.restore_id, ts.target_table)
        if self.state.shard_id is not None:
            # Shards run at once: each its own folder (and manifest-files.json).
            folder = f"{folder}/shard-{self.state.shard_id:05d}"
        sink = DeadLetterSink(
            self.dead_storage,
            folder,
            part_prefix=f"round{self.state.round:03d}",
            files=ts.dead_letter_files,
        )
        pending = [f for f in ts.files if not f.done]
        ended: dict[str, int] = {}
        changed: list[DataFileChangedError] = []
        try:
            async with BatchWriter(
                ts.target_table,
                self.sender,
                max_workers=self.max_workers,
                retry=self.retry,
                dead_letters=sink,
            ) as writer:

                async def one(f: FileState) -> None:
                    if changed:
                        return  # the table stopped: a file is not what was verified
                    try:
                        lines = await self._stream_file(ts, f, writer)
                        if lines is not None:
                            ended[f.key] = lines
                            f.error = None
                    except DataFileChangedError as exc:
                        f.error = str(exc)
                        changed.append(exc)
                    except DdbBackupError as exc:
                        f.error = str(exc)  # the file stays not done: a resume retries it

                await run_workers(pending, one, concurrency=self.files_in_flight)
        finally:
            await sink.flush()
            ts.dead_letter_files = list(sink.files)
            if sink.files:
                ts.dead_letter_folder = folder
        for f in pending:
            if f.key in ended and f.lines_done >= ended[f.key]:
                f.done = True
        if changed:
            # Final, not retried: the backup is not what was verified any more.
            ts.phase = TablePhase.FAILED

    async def _stream_file(self, ts: TableState, f: FileState, writer: BatchWriter) -> int | None:
        """Send one file's items; the number of lines when read to the end, else None."""
        if self.should_stop():
            return None
        key = f.key
        stats = StreamStats()
        skip = f.lines_done
        line_no = 0
        batch: list[WireRequest] = []
        batch_start = skip
        keys = self._keys(ts)

        async def submit(start: int, end: int) -> None:
            nonlocal batch
            requests, batch = batch, []
            self.batches += 1
            self.work_units += 1

            def done(written: int, failed: int) -> None:
                ts.items_written += written
                ts.items_failed += failed
                f.mark(start, end)

            await writer.submit(requests, done)

        # One await per S3 chunk (a block of lines), not per line.
        async with (
            _closing(self.storage.stream(key, pin=f.pin)) as chunks,
            _closing(iter_line_blocks(chunks, key=key, stats=stats)) as blocks,
        ):
            async for block in blocks:
                if line_no + len(block) <= skip:
                    line_no += len(block)
                    continue  # handled in an earlier round
                for line in block:
                    line_no += 1
                    if line_no <= skip:
                        continue
                    if not batch and self.should_stop():
                        return None
                    # The same check as verification; the request is built from
                    # the parsed item, never from the line's bytes.
                    item = check_item_line(line, key=key, line_no=line_no, keys=keys)
                    batch.append(put_request(item))
                    if len(batch) == MAX_BATCH:
                        ts.items_read += MAX_BATCH
                        await submit(batch_start, line_no)
                        batch_start = line_no
            if batch:
                ts.items_read += len(batch)
                await submit(batch_start, line_no)
        # The file was verified before; check again what was actually streamed.
        if f.item_count is not None and line_no != f.item_count:
            raise ItemCountMismatchError(
                f"held {line_no} items while restoring, {f.item_count} when verified", key=key
            )
        if f.md5 is not None and stats.md5_base64 != f.md5:
            raise ChecksumMismatchError("changed between verification and restore", key=key)
        return line_no

    # -- the whole run ----------------------------------------------------

    @contextlib.asynccontextmanager
    async def ticking(self) -> AsyncIterator[None]:
        """Progress lines, and the lease renewed, while the block runs."""
        task = asyncio.create_task(self._ticker())
        try:
            if self.lease is None:
                yield
            else:
                async with self.lease.renewing():
                    yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def body(self) -> dict[str, Any]:
        return _body(
            self.state,
            dry_run=self.dry_run,
            duration=self.state.elapsed_seconds + time.monotonic() - self.t0,
            configuration={
                "files_in_flight": self.files_in_flight,
                "retry": {
                    "max_attempts": self.retry.max_attempts,
                    "base_delay": self.retry.base_delay,
                    "max_delay": self.retry.max_delay,
                },
            },
        )

    async def prepare_all(self, manifest: BackupManifest | None) -> None:
        """Phase 1 for every table before any table is cleared or written."""
        for ts in self.state.tables:
            if ts.phase is not TablePhase.PENDING:
                continue
            if self.should_stop():
                return
            assert manifest is not None
            tb = manifest.table(ts.source_table)
            if tb is None:
                ts.errors.append(f"table {ts.source_table} is not in the backup")
                ts.phase = TablePhase.FAILED
                continue
            await self.prepare_backup_table(ts, tb)
            self.pin_files(ts)

    def pin_files(self, ts: TableState) -> None:
        """Record the object each verified file was read from, so every later
        read (this round, later rounds, shards) is of that object only."""
        for f in ts.files:
            pin = self.storage.pins.get(f.key)
            if pin is not None and f.pin is None:
                f.etag, f.version_id = pin.etag, pin.version_id

    async def run(self) -> RestoreResult:
        for ts in self.state.tables:
            if ts.phase in (TablePhase.DONE, TablePhase.FAILED):
                continue
            if self.should_stop():
                break
            await self.restore_table(ts)
        return await self.finish()

    async def finish_plan(self, items_per_shard: int) -> RestoreResult:
        """Plan: clear once where asked, then cut the files into shards."""
        self._lease_lost()
        st = self.state
        make_shards(st.tables, items_per_shard)  # too many shards: refused before any clear
        for ts in st.tables:
            if ts.phase not in (TablePhase.READY, TablePhase.CLEARING) or self.dry_run:
                continue
            if self.should_stop():
                break
            started = time.monotonic()
            try:
                if not self.clear:
                    ts.phase = TablePhase.WRITING
                else:
                    await self.clear_table(ts)
            except DdbBackupError as exc:
                ts.errors.append(str(exc))
                ts.phase = TablePhase.FAILED
            finally:
                ts.duration_seconds += time.monotonic() - started
        waiting = {TablePhase.PENDING, TablePhase.CLEARING}
        if not self.dry_run:
            waiting.add(TablePhase.READY)
        if any(t.phase in waiting for t in st.tables):
            return await self.finish()  # stopped: 202 with a resume token
        writable = [t for t in st.tables if t.phase is TablePhase.WRITING]
        st.shards = [] if self.dry_run else make_shards(writable, items_per_shard)
        st.finished = True
        body = self.body()  # counts this round's time itself: take it before adding it
        st.elapsed_seconds += time.monotonic() - self.t0
        await save_state(self.dead_storage, plan_key(st.prefix, st.restore_id), st)
        await save_checkpoint(self.dead_storage, st)  # spends any plan token
        body["shards"] = [{"restore_id": st.restore_id, "shard_id": s.shard_id} for s in st.shards]
        body["items_per_shard"] = items_per_shard
        failed = [t for t in st.tables if t.phase is TablePhase.FAILED]
        code = 500 if failed and not writable and not self.dry_run else 207 if failed else 200
        if st.skipped_tables and code == 200:
            code = 207
        body["status"] = {200: "PLANNED", 207: "PLANNED_PARTIAL", 500: "FAILED"}[code]
        if self.dry_run and code == 200:
            body["status"] = "DRY_RUN_OK"
        log.info(
            "restore planned",
            extra={"restore_id": st.restore_id, "shards": len(st.shards), "status": body["status"]},
        )
        return RestoreResult(code, body)

    def answer(self) -> RestoreResult:
        """The answer of a state that is already final (a repeated shard)."""
        body = self.body()
        code = _status_code(body)
        body["status"] = {200: "COMPLETED", 207: "PARTIAL", 500: "FAILED"}[code]
        return RestoreResult(code, _compact(body) if self.state.kind == "shard" else body)

    def _lease_lost(self) -> LeaseLostError | None:
        """Fail what is unfinished once the lease is gone (no resume: the table
        may belong to another restore now)."""
        lost = self.lease.check() if self.lease is not None else None
        if lost is not None:
            for ts in self.state.tables:
                if ts.phase not in (TablePhase.DONE, TablePhase.FAILED):
                    ts.errors.append(str(lost))
                    ts.phase = TablePhase.FAILED
        return lost

    async def finish(self) -> RestoreResult:
        lost = self._lease_lost()
        st = self.state
        unfinished = [t for t in st.tables if t.phase not in (TablePhase.DONE, TablePhase.FAILED)]
        body = self.body()
        if unfinished and self.stopped:
            st.elapsed_seconds += time.monotonic() - self.t0
            token = await save_checkpoint(self.dead_storage, st)
            body["resume_token"] = token
            body["status"] = "IN_PROGRESS"
            body["message"] = (
                f"deadline reached in round {st.round}: {len(unfinished)} table(s) to go; "
                "invoke again with the resume_token"
            )
            log.info(
                "restore checkpointed",
                extra={"restore_id": st.restore_id, "round": st.round, "tables": len(unfinished)},
            )
            return RestoreResult(202, _compact(body) if st.kind == "shard" else body)
        if (
            st.kind == "shard"
            or st.round > 1
            or self.deadline is not None
            or self.max_batches is not None
        ):
            # Mark the checkpoint finished so an old token cannot replay the run
            # (and, for a shard, so that finalize finds its counts).
            st.finished = True
            st.elapsed_seconds += time.monotonic() - self.t0
            await save_checkpoint(self.dead_storage, st)
        code = _status_code(body)
        body["status"] = {200: "COMPLETED", 207: "PARTIAL", 500: "FAILED"}[code]
        if self.dry_run and code == 200:
            body["status"] = "DRY_RUN_OK"
        if lost is not None:
            code = 409
            body.update(error=str(lost), error_type=type(lost).__name__, reason="lease_lost")
        log.info(
            "restore finished",
            extra={
                "restore_id": st.restore_id,
                "status": body["status"],
                "items_written": body["total_items_written"],
                "items_failed": body["total_items_failed"],
            },
        )
        return RestoreResult(code, _compact(body) if st.kind == "shard" else body)


def _body(
    st: RestoreState, *, dry_run: bool, duration: float, configuration: dict[str, Any]
) -> dict[str, Any]:
    results = [t.report(dry_run) for t in st.tables]
    statuses = [r["status"] for r in results]
    ok = {ResultStatus.COMPLETED.value, ResultStatus.DRY_RUN.value}
    body: dict[str, Any] = {
        "restore_id": st.restore_id,
        "backup_date": st.backup_date.isoformat() if st.backup_date else None,
        "environment": st.environment,
        "s3_bucket": st.bucket,
        "s3_prefix": st.prefix,
        "dry_run": dry_run,
        "round": st.round,
        "duration_seconds": round(duration, 3),
        "tables_requested": [t.source_table for t in st.tables],
        "successful_restores": sum(s in ok for s in statuses),
        "partial_restores": statuses.count(ResultStatus.PARTIAL.value),
        "failed_restores": statuses.count(ResultStatus.FAILED.value),
        "skipped_restores": len(st.skipped_tables),
        "total_items_written": sum(t.items_written for t in st.tables),
        "total_items_processed": sum(t.items_read for t in st.tables),
        "total_items_failed": sum(t.items_failed for t in st.tables),
        "total_items_cleared": sum(t.items_cleared for t in st.tables),
        "configuration": {**st.request, **configuration},
        "restore_results": results,
        "skipped_backups": [
            {"date": s.date.isoformat(), "reason": s.reason} for s in st.skipped_backups
        ],
        "skipped_tables": list(st.skipped_tables),
    }
    if st.shard_id is not None:
        body["shard_id"] = st.shard_id
    return body


#: What a shard's answer keeps: the state machine passes every shard's body to
#: finalize within 256 KiB, and finalize reads the exact counts from S3 anyway.
_SHARD_KEYS = (
    "restore_id",
    "shard_id",
    "status",
    "round",
    "duration_seconds",
    "total_items_written",
    "total_items_processed",
    "total_items_failed",
    "resume_token",
    "error",
)


def _compact(body: dict[str, Any]) -> dict[str, Any]:
    out = {k: body[k] for k in _SHARD_KEYS if k in body}
    if isinstance(out.get("error"), str):
        out["error"] = out["error"][:512]  # bounded: see shards.SHARD_ANSWER_BYTES
    return out


def _status_code(body: dict[str, Any]) -> int:
    results = body["restore_results"]
    ok = body["successful_restores"]
    if results and ok == len(results) and not body["skipped_restores"]:
        return 200
    if ok or body["partial_restores"] or body["total_items_written"]:
        return 207
    return 500


def _error_result(
    exc: BaseException, code: int, base: dict[str, Any] | None = None
) -> RestoreResult:
    log.error("restore refused" if code == 400 else "restore failed", extra={"error": str(exc)})
    return RestoreResult(
        code,
        {
            **(base or {}),
            "status": "FAILED",
            "error": str(exc),
            "error_type": type(exc).__name__,
            "restore_results": [],
        },
    )


async def _plan(
    config: RestoreConfig, request: RestoreRequest, storage: Storage
) -> tuple[RestoreState, BackupManifest]:
    """Resolve the backup and list the tables to restore (reads only)."""
    prefix = config.prefix
    skipped_tables: list[dict[str, str]] = []
    skipped_dates: list[SkippedDate] = []
    if request.backup_date == "latest":
        resolved = await resolve_backup(storage, prefix, "latest", request.tables)
        manifest = resolved.manifest
        skipped_dates = [SkippedDate(date=s.date, reason=s.reason) for s in resolved.skipped]
        sources = request.tables or [t.table_name for t in manifest.tables]
    elif request.tables:
        manifest = (
            await resolve_backup(storage, prefix, request.backup_date, request.tables)
        ).manifest
        sources = list(request.tables)
    else:
        from ddb_backup.keys import check_date

        manifest = await load_backup(storage, prefix, check_date(request.backup_date))
        sources = [t.table_name for t in manifest.tables if t.status is TableStatus.COMPLETED]
        skipped_tables = [
            {"table": t.table_name, "reason": f"export {t.status.value}: {t.error or 'no detail'}"}
            for t in manifest.tables
            if t.status is not TableStatus.COMPLETED
        ]
        if not sources:
            raise BackupNotFoundError(f"backup {manifest.backup_date} has no completed table")
    if manifest.environment != config.environment:
        raise ManifestError(
            f"backup {manifest.backup_date} belongs to environment {manifest.environment!r}, "
            f"this deployment is {config.environment!r}"
        )
    unknown = sorted(set(request.table_mapping or {}) - set(sources))
    if unknown:
        raise BackupNotFoundError(
            f"table_mapping names tables not in backup {manifest.backup_date}: {', '.join(unknown)}"
        )
    targets = request.targets(sources)
    clash = {t for t in targets.values() if list(targets.values()).count(t) > 1}
    if clash:
        raise UnsafeNameError(f"two tables would be restored into {', '.join(sorted(clash))}")
    tables = []
    for source in sources:
        tb = manifest.table(source)
        assert tb is not None
        tables.append(
            TableState(source_table=source, target_table=targets[source], s3_prefix=tb.s3_prefix)
        )
    state = RestoreState(
        restore_id=new_restore_id(),
        bucket=config.bucket,
        environment=config.environment,
        prefix=prefix,
        backup_date=manifest.backup_date,
        request=request.echo(),
        tables=tables,
        skipped_backups=skipped_dates,
        skipped_tables=skipped_tables,
        started_at=dt.datetime.now(dt.UTC),
    )
    return state, manifest


async def run_restore(
    config: RestoreConfig,
    request: RestoreRequest,
    clients: AwsClients,
    *,
    storage: Storage | None = None,
    deadline_seconds: float | None = None,
    on_progress: ProgressCallback | None = None,
    retry: RetryPolicy | None = None,
    sender: BatchSender | None = None,
    files_in_flight: int = DEFAULT_FILES_IN_FLIGHT,
    max_batches: int | None = None,
    progress_interval: float = PROGRESS_INTERVAL,
) -> RestoreResult:
    """Restore the tables of a backup as ``request`` asks; never raises for
    expected failures (they are in the result's status code and body).

    ``deadline_seconds``: stop taking new work after this long, checkpoint and
    answer 202 with a ``resume_token``. ``max_batches``: the same after that
    many batches (a work budget per invocation; tests use it to force rounds).
    ``request.shard`` restores one shard of a plan made by :func:`plan_restore`.
    """
    return await _entry(
        "restore",
        config,
        request,
        clients,
        _Options(
            storage=storage,
            deadline_seconds=deadline_seconds,
            on_progress=on_progress,
            retry=retry,
            sender=sender,
            files_in_flight=files_in_flight,
            max_batches=max_batches,
            progress_interval=progress_interval,
        ),
    )


async def plan_restore(
    config: RestoreConfig,
    request: RestoreRequest,
    clients: AwsClients,
    *,
    storage: Storage | None = None,
    deadline_seconds: float | None = None,
    on_progress: ProgressCallback | None = None,
    retry: RetryPolicy | None = None,
    sender: BatchSender | None = None,
    items_per_shard: int | None = None,
    max_batches: int | None = None,
    progress_interval: float = PROGRESS_INTERVAL,
) -> RestoreResult:
    """The planning step of a fan-out restore.

    Resolves and verifies the backup, checks (or creates) the targets, clears
    them once when asked, then splits the data files into shards balanced by
    item count and size, each at most ``items_per_shard`` items (or
    ``request.items_per_shard``) unless one file alone is larger. Writes
    ``<prefix>/_restore/<id>/plan.json``; answers ``shards`` =
    ``[{"restore_id", "shard_id"}, ...]`` (200, or 207 when some tables were
    left out), or 202 with a ``resume_token`` when the deadline came first.
    """
    return await _entry(
        "plan",
        config,
        request,
        clients,
        _Options(
            storage=storage,
            deadline_seconds=deadline_seconds,
            on_progress=on_progress,
            retry=retry,
            sender=sender,
            max_batches=max_batches,
            progress_interval=progress_interval,
            items_per_shard=items_per_shard,
        ),
    )


@dataclass(slots=True)
class _Options:
    storage: Storage | None = None
    deadline_seconds: float | None = None
    on_progress: ProgressCallback | None = None
    retry: RetryPolicy | None = None
    sender: BatchSender | None = None
    files_in_flight: int = DEFAULT_FILES_IN_FLIGHT
    max_batches: int | None = None
    progress_interval: float = PROGRESS_INTERVAL
    items_per_shard: int | None = None


async def _entry(
    mode: str,
    config: RestoreConfig,
    request: RestoreRequest,
    clients: AwsClients,
    opts: _Options,
) -> RestoreResult:
    started = time.monotonic()
    storage = opts.storage or S3Storage(
        clients.s3, config.bucket, expected_owner=config.expected_bucket_owner
    )
    base = {
        "environment": config.environment,
        "s3_bucket": config.bucket,
        "s3_prefix": config.prefix,
        "backup_date": request.backup_date,
        "tables_requested": request.tables,
        "dry_run": request.dry_run,
    }
    try:
        manifest: BackupManifest | None = None
        if request.resume_token is not None:
            state = await load_checkpoint(storage, config, request.resume_token)
            if (mode == "plan") != (state.kind == "plan"):
                raise CheckpointError(
                    "this resume_token belongs to "
                    + ("a plan: send it to the planning step" if state.kind == "plan" else "")
                    + ("a restore, not a plan" if state.kind != "plan" else "")
                )
            state.round += 1
            original = RestoreRequest.model_validate(state.request)
            if any(t.phase is TablePhase.PENDING for t in state.tables):
                assert state.backup_date is not None
                manifest = await load_backup(storage, config.prefix, state.backup_date)
        elif request.shard is not None:
            if mode == "plan":
                raise UnsafeNameError("the planning step takes a restore event, not a shard")
            state = await shard_state(
                storage, config, request.shard.restore_id, request.shard.shard_id
            )
            original = RestoreRequest.model_validate(state.request)
        else:
            state, manifest = await _plan(config, request, storage)
            original = request
            if mode == "plan":
                state.kind = "plan"
        max_workers = (
            request.max_workers
            if "max_workers" in request.model_fields_set
            else original.max_workers
        )
    except _REQUEST_ERRORS as exc:
        return _error_result(exc, 400, base)
    except DdbBackupError as exc:
        return _error_result(exc, 500, base)

    run = _Run(
        state,
        clients=clients,
        storage=storage,
        dead_letter_storage=storage,
        dead_letter_root=config.prefix,
        sender=opts.sender or default_sender(clients.dynamodb),
        retry=opts.retry or RetryPolicy(),
        max_workers=max_workers,
        files_in_flight=max(1, opts.files_in_flight),
        dry_run=original.dry_run,
        clear=original.clear_existing_data and state.kind != "shard",
        create_missing=original.create_missing_tables,
        deadline_seconds=opts.deadline_seconds,
        max_batches=opts.max_batches,
        on_progress=opts.on_progress,
        progress_interval=opts.progress_interval,
    )
    run.t0 = started
    if state.finished:  # a shard invoked again after it finished: its answer again
        return run.answer()
    log.info(
        "restore started",
        extra={
            "restore_id": state.restore_id,
            "kind": state.kind,
            "shard_id": state.shard_id,
            "round": state.round,
            "backup_date": str(state.backup_date),
            "tables": len(state.tables),
            "dry_run": original.dry_run,
        },
    )
    refused = await _take_leases(run, storage, config.prefix, base)
    if refused is not None:
        return refused
    try:
        async with run.ticking():
            await run.prepare_all(manifest)
            if state.kind == "plan":
                per_shard = (
                    opts.items_per_shard or original.items_per_shard or DEFAULT_ITEMS_PER_SHARD
                )
                result = await run.finish_plan(per_shard)
            elif any(t.phase is TablePhase.PENDING for t in state.tables):
                result = await run.finish()
            else:
                result = await run.run()
    except ConfigError as exc:
        result = _error_result(exc, 400, {**base, **run.body()})
    except DdbBackupError as exc:
        result = _error_result(exc, 500, {**base, **run.body()})
    # Kept across a 202 (the resume continues under it) and by shards (their
    # siblings still write; finalize releases); a plan keeps it for its shards.
    if result.status_code != 202 and state.kind != "shard" and not state.shards:
        await _release_leases(run)
    return result


async def _take_leases(
    run: _Run, storage: Storage, prefix: str, base: dict[str, Any]
) -> RestoreResult | None:
    """Lease every target still to be written (see :mod:`ddb_backup.lease`);
    the 409 (or 500) answer when refused. Dry runs and local copies take none."""
    if run.dry_run or not isinstance(storage, S3Storage):
        return None
    done = (TablePhase.DONE, TablePhase.FAILED)
    tables = [t.target_table for t in run.state.tables if t.phase not in done]
    if not tables:
        return None
    leases = TableLeases(storage, prefix, run.state.restore_id)
    answer = {**base, "restore_id": run.state.restore_id}
    try:
        await leases.acquire(tables)
    except LeaseHeldError as exc:
        return _error_result(exc, 409, {**answer, "reason": "table_locked"})
    except DdbBackupError as exc:
        return _error_result(exc, 500, answer)
    run.lease = leases
    return None


async def _release_leases(run: _Run, tables: list[str] | None = None) -> None:
    if run.lease is None:
        return
    try:
        await run.lease.release(tables)
    except DdbBackupError as exc:  # it expires on its own
        log.warning("restore lease not released", extra={"error": str(exc)})


async def finalize_restore(
    config: RestoreConfig,
    restore_id: str,
    clients: AwsClients,
    *,
    storage: Storage | None = None,
    shard_results: list[dict[str, Any]] | None = None,
) -> RestoreResult:
    """Add up every shard of a fan-out restore, from their final states in S3.

    Counts come from the shards' own records (exact, whatever the state
    machine passed along); a shard with no final record means missing items,
    so never a 200. ``shard_results`` contributes the failure records the
    state machine wrote (their error names, not their causes).
    """
    started = time.monotonic()
    storage = storage or S3Storage(
        clients.s3, config.bucket, expected_owner=config.expected_bucket_owner
    )
    base = {"restore_id": restore_id, "environment": config.environment}
    try:
        plan = await load_state(storage, plan_key(config.prefix, restore_id), config, restore_id)
        if plan is None or plan.kind != "plan" or not plan.finished:
            raise CheckpointError(f"no finished plan for restore {restore_id}")
        failures: dict[int, str] = {}
        for record in shard_results or []:
            ref = record.get("shard") if isinstance(record, dict) else None
            if isinstance(ref, dict) and record.get("shard_failed"):
                err = record.get("error")
                name = err.get("Error") if isinstance(err, dict) else None
                failures[int(ref.get("shard_id", -1))] = f"failed ({name or 'unknown error'})"
        merged = {ts.source_table: ts.model_copy(deep=True) for ts in plan.tables}
        for ts in merged.values():
            if ts.phase is TablePhase.WRITING:
                for f in ts.files:
                    f.done = False
                    f.lines_done = 0
        files_of = {(t, f.key): f for t, ts in merged.items() for f in ts.files}
        for shard in plan.shards:
            key = checkpoint_key(config.prefix, restore_id, shard.shard_id)
            st = await load_state(storage, key, config, restore_id)
            if st is None or not st.finished:
                reason = failures.get(shard.shard_id) or (
                    "never ran" if st is None else f"stopped in round {st.round}"
                )
                for table in sorted({f.table for f in shard.files}):
                    merged[table].errors.append(f"shard {shard.shard_id} did not finish: {reason}")
                continue
            for sts in st.tables:
                m = merged[sts.source_table]
                m.items_read += sts.items_read
                m.items_written += sts.items_written
                m.items_failed += sts.items_failed
                m.errors.extend(sts.errors)
                m.dead_letter_files.extend(sts.dead_letter_files)
                if sts.dead_letter_files and sts.dead_letter_folder:
                    m.dead_letter_folders.append(sts.dead_letter_folder)
                for f in sts.files:
                    mine = files_of[(sts.source_table, f.key)]
                    mine.done, mine.lines_done, mine.error = f.done, f.lines_done, f.error
        for m in merged.values():
            if m.phase is TablePhase.WRITING and all(f.done for f in m.files):
                m.phase = TablePhase.DONE
        final = plan.model_copy(update={"tables": list(merged.values()), "kind": "single"})
        if isinstance(storage, S3Storage):  # the plan's leases, kept for its shards
            await TableLeases(storage, config.prefix, restore_id).release(
                [t.target_table for t in plan.tables]
            )
    except _REQUEST_ERRORS as exc:
        return _error_result(exc, 400, base)
    except DdbBackupError as exc:
        return _error_result(exc, 500, base)
    dry_run = bool(plan.request.get("dry_run"))
    if dry_run:
        for m in merged.values():
            if m.phase is not TablePhase.FAILED:
                m.phase = TablePhase.DONE
    wall = (
        (dt.datetime.now(dt.UTC) - plan.started_at).total_seconds()
        if plan.started_at
        else time.monotonic() - started
    )
    body = _body(final, dry_run=dry_run, duration=wall, configuration={"shards": len(plan.shards)})
    code = _status_code(body)
    body["status"] = {200: "COMPLETED", 207: "PARTIAL", 500: "FAILED"}[code]
    if dry_run and code == 200:
        body["status"] = "DRY_RUN_OK"
    log.info(
        "restore finalized",
        extra={
            "restore_id": restore_id,
            "status": body["status"],
            "shards": len(plan.shards),
            "items_written": body["total_items_written"],
        },
    )
    return RestoreResult(code, body)


async def restore_export(
    storage: Storage,
    folder: str,
    table: str,
    clients: AwsClients,
    *,
    dry_run: bool = False,
    max_workers: int = 5,
    on_progress: ProgressCallback | None = None,
    retry: RetryPolicy | None = None,
    dead_letter_storage: Storage | None = None,
    sender: BatchSender | None = None,
    files_in_flight: int = DEFAULT_FILES_IN_FLIGHT,
    progress_interval: float = PROGRESS_INTERVAL,
) -> RestoreResult:
    """Restore one DynamoDB export folder (``.../AWSDynamoDB/<id>``), made by
    anyone, into the existing ``table``: verified against AWS's manifests when
    present, DYNAMODB_JSON only (ION is refused before anything is written).

    Dead letters go to ``<root>/_restore/<id>/dead-letter/<table>/`` in
    ``dead_letter_storage`` (default: ``storage``), ``<root>`` being the
    folder's first segment when it is a plain one, else ``ddb-backup``
    (:func:`~ddb_backup.keys.export_dead_letter_root`): the folder itself
    may hold any characters S3 allows, except escapes.
    """
    started = time.monotonic()
    folder = folder.strip("/")
    root = export_dead_letter_root(folder)
    base = {"export_folder": folder, "target_table": table, "dry_run": dry_run}
    try:
        check_table_name(table)
        check_key(folder)
        if not 1 <= max_workers <= 64:
            raise UnsafeNameError("max_workers must be between 1 and 64")
        listing = await read_export_folder(storage, folder)
    except _REQUEST_ERRORS as exc:
        return _error_result(exc, 400, base)
    except DdbBackupError as exc:
        return _error_result(exc, 500, base)
    state = RestoreState(
        restore_id=new_restore_id(),
        bucket=storage.bucket if isinstance(storage, S3Storage) else storage.location,
        environment="",
        prefix=root,
        request={"export_folder": folder, "table": table, "max_workers": max_workers},
        tables=[TableState(source_table=folder, target_table=table, s3_prefix=folder)],
    )
    run = _Run(
        state,
        clients=clients,
        storage=storage,
        dead_letter_storage=dead_letter_storage or storage,
        dead_letter_root=root,
        sender=sender or default_sender(clients.dynamodb),
        retry=retry or RetryPolicy(),
        max_workers=max_workers,
        files_in_flight=max(1, files_in_flight),
        dry_run=dry_run,
        clear=False,
        create_missing=False,
        deadline_seconds=None,
        max_batches=None,
        on_progress=on_progress,
        progress_interval=progress_interval,
    )
    run.t0 = started
    refused = await _take_leases(run, dead_letter_storage or storage, root, base)
    if refused is not None:
        return refused
    try:
        async with run.ticking():
            await run.prepare_export_table(state.tables[0], listing)
            run.pin_files(state.tables[0])
            result = await run.run()
    except DdbBackupError as exc:
        return _error_result(exc, 500, {**base, **run.body()})
    finally:
        await _release_leases(run)
    result.body.update(base)
    result.body["environment"] = None  # not a backup of this deployment
    return result
