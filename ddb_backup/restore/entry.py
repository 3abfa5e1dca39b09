"""The restore's entry points and their dispatch.

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

:func:`run_restore` and :func:`plan_restore` share one path (:func:`_entry`):
resolve the state (:mod:`.resolve`), take the leases (:mod:`.lease`), verify
(:mod:`.prepare`), then restore the tables (:mod:`.run`) or plan shards
(:mod:`.shards`), and answer (:mod:`.answer`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Unpack

from aiobotocore.session import AioSession, get_session

from ddb_backup.aws import AwsClients, client_config
from ddb_backup.config import RestoreConfig
from ddb_backup.errors import ConfigError, DdbBackupError, LeaseHeldError, RequestError
from ddb_backup.events import MAX_WORKERS, RestoreRequest
from ddb_backup.export_folder import read_export_folder
from ddb_backup.keys import check_key, check_table_name, export_dead_letter_root
from ddb_backup.log import get_logger
from ddb_backup.restore.answer import (
    REQUEST_ERRORS,
    RestoreAnswer,
    RestoreResult,
    error_result,
    run_result,
)
from ddb_backup.restore.lease import TableLeases
from ddb_backup.restore.options import (
    RestoreKeywords,
    RestoreOptions,
    RunKeywords,
    RunScope,
)
from ddb_backup.restore.prepare import prepare_all, prepare_export_table
from ddb_backup.restore.resolve import Mode, new_restore_id, resolve
from ddb_backup.restore.run import FINAL_PHASES, RestoreRun
from ddb_backup.restore.shards import dry_plan_result, plan_shards
from ddb_backup.restore.state import Outcome, RestoreState, TablePhase, TableState
from ddb_backup.restore.transport import reqwest_poster
from ddb_backup.storage import S3Storage, Storage

__all__ = ["plan_restore", "restore_clients", "restore_export", "run_restore"]

log = get_logger("restore")

#: Items per shard of a fan-out restore: about what one 15-minute invocation
#: writes (see the README's limits); a shard that needs longer answers 202.
DEFAULT_ITEMS_PER_SHARD = 2_000_000


@contextlib.asynccontextmanager
async def restore_clients(
    max_workers: int = 5, *, session: AioSession | None = None, s3_max_attempts: int = 6
) -> AsyncIterator[AwsClients]:
    """Clients for a restore: DynamoDB without botocore retries (the writer's
    :class:`RetryPolicy` decides alone), S3 with botocore's standard retries;
    the pool sized for ``max_workers`` writers plus the S3 streams; and reqwest
    for the writes where the DynamoDB client's settings allow
    (:mod:`~ddb_backup.restore.transport`)."""
    session = session or get_session()
    pool = max(10, max_workers * 2 + 4)
    async with (
        session.create_client("dynamodb", config=client_config(pool, max_attempts=1)) as ddb,
        session.create_client("s3", config=client_config(pool, s3_max_attempts)) as s3,
        reqwest_poster(ddb) as write_http,
    ):
        yield AwsClients(dynamodb=ddb, s3=s3, write_http=write_http)


async def run_restore(
    config: RestoreConfig,
    request: RestoreRequest,
    clients: AwsClients,
    options: RestoreOptions | None = None,
    **keywords: Unpack[RestoreKeywords],
) -> RestoreResult:
    """Restore the tables of a backup as ``request`` asks; never raises for
    expected failures (they are in the result's status code and body).

    ``options`` (or the same names as keyword arguments, see
    :class:`RestoreOptions`): ``deadline_seconds``: stop taking new work after
    this long, checkpoint and answer 202 with a ``resume_token``.
    ``max_batches``: the same after that many batches (a work budget per
    invocation; tests use it to force rounds). ``request.shard`` restores one
    shard of a plan made by :func:`plan_restore`. ``request.restore_to``
    restores each table as of a point in time: its full backup, then its
    incremental windows in order (:mod:`.windows`).
    """
    opts = RestoreOptions.of(options, keywords)
    return await _entry("restore", config, request, clients, opts)


async def plan_restore(
    config: RestoreConfig,
    request: RestoreRequest,
    clients: AwsClients,
    options: RestoreOptions | None = None,
    **keywords: Unpack[RestoreKeywords],
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
    opts = RestoreOptions.of(options, keywords)
    return await _entry("plan", config, request, clients, opts)


async def _entry(
    mode: Mode,
    config: RestoreConfig,
    request: RestoreRequest,
    clients: AwsClients,
    opts: RestoreOptions,
) -> RestoreResult:
    started = time.monotonic()
    storage = opts.storage or S3Storage(
        clients.s3, config.bucket, expected_owner=config.expected_bucket_owner
    )
    base = RestoreAnswer(
        environment=config.environment,
        s3_bucket=config.bucket,
        s3_prefix=config.prefix,
        backup_date=request.backup_date if request.restore_to is None else None,
        tables_requested=request.tables,
        dry_run=request.dry_run,
    )
    try:
        resolved = await resolve(mode, config, request, storage)
    except REQUEST_ERRORS as exc:
        return error_result(exc, 400, base)
    except DdbBackupError as exc:
        return error_result(exc, 500, base)
    state, original = resolved.state, resolved.request
    scope = RunScope(
        max_workers=resolved.max_workers,
        dry_run=original.dry_run,
        clear=original.clear_existing_data and state.kind != "shard",
        create_missing=original.create_missing_tables,
        dead_letter_storage=storage,
        dead_letter_root=config.prefix,
        max_write_units=(
            opts.max_write_units if opts.max_write_units is not None else resolved.max_write_units
        ),
    )
    run = RestoreRun(state, clients=clients, storage=storage, scope=scope, options=opts, t0=started)
    if state.finished:  # a shard invoked again after it finished: its answer again
        return run_result(run.summary(), state, Outcome(run.duration), dry_run=scope.dry_run)
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
            await prepare_all(run, resolved.manifest, resolved.point_manifests)
            result = await _work(run, opts.items_per_shard or original.items_per_shard)
    except ConfigError as exc:
        result = error_result(exc, 400, _merged(base, run.summary()))
    except DdbBackupError as exc:
        result = error_result(exc, 500, _merged(base, run.summary()))
    # Kept across a 202 (the resume continues under it) and by shards (their
    # siblings still write; finalize releases); a plan keeps it for its shards.
    if result.status_code != 202 and state.kind != "shard" and not state.shards:
        await _release_leases(run)
    return result


async def _work(run: RestoreRun, items_per_shard: int | None) -> RestoreResult:
    """After verification: plan the shards, or restore the tables; then answer."""
    st = run.state
    per_shard = items_per_shard or DEFAULT_ITEMS_PER_SHARD
    if st.kind == "plan" and not run.scope.dry_run:
        planned = await plan_shards(run, per_shard)
        if planned is not None:
            return planned
    elif not any(t.phase is TablePhase.PENDING for t in st.tables):
        # A dry run's plan is a dry run like any other: verified, counted, nothing
        # stored (no plan, no checkpoint): its answer is the fan-out's final one.
        await run.restore_tables()
    outcome = await run.conclude()
    result = run_result(run.summary(outcome.duration), st, outcome, dry_run=run.scope.dry_run)
    return dry_plan_result(result, st, per_shard) if st.kind == "plan" else result


def _merged(base: RestoreAnswer, answer: RestoreAnswer) -> RestoreAnswer:
    """``base`` with what ``answer`` says on top (an error after the run started)."""
    return base.with_(**{n: getattr(answer, n) for n in answer.model_fields_set})


async def _take_leases(
    run: RestoreRun, storage: Storage, prefix: str, base: RestoreAnswer
) -> RestoreResult | None:
    """Lease every target still to be written (see :mod:`ddb_backup.restore.lease`);
    the 409 (or 500) answer when refused. Dry runs and local copies take none."""
    if run.scope.dry_run or not isinstance(storage, S3Storage):
        return None
    tables = [t.target_table for t in run.state.tables if t.phase not in FINAL_PHASES]
    if not tables:
        return None
    leases = TableLeases(storage, prefix, run.state.restore_id)
    answer = base.with_(restore_id=run.state.restore_id)
    try:
        await leases.acquire(tables)
    except LeaseHeldError as exc:
        return error_result(exc, 409, answer.with_(reason="table_locked"))
    except DdbBackupError as exc:
        return error_result(exc, 500, answer)
    run.lease = leases
    return None


async def _release_leases(run: RestoreRun) -> None:
    if run.lease is None:
        return
    try:
        await run.lease.release()
    except DdbBackupError as exc:  # it expires on its own
        log.warning("restore lease not released", extra={"error": str(exc)})


async def restore_export(
    storage: Storage,
    folder: str,
    table: str,
    clients: AwsClients,
    *,
    dry_run: bool = False,
    max_workers: int = 5,
    dead_letter_storage: Storage | None = None,
    **keywords: Unpack[RunKeywords],
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
    base = RestoreAnswer(export_folder=folder, target_table=table, dry_run=dry_run)
    try:
        check_table_name(table)
        check_key(folder)
        if not 1 <= max_workers <= MAX_WORKERS:
            raise RequestError(f"max_workers must be between 1 and {MAX_WORKERS}")
        listing = await read_export_folder(storage, folder)
    except REQUEST_ERRORS as exc:
        return error_result(exc, 400, base)
    except DdbBackupError as exc:
        return error_result(exc, 500, base)
    options = RestoreOptions.of(None, keywords)
    state = RestoreState(
        restore_id=new_restore_id(),
        bucket=storage.bucket if isinstance(storage, S3Storage) else storage.location,
        environment="",
        prefix=root,
        request={"export_folder": folder, "table": table, "max_workers": max_workers},
        tables=[TableState(source_table=folder, target_table=table, s3_prefix=folder)],
    )
    dead_storage = dead_letter_storage or storage
    scope = RunScope(
        max_workers=max_workers,
        dry_run=dry_run,
        clear=False,
        create_missing=False,
        dead_letter_storage=dead_storage,
        dead_letter_root=root,
        max_write_units=options.max_write_units,
    )
    run = RestoreRun(
        state,
        clients=clients,
        storage=storage,
        scope=scope,
        options=options,
        t0=started,
    )
    refused = await _take_leases(run, dead_storage, root, base)
    if refused is not None:
        return refused
    try:
        async with run.ticking():
            await prepare_export_table(run, state.tables[0], listing)
            await run.restore_tables()
            outcome = await run.conclude()
    except DdbBackupError as exc:
        return error_result(exc, 500, _merged(base, run.summary()))
    finally:
        await _release_leases(run)
    result = run_result(run.summary(outcome.duration), state, outcome, dry_run=dry_run)
    answer = _merged(result.answer, base).with_(environment=None)  # not a backup of this deployment
    return RestoreResult.of(result.status_code, answer)
