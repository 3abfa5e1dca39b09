"""Incremental exports: the DynamoDB request, the S3 folder, its verification.

AWS's layout (several exports share one ``data/`` folder)::

    <s3Prefix>/AWSDynamoDB/<export id>/manifest-summary.json   version 2023-08-01
    <s3Prefix>/AWSDynamoDB/<export id>/manifest-summary.md5    base64 MD5, no newline
    <s3Prefix>/AWSDynamoDB/<export id>/manifest-files.json     JSON lines -> data/
    <s3Prefix>/AWSDynamoDB/<export id>/manifest-files.md5
    <s3Prefix>/AWSDynamoDB/data/<name>.json.gz                 change records

A window is verified like a full export before it is used: every data file's
MD5 and line count against ``manifest-files.json``, and every line a change
record inside ``[exportFromTime, exportToTime)`` (see :mod:`ddb_backup.changes`).
The verification also makes pass 1 of applying the window (which record of a
key seen twice wins), so :func:`iter_window_requests` can stream the writes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ddb_backup.changes import (
    MicrosWindow,
    OutputView,
    WindowResolver,
    WriteRequest,
    parse_change_line,
    write_requests,
)
from ddb_backup.concurrency import run_workers
from ddb_backup.errors import (
    ChecksumMismatchError,
    ItemCountMismatchError,
    ManifestError,
    UnsupportedFormatError,
    VerificationError,
)
from ddb_backup.export_folder import ExpectedFile, check_manifest_sidecar, rebased, sidecar_key
from ddb_backup.keys import check_key_inside
from ddb_backup.manifest import DataFile, parse_aws_manifest_files
from ddb_backup.storage import Storage
from ddb_backup.stream import StreamStats, iter_line_blocks

__all__ = [
    "INCREMENTAL_EXPORT",
    "INCREMENTAL_SUMMARY_VERSION",
    "IncrementalListing",
    "IncrementalSummary",
    "VerifiedWindow",
    "iter_window_requests",
    "manifest_keys",
    "micros",
    "read_incremental_folder",
    "verify_incremental_folder",
]

INCREMENTAL_SUMMARY_VERSION = "2023-08-01"
INCREMENTAL_EXPORT = "INCREMENTAL_EXPORT"

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICRO = dt.timedelta(microseconds=1)


def micros(when: dt.datetime) -> int:
    """Microseconds since the epoch, exactly (no float rounding)."""
    if when.tzinfo is None:
        raise ValueError("naive datetime: times must carry their time zone")
    return (when - _EPOCH) // _MICRO


class IncrementalSummary(BaseModel):
    """``manifest-summary.json`` of an incremental export (AWS names)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    version: Literal["2023-08-01"]
    export_type: Literal["INCREMENTAL_EXPORT"] = Field(alias="exportType")
    export_arn: str = Field(alias="exportArn")
    table_arn: str = Field(alias="tableArn")
    table_id: str | None = Field(default=None, alias="tableId")
    export_from_time: dt.datetime = Field(alias="exportFromTime")
    export_to_time: dt.datetime = Field(alias="exportToTime")
    output_format: str = Field(default="DYNAMODB_JSON", alias="outputFormat")
    output_view: OutputView = Field(default=OutputView.NEW_AND_OLD_IMAGES, alias="outputView")
    item_count: int | None = Field(default=None, ge=0, alias="itemCount")
    s3_prefix: str | None = Field(default=None, alias="s3Prefix")

    @property
    def window(self) -> MicrosWindow:
        return MicrosWindow(micros(self.export_from_time), micros(self.export_to_time))


@dataclass(frozen=True, slots=True)
class IncrementalListing:
    """An incremental export folder as its manifests describe it."""

    folder: str
    summary: IncrementalSummary
    files: list[ExpectedFile]


@dataclass(frozen=True, slots=True)
class VerifiedWindow:
    """An incremental export whose every file and line was checked.

    ``winners`` (keys changed more than once in the window -> winning
    timestamp; holds key values, so it is kept in memory, never logged or
    stored) is what :func:`iter_window_requests` needs to skip superseded records.
    """

    folder: str
    summary: IncrementalSummary
    files: list[DataFile]
    records: int
    puts: int
    deletes: int
    winners: Mapping[bytes, int] = field(repr=False)

    @property
    def export_from_time(self) -> dt.datetime:
        return self.summary.export_from_time

    @property
    def export_to_time(self) -> dt.datetime:
        return self.summary.export_to_time


def _data_folder(folder: str) -> str:
    """``<p>/AWSDynamoDB/<id>`` -> ``<p>/AWSDynamoDB/data``, the folder its data keys are in."""
    parent, _, export_id = folder.rpartition("/")
    if not parent.endswith("AWSDynamoDB") or export_id in {"", "data"}:
        raise ManifestError(
            "not an export folder (expected <prefix>/AWSDynamoDB/<export id>)", key=folder
        )
    return f"{parent}/data"


def manifest_keys(folder: str) -> tuple[str, str, str, str]:
    """What :func:`read_incremental_folder` reads: the summary, the files, their sidecars."""
    summary_key = f"{folder.strip('/')}/manifest-summary.json"
    files_key = f"{folder.strip('/')}/manifest-files.json"
    return summary_key, files_key, sidecar_key(summary_key), sidecar_key(files_key)


