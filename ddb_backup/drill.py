"""Restore drills: prove that a backup restores, item for item, and how fast.

A drill restores each table of a backup into a scratch table of its own,
through the public restore (:func:`~ddb_backup.restore.run_restore` with a
``table_mapping``; the restore verifies every file's MD5 and line first), then
reads the scratch table back with a parallel Scan and compares its item
count and content digest (:mod:`ddb_backup.digest`) with the ones the backup
recorded when it was verified. A data file altered after the backup, even
with its MD5 updated to match, fails the drill.

Scratch tables are named ``ddb-backup-drill-<drill id>-<n>`` (the id is a
timestamp plus random hex, so the name cannot be a real table's), created
from the captured schema (deletion protection, streams and provisioned
capacity left off) with the tags ``ddb-backup:drill=true`` and
``ddb-backup:environment=<environment>``, and deleted in a
``finally`` also when the drill fails or is cut off. Every drill starts with a
sweep deleting tagged drill tables an earlier run of the same environment
left behind (a Lambda killed at its timeout runs no ``finally``). A table
that lacks the prefix or the tags is never created, written or deleted:
:class:`DrillError` (see :mod:`ddb_backup.drill_tables`). Two drills
must not run at once (the sweep of one would delete the other's tables; the
Lambda has a reserved concurrency of one).

The result goes to ``<prefix>/<date>/_drills/<id>.json``: per table the
duration, items per second, PASSED/FAILED/CUT_OFF and the first difference
found; counts and digests only, never an item.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict

from ddb_backup.aws import AwsClients
from ddb_backup.catalog import resolve_backup
from ddb_backup.config import RestoreConfig
from ddb_backup.digest import ContentDigest
from ddb_backup.drill_tables import (
    DRILL_PREFIX,
    DRILL_TAG,
    ENVIRONMENT_TAG,
    delete_drill_table,
    delete_quietly,
    is_drill_table_name,
    new_drill_id,
    scratch_schema,
    sweep_drill_tables,
)
from ddb_backup.errors import DdbBackupError, DrillError
from ddb_backup.events import RestoreRequest
from ddb_backup.keys import date_prefix
from ddb_backup.log import get_logger
from ddb_backup.manifest import TableBackup, TableStatus
from ddb_backup.restore import run_restore
from ddb_backup.restore.tables import create_table_from_schema, describe_target
from ddb_backup.storage import S3Storage, Storage
from ddb_backup.table_scan import digest_table
from ddb_backup.verify import verify_table_backup

__all__ = [
    "DRILL_PREFIX",
    "DRILL_TAG",
    "ENVIRONMENT_TAG",
    "DrillDeadline",
    "DrillResult",
    "DrillStatus",
    "DrillTable",
    "delete_drill_table",
    "drill_result_key",
    "is_drill_table_name",
    "run_drill",
    "sweep_drill_tables",
]

log = get_logger("drill")

#: Scan segments used to read a scratch table back.
SCAN_SEGMENTS = 4


class DrillStatus(StrEnum):
    PASSED = "PASSED"
    FAILED = "FAILED"
    CUT_OFF = "CUT_OFF"  # the deadline came first; nothing proven


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DrillTable(_Model):
    """One table's drill: counts, digests (hex) and timings; never an item."""

    source_table: str
    scratch_table: str
    status: DrillStatus
    items_expected: int | None = None
    items_restored: int | None = None
    digest_expected: str | None = None
    digest_restored: str | None = None
    #: Where the expected digest came from: "manifest" (recorded at backup
    #: time) or "files" (an older backup without one: read from its files now).
    digest_source: str | None = None
    duration_seconds: float
    restore_seconds: float | None = None
    items_per_second: float | None = None
    difference: str | None = None
    scratch_deleted: bool = False


class DrillResult(_Model):
    drill_id: str
    environment: str
    backup_date: dt.date
    started_at: dt.datetime
    duration_seconds: float
    status: DrillStatus
    tables: list[DrillTable]
    swept_tables: list[str]
    result_key: str

    @property
    def passed(self) -> bool:
        return self.status is DrillStatus.PASSED

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_INDENT_2)


def drill_result_key(prefix: str, date: dt.date, drill_id: str) -> str:
    return f"{date_prefix(prefix, date)}/_drills/{drill_id}.json"


