"""Manifests: ours (``manifest.json``), the replaced system's, and AWS's.

* :class:`BackupManifest` is written last by a backup run, once final.
  ``format_version`` 2; per table the export, its folder, every data file
  with its item count and MD5, and the captured table description.
* :class:`LegacyManifest` is what the system this replaces wrote; it is read
  (never written) and converted with :meth:`LegacyManifest.to_backup_manifest`,
  its files left to be found through AWS's ``manifest-files.json``.
* :class:`AwsManifestSummary` / :class:`AwsManifestFile` model the files AWS
  writes in an export folder, keeping AWS's camelCase names through aliases.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ddb_backup.errors import ManifestError

__all__ = [
    "MANIFEST_FORMAT_VERSION",
    "AwsManifestFile",
    "AwsManifestSummary",
    "BackupManifest",
    "BackupStatus",
    "DataFile",
    "LegacyExport",
    "LegacyManifest",
    "TableBackup",
    "TableSchema",
    "TableStatus",
    "load_manifest",
    "parse_aws_manifest_files",
]

MANIFEST_FORMAT_VERSION: Literal[2] = 2
BACKUP_TYPE = "DYNAMODB_NATIVE_EXPORT"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class TableStatus(StrEnum):
    """Where one table of a backup run stands; a final manifest holds only the last two.

    ``PENDING -> STARTING -> IN_PROGRESS -> EXPORTED -> COMPLETED | FAILED``
    """

    PENDING = "PENDING"  # not started yet
    STARTING = "STARTING"  # ExportTableToPointInTime about to be called, ARN unknown
    IN_PROGRESS = "IN_PROGRESS"  # export running on AWS
    EXPORTED = "EXPORTED"  # AWS finished; not verified yet
    COMPLETED = "COMPLETED"  # exported and verified
    FAILED = "FAILED"


#: What a table of a manifest may say (IN_PROGRESS: only ever seen in run state).
MANIFEST_TABLE_STATUSES = frozenset(
    {TableStatus.COMPLETED, TableStatus.FAILED, TableStatus.IN_PROGRESS}
)


class BackupStatus(StrEnum):
    COMPLETE = "COMPLETE"  # every table verified
    PARTIAL = "PARTIAL"  # some tables failed (or, in a local copy, were not copied)
    FAILED = "FAILED"  # none succeeded


class DataFile(_Model):
    """One data file of an export, as verified (or as AWS's manifest lists it)."""

    key: str
    item_count: int = Field(ge=0)
    md5: str | None = Field(default=None, description="base64 MD5 of the raw .gz bytes")
    size: int | None = Field(default=None, ge=0)


class TableSchema(_Model):
    """What CreateTable needs to recreate the table; AWS's wire names kept."""

    key_schema: list[dict[str, Any]] = Field(alias="KeySchema")
    attribute_definitions: list[dict[str, Any]] = Field(alias="AttributeDefinitions")
    billing_mode: str = Field(default="PROVISIONED", alias="BillingMode")
    provisioned_throughput: dict[str, Any] | None = Field(
        default=None, alias="ProvisionedThroughput"
    )
    global_secondary_indexes: list[dict[str, Any]] = Field(
        default_factory=list, alias="GlobalSecondaryIndexes"
    )
    local_secondary_indexes: list[dict[str, Any]] = Field(
        default_factory=list, alias="LocalSecondaryIndexes"
    )
    stream_specification: dict[str, Any] | None = Field(default=None, alias="StreamSpecification")
    sse_description: dict[str, Any] | None = Field(default=None, alias="SSEDescription")
    table_class: str | None = Field(default=None, alias="TableClass")
    time_to_live: dict[str, Any] | None = Field(default=None, alias="TimeToLive")
    deletion_protection: bool | None = Field(default=None, alias="DeletionProtectionEnabled")

    @property
    def key_names(self) -> tuple[str, ...]:
        """HASH first, then RANGE."""
        ordered = sorted(self.key_schema, key=lambda k: 0 if k["KeyType"] == "HASH" else 1)
        return tuple(k["AttributeName"] for k in ordered)

    @property
    def key_types(self) -> dict[str, str]:
        names = set(self.key_names)
        return {
            d["AttributeName"]: d["AttributeType"]
            for d in self.attribute_definitions
            if d["AttributeName"] in names
        }


class TableBackup(_Model):
    table_name: str
    status: TableStatus
    error: str | None = None
    export_arn: str | None = None
    export_time: dt.datetime | None = None
    s3_prefix: str = Field(description="S3Prefix given to the export (no trailing slash)")
    export_folder: str | None = Field(
        default=None, description="<s3_prefix>/AWSDynamoDB/<export id> (no trailing slash)"
    )
    item_count: int | None = Field(default=None, ge=0)
    billed_size_bytes: int | None = Field(default=None, ge=0)
    files: list[DataFile] | None = Field(
        default=None, description="None for legacy manifests: read AWS's manifest-files.json"
    )
    table_schema: TableSchema | None = Field(default=None, alias="schema")
    content_digest: str | None = Field(
        default=None,
        description="order-independent digest of the items (ddb_backup.digest), or None",
    )

    @field_validator("status")
    @classmethod
    def _manifest_status(cls, v: TableStatus) -> TableStatus:
        if v not in MANIFEST_TABLE_STATUSES:
            raise ValueError(f"a manifest table cannot be {v.value}")
        return v


class BackupManifest(_Model):
    format_version: Literal[2] = MANIFEST_FORMAT_VERSION
    backup_date: dt.date
    environment: str
    backup_type: str = BACKUP_TYPE
    bucket: str | None = None
    prefix: str
    export_time: dt.datetime | None = None
    created_at: dt.datetime | None = None
    status: BackupStatus
    tables: list[TableBackup]
    legacy: bool = False
    omitted_tables: list[str] = Field(
        default_factory=list,
        description="tables of the backup that this local copy (download --tables) does not hold",
    )

    def table(self, name: str) -> TableBackup | None:
        return next((t for t in self.tables if t.table_name == name), None)

    def to_json(self) -> bytes:
        return orjson.dumps(
            self.model_dump(mode="json", by_alias=True, exclude_none=False),
            option=orjson.OPT_INDENT_2,
        )


class LegacyExport(_Model):
    table_name: str
    s3_prefix: str
    status: str
    export_arn: str | None = None
    item_count: int | None = None


class LegacyManifest(_Model):
    """The manifest of the system this replaces (read-only)."""

    backup_date: dt.date
    environment: str
    backup_type: str = BACKUP_TYPE
    exports: list[LegacyExport]

    def to_backup_manifest(self, prefix: str) -> BackupManifest:
        tables = [
            TableBackup(
                table_name=e.table_name,
                status=TableStatus.COMPLETED
                if e.status.upper() == "COMPLETED"
                else TableStatus.FAILED,
                error=None if e.status.upper() == "COMPLETED" else f"legacy status {e.status}",
                export_arn=e.export_arn,
                s3_prefix=e.s3_prefix.strip("/"),
                item_count=e.item_count,
            )
            for e in self.exports
        ]
        ok = sum(t.status is TableStatus.COMPLETED for t in tables)
        status = (
            BackupStatus.COMPLETE
            if ok == len(tables) and tables
            else BackupStatus.PARTIAL
            if ok
            else BackupStatus.FAILED
        )
        return BackupManifest(
            backup_date=self.backup_date,
            environment=self.environment,
            backup_type=self.backup_type,
            prefix=prefix,
            status=status,
            tables=tables,
            legacy=True,
        )


def load_manifest(data: bytes, *, key: str, prefix: str) -> BackupManifest:
    """Parse our manifest or the legacy one; errors name the key and the first problem."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ManifestError("manifest is not JSON", key=key) from exc
    if not isinstance(doc, dict):
        raise ManifestError("manifest is not a JSON object", key=key)
    try:
        if "format_version" in doc:
            return BackupManifest.model_validate(doc)
        if "exports" in doc:
            return LegacyManifest.model_validate(doc).to_backup_manifest(prefix)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ManifestError(f"manifest is invalid at {where}: {first['msg']}", key=key) from exc
    raise ManifestError("not a ddb-backup manifest (no format_version or exports)", key=key)


class AwsManifestSummary(_Model):
    """``manifest-summary.json`` (full exports: version 2020-06-30)."""

    version: str
    export_arn: str | None = Field(default=None, alias="exportArn")
    export_type: str | None = Field(default=None, alias="exportType")
    export_time: str | None = Field(default=None, alias="exportTime")
    table_arn: str | None = Field(default=None, alias="tableArn")
    s3_bucket: str | None = Field(default=None, alias="s3Bucket")
    s3_prefix: str | None = Field(default=None, alias="s3Prefix")
    output_format: str = Field(default="DYNAMODB_JSON", alias="outputFormat")
    item_count: int | None = Field(default=None, alias="itemCount")
    billed_size_bytes: int | None = Field(default=None, alias="billedSizeBytes")
    manifest_files_s3_key: str | None = Field(default=None, alias="manifestFilesS3Key")


class AwsManifestFile(_Model):
    """One line of ``manifest-files.json``."""

    item_count: int = Field(alias="itemCount", ge=0)
    md5_checksum: str = Field(alias="md5Checksum")
    etag: str | None = None
    data_file_s3_key: str = Field(alias="dataFileS3Key")


def parse_aws_manifest_files(data: bytes, *, key: str) -> list[AwsManifestFile]:
    """Parse AWS's JSON-lines ``manifest-files.json``."""
    out = []
    for n, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(AwsManifestFile.model_validate_json(line))
        except ValidationError as exc:
            raise ManifestError(f"manifest-files line {n} is invalid", key=key) from exc
    return out
