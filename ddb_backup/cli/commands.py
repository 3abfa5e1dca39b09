"""One coroutine per subcommand: read the flags, call the core, show the outcome.

Each returns the process exit code: 0 success, 1 partial or a verification
failure, 2 bad usage (refused before anything was done). Business rules live
in the core; this module only translates.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import IO, TYPE_CHECKING, Any

from ddb_backup.audit import BackupVerification, select_backup, verify_backup
from ddb_backup.catalog import BackupEntry, list_backups, load_backup, resolve_backup
from ddb_backup.cli import settings
from ddb_backup.cli.display import (
    BackupView,
    DownloadView,
    Output,
    RestoreView,
    format_count,
    format_duration,
    format_size,
)
from ddb_backup.download import DownloadResult, download_backup
from ddb_backup.keys import check_date
from ddb_backup.manifest import BackupManifest
from ddb_backup.restore.answer import RestoreAnswer, RestoreResult
from ddb_backup.restore.state import RestoreStatus
from ddb_backup.storage import Storage

if TYPE_CHECKING:
    from ddb_backup.backup import BackupBody

__all__ = [
    "COMMANDS",
    "UsageError",
    "cmd_backup",
    "cmd_download",
    "cmd_list",
    "cmd_restore",
    "cmd_restore_export",
    "cmd_show",
    "cmd_verify",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """The command was refused before it did anything (exit code 2)."""


Command = Callable[[argparse.Namespace, Output], Coroutine[Any, Any, int]]


async def _with_storage(
    args: argparse.Namespace, work: Callable[[Storage, settings.Location], Awaitable[int]]
) -> int:
    """Run ``work`` on the bucket, or on ``--from DIR`` without any AWS client."""
    loc = settings.location(args)
    if loc.directory is not None:
        return await work(settings.storage(loc, None), loc)
    async with settings.clients(args) as aws:
        return await work(settings.storage(loc, aws), loc)


# -- list ---------------------------------------------------------------------


def _entry_doc(e: BackupEntry) -> dict[str, Any]:
    return {
        "date": e.date.isoformat(),
        "state": e.state.value,
        "tables": e.tables,
        "item_count": e.item_count,
        "size_bytes": e.size_bytes,
        "legacy": bool(e.manifest and e.manifest.legacy),
        "omitted_tables": e.manifest.omitted_tables if e.manifest else [],
        "error": e.error,
    }


async def cmd_list(args: argparse.Namespace, out: Output) -> int:
    async def work(storage: Storage, loc: settings.Location) -> int:
        entries = await list_backups(storage, loc.prefix)
        if args.json:
            out.json([_entry_doc(e) for e in entries])
            return EXIT_OK
        where = f"{storage.location}/{loc.prefix}/"
        if not entries:
            out.line(f"no backups under {where}")
            return EXIT_OK
        rows = []
        for e in entries:
            state = e.state.value.replace("_", " ") + (" (legacy)" if _legacy(e) else "")
            failed = (
                [t.table_name for t in e.manifest.tables if t.status.value != "COMPLETED"]
                if e.manifest
                else []
            )
            notes = [f"failed: {', '.join(failed)}"] if failed else []
            if e.manifest and e.manifest.omitted_tables:
                notes.append(f"not copied: {', '.join(e.manifest.omitted_tables)}")
            note = e.error or "; ".join(notes)
            rows.append(
                [
                    e.date.isoformat(),
                    state,
                    str(len(e.tables)) if e.manifest else "-",
                    format_count(e.item_count),
                    format_size(e.size_bytes),
                    note,
                ]
            )
        out.table(
            ["date", "state", "tables", "items", "size", "note"],
            rows,
            title=f"backups under {where}",
            right=["tables", "items", "size"],
        )
        return EXIT_OK

    return await _with_storage(args, work)


def _legacy(e: BackupEntry) -> bool:
    return bool(e.manifest and e.manifest.legacy)


# -- show ---------------------------------------------------------------------


async def _load(storage: Storage, prefix: str, date: str) -> BackupManifest:
    if date == "latest":
        return (await resolve_backup(storage, prefix, "latest")).manifest
    return await load_backup(storage, prefix, check_date(date))


def show_manifest(out: Output, manifest: BackupManifest, where: str) -> None:
    out.line(f"backup {manifest.backup_date}  ({where})")
    out.line(
        f"  status       {manifest.status.value}"
        + ("  (legacy manifest)" if manifest.legacy else "")
    )
    out.line(f"  environment  {manifest.environment}")
    out.line(f"  prefix       {manifest.prefix}")
    if manifest.export_time:
        out.line(f"  export time  {manifest.export_time.isoformat()}")
    if manifest.created_at:
        out.line(f"  written at   {manifest.created_at.isoformat()}")
    out.line()
    rows = []
    for t in manifest.tables:
        size = sum(f.size or 0 for f in t.files) if t.files else t.billed_size_bytes
        rows.append(
            [
                t.table_name,
                t.status.value,
                format_count(t.item_count),
                "-" if t.files is None else str(len(t.files)),
                format_size(size),
                t.export_folder or t.s3_prefix,
                t.error or "",
            ]
        )
    out.table(
        ["table", "status", "items", "files", "size", "export folder", "error"],
        rows,
        title="tables",
        right=["items", "files", "size"],
    )
    for t in manifest.tables:
        if not t.files:
            continue
        out.line()
        base = (t.export_folder or t.s3_prefix).rstrip("/") + "/"
        out.table(
            ["file", "items", "size", "md5"],
            [
                [
                    f.key.removeprefix(base),
                    format_count(f.item_count),
                    format_size(f.size),
                    f.md5 or "-",
                ]
                for f in t.files
            ],
            title=f"{t.table_name}: files under {base}",
            right=["items", "size"],
        )
    if any(t.files is None and t.status.value == "COMPLETED" for t in manifest.tables):
        out.line()
        out.line("tables without a file list are checked against AWS's manifest-files.json")


async def cmd_show(args: argparse.Namespace, out: Output) -> int:
    async def work(storage: Storage, loc: settings.Location) -> int:
        manifest = await _load(storage, loc.prefix, args.date)
        if args.json:
            out.json(manifest.model_dump(mode="json", by_alias=True))
        else:
            show_manifest(out, manifest, f"{storage.location}/{loc.prefix}/")
        return EXIT_OK

    return await _with_storage(args, work)


# -- verify -------------------------------------------------------------------


def _verification_doc(v: BackupVerification) -> dict[str, Any]:
    return {
        "backup_date": v.selection.date.isoformat(),
        "location": v.location,
        "ok": v.ok,
        "skipped_dates": [
            {"date": s.date.isoformat(), "reason": s.reason} for s in v.selection.skipped
        ],
        "tables": [
            {
                "table_name": verdict.table_name,
                "ok": verdict.ok,
                "files": len(verdict.files),
                "items": verdict.item_count,
                "bytes": sum(f.size or 0 for f in verdict.files),
                "errors": verdict.errors,
            }
            for verdict in v.verdicts
        ]
        + [
            {
                "table_name": t.table_name,
                "ok": False,
                "files": 0,
                "items": 0,
                "bytes": 0,
                "errors": [f"export {t.status.value}" + (f": {t.error}" if t.error else "")],
            }
            for t in v.selection.not_completed
        ],
        "problems": v.problems,
    }


def _show_verification(out: Output, v: BackupVerification) -> None:
    doc = _verification_doc(v)
    for s in v.selection.skipped:
        out.line(f"skipped {s.date}: {s.reason}")
    out.table(
        ["table", "result", "files", "items", "size"],
        [
            [
                t["table_name"],
                "ok" if t["ok"] else "FAILED",
                str(t["files"]),
                format_count(t["items"]),
                format_size(t["bytes"]),
            ]
            for t in doc["tables"]
        ],
        title=f"verify {doc['backup_date']} ({v.location})",
        right=["files", "items", "size"],
    )
    if v.ok:
        out.line(f"backup {doc['backup_date']}: every file read back and matches its manifest")
    else:
        out.line(f"backup {doc['backup_date']}: {len(v.problems)} problem(s)")
        for p in v.problems:
            out.line(f"  - {p}")


async def cmd_verify(args: argparse.Namespace, out: Output) -> int:
    async def work(storage: Storage, loc: settings.Location) -> int:
        def progress(verdict: Any) -> None:
            if not args.json:
                state = "ok" if verdict.ok else "FAILED"
                out.note(f"verified {verdict.table_name}: {state}, {verdict.item_count:,} items")

        v = await verify_backup(
            storage,
            loc.prefix,
            args.date,
            args.tables,
            concurrency=args.concurrency,
            on_table=progress,
        )
        if args.json:
            out.json(_verification_doc(v))
        else:
            _show_verification(out, v)
        return EXIT_OK if v.ok else EXIT_FAILED

    return await _with_storage(args, work)


# -- download -----------------------------------------------------------------


def _download_doc(r: DownloadResult) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "backup_date": r.selection.date.isoformat(),
        "directory": str(r.directory),
        "ok": r.ok,
        "files_copied": r.files_copied,
        "files_skipped": r.files_skipped,
        "files_failed": sum(1 for f in r.files if f.error),
        "bytes_copied": r.bytes_copied,
        "problems": r.problems,
    }
    if r.verification is not None:
        doc["verification"] = _verification_doc(r.verification)
    return doc


async def cmd_download(args: argparse.Namespace, out: Output) -> int:
    loc = settings.location(args)
    async with settings.clients(args) as aws:
        source = settings.storage(loc, aws)
        with DownloadView(out) as view:
            result = await download_backup(
                source,
                args.directory,
                loc.prefix,
                args.date,
                args.tables,
                concurrency=args.concurrency,
                on_file=view.update,
            )
    if args.json:
        out.json(_download_doc(result))
    else:
        out.line(
            f"backup {result.selection.date} -> {result.directory}: "
            f"{result.files_copied} file(s) copied ({format_size(result.bytes_copied)}), "
            f"{result.files_skipped} already present"
        )
        if result.verification is not None:
            _show_verification(out, result.verification)
        else:
            for p in result.problems:
                out.line(f"  - {p}")
        if result.ok:
            out.line(f"read it with: --from {result.directory}")
    return EXIT_OK if result.ok else EXIT_FAILED


# -- backup -------------------------------------------------------------------


def _show_backup(out: Output, body: BackupBody) -> None:
    rows = [
        [
            r["table_name"],
            r["status"],
            format_count(r["item_count"]),
            str(r["file_count"]),
            r["error"] or "",
        ]
        for r in body["results"]
    ]
    out.table(
        ["table", "status", "items", "files", "error"],
        rows,
        title=f"backup {body['backup_date']} ({body['status']})",
        right=["items", "files"],
    )
    if body.get("error"):
        out.line(f"error: {body.get('error')}")
    if body["manifest_s3_key"]:
        out.line(f"manifest: s3://{body['s3_bucket']}/{body['manifest_s3_key']}")
    if body.get("message"):
        out.line(str(body.get("message")))


async def cmd_backup(args: argparse.Namespace, out: Output) -> int:
    from ddb_backup.backup import Polling, run_backup

    if args.incremental:
        return await _cmd_incremental(args, out)
    config = settings.backup_config(args)
    polling = Polling(initial=args.poll_seconds, maximum=max(args.poll_seconds, 60.0))
    started = time.monotonic()
    async with settings.clients(args) as aws:
        with BackupView(out) as view:
            while True:
                remaining = None
                if args.timeout is not None:
                    remaining = max(0.0, args.timeout - (time.monotonic() - started))
                result = await run_backup(
                    config,
                    aws,
                    deadline_seconds=remaining,
                    on_progress=view.update,
                    polling=polling,
                    backup_date=check_date(args.date) if args.date else None,
                )
                if result.status_code != 202:
                    break
                if remaining is not None and remaining <= 0:
                    break
                await asyncio.sleep(args.poll_seconds)
    if args.json:
        out.json({"statusCode": result.status_code, "body": result.body})
    else:
        _show_backup(out, result.body)
    body = result.body
    if result.status_code == 202:
        out.note("backup still running: run `ddb-backup backup` again to pick it up")
    elif body.get("error"):
        out.note(f"ddb-backup: error: {body.get('error')}")
    elif body["not_backed_up"]:
        missing = ", ".join(body["not_backed_up"])
        out.note(f"ddb-backup: error: not backed up on {body['backup_date']}: {missing}")
    elif result.status_code != 200:
        total = body["total_tables_processed"]
        out.note(f"ddb-backup: error: backup {body['failed_exports']} of {total} table(s) failed")
    return EXIT_OK if result.status_code == 200 else EXIT_FAILED


async def _cmd_incremental(args: argparse.Namespace, out: Output) -> int:
    """One incremental round, waited for (invoked again while it answers 202)."""
    from ddb_backup.backup import Polling, run_incremental_backup

    if args.date:
        raise UsageError("--date is for the daily run; --incremental always works on now")
    config = settings.incremental_config(args)
    polling = Polling(initial=args.poll_seconds, maximum=max(args.poll_seconds, 60.0))
    started = time.monotonic()
    async with settings.clients(args) as aws:
        while True:
            remaining = None
            if args.timeout is not None:
                remaining = max(0.0, args.timeout - (time.monotonic() - started))
            result = await run_incremental_backup(
                config, aws, deadline_seconds=remaining, polling=polling
            )
            if result.status_code != 202 or (remaining is not None and remaining <= 0):
                break
            await asyncio.sleep(args.poll_seconds)
    body = result.body
    if args.json:
        out.json({"statusCode": result.status_code, "body": body})
    else:
        out.table(
            ["table", "status", "window", "puts", "deletes", "lag (s)", "note"],
            [
                [
                    r["table_name"],
                    r["status"],
                    f"{r['window_from'] or '-'} .. {r['window_to'] or '-'}",
                    str(r["puts"]),
                    str(r["deletes"]),
                    "-" if r["chain_lag_seconds"] is None else f"{r['chain_lag_seconds']:.0f}",
                    "; ".join(
                        [f"break: {b['reason']}" for b in r["breaks"]]
                        + [m for m in (r["error"], r["message"]) if m]
                    ),
                ]
                for r in body["results"]
            ],
            title=f"incremental round ({body['status']}, {body['windows_verified']} window(s))",
            right=["puts", "deletes", "lag (s)"],
        )
    if result.status_code == 202:
        out.note("windows still exporting: run `ddb-backup backup --incremental` again")
    return EXIT_OK if result.status_code == 200 else EXIT_FAILED


# -- restore ------------------------------------------------------------------

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
    selection = await select_backup(storage, prefix, args.date, args.tables)
    sources = args.tables or [t.table_name for t in selection.completed]
    mapping = dict(args.map or [])
    targets = sorted({mapping.get(s, s) for s in sources})
    out.note(
        f"--clear-existing-data will delete every item of {len(targets)} table(s) "
        f"before restoring backup {selection.date}: {', '.join(targets)}"
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
        if r.dead_letter_keys:
            out.line(
                f"{r.target_table}: {len(r.dead_letter_keys)} dead-letter file(s) "
                f"under {r.dead_letter_folder}"
            )
    if answer.resume_token:
        out.line(f"resume with: --resume-token {answer.resume_token}")


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
        fields = {
            "backup_date": args.date,
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
    from ddb_backup.restore import restore_export
    from ddb_backup.storage import S3Storage

    bucket, folder = args.uri
    async with settings.restore_clients(args, args.max_workers) as aws:
        # The export's bucket is named by the URI; the owner check still applies.
        owner = settings.cli_environ(args).get("BACKUP_BUCKET_OWNER") or None
        source = S3Storage(aws.s3, bucket, expected_owner=owner)
        with RestoreView(
            out, interval=args.progress_interval, verb="restore-export", dry_run=args.dry_run
        ) as view:
            result = await restore_export(
                source,
                folder,
                args.table,
                aws,
                dry_run=args.dry_run,
                max_workers=args.max_workers,
                on_progress=view.update,
                progress_interval=view.tick,
                retry=settings.retry_policy(),
            )
    out.json({"statusCode": result.status_code, "body": result.body})
    _report_error(out, result.status_code, result.answer)
    return _restore_exit(result)


COMMANDS: dict[str, Command] = {
    "list": cmd_list,
    "show": cmd_show,
    "verify": cmd_verify,
    "download": cmd_download,
    "backup": cmd_backup,
    "restore": cmd_restore,
    "restore-export": cmd_restore_export,
}