class DrillDeadline:
    """A drill's time: what is left of it (each restore's own deadline) and the
    timeout each table's drill runs under (:meth:`table`)."""

    def __init__(self, seconds: float | None = None) -> None:
        self.t0 = time.monotonic()
        self.seconds = seconds
        self._expired = False
        self._running: asyncio.Timeout | None = None

    def remaining(self) -> float | None:
        if self._expired:
            return 0.0
        if self.seconds is None:
            return None
        return max(0.0, self.seconds - (time.monotonic() - self.t0))

    @contextlib.asynccontextmanager
    async def table(self) -> AsyncIterator[None]:
        """One table's drill: cut off (``TimeoutError``) when the time is up."""
        async with asyncio.timeout(self.remaining()) as running:
            self._running = running
            try:
                yield
            finally:
                self._running = None

    def expire(self) -> None:
        """The time is up now: the table running is cut off as by the deadline
        (at the loop's next turn), and any later one at once."""
        self._expired = True
        if self._running is not None:
            self._running.reschedule(asyncio.get_running_loop().time())


async def _expected_digest(
    storage: Storage, table: TableBackup, *, concurrency: int
) -> tuple[ContentDigest | None, str | None]:
    """The digest the backup's files hold now (read and verified), or the error."""
    digest = ContentDigest()
    verdict = await verify_table_backup(storage, table, concurrency=concurrency, digest=digest)
    if not verdict.ok:
        return None, "; ".join(verdict.errors[:3])
    return digest, None


async def _drill_one(
    config: RestoreConfig,
    clients: AwsClients,
    storage: Storage,
    table: TableBackup,
    scratch: str,
    backup_date: dt.date,
    deadline: DrillDeadline,
) -> dict[str, Any]:
    """Create, restore into and compare one scratch table (deleted by the caller)."""
    if not is_drill_table_name(scratch):  # never a real table, whatever the caller passed
        raise DrillError(f"refusing to restore into {scratch}: not a drill table", table=scratch)
    out: dict[str, Any] = {"items_expected": table.item_count}
    if table.table_schema is None:
        return {**out, "status": DrillStatus.FAILED, "difference": "the backup has no schema"}
    if await describe_target(clients.dynamodb, scratch) is not None:
        raise DrillError(f"refusing to use {scratch}: the table exists already", table=scratch)
    key, value = DRILL_TAG
    await create_table_from_schema(
        clients.dynamodb,
        scratch,
        scratch_schema(table.table_schema),
        tags={key: value, ENVIRONMENT_TAG: config.environment},
    )
    request = RestoreRequest(
        backup_date=backup_date.isoformat(),
        tables=[table.table_name],
        table_mapping={table.table_name: scratch},
    )
    t_restore = time.monotonic()
    result = await run_restore(
        config, request, clients, storage=storage, deadline_seconds=deadline.remaining()
    )
    restore_seconds = time.monotonic() - t_restore
    out["restore_seconds"] = round(restore_seconds, 3)
    if result.status_code == 202:
        return {**out, "status": DrillStatus.CUT_OFF, "difference": "the restore was cut off"}
    if not result.ok:
        answer = result.answer
        errors = [r.error for r in answer.restore_results or [] if r.error]
        detail = (errors or [answer.error or f"status {result.status_code}"])[0]
        return {**out, "status": DrillStatus.FAILED, "difference": f"restore failed: {detail}"}
    restored = await digest_table(clients.dynamodb, scratch, segments=SCAN_SEGMENTS)
    out |= {
        "items_restored": restored.count,
        "digest_restored": restored.hexdigest,
        "items_per_second": round(restored.count / restore_seconds, 1) if restore_seconds else None,
    }
    if table.content_digest is not None:
        expected: ContentDigest | None = None
        out |= {"digest_expected": table.content_digest, "digest_source": "manifest"}
    else:
        expected, error = await _expected_digest(storage, table, concurrency=4)
        if expected is None:
            return {**out, "status": DrillStatus.FAILED, "difference": error}
        out |= {"digest_expected": expected.hexdigest, "digest_source": "files"}
    difference = await _first_difference(storage, table, restored, out["digest_expected"])
    status = DrillStatus.FAILED if difference else DrillStatus.PASSED
    return {**out, "status": status, "difference": difference}


