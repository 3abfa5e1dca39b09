"""``ddb-backup timeline [--table T] [--json]``: which points each table can be
restored to (reads S3 only; see :mod:`ddb_backup.point_in_time.timeline`)."""

from __future__ import annotations

import argparse
import datetime as dt

from ddb_backup.cli import settings
from ddb_backup.cli.display import Output, format_count
from ddb_backup.point_in_time.timeline import ChainView, TableTimeline, build_timeline

__all__ = ["cmd_timeline", "show_timeline"]


def _t(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S") + "Z"


def _ended(c: ChainView) -> str:
    """Why a chain stops: a break (or problems in its record), or the next chain."""
    if c.broken or c.problems:
        return c.broken or "; ".join(c.problems)
    return f"superseded by {c.superseded_by}" if c.superseded_by else ""


def show_timeline(out: Output, timelines: list[TableTimeline]) -> None:
    """Per table: restorable ranges, then full backups, then chains and how each ended."""
    if not timelines:
        out.line("no full backups or incremental chains found")
    for tl in timelines:
        ranges = ", ".join(f"{_t(s.start)} -> {_t(s.end)}" for s in tl.restorable)
        out.line(f"{tl.table}: restorable {ranges or 'nowhere (no full backup records its time)'}")
        out.table(
            ["backup date", "export time", "reaches"],
            [
                [f.backup_date.isoformat(), _t(f.export_time), _t(f.reaches)]
                for f in tl.full_backups
            ],
            title="  full backups",
        )
        rows = [
            [
                c.chain_id,
                _t(c.base_export_time),
                format_count(len(c.windows)),
                _t(c.head),
                _ended(c),
            ]
            for c in tl.chains
        ]
        out.table(
            ["chain", "starts", "windows", "head", "ended"],
            rows,
            title="  chains",
            right=["windows"],
        )


async def cmd_timeline(args: argparse.Namespace, out: Output) -> int:
    loc = settings.location(args)
    async with settings.clients(args) as aws:
        timelines = await build_timeline(
            settings.storage(loc, aws), loc.prefix, [args.table] if args.table else None
        )
    if args.json:
        out.json([t.model_dump(mode="json") for t in timelines])
    else:
        show_timeline(out, timelines)
    return 0
