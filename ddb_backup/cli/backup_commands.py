"""backup (daily, or one incremental round with --incremental), waited for until final."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import TYPE_CHECKING

from ddb_backup.cli import settings
from ddb_backup.cli.display import (
    BackupView,
    Output,
    format_count,
)
from ddb_backup.keys import check_date

if TYPE_CHECKING:
    from ddb_backup.backup import BackupBody
from ddb_backup.cli.common import EXIT_FAILED, EXIT_OK, UsageError

__all__ = ["cmd_backup"]


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
