"""list, show, verify, download: the commands that read backups (and copy them)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ddb_backup.audit import BackupVerification, verify_backup
from ddb_backup.catalog import BackupEntry, list_backups, load_backup, resolve_backup
from ddb_backup.cli import settings
from ddb_backup.cli.display import (
    DownloadView,
    Output,
    format_count,
    format_size,
)
from ddb_backup.download import DownloadResult, download_backup
from ddb_backup.keys import check_date
from ddb_backup.manifest import BackupManifest
from ddb_backup.storage import Storage

if TYPE_CHECKING:
    pass
from ddb_backup.cli.common import EXIT_FAILED, EXIT_OK, with_storage

__all__ = ["cmd_download", "cmd_list", "cmd_show", "cmd_verify", "show_manifest"]


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

    return await with_storage(args, work)


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

    return await with_storage(args, work)


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

    return await with_storage(args, work)


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
