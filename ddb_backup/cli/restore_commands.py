"""restore and restore-export: confirmation, progress, the answer, the exit code."""

from __future__ import annotations

import argparse
from typing import IO, TYPE_CHECKING, Any

from ddb_backup.audit import select_backup
from ddb_backup.cli import settings
from ddb_backup.cli.display import (
    Output,
    RestoreView,
    format_count,
    format_duration,
)
from ddb_backup.restore.answer import RestoreAnswer, RestoreResult, TableResult
from ddb_backup.restore.state import RestoreStatus
from ddb_backup.storage import Storage

if TYPE_CHECKING:
    pass
from ddb_backup.cli.common import EXIT_BUSY, EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError

__all__ = ["cmd_restore", "cmd_restore_export"]


#: Refusals of a restore request that are the caller's to fix (exit 2); other
#: 400s (no such backup, unreadable manifest, ION export) are failures (exit 1).
_USAGE_ERROR_TYPES = frozenset(
    {"RequestError", "UnsafeNameError", "CheckpointError", "ConfigError"}
)


def _restore_exit(result: RestoreResult) -> int:
    """The exit code of a restore's result."""
    if result.status_code == 200:
        return EXIT_OK
    if result.status_code == 400 and result.answer.error_type in _USAGE_ERROR_TYPES:
        return EXIT_USAGE
    if result.status_code == 409 and result.answer.error_type == "LeaseHeldError":
        return EXIT_BUSY  # refused before anything was done (a lease lost mid-run is 1)
    return EXIT_FAILED


def _is_tty(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


async def _confirm_clear(
    args: argparse.Namespace, storage: Storage, prefix: str, out: Output, stdin: IO[str]
) -> None:
    """Ask for the tables to be cleared to be typed back; raise UsageError otherwise."""
    if not _is_tty(stdin):
        raise UsageError(
            "--clear-existing-data deletes every item of the target tables; "
            "without a terminal to confirm on, pass --yes"
        )
    if args.at is not None:
        from ddb_backup.events import RestoreRequest
        from ddb_backup.restore.resolve import point_sources

        at = RestoreRequest(restore_to=args.at).restore_point
        assert at is not None
        sources = await point_sources(storage, prefix, args.tables, at)
        what = f"restoring to {args.at}"
    else:
        selection = await select_backup(storage, prefix, args.date, args.tables)
        sources = args.tables or [t.table_name for t in selection.completed]
        what = f"restoring backup {selection.date}"
    mapping = dict(args.map or [])
    targets = sorted({mapping.get(s, s) for s in sources})
    out.note(
        f"--clear-existing-data will delete every item of {len(targets)} table(s) "
        f"before {what}: {', '.join(targets)}"
    )
    print("type the table name(s) to confirm: ", end="", file=out.stderr, flush=True)
    typed = sorted(set(stdin.readline().replace(",", " ").split()))
    if typed != targets:
        raise UsageError("the names typed do not match the tables to clear; nothing was done")


def _show_restore(out: Output, answer: RestoreAnswer) -> None:
    for s in answer.skipped_backups or []:
        out.line(f"skipped backup {s.date}: {s.reason}")
    for t in answer.skipped_tables or []:
        out.line(f"skipped table {t.get('table')}: {t.get('reason')}")
    rows = []
    dry = bool(answer.dry_run)
    results = answer.restore_results or []
    for r in results:
        written = r.items_to_write if dry else r.items_written
        cleared = r.items_to_clear if dry else r.items_cleared
        rows.append(
            [
                r.table if r.table == r.target_table else f"{r.table} -> {r.target_table}",
                r.status.value,
                format_count(r.items_expected),
                format_count(written),
                format_count(r.items_failed),
                format_count(cleared),
                r.error or "",
            ]
        )
    title = f"restore of backup {answer.backup_date or answer.export_folder}"
    restore_to = (answer.configuration or {}).get("restore_to")
    if restore_to:
        title = f"restore to {restore_to} (point in time)"
    columns = ["table", "status", "expected", "written", "failed", "cleared", "error"]
    if dry:
        title += " (dry run: nothing written)"
        columns[3], columns[5] = "would write", "would clear"
    out.table(columns, rows, title=title, right=columns[2:6])
    counts = [
        f"{n} {name}"
        for name, n in (
            ("successful", answer.successful_restores),
            ("partial", answer.partial_restores),
            ("failed", answer.failed_restores),
            ("skipped", answer.skipped_restores),
        )
        if n is not None
    ]
    if counts:
        out.line(", ".join(counts))
    if answer.duration_seconds is not None and not dry:
        out.line(
            f"{format_count(answer.total_items_written)} items written in "
            f"{format_duration(answer.duration_seconds)}"
        )
    for r in results:
        _show_point_in_time(out, r)
    for r in results:
        if r.dead_letter_keys:
            out.line(
                f"{r.target_table}: {len(r.dead_letter_keys)} dead-letter file(s) "
                f"under {r.dead_letter_folder}"
            )
    if answer.resume_token:
        out.line(f"resume with: --resume-token {answer.resume_token}")


def _show_point_in_time(out: Output, r: TableResult) -> None:
    """One line per point-in-time table: the boundary reached and the windows' counts."""
    pit = r.point_in_time
    if pit is None:
        return
    reached = pit.restored_to.isoformat() if pit.restored_to else "not reached"
    behind = f", {format_duration(pit.behind_asked_seconds)} before the time asked"
    out.line(
        f"{r.target_table}: restored to {reached}"
        + (behind if pit.asked is not None and pit.restored_to else "")
        + f"; {len(pit.windows)} window(s): {format_count(pit.puts)} puts, "
        f"{format_count(pit.deletes)} deletes, {format_count(pit.failed)} failed"
    )
    if r.windows_not_applied:
        out.line(f"{r.target_table}: windows not applied: {', '.join(r.windows_not_applied)}")


def _restore_request(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from ddb_backup.events import RestoreRequest

    fields: dict[str, Any] = {}
    if args.resume_token:
        # A resumed restore continues exactly what was first asked.
        fields["resume_token"] = args.resume_token
        if args.max_workers is not None:
            fields["max_workers"] = args.max_workers
        if args.max_write_units is not None:
            fields["max_write_units"] = args.max_write_units
    else:
        if (args.date is None) == (args.at is None):
            raise UsageError("give a backup DATE or a point in time --at TIME, one of them")
        point = {"restore_to": args.at} if args.at else {"backup_date": args.date}
        fields = {
            **point,
            "dry_run": args.dry_run,
            "clear_existing_data": args.clear_existing_data,
            "create_missing_tables": args.create_missing_tables,
        }
        if args.max_workers is not None:
            fields["max_workers"] = args.max_workers
        if args.max_write_units is not None:
            fields["max_write_units"] = args.max_write_units
        if args.tables:
            fields["tables"] = list(args.tables)
        if args.map:
            fields["table_mapping"] = dict(args.map)
    try:
        return RestoreRequest.model_validate(fields)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)
        ]
        raise UsageError("; ".join(problems)) from exc


