"""Per table, which points can be restored: full backups, chains, windows, breaks.

Reads S3 only (the catalog of daily backups and the chain records). A
restorable range runs from a full backup's export time to the furthest
window boundary a chain reaches from it; inside it the restorable points are
the window boundaries (plus the full backup's export time itself). Chains roll
daily: each but the newest is normally ``superseded_by`` the next one (not a
break), and the ranges of consecutive full backups join into one. Chains whose
``chain.json`` has expired are not listed.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict

from ddb_backup.catalog import list_backups
from ddb_backup.chain import Chain, full_backup_points, list_chains, resolve_restore_point
from ddb_backup.errors import UnsafeNameError
from ddb_backup.keys import check_prefix, check_table_name
from ddb_backup.storage import Storage

__all__ = ["ChainView", "FullBackupView", "Span", "TableTimeline", "WindowView", "build_timeline"]


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Span(_View):
    start: dt.datetime
    end: dt.datetime


class FullBackupView(_View):
    backup_date: dt.date
    export_time: dt.datetime
    reaches: dt.datetime  # the furthest boundary restorable from it


class WindowView(_View):
    export_from_time: dt.datetime
    export_to_time: dt.datetime
    records: int
    puts: int
    deletes: int
    folder: str


class ChainView(_View):
    chain_id: str
    base_export_time: dt.datetime
    head: dt.datetime
    windows: list[WindowView]
    broken: str | None = None  # "reason: detail" of a recorded break
    # the chain that took over from the next daily full backup (no break: this
    # chain's windows stay restorable until they expire with its base)
    superseded_by: str | None = None
    problems: list[str]  # gaps, overlaps, table changes found in the record


class TableTimeline(_View):
    table: str
    restorable: list[Span]
    full_backups: list[FullBackupView]
    chains: list[ChainView]


def _chain_view(chain: Chain) -> ChainView:
    return ChainView(
        chain_id=chain.chain_id,
        base_export_time=chain.start.base_export_time,
        head=chain.head,
        windows=[
            WindowView(
                export_from_time=w.export_from_time,
                export_to_time=w.export_to_time,
                records=w.records,
                puts=w.puts,
                deletes=w.deletes,
                folder=w.folder,
            )
            for w in chain.windows
        ],
        broken=f"{chain.broken.reason}: {chain.broken.detail}" if chain.broken else None,
        superseded_by=chain.superseded.superseded_by if chain.superseded else None,
        problems=[p.detail for p in chain.problems],
    )


def _merge(spans: list[Span]) -> list[Span]:
    merged: list[Span] = []
    for s in sorted(spans, key=lambda s: s.start):
        if merged and s.start <= merged[-1].end:
            merged[-1] = Span(start=merged[-1].start, end=max(merged[-1].end, s.end))
        else:
            merged.append(s)
    return merged


async def _incremental_tables(storage: Storage, prefix: str) -> set[str]:
    names = set()
    for sub in await storage.list_prefixes(f"{check_prefix(prefix)}/incremental/"):
        try:
            names.add(check_table_name(sub.rstrip("/").rsplit("/", 1)[-1]))
        except UnsafeNameError:
            continue
    return names


async def build_timeline(
    storage: Storage, prefix: str, tables: list[str] | None = None
) -> list[TableTimeline]:
    """The timeline of ``tables`` (default: every table with a full backup or a chain)."""
    manifests = [e.manifest for e in await list_backups(storage, prefix) if e.manifest]
    if tables is None:
        names = {t.table_name for m in manifests for t in m.tables}
        names |= await _incremental_tables(storage, prefix)
        tables = sorted(names)
    out = []
    for table in tables:
        fulls = full_backup_points(manifests, table)
        chains = await list_chains(storage, prefix, table)
        views = [
            FullBackupView(
                backup_date=f.backup_date,
                export_time=f.export_time,
                reaches=resolve_restore_point([f], chains, "latest").restored_to,
            )
            for f in fulls
        ]
        out.append(
            TableTimeline(
                table=table,
                restorable=_merge([Span(start=v.export_time, end=v.reaches) for v in views]),
                full_backups=views,
                chains=[_chain_view(c) for c in chains],
            )
        )
    return out
