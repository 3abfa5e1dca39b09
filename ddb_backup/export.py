"""The DynamoDB side of a backup: check a table, capture its schema, run its export.

Every DynamoDB call of the backup goes through here, and every botocore error
is translated here (:func:`ddb_backup.aws.raise_aws_error`), carrying the
table's name. moto's differences from AWS (no ``ExportManifest``, a malformed
export ARN, ``ClientToken`` ignored) are absorbed by the callers, never by
guessing here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field

from ddb_backup.aws import error_code, raise_aws_error
from ddb_backup.errors import ExportError, PitrDisabledError, TableNotFoundError
from ddb_backup.keys import check_key_inside
from ddb_backup.log import get_logger
from ddb_backup.manifest import TableSchema

__all__ = [
    "ExportDescription",
    "ExportRequest",
    "PitrTable",
    "SourceTable",
    "capture_schema",
    "client_token",
    "describe_export",
    "describe_pitr_table",
    "describe_source_table",
    "find_existing_export",
    "folder_from_export_manifest",
    "start_export",
]

log = get_logger(__name__)

EXPORT_FORMAT = "DYNAMODB_JSON"
EXPORT_TYPE = "FULL_EXPORT"

_PITR_MESSAGE = (
    "point-in-time recovery (PITR) is not enabled on table {table}; "
    "PITR must be enabled before the table can be exported"
)


class ExportDescription(BaseModel):
    """The part of DescribeExport's ``ExportDescription`` a backup uses (AWS names)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    export_arn: str = Field(alias="ExportArn")
    export_status: str = Field(alias="ExportStatus")
    table_arn: str | None = Field(default=None, alias="TableArn")
    s3_bucket: str | None = Field(default=None, alias="S3Bucket")
    s3_prefix: str | None = Field(default=None, alias="S3Prefix")
    export_manifest: str | None = Field(default=None, alias="ExportManifest")
    export_time: dt.datetime | None = Field(default=None, alias="ExportTime")
    item_count: int | None = Field(default=None, alias="ItemCount")
    billed_size_bytes: int | None = Field(default=None, alias="BilledSizeBytes")
    failure_code: str | None = Field(default=None, alias="FailureCode")
    failure_message: str | None = Field(default=None, alias="FailureMessage")
    export_format: str | None = Field(default=None, alias="ExportFormat")
    export_type: str | None = Field(default=None, alias="ExportType")

    @property
    def finished(self) -> bool:
        return self.export_status in {"COMPLETED", "FAILED"}

    @property
    def failure(self) -> str:
        """AWS's reason for a failed export, in one line."""
        parts = [p for p in (self.failure_code, self.failure_message) if p]
        return ": ".join(parts) or "no reason given"


D = TypeVar("D", bound=ExportDescription)


@dataclass(frozen=True, slots=True)
class SourceTable:
    """A table that may be exported: its ARN and the schema to restore it with."""

    name: str
    arn: str
    schema: TableSchema


@dataclass(frozen=True, slots=True)
class ExportRequest:
    """Everything ExportTableToPointInTime is given for one table."""

    table: str
    table_arn: str
    bucket: str
    s3_prefix: str
    export_time: dt.datetime
    client_token: str
    bucket_owner: str | None = None
    kms_key_id: str | None = None

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "TableArn": self.table_arn,
            "ExportTime": self.export_time,
            "ClientToken": self.client_token,
            "S3Bucket": self.bucket,
            # No trailing slash: AWS and moto both append "/AWSDynamoDB/...".
            "S3Prefix": self.s3_prefix.strip("/"),
            "ExportFormat": EXPORT_FORMAT,
            "ExportType": EXPORT_TYPE,
        }
        if self.bucket_owner:
            params["S3BucketOwner"] = self.bucket_owner
        if self.kms_key_id:
            params["S3SseAlgorithm"] = "KMS"
            params["S3SseKmsKeyId"] = self.kms_key_id
        return params


def client_token(bucket: str, prefix: str, date: dt.date, table: str) -> str:
    """The idempotency token of one table's export on one date (64 hex characters).

    AWS returns the same export for the same token (for 8 hours), so a retried
    invocation cannot start a second one; the run state covers the rest.
    """
    material = "\n".join(("ddb-backup/v1", bucket, prefix.strip("/"), date.isoformat(), table))
    return hashlib.sha256(material.encode()).hexdigest()


