"""Reading an AWS export folder in S3 (or a local copy): where it is, what it holds.

Real exports hold ``manifest-summary.json``, ``manifest-files.json`` (with
``.md5`` sidecars) and ``data/*.json.gz``. moto writes only ``data/<uuid>.gz``;
then the data files are found by listing, and their counts and checksums are
learnt by the verification pass instead of checked against AWS's.
"""

from __future__ import annotations

from dataclasses import dataclass

from ddb_backup.errors import ExportError, ManifestError, UnsupportedFormatError
from ddb_backup.keys import check_key, check_key_inside
from ddb_backup.manifest import AwsManifestSummary, DataFile, parse_aws_manifest_files
from ddb_backup.storage import Storage, content_md5

__all__ = [
    "ExpectedFile",
    "ExportListing",
    "check_manifest_sidecar",
    "locate_export_folder",
    "read_export_folder",
    "rebased",
    "sidecar_key",
]


@dataclass(frozen=True, slots=True)
class ExpectedFile:
    """A data file and what it should hold (``None`` where nobody told us)."""

    key: str
    item_count: int | None = None
    md5: str | None = None
    size: int | None = None

    @classmethod
    def from_data_file(cls, f: DataFile) -> ExpectedFile:
        return cls(key=f.key, item_count=f.item_count, md5=f.md5, size=f.size)


@dataclass(frozen=True, slots=True)
class ExportListing:
    folder: str
    files: list[ExpectedFile]
    summary: AwsManifestSummary | None
    has_aws_manifest: bool

    @property
    def item_count(self) -> int | None:
        if self.summary and self.summary.item_count is not None:
            return self.summary.item_count
        if self.files and all(f.item_count is not None for f in self.files):
            return sum(f.item_count or 0 for f in self.files)
        return None


def export_id_from_arn(arn: str | None) -> str | None:
    """AWS: ``arn:...:table/T/export/<id>`` -> ``<id>`` (the folder name)."""
    if not arn or "/export/" not in arn:
        return None
    return arn.rsplit("/", 1)[-1] or None


async def locate_export_folder(
    storage: Storage, s3_prefix: str, *, export_arn: str | None = None
) -> str:
    """Find ``<s3_prefix>/AWSDynamoDB/<id>`` for an export.

    AWS names the folder after the export id (the ARN's last segment); moto
    does not, so with one folder only that one is taken, and several
    candidates without a match is an error rather than a guess.
    """
    base = f"{s3_prefix.strip('/')}/AWSDynamoDB/"
    candidates = [p.rstrip("/") for p in await storage.list_prefixes(base)]
    # Incremental exports share an AWSDynamoDB/data/ folder: not an export id.
    candidates = [c for c in candidates if not c.endswith("/data")]
    wanted = export_id_from_arn(export_arn)
    if wanted:
        for c in candidates:
            if c.rsplit("/", 1)[-1] == wanted:
                return c
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ExportError(f"no export folder under {base}")
    raise ExportError(
        f"{len(candidates)} export folders under {base} and none matches the export id"
    )


def rebased(key: str, data_folder: str, marker: str) -> str:
    """A data key from a manifest of an export folder copied elsewhere, moved
    into ``data_folder``, the folder its data files are in now.

    AWS writes absolute keys (``<s3Prefix>/AWSDynamoDB/<id>/data/<name>``; an
    incremental export's ``<s3Prefix>/AWSDynamoDB/data/<name>``), and a folder
    copied under another prefix keeps them: the part after ``marker`` (the
    end of that folder, e.g. ``AWSDynamoDB/data/``) is kept. A key already in
    ``data_folder`` or without ``marker`` is returned as it is (the caller
    checks it stays inside, :func:`~ddb_backup.keys.check_key_inside`).

    A key to move with an empty, ``.``/``..`` or encoded-escape segment raises
    :class:`~ddb_backup.errors.UnsafeNameError` naming it: an odd key is never
    shortened into a clean one.
    """
    if key.startswith(data_folder + "/") or marker not in key:
        return key
    return f"{data_folder}/{check_key(key).split(marker, 1)[1]}"


def sidecar_key(key: str) -> str:
    """``manifest-*.json`` -> the ``manifest-*.md5`` AWS writes next to it."""
    return key.removesuffix(".json") + ".md5"


async def check_manifest_sidecar(storage: Storage, key: str, data: bytes) -> None:
    """Check ``manifest-*.md5`` (base64 MD5, no newline) when AWS wrote one."""
    sidecar = sidecar_key(key)
    expected = await storage.get_bytes_or_none(sidecar)
    if expected is None:
        return
    if expected.strip() != content_md5(data).encode():
        raise ManifestError("checksum of manifest does not match its .md5 sidecar", key=key)


async def read_export_folder(storage: Storage, folder: str) -> ExportListing:
    """List an export folder's data files, with AWS's expectations where present.

    Every key taken from AWS's manifest must stay inside the folder.
    """
    folder = folder.strip("/")
    summary_key = f"{folder}/manifest-summary.json"
    files_key = f"{folder}/manifest-files.json"
    summary: AwsManifestSummary | None = None
    raw_summary = await storage.get_bytes_or_none(summary_key)
    if raw_summary is not None:
        await check_manifest_sidecar(storage, summary_key, raw_summary)
        try:
            summary = AwsManifestSummary.model_validate_json(raw_summary)
        except ValueError as exc:
            raise ManifestError("manifest-summary.json is invalid", key=summary_key) from exc
        if summary.output_format.upper() != "DYNAMODB_JSON":
            raise UnsupportedFormatError(
                f"export {folder} is in {summary.output_format}; only DYNAMODB_JSON is supported"
            )
        if summary.export_type and summary.export_type.upper() != "FULL_EXPORT":
            raise UnsupportedFormatError(
                f"export {folder} is an {summary.export_type}; only full exports can be restored"
            )
    raw_files = await storage.get_bytes_or_none(files_key)
    if raw_files is not None:
        await check_manifest_sidecar(storage, files_key, raw_files)
        entries = parse_aws_manifest_files(raw_files, key=files_key)
        # AWS's keys end ``AWSDynamoDB/<id>/data/<name>``: the folder's last two segments.
        marker = "/".join(folder.split("/")[-2:]) + "/data/"
        files = [
            ExpectedFile(
                key=check_key_inside(rebased(e.data_file_s3_key, f"{folder}/data", marker), folder),
                item_count=e.item_count,
                md5=e.md5_checksum,
            )
            for e in entries
        ]
        listed = {o.key: o.size async for o in storage.list_objects(f"{folder}/data/")}
        files = [ExpectedFile(f.key, f.item_count, f.md5, listed.get(f.key)) for f in files]
        return ExportListing(folder, files, summary, has_aws_manifest=True)
    if summary is not None:
        raise ManifestError(
            "manifest-summary.json present but manifest-files.json missing", key=files_key
        )
    objects = [o async for o in storage.list_objects(f"{folder}/data/")]
    files = [ExpectedFile(key=o.key, size=o.size) for o in objects if not o.key.endswith("/")]
    if not files:
        raise ExportError(f"export folder {folder} has no data files")
    for f in files:
        if f.key.endswith(".ion.gz"):
            raise UnsupportedFormatError(f"export {folder} is in ION; only DYNAMODB_JSON")
    return ExportListing(folder, files, None, has_aws_manifest=False)
