"""Test-only: incremental exports in the in-process moto server (moto 5.2 has none).

:func:`install` patches moto's DynamoDB in this process (the fixtures' server
is a ``ThreadedMotoServer`` in the same process), so the code under test
calls the real API over HTTP:

* ``ExportTableToPointInTime`` with ``ExportType=INCREMENTAL_EXPORT`` writes an
  AWS-shaped incremental folder (:mod:`tests.support.incremental`) from the
  table's DynamoDB stream between ``ExportFromTime`` and ``ExportToTime``, and
  the export is COMPLETED at once; DescribeExport / ListExports report it with
  the times, ``ExportManifest`` and ``TableId``. ``ClientToken`` is honoured as
  AWS does (the same token and window: the same export). AWS's bounds are
  checked (15 min to 24 h, not before ``EarliestRestorableDateTime``, not in
  the future). The table needs a ``NEW_AND_OLD_IMAGES`` stream
  (:func:`tests.support.incremental.enable_stream`); without one the export FAILS.
* DescribeTable reports a ``TableId`` (one per table object, so a table
  recreated under the same name has a new one, as on AWS).
* DescribeContinuousBackups reports ``LatestRestorableDateTime`` as now.
* :data:`CLOCK` shifts moto's DynamoDB clock (stream record times, creation
  and PITR times), so a test moves through 15-minute windows without waiting.

Everything patched or relied on is pinned by ``tests/harness/test_moto_patches.py``: a moto upgrade
that moves these internals fails there, loudly, before any other test.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import uuid
from typing import Any

import moto.dynamodb.models as ddb_models
import moto.dynamodb.models.table as ddb_table
import orjson
from moto.core.exceptions import JsonRESTError
from moto.core.responses import ActionResult
from moto.core.utils import unix_time, utcnow
from moto.dynamodb.exceptions import ERROR_TYPE_PREFIX, PointInTimeRecoveryUnavailable
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.dynamodb.models.table_export import TableExport
from moto.dynamodb.models.utilities import dynamo_json_dump
from moto.dynamodb.responses import DynamoHandler
from moto.s3.models import s3_backends

from ddb_backup.items import to_botocore
from tests.support.incremental import collapse_window, write_incremental_export

__all__ = ["CLOCK", "ORIGINALS", "RELIED_ON", "MotoClock", "install"]

_MIN = dt.timedelta(minutes=15)
_MAX = dt.timedelta(hours=24)


class MotoClock:
    """moto's DynamoDB clock, shifted by ``offset`` from the real one."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset

    def set(self, when: dt.datetime) -> None:
        """From now on moto's DynamoDB reads ``when`` (and its clock runs on)."""
        self.offset = when - dt.datetime.now(dt.UTC)

    def advance(self, delta: dt.timedelta) -> dt.datetime:
        self.offset += delta
        return self.now()

    def reset(self) -> None:
        self.offset = dt.timedelta(0)


CLOCK = MotoClock()


def _utcnow() -> dt.datetime:
    """moto's naive UTC ``utcnow``, shifted."""
    naive: dt.datetime = utcnow() + CLOCK.offset
    return naive


def _unix_time(when: dt.datetime | None = None) -> float:
    seconds: float = unix_time(when or _utcnow())
    return seconds


def _aware(value: Any) -> dt.datetime:
    """A request's timestamp (epoch seconds or a datetime) as an aware UTC datetime."""
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value
    return dt.datetime.fromtimestamp(float(value), dt.UTC)


def _table_id(table: Table) -> str:
    found: str = table.__dict__.setdefault("_emulated_table_id", str(uuid.uuid4()))
    return found


class _BackendS3:
    """What ``write_incremental_export`` needs of an S3 client, on moto's S3 backend."""

    def __init__(self, account_id: str, partition: str) -> None:
        self.backend = s3_backends[account_id][partition]

    async def put_object(self, *, Bucket: str, Key: str, Body: bytes) -> None:
        self.backend.put_object(bucket_name=Bucket, key_name=Key, value=Body)


