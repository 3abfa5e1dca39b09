"""Reading a finished export back before it counts: folder, MD5s, counts, lines.

Every data file is read (MD5 of the raw bytes, every line one item with the
table's keys, see :mod:`ddb_backup.verify`), and the total must match both
DescribeExport's ``ItemCount`` and ``manifest-summary.json``. A table cut off
by the deadline stays ``EXPORTED`` and is verified again next time.
"""

from __future__ import annotations

import asyncio

from ddb_backup.backup.polling import Deadline
from ddb_backup.backup.state import FINAL_STATUSES, ProgressCallback, TableRun, fail_table
from ddb_backup.concurrency import run_workers
from ddb_backup.digest import ContentDigest
from ddb_backup.errors import DdbBackupError, ItemCountMismatchError
from ddb_backup.export import folder_from_export_manifest
from ddb_backup.export_folder import locate_export_folder, read_export_folder
from ddb_backup.log import get_logger
from ddb_backup.manifest import DataFile, TableStatus
from ddb_backup.storage import Storage
from ddb_backup.verify import schema_keys, verify_files

__all__ = ["verify_exported", "verify_table"]

log = get_logger(__name__)


async def verify_exported(
    storage: Storage,
    tables: list[TableRun],
    *,
    concurrency: int,
    verify_concurrency: int,
    deadline: Deadline,
    on_progress: ProgressCallback | None,
) -> bool:
    """Verify exported tables within the deadline; True if a status changed."""
    before = [t.status for t in tables]

    async def one(table: TableRun) -> None:
        await verify_table(storage, table, concurrency=verify_concurrency, on_progress=on_progress)

    try:
        async with asyncio.timeout(deadline.remaining()):
            await run_workers(tables, one, concurrency=concurrency)
    except TimeoutError:
        log.warning(
            "deadline reached during verification; it resumes on the next invocation",
            extra={"tables": [t.table_name for t in tables if t.status not in FINAL_STATUSES]},
        )
    return before != [t.status for t in tables]


async def verify_table(
    storage: Storage, table: TableRun, *, concurrency: int, on_progress: ProgressCallback | None
) -> None:
    """COMPLETED with its files and count once every file checks out, else FAILED."""
    if on_progress is not None:
        on_progress(table.table_name, "VERIFYING")
    try:
        folder = (
            table.export_folder
            or folder_from_export_manifest(table.export_manifest, table.s3_prefix)
            or await locate_export_folder(storage, table.s3_prefix, export_arn=table.export_arn)
        )
        listing = await read_export_folder(storage, folder)
        # The content digest costs one hash per item on lines read anyway.
        digest = ContentDigest()
        verdicts = await verify_files(
            storage,
            listing.files,
            concurrency=concurrency,
            keys=schema_keys(table.table_schema),
            digest=digest,
        )
        bad = [v.error for v in verdicts if v.error is not None]
        if bad:
            shown = "; ".join(str(e) for e in bad[:10])
            more = f" (and {len(bad) - 10} more)" if len(bad) > 10 else ""
            msg = f"verification failed for {len(bad)} data file(s): {shown}{more}"
            fail_table(table, msg, on_progress)
            return
        files = [v.data_file for v in verdicts if v.data_file is not None]
        total = sum(f.item_count for f in files)
        _check_total(total, table.export_item_count, "DescribeExport ItemCount", files)
        if listing.summary is not None:
            _check_total(total, listing.summary.item_count, "manifest-summary.json", files)
            if table.billed_size_bytes is None:
                table.billed_size_bytes = listing.summary.billed_size_bytes
    except DdbBackupError as exc:
        fail_table(table, exc, on_progress)
        return
    table.export_folder = folder
    table.files = files
    table.item_count = total
    table.content_digest = digest.hexdigest
    table.status = TableStatus.COMPLETED
    table.error = None
    log.info(
        "export verified",
        extra={
            "table": table.table_name,
            "export_folder": folder,
            "files": len(files),
            "item_count": total,
            "aws_manifest": listing.has_aws_manifest,
        },
    )
    if on_progress is not None:
        on_progress(table.table_name, "COMPLETED")


def _check_total(total: int, expected: int | None, source: str, files: list[DataFile]) -> None:
    if expected is None or expected == total:
        return
    names = ", ".join(f.key for f in files[:10]) + (" ..." if len(files) > 10 else "")
    raise ItemCountMismatchError(
        f"the data files hold {total} items, {source} says {expected} (files: {names})",
        key=files[0].key.rsplit("/data/", 1)[0] if files else "(no data files)",
    )