async def _first_difference(
    storage: Storage, table: TableBackup, restored: ContentDigest, digest_expected: str
) -> str | None:
    """What differs first: the count, else the digest (and whether the files
    changed since the backup recorded it), else None."""
    if table.item_count is not None and restored.count != table.item_count:
        return f"the scratch table holds {restored.count} items, the backup {table.item_count}"
    if restored.hexdigest == digest_expected:
        return None
    msg = "content digest of the restored table differs from the backup's"
    if table.content_digest is not None:
        now, _ = await _expected_digest(storage, table, concurrency=4)
        if now is not None and now.hexdigest != table.content_digest:
            msg += " (the data files no longer hold what was verified at backup time)"
        elif now is not None:
            msg += " (the files are intact: the restore did not write what they hold)"
    return msg


async def run_drill(
    config: RestoreConfig,
    clients: AwsClients,
    date: str = "latest",
    tables: list[str] | None = None,
    deadline_seconds: float | DrillDeadline | None = None,
    *,
    storage: Storage | None = None,
    drill_id: str | None = None,
) -> DrillResult:
    """Drill the backup of ``date`` ("latest" or YYYY-MM-DD), all its completed
    tables or ``tables``; write and return the result (see the module docstring).
    ``deadline_seconds``: seconds, or a :class:`DrillDeadline` (which the caller
    may end early with :meth:`~DrillDeadline.expire`).

    Raises :class:`~ddb_backup.errors.BackupNotFoundError` when there is no
    such backup (nothing is created then).
    """
    deadline = (
        deadline_seconds
        if isinstance(deadline_seconds, DrillDeadline)
        else DrillDeadline(deadline_seconds)
    )
    started_at = dt.datetime.now(dt.UTC)
    drill_id = drill_id or new_drill_id(started_at)
    if not is_drill_table_name(f"{DRILL_PREFIX}{drill_id}-0"):
        raise DrillError(f"invalid drill id {drill_id!r}", table=f"{DRILL_PREFIX}{drill_id}")
    storage = storage or S3Storage(
        clients.s3, config.bucket, expected_owner=config.expected_bucket_owner
    )
    swept = await sweep_drill_tables(clients.dynamodb, config.environment)
    resolved = await resolve_backup(storage, config.prefix, date, tables)
    manifest = resolved.manifest
    chosen = [
        t
        for t in manifest.tables
        if t.status is TableStatus.COMPLETED and (tables is None or t.table_name in tables)
    ]
    log.info(
        "drill started",
        extra={
            "drill_id": drill_id,
            "backup_date": str(manifest.backup_date),
            "tables": len(chosen),
        },
    )
    results = []
    for n, table in enumerate(chosen):
        scratch = f"{DRILL_PREFIX}{drill_id}-{n}"
        t0 = time.monotonic()
        fields: dict[str, Any]
        try:
            async with deadline.table():
                fields = await _drill_one(
                    config, clients, storage, table, scratch, manifest.backup_date, deadline
                )
        except TimeoutError:
            fields = {"status": DrillStatus.CUT_OFF, "difference": "the deadline came first"}
        except DdbBackupError as exc:
            fields = {"status": DrillStatus.FAILED, "difference": str(exc)}
        finally:
            deleted = await delete_quietly(clients.dynamodb, scratch, config.environment)
        results.append(
            DrillTable(
                source_table=table.table_name,
                scratch_table=scratch,
                duration_seconds=round(time.monotonic() - t0, 3),
                scratch_deleted=deleted,
                **fields,
            )
        )
        log.info(
            "drill table done",
            extra={
                "drill_id": drill_id,
                "table": table.table_name,
                "status": str(results[-1].status),
            },
        )
    statuses = {t.status for t in results}
    status = (
        DrillStatus.FAILED
        if DrillStatus.FAILED in statuses or not results
        else DrillStatus.CUT_OFF
        if DrillStatus.CUT_OFF in statuses
        else DrillStatus.PASSED
    )
    key = drill_result_key(config.prefix, manifest.backup_date, drill_id)
    result = DrillResult(
        drill_id=drill_id,
        environment=config.environment,
        backup_date=manifest.backup_date,
        started_at=started_at,
        duration_seconds=round(time.monotonic() - deadline.t0, 3),
        status=status,
        tables=results,
        swept_tables=swept,
        result_key=key,
    )
    await storage.put_bytes(key, result.to_json(), content_type="application/json")
    log.info("drill finished", extra={"drill_id": drill_id, "status": str(status), "key": key})
    return result
