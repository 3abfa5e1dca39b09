"""``ddb-backup drill [DATE|latest] [--tables ...]`` (restore into scratch tables and
compare, see :mod:`ddb_backup.drill`) and ``ddb-backup diff DATE --table T``
(what changed in a live table since a backup, see :mod:`ddb_backup.diff`).
Both exit 0 when all is equal / passed, 1 otherwise."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ddb_backup.catalog import resolve_backup
from ddb_backup.cli import settings
from ddb_backup.cli.display import Output, format_count, format_duration
from ddb_backup.diff import diff_table
from ddb_backup.drill import run_drill
from ddb_backup.errors import BackupNotFoundError

__all__ = ["add_parsers", "cmd_diff", "cmd_drill"]

EXIT_OK, EXIT_DIFFERENT = 0, 1


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    date_arg: Callable[[str], str],
    table_arg: Callable[[str], str],
) -> None:
    """The two commands' parsers (argument types shared with the other commands)."""
    p = sub.add_parser(
        "drill",
        parents=[common],
        help="restore a backup into scratch tables, compare count and digest, delete them",
    )
    p.add_argument(
        "date",
        nargs="?",
        default="latest",
        type=date_arg,
        metavar="DATE",
        help="YYYY-MM-DD or latest",
    )
    p.add_argument("--tables", nargs="+", metavar="TABLE", type=table_arg)
    p.add_argument("--json", action="store_true", help="the drill's record as JSON")

    p = sub.add_parser(
        "diff", parents=[common], help="items added, changed, deleted in a table since a backup"
    )
    p.add_argument("date", type=date_arg, metavar="DATE", help="YYYY-MM-DD or latest")
    p.add_argument("--table", required=True, type=table_arg, help="the table to compare")
    p.add_argument("--keys", action="store_true", help="list the keys (never other values)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


async def cmd_drill(args: argparse.Namespace, out: Output) -> int:
    config = settings.restore_config(args)
    async with settings.restore_clients(args, 5) as aws:
        result = await run_drill(config, aws, args.date, args.tables)
    if args.json:
        out.json(result.model_dump(mode="json"))
    else:
        out.line(f"drill {result.drill_id} of {result.backup_date}: {result.status}")
        out.table(
            ["table", "status", "items", "duration", "items/s", "difference"],
            [
                [
                    t.source_table,
                    str(t.status),
                    format_count(t.items_restored),
                    format_duration(t.duration_seconds),
                    format_count(int(t.items_per_second or 0)),
                    t.difference or "",
                ]
                for t in result.tables
            ],
            right=["items", "items/s"],
        )
        out.note(f"record: s3://{config.bucket}/{result.result_key}")
    return EXIT_OK if result.passed else EXIT_DIFFERENT


async def cmd_diff(args: argparse.Namespace, out: Output) -> int:
    loc = settings.location(args)
    async with settings.clients(args) as aws:
        storage = settings.storage(loc, aws)
        manifest = (await resolve_backup(storage, loc.prefix, args.date, [args.table])).manifest
        table = manifest.table(args.table)
        if table is None:  # resolve_backup checked it; kept for the type checker
            raise BackupNotFoundError(f"backup {manifest.backup_date} has no {args.table}")
        result = await diff_table(storage, table, aws.dynamodb, keys=args.keys)
    doc = {"backup_date": manifest.backup_date.isoformat(), **result.to_dict()}
    if args.json:
        out.json(doc)
    else:
        out.line(
            f"{result.table} since {manifest.backup_date}: {result.added:,} added, "
            f"{result.changed:,} changed, {result.deleted:,} deleted "
            f"({result.backup_items:,} items in the backup, {result.live_items:,} now)"
        )
        for kind, keys in (result.keys or {}).items():
            for key in keys:
                out.line(f"  {kind}: {key}")
    return EXIT_OK if result.identical else EXIT_DIFFERENT