def _client_record(record: dict[str, Any]) -> dict[str, Any]:
    """A stored stream record as GetRecords returns it to botocore (bytes, aware time)."""
    inner = {k: v for k, v in record["dynamodb"].items() if k != "ApproximateCreationDateTime"}
    inner = orjson.loads(dynamo_json_dump(inner))  # wire form, as GetRecords sends it
    out: dict[str, Any] = {
        "ApproximateCreationDateTime": _aware(record["dynamodb"]["ApproximateCreationDateTime"]),
        "SequenceNumber": inner["SequenceNumber"],
        "Keys": to_botocore(inner["Keys"]),
    }
    for image in ("OldImage", "NewImage"):
        if image in inner:
            out[image] = to_botocore(inner[image])
    return {"dynamodb": out}


class IncrementalExport(TableExport):
    """One emulated incremental export: written at once, then COMPLETED (or FAILED)."""

    def __init__(
        self,
        backend: DynamoDBBackend,
        table: Table,
        body: dict[str, Any],
        export_from: dt.datetime,
        export_to: dt.datetime,
    ) -> None:
        super().__init__(
            s3_bucket=body["S3Bucket"],
            s3_prefix=body.get("S3Prefix", ""),
            region_name=backend.region_name,
            account_id=body.get("S3BucketOwner") or backend.account_id,
            table=table,
            export_format=body.get("ExportFormat", "DYNAMODB_JSON"),
            export_type="INCREMENTAL_EXPORT",
        )
        self.export_id = f"{int(export_to.timestamp() * 1000):014d}-{uuid.uuid4().hex[:8]}"
        self.arn = f"{table.table_arn}/export/{self.export_id}"
        self.client_token = body.get("ClientToken")
        self.export_from = export_from
        self.export_to = export_to
        self.view_type = body["IncrementalExportSpecification"].get(
            "ExportViewType", "NEW_AND_OLD_IMAGES"
        )
        self.start_time = _utcnow()
        self.export_manifest: str | None = None

    def write(self) -> None:
        shard = self.table.stream_shard
        view = (self.table.stream_specification or {}).get("StreamViewType")
        if shard is None or view != "NEW_AND_OLD_IMAGES":
            self.status = "FAILED"
            self.failure_code = "EMULATION"
            self.failure_message = "the emulation needs a NEW_AND_OLD_IMAGES stream on the table"
            return
        records = [_client_record(r.to_json()) for r in shard.items]
        lines = collapse_window(records, self.export_from, self.export_to)
        written = asyncio.run(
            write_incremental_export(
                _BackendS3(self.account_id, self.partition),
                self.s3_bucket,
                self.s3_prefix,
                lines,
                export_from=self.export_from,
                export_to=self.export_to,
                table_arn=self.table.table_arn,
                table_id=_table_id(self.table),
                view=self.view_type,
                export_id=self.export_id,
            )
        )
        self.export_manifest = f"{written['folder']}/manifest-summary.json"
        self.item_count = len(lines)
        self.processed_bytes = sum(len(line) for line in lines)
        self.status = "COMPLETED"

    def response(self) -> dict[str, Any]:
        out: dict[str, Any] = super().response()
        out.update(
            {
                "ExportManifest": self.export_manifest,
                "StartTime": self.start_time,
                "EndTime": self.start_time,
                "TableId": _table_id(self.table),
                "ClientToken": self.client_token,
                "IncrementalExportSpecification": {
                    "ExportFromTime": self.export_from,
                    "ExportToTime": self.export_to,
                    "ExportViewType": self.view_type,
                },
            }
        )
        return out


def _invalid_time(message: str) -> JsonRESTError:
    return JsonRESTError(ERROR_TYPE_PREFIX + "InvalidExportTimeException", message)