async def read_incremental_folder(storage: Storage, folder: str) -> IncrementalListing:
    """Read and check both manifests; every data key must be in the shared ``data/``."""
    folder = folder.strip("/")
    data_folder = _data_folder(folder)
    summary_key, files_key, _, _ = manifest_keys(folder)
    raw = await storage.get_bytes_or_none(summary_key)
    if raw is None:
        raise ManifestError("manifest-summary.json is missing", key=summary_key)
    await check_manifest_sidecar(storage, summary_key, raw)
    try:
        summary = IncrementalSummary.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ManifestError(
            f"not an incremental export summary ({where}: {first['msg']})", key=summary_key
        ) from exc
    if summary.output_format.upper() != "DYNAMODB_JSON":
        raise UnsupportedFormatError(
            f"export {folder} is in {summary.output_format}; only DYNAMODB_JSON is supported"
        )
    if summary.export_from_time >= summary.export_to_time:
        raise ManifestError("exportFromTime is not before exportToTime", key=summary_key)
    raw_files = await storage.get_bytes_or_none(files_key)
    if raw_files is None:
        raise ManifestError("manifest-files.json is missing", key=files_key)
    await check_manifest_sidecar(storage, files_key, raw_files)
    files = [
        ExpectedFile(
            key=check_key_inside(
                rebased(e.data_file_s3_key, data_folder, "AWSDynamoDB/data/"), data_folder
            ),
            item_count=e.item_count,
            md5=e.md5_checksum,
        )
        for e in parse_aws_manifest_files(raw_files, key=files_key)
    ]
    if len({f.key for f in files}) != len(files):
        raise ManifestError("manifest-files.json lists a data file twice", key=files_key)
    listed = sum(f.item_count or 0 for f in files)
    if summary.item_count is not None and summary.item_count != listed:
        raise ManifestError(
            f"itemCount {summary.item_count} differs from the files' {listed}", key=summary_key
        )
    return IncrementalListing(folder, summary, files)


async def _verify_change_file(
    storage: Storage,
    expected: ExpectedFile,
    *,
    summary: IncrementalSummary,
    key_types: Mapping[str, str],
    resolver: WindowResolver,
) -> DataFile:
    stats = StreamStats()
    lines = 0
    window = summary.window
    async for block in iter_line_blocks(
        storage.stream(expected.key), key=expected.key, stats=stats
    ):
        for line in block:
            lines += 1
            record = parse_change_line(
                line,
                key=expected.key,
                line_no=lines,
                key_types=key_types,
                window=window,
                view=summary.output_view,
            )
            resolver.observe(record, key=expected.key)
    if stats.md5_base64 != expected.md5:
        raise ChecksumMismatchError(
            f"MD5 {stats.md5_base64} does not match the manifest's {expected.md5}",
            key=expected.key,
        )
    if lines != expected.item_count:
        raise ItemCountMismatchError(
            f"holds {lines} records, the manifest says {expected.item_count}", key=expected.key
        )
    return DataFile(
        key=expected.key, item_count=lines, md5=stats.md5_base64, size=stats.compressed_bytes
    )


async def verify_incremental_folder(
    storage: Storage,
    folder: str,
    *,
    key_types: Mapping[str, str],
    table_arn: str | None = None,
    table_id: str | None = None,
    concurrency: int = 4,
) -> VerifiedWindow:
    """Read every file of an incremental export back and check every line.

    ``key_types``: the table's key attributes and types, HASH first
    (:attr:`ddb_backup.manifest.TableSchema.key_types`). ``table_arn`` /
    ``table_id``, when given, must be the summary's (a chain's table). Raises a
    :class:`VerificationError` (the first file found damaged, by manifest
    order) or :class:`ManifestError`; the message names the file and line.
    """
    listing = await read_incremental_folder(storage, folder)
    summary_key = f"{listing.folder}/manifest-summary.json"
    if table_arn is not None and listing.summary.table_arn != table_arn:
        raise ManifestError(f"export is of table {listing.summary.table_arn}", key=summary_key)
    if table_id is not None and listing.summary.table_id != table_id:
        raise ManifestError(
            f"export is of table id {listing.summary.table_id}, expected {table_id}",
            key=summary_key,
        )
    resolver = WindowResolver()

    async def one(expected: ExpectedFile) -> DataFile | VerificationError:
        try:
            return await _verify_change_file(
                storage, expected, summary=listing.summary, key_types=key_types, resolver=resolver
            )
        except VerificationError as exc:
            return exc

    outcomes = await run_workers(listing.files, one, concurrency=concurrency)
    for outcome in outcomes:
        if isinstance(outcome, VerificationError):
            raise outcome
    resolver.release()
    return VerifiedWindow(
        folder=listing.folder,
        summary=listing.summary,
        files=[o for o in outcomes if isinstance(o, DataFile)],
        records=resolver.records,
        puts=resolver.puts,
        deletes=resolver.deletes,
        winners=resolver.winners,
    )


async def iter_window_requests(
    storage: Storage, window: VerifiedWindow, *, key_types: Mapping[str, str]
) -> AsyncIterator[list[WriteRequest]]:
    """Pass 2 of applying a verified window: its writes, a list per block of lines.

    Files are read in manifest order; every line is checked again as it is
    parsed. Within one window each key is written once (the record with the
    greater WriteTimestampMicros, see :mod:`ddb_backup.changes`), so the order
    of the writes inside a window does not matter; windows must be applied
    strictly one after the other.
    """
    for data_file in window.files:
        line_no = 0
        async for block in iter_line_blocks(storage.stream(data_file.key), key=data_file.key):
            records = []
            for line in block:
                line_no += 1
                records.append(
                    parse_change_line(
                        line,
                        key=data_file.key,
                        line_no=line_no,
                        key_types=key_types,
                        window=window.summary.window,
                        view=window.summary.output_view,
                    )
                )
            requests = list(write_requests(records, window.winners))
            if requests:
                yield requests
