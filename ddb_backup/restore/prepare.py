"""Phase 1 of a restore: verify every table's backup and check its target.

Runs for every table before any table is cleared or written. A table whose
files do not verify, or whose target is missing (and not to be created) or
has other keys, ends FAILED and is never touched. The object each file was
verified from is recorded (:func:`pin_files`), so every later read is of it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from ddb_backup.errors import DdbBackupError, TableError, TableNotFoundError
from ddb_backup.export_folder import ExportListing
from ddb_backup.items import KeySpec
from ddb_backup.manifest import BackupManifest, TableBackup, TableSchema
from ddb_backup.restore.clear import count_items
from ddb_backup.restore.state import FileState, TablePhase, TableState, record_pins
from ddb_backup.restore.tables import (
    TargetTable,
    check_key_schema,
    create_table_from_schema,
    describe_target,
    missing_table_error,
)
from ddb_backup.restore.windows import verify_table_windows
from ddb_backup.verify import DistinctKeys, schema_keys, verify_files, verify_table_backup

if TYPE_CHECKING:
    from ddb_backup.restore.run import RestoreRun

__all__ = ["pin_files", "prepare_all", "prepare_export_table", "table_keys"]

#: Files verified at once.
VERIFY_CONCURRENCY = 4


def table_keys(ts: TableState) -> KeySpec:
    """The key attributes every line of ``ts`` must carry, as recorded at verification."""
    types = ts.key_types if len(ts.key_types) == len(ts.key_names) else [""] * len(ts.key_names)
    return tuple(zip(ts.key_names, types, strict=True))


def _set_keys(ts: TableState, keys: KeySpec) -> None:
    ts.key_names = [name for name, _ in keys]
    ts.key_types = [t for _, t in keys]


def _fail(ts: TableState, errors: list[str]) -> None:
    ts.errors.extend(errors)
    ts.phase = TablePhase.FAILED


@contextlib.contextmanager
def _verifying(run: RestoreRun, ts: TableState) -> Iterator[None]:
    """A table's verification: reported, timed, counted as work; an error fails it."""
    run.progress.phase(ts, TablePhase.VERIFYING)
    started = time.monotonic()
    try:
        yield
    except DdbBackupError as exc:
        _fail(ts, [str(exc)])
    finally:
        run.budget.work_units += 1
        ts.duration_seconds += time.monotonic() - started


async def prepare_all(
    run: RestoreRun,
    manifest: BackupManifest | None,
    point_manifests: Mapping[str, BackupManifest] | None = None,
) -> None:
    """Phase 1 for every table still pending, until the budget stops it.
    ``point_manifests``: a point-in-time table's own full backup, by source table."""
    for ts in run.state.tables:
        if ts.phase is not TablePhase.PENDING:
            continue
        if run.should_stop():
            return
        m = (point_manifests or {}).get(ts.source_table, manifest)
        assert m is not None
        tb = m.table(ts.source_table)
        if tb is None:
            _fail(ts, [f"table {ts.source_table} is not in the backup"])
            continue
        await _prepare_backup_table(run, ts, tb)
        pin_files(run, ts)


async def _prepare_backup_table(run: RestoreRun, ts: TableState, tb: TableBackup) -> None:
    """Target check and verification of one table of a backup; never writes
    unless the table is to be created (and only after it verified)."""
    with _verifying(run, ts):
        schema = tb.table_schema
        target = await describe_target(run.clients.dynamodb, ts.target_table, retry=run.retry)
        distinct: DistinctKeys | None = None
        if target is not None:
            keys = target.keys
            if schema is not None:
                check_key_schema(target, schema)
            else:
                # No captured schema (the replaced system's backups): the
                # lines themselves must fit the target's keys, each key once.
                distinct = DistinctKeys(keys)
        elif not run.scope.create_missing:
            raise missing_table_error(ts.target_table)
        elif schema is None:
            raise TableError(
                f"target table {ts.target_table} does not exist and the backup captured "
                "no schema to create it from (legacy backup): create it first",
                table=ts.target_table,
            )
        else:
            keys = schema_keys(schema)
        _set_keys(ts, keys)
        verdict = await verify_table_backup(
            run.storage,
            tb,
            concurrency=VERIFY_CONCURRENCY,
            keys=keys,
            distinct=distinct,
            canonical=_canonical(run),
        )
        if not verdict.ok:
            _fail(ts, verdict.errors)
            return
        if distinct is not None:
            distinct.check(where=tb.export_folder or tb.s3_prefix)
        ts.files = [FileState.from_data_file(f) for f in verdict.files]
        ts.items_expected = tb.item_count if tb.item_count is not None else verdict.item_count
        # Point in time: every window verified too before the target is touched.
        await verify_table_windows(run, ts)
        await _ready(run, ts, target, schema)