def _report_error(out: Output, status_code: int, answer: RestoreAnswer) -> None:
    """One line on stderr whenever the restore was not a full success."""
    if status_code == 200:
        return
    if answer.error:
        out.note(f"ddb-backup: error: {answer.error}")
        return
    statuses = [r.status for r in answer.restore_results or []]
    bad = [s for s in statuses if s not in {RestoreStatus.COMPLETED, RestoreStatus.DRY_RUN}]
    detail = f"{len(bad)} of {len(statuses)} table(s) not restored" if bad else "not complete"
    if answer.resume_token:
        detail += " (resumable: see --resume-token)"
    out.note(f"ddb-backup: error: restore {detail}")


async def cmd_restore(args: argparse.Namespace, out: Output, stdin: IO[str] | None = None) -> int:
    import sys

    from ddb_backup.restore import run_restore

    request = _restore_request(args)
    config = settings.restore_config(args)
    loc = settings.location(args)
    async with settings.restore_clients(args, request.max_workers) as aws:
        store = settings.storage(loc, aws)
        if request.clear_existing_data and not request.dry_run and not args.yes:
            await _confirm_clear(args, store, loc.prefix, out, stdin or sys.stdin)
        with RestoreView(out, interval=args.progress_interval, dry_run=request.dry_run) as view:
            result = await run_restore(
                config,
                request,
                aws,
                storage=store,
                on_progress=view.update,
                progress_interval=view.tick,
                retry=settings.retry_policy(),
            )
    answer = result.answer
    if args.json:
        body = dict(result.body)
        if loc.directory is not None:
            body["backup_location"] = store.location
        out.json({"statusCode": result.status_code, "body": body})
    else:
        _show_restore(out, answer)
    _report_error(out, result.status_code, answer)
    return _restore_exit(result)


async def cmd_restore_export(args: argparse.Namespace, out: Output) -> int:
    from ddb_backup.point_in_time import restore_export_chain
    from ddb_backup.storage import S3Storage

    bucket, folder = args.uri
    if any(b != bucket for b, _ in args.incremental):
        raise UsageError("the --incremental exports must be in the bucket of S3_URI")
    async with settings.restore_clients(args, args.max_workers) as aws:
        # The export's bucket is named by the URI; the owner check still applies.
        owner = settings.cli_environ(args).get("BACKUP_BUCKET_OWNER") or None
        source = S3Storage(aws.s3, bucket, expected_owner=owner)
        with RestoreView(
            out, interval=args.progress_interval, verb="restore-export", dry_run=args.dry_run
        ) as view:
            result = await restore_export_chain(
                source,
                folder,
                args.table,
                aws,
                incremental=[f for _, f in args.incremental],
                allow_gaps=args.allow_gaps,
                dry_run=args.dry_run,
                max_workers=args.max_workers,
                on_progress=view.update,
                progress_interval=view.tick,
                retry=settings.retry_policy(),
            )
    out.json({"statusCode": result.status_code, "body": result.body})
    _report_error(out, result.status_code, result.answer)
    return _restore_exit(result)