def _index(index: dict[str, Any], *, provisioned: bool) -> dict[str, Any]:
    """An index description reduced to what CreateTable accepts."""
    out: dict[str, Any] = {
        "IndexName": index["IndexName"],
        "KeySchema": index["KeySchema"],
        "Projection": index.get("Projection", {"ProjectionType": "ALL"}),
    }
    throughput = index.get("ProvisionedThroughput")
    if provisioned and throughput:
        out["ProvisionedThroughput"] = {
            "ReadCapacityUnits": throughput.get("ReadCapacityUnits", 0),
            "WriteCapacityUnits": throughput.get("WriteCapacityUnits", 0),
        }
    if index.get("OnDemandThroughput"):
        out["OnDemandThroughput"] = index["OnDemandThroughput"]
    return out


def capture_schema(table: dict[str, Any], ttl: dict[str, Any] | None) -> TableSchema:
    """DescribeTable's ``Table`` (+ DescribeTimeToLive's description) -> :class:`TableSchema`.

    Kept in CreateTable's shape (AWS names), so a restore can recreate the
    table from it; read-only fields (counts, sizes, statuses, ARNs) are left out.
    """
    billing = (table.get("BillingModeSummary") or {}).get("BillingMode") or "PROVISIONED"
    provisioned = billing == "PROVISIONED"
    throughput = table.get("ProvisionedThroughput") or {}
    stream = table.get("StreamSpecification")
    doc: dict[str, Any] = {
        "KeySchema": table["KeySchema"],
        "AttributeDefinitions": table["AttributeDefinitions"],
        "BillingMode": billing,
        "ProvisionedThroughput": {
            "ReadCapacityUnits": throughput.get("ReadCapacityUnits", 0),
            "WriteCapacityUnits": throughput.get("WriteCapacityUnits", 0),
        }
        if provisioned
        else None,
        "GlobalSecondaryIndexes": [
            _index(i, provisioned=provisioned) for i in table.get("GlobalSecondaryIndexes") or []
        ],
        "LocalSecondaryIndexes": [
            _index(i, provisioned=False) for i in table.get("LocalSecondaryIndexes") or []
        ],
        "StreamSpecification": stream if stream and stream.get("StreamEnabled") else None,
        "SSEDescription": table.get("SSEDescription"),
        "TableClass": (table.get("TableClassSummary") or {}).get("TableClass"),
        "TimeToLive": ttl,
        "DeletionProtectionEnabled": table.get("DeletionProtectionEnabled"),
    }
    return TableSchema.model_validate(doc)


async def _describe_table(dynamodb: Any, table: str) -> dict[str, Any]:
    """DescribeTable's ``Table``; a missing table is :class:`TableNotFoundError`."""
    try:
        described: dict[str, Any] = (await dynamodb.describe_table(TableName=table))["Table"]
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise TableNotFoundError(f"table {table} does not exist", table=table) from exc
        raise_aws_error(exc, operation="DescribeTable", table=table)
    except (BotoCoreError, OSError) as exc:
        raise_aws_error(exc, operation="DescribeTable", table=table)
    return described


async def describe_source_table(dynamodb: Any, table: str) -> SourceTable:
    """Describe ``table``, refuse it without PITR, and capture its schema (TTL included)."""
    described = await _describe_table(dynamodb, table)
    try:
        backups = await dynamodb.describe_continuous_backups(TableName=table)
        ttl_resp = await dynamodb.describe_time_to_live(TableName=table)
    except (ClientError, BotoCoreError, OSError) as exc:
        raise_aws_error(exc, operation="DescribeContinuousBackups/TimeToLive", table=table)
    pitr = (
        backups.get("ContinuousBackupsDescription", {})
        .get("PointInTimeRecoveryDescription", {})
        .get("PointInTimeRecoveryStatus")
    )
    if pitr != "ENABLED":
        raise PitrDisabledError(_PITR_MESSAGE.format(table=table), table=table)
    ttl = ttl_resp.get("TimeToLiveDescription")
    return SourceTable(name=table, arn=described["TableArn"], schema=capture_schema(described, ttl))


@dataclass(frozen=True, slots=True)
class PitrTable:
    """What an incremental window needs to know of a table as it is now."""

    name: str
    arn: str
    table_id: str | None
    created: dt.datetime | None
    key_types: dict[str, str]
    pitr_enabled: bool
    earliest_restorable: dt.datetime | None
    latest_restorable: dt.datetime | None