def _start_incremental(backend: DynamoDBBackend, body: dict[str, Any]) -> IncrementalExport:
    table = next((t for t in backend.tables.values() if t.table_arn == body["TableArn"]), None)
    if table is None:
        raise JsonRESTError(ERROR_TYPE_PREFIX + "TableNotFoundException", body["TableArn"])
    pitr = table.continuous_backups["PointInTimeRecoveryDescription"]
    if pitr["PointInTimeRecoveryStatus"] != "ENABLED":
        raise PointInTimeRecoveryUnavailable(name=table.name)
    spec = body.get("IncrementalExportSpecification") or {}
    export_from = _aware(spec["ExportFromTime"])
    export_to = _aware(spec.get("ExportToTime", _unix_time()))
    token = body.get("ClientToken")
    for existing in backend.table_exports.values():
        if isinstance(existing, IncrementalExport) and token and existing.client_token == token:
            if (existing.export_from, existing.export_to) != (export_from, export_to):
                raise JsonRESTError(
                    ERROR_TYPE_PREFIX + "IdempotentParameterMismatchException",
                    "ClientToken reused with other parameters",
                )
            return existing
    if not _MIN <= export_to - export_from <= _MAX:
        raise _invalid_time("the export period must be 15 minutes to 24 hours")
    if export_from < _aware(pitr["EarliestRestorableDateTime"]):
        raise _invalid_time("ExportFromTime is before EarliestRestorableDateTime")
    if export_to > CLOCK.now():
        raise _invalid_time("ExportToTime is in the future")
    export = IncrementalExport(backend, table, body, export_from, export_to)
    backend.table_exports[export.arn] = export
    export.write()
    return export


#: What :func:`install` replaces, as moto defines it (pinned by tests/harness/test_moto_patches.py).
ORIGINALS: dict[str, Any] = {
    "moto.dynamodb.models.table.utcnow": getattr(ddb_table, "utcnow"),  # noqa: B009
    "moto.dynamodb.models.unix_time": getattr(ddb_models, "unix_time"),  # noqa: B009
    "Table.describe": Table.describe,
    "DynamoDBBackend.describe_continuous_backups": DynamoDBBackend.describe_continuous_backups,
    "DynamoHandler.export_table_to_point_in_time": DynamoHandler.export_table_to_point_in_time,
}
#: moto internals the emulation reads or mirrors without replacing them (pinned too).
RELIED_ON: dict[str, Any] = {
    "TableExport.__init__": TableExport.__init__,
    "TableExport.response": TableExport.response,
    "StreamRecord.__init__": ddb_table.StreamRecord.__init__,
    "StreamShard.add": ddb_table.StreamShard.add,
    "DynamoDBBackend.export_table": DynamoDBBackend.export_table,
    "DynamoDBBackend.update_continuous_backups": DynamoDBBackend.update_continuous_backups,
    "DynamoHandler.describe_export": DynamoHandler.describe_export,
    "DynamoHandler.list_exports": DynamoHandler.list_exports,
}


def install() -> None:
    """Patch moto's DynamoDB in this process (idempotent)."""
    if getattr(DynamoHandler, "_incremental_emulation", False):
        return
    # setattr: these are moto's internals, replaced on purpose (pinned by test_moto_patches).
    setattr(ddb_table, "utcnow", _utcnow)  # noqa: B010
    setattr(ddb_models, "unix_time", _unix_time)  # noqa: B010

    describe = Table.describe

    @functools.wraps(describe)
    def describe_with_id(self: Table, base_key: str = "TableDescription") -> dict[str, Any]:
        out: dict[str, Any] = describe(self, base_key=base_key)
        out[base_key]["TableId"] = _table_id(self)
        return out

    continuous = DynamoDBBackend.describe_continuous_backups

    @functools.wraps(continuous)
    def continuous_now(self: DynamoDBBackend, table_name: str) -> dict[str, Any]:
        out: dict[str, Any] = continuous(self, table_name)
        pitr = out["PointInTimeRecoveryDescription"]
        if pitr.get("PointInTimeRecoveryStatus") == "ENABLED":
            pitr["LatestRestorableDateTime"] = _unix_time()
        return out

    export = DynamoHandler.export_table_to_point_in_time

    @functools.wraps(export)
    def export_with_incremental(self: DynamoHandler) -> Any:
        if self.body.get("ExportType") != "INCREMENTAL_EXPORT":
            return export(self)
        started = _start_incremental(self.dynamodb_backend, self.body)
        return ActionResult({"ExportDescription": started.response()})

    setattr(Table, "describe", describe_with_id)  # noqa: B010
    setattr(DynamoDBBackend, "describe_continuous_backups", continuous_now)  # noqa: B010
    setattr(DynamoHandler, "export_table_to_point_in_time", export_with_incremental)  # noqa: B010
    setattr(DynamoHandler, "_incremental_emulation", True)  # noqa: B010