async def prepare_export_table(run: RestoreRun, ts: TableState, listing: ExportListing) -> None:
    """The same for one export folder: keys come from the (existing) target."""
    with _verifying(run, ts):
        target = await describe_target(run.clients.dynamodb, ts.target_table, retry=run.retry)
        if target is None:
            raise TableNotFoundError(
                f"target table {ts.target_table} does not exist", table=ts.target_table
            )
        # Anyone's export: no schema to compare, so every line must carry the
        # target's keys with their types, and no key may come twice.
        _set_keys(ts, target.keys)
        distinct = DistinctKeys(target.keys)
        verdicts = await verify_files(
            run.storage,
            listing.files,
            concurrency=VERIFY_CONCURRENCY,
            keys=target.keys,
            distinct=distinct,
            canonical=_canonical(run),
        )
        errors = [str(v.error) for v in verdicts if v.error is not None]
        if errors:
            _fail(ts, errors)
            return
        distinct.check(where=listing.folder)
        files = [v.data_file for v in verdicts if v.data_file is not None]
        ts.files = [FileState.from_data_file(f) for f in files]
        counted = sum(f.item_count for f in files)
        expected = listing.item_count
        if expected is not None and expected != counted:
            _fail(
                ts,
                [
                    f"{listing.folder}: data files hold {counted} items, "
                    f"manifest-summary.json says {expected}"
                ],
            )
            return
        ts.items_expected = counted
        ts.verified_against_manifest = listing.has_aws_manifest
        if not listing.has_aws_manifest:
            ts.notes.append("no AWS manifest in the folder: counts learnt by reading the files")
        await _ready(run, ts, target, None)
    pin_files(run, ts)


async def _ready(
    run: RestoreRun, ts: TableState, target: TargetTable | None, schema: TableSchema | None
) -> None:
    """Verified: create the missing target (or say a real run would), count what
    a dry run's clear would delete; the table may now be cleared and written."""
    scope = run.scope
    if target is None:
        if scope.dry_run:
            ts.notes.append("target table does not exist: a real run would create it")
            ts.items_to_clear = 0 if scope.clear else None
        else:
            assert schema is not None  # a missing target without a schema failed before
            await create_table_from_schema(
                run.clients.dynamodb, ts.target_table, schema, retry=run.retry
            )
            ts.created = True
            ttl = (schema.time_to_live or {}) if schema is not None else {}
            if ttl.get("TimeToLiveStatus") in {"ENABLED", "ENABLING"}:
                ts.notes.append(
                    f"time to live ({ttl.get('AttributeName')}) was not enabled on the new "
                    "table, so expiry cannot delete restored items; enable it when satisfied"
                )
    elif scope.dry_run and scope.clear:
        ts.items_to_clear = await count_items(
            run.clients.dynamodb, ts.target_table, retry=run.retry
        )
    ts.phase = TablePhase.READY


def _canonical(run: RestoreRun) -> set[str] | None:
    """Where verification records the files a real run may send as they stand."""
    return None if run.scope.dry_run else run.canonical_files


def pin_files(run: RestoreRun, ts: TableState) -> None:
    """Record the object each verified file was read from (:func:`record_pins`)."""
    record_pins(run.storage, ts.files)