async def describe_pitr_table(dynamodb: Any, table: str) -> PitrTable:
    """DescribeTable + DescribeContinuousBackups: identity, keys and PITR range
    (PITR off is reported, not raised: for a chain it is a break)."""
    described = await _describe_table(dynamodb, table)
    try:
        backups = await dynamodb.describe_continuous_backups(TableName=table)
    except (ClientError, BotoCoreError, OSError) as exc:
        raise_aws_error(exc, operation="DescribeContinuousBackups", table=table)
    pitr = backups.get("ContinuousBackupsDescription", {}).get("PointInTimeRecoveryDescription", {})
    schema = capture_schema(described, None)
    return PitrTable(
        name=table,
        arn=described["TableArn"],
        table_id=described.get("TableId"),
        created=described.get("CreationDateTime"),
        key_types={n: schema.key_types[n] for n in schema.key_names},  # HASH first
        pitr_enabled=pitr.get("PointInTimeRecoveryStatus") == "ENABLED",
        earliest_restorable=pitr.get("EarliestRestorableDateTime"),
        latest_restorable=pitr.get("LatestRestorableDateTime"),
    )


async def start_export(dynamodb: Any, request: ExportRequest) -> ExportDescription:
    """ExportTableToPointInTime; PITR switched off meanwhile is reported as such."""
    try:
        resp = await dynamodb.export_table_to_point_in_time(**request.params())
    except ClientError as exc:
        if error_code(exc) == "PointInTimeRecoveryUnavailableException":
            raise PitrDisabledError(
                _PITR_MESSAGE.format(table=request.table), table=request.table
            ) from exc
        raise_aws_error(exc, operation="ExportTableToPointInTime", table=request.table)
    except (BotoCoreError, OSError) as exc:
        raise_aws_error(exc, operation="ExportTableToPointInTime", table=request.table)
    desc = ExportDescription.model_validate(resp["ExportDescription"])
    log.info(
        "export started",
        extra={
            "table": request.table,
            "export_arn": desc.export_arn,
            "s3_prefix": request.s3_prefix,
            "export_status": desc.export_status,
        },
    )
    return desc


async def describe_export(
    dynamodb: Any,
    export_arn: str,
    *,
    table: str,
    model: type[D] = ExportDescription,  # type: ignore[assignment]
) -> D:
    """DescribeExport, parsed as ``model`` (an incremental export's has its window)."""
    try:
        resp = await dynamodb.describe_export(ExportArn=export_arn)
    except ClientError as exc:
        if error_code(exc) == "ExportNotFoundException":
            raise ExportError(f"export {export_arn} not found", table=table) from exc
        raise_aws_error(exc, operation="DescribeExport", table=table)
    except (BotoCoreError, OSError) as exc:
        raise_aws_error(exc, operation="DescribeExport", table=table)
    return model.model_validate(resp["ExportDescription"])


async def find_existing_export(
    dynamodb: Any,
    *,
    table: str,
    table_arn: str,
    bucket: str,
    s3_prefix: str,
    model: type[ExportDescription] = ExportDescription,
    accept: Callable[[ExportDescription], bool] | None = None,
) -> ExportDescription | None:
    """An export of ``table_arn`` into ``s3://bucket/s3_prefix`` that is not FAILED
    (and that ``accept`` takes: an incremental window's times), if any.

    Used when a run recorded that it was about to start an export but not its
    ARN (the invocation ended in between): AWS's ``ClientToken`` only lasts
    8 hours and moto ignores it, so the export is looked for before another
    one is started.
    """
    wanted = s3_prefix.strip("/")
    params: dict[str, Any] = {"TableArn": table_arn, "MaxResults": 25}
    while True:
        try:
            page = await dynamodb.list_exports(**params)
        except (ClientError, BotoCoreError, OSError) as exc:
            raise_aws_error(exc, operation="ListExports", table=table)
        for summary in page.get("ExportSummaries", []):
            if summary.get("ExportStatus") == "FAILED":
                continue
            desc = await describe_export(dynamodb, summary["ExportArn"], table=table, model=model)
            if (
                desc.s3_bucket == bucket
                and (desc.s3_prefix or "").strip("/") == wanted
                and (accept is None or accept(desc))
            ):
                return desc
        token = page.get("NextToken")
        if not token:
            return None
        params["NextToken"] = token


def folder_from_export_manifest(export_manifest: str | None, s3_prefix: str) -> str | None:
    """``<s3_prefix>/AWSDynamoDB/<id>/manifest-summary.json`` -> its folder, if it is one."""
    if not export_manifest or "/" not in export_manifest:
        return None
    folder = export_manifest.strip("/").rsplit("/", 1)[0]
    try:
        check_key_inside(folder, f"{s3_prefix.strip('/')}/AWSDynamoDB")
    except ValueError:
        return None
    return folder
