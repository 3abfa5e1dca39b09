"""The target table of a restore: it must exist with the backup's keys.

:func:`describe_target` is read-only; :func:`check_key_schema` compares key
names, key types (HASH/RANGE) and their attribute types;
:func:`create_table_from_schema` recreates a missing table from the schema a
backup captured and waits until it (and its indexes) are ACTIVE.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from ddb_backup.aws import error_code
from ddb_backup.errors import KeySchemaMismatchError, TableError, TableNotFoundError
from ddb_backup.items import KeySpec, key_spec
from ddb_backup.log import get_logger
from ddb_backup.manifest import TableSchema
from ddb_backup.restore.writer import RetryPolicy, call_with_retries

__all__ = [
    "TargetTable",
    "check_key_schema",
    "create_table_from_schema",
    "describe_target",
    "key_names_of",
    "missing_table_error",
]

log = get_logger("tables")


@dataclass(frozen=True, slots=True)
class TargetTable:
    name: str
    status: str
    key_schema: list[dict[str, Any]]
    attribute_definitions: list[dict[str, Any]]
    item_count: int | None
    index_statuses: tuple[str, ...] = ()

    @property
    def key_names(self) -> tuple[str, ...]:
        return key_names_of(self.key_schema)

    @property
    def keys(self) -> KeySpec:
        """Key attributes with their types (S/N/B), HASH first, as DescribeTable says."""
        types = {d["AttributeName"]: d["AttributeType"] for d in self.attribute_definitions}
        return key_spec(self.key_names, types)


def key_names_of(key_schema: list[dict[str, Any]]) -> tuple[str, ...]:
    ordered = sorted(key_schema, key=lambda k: 0 if k["KeyType"] == "HASH" else 1)
    return tuple(k["AttributeName"] for k in ordered)


def _key_signature(
    key_schema: list[dict[str, Any]], attribute_definitions: list[dict[str, Any]]
) -> list[tuple[str, str, str | None]]:
    types = {d["AttributeName"]: d["AttributeType"] for d in attribute_definitions}
    return sorted(
        (k["KeyType"], k["AttributeName"], types.get(k["AttributeName"])) for k in key_schema
    )


async def describe_target(
    dynamodb: Any, table: str, *, retry: RetryPolicy | None = None
) -> TargetTable | None:
    """The table's description, or ``None`` if it does not exist."""

    async def call() -> dict[str, Any] | None:
        try:
            resp: dict[str, Any] = await dynamodb.describe_table(TableName=table)
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise
        return resp

    resp = await call_with_retries(
        retry or RetryPolicy(), call, operation="DescribeTable", table=table
    )
    if resp is None:
        return None
    desc = resp["Table"]
    return TargetTable(
        name=table,
        status=desc.get("TableStatus", "ACTIVE"),
        key_schema=desc["KeySchema"],
        attribute_definitions=desc.get("AttributeDefinitions", []),
        item_count=desc.get("ItemCount"),
        index_statuses=tuple(
            i.get("IndexStatus", "ACTIVE") for i in desc.get("GlobalSecondaryIndexes", [])
        ),
    )


def check_key_schema(target: TargetTable, schema: TableSchema) -> None:
    """Raise :class:`KeySchemaMismatchError` unless the keys are the backup's."""
    want = _key_signature(schema.key_schema, schema.attribute_definitions)
    have = _key_signature(target.key_schema, target.attribute_definitions)
    if want != have:

        def fmt(sig: list[tuple[str, str, str | None]]) -> str:
            return ", ".join(f"{name} {kind} {typ}" for kind, name, typ in sig)

        raise KeySchemaMismatchError(
            f"table {target.name} has keys ({fmt(have)}), the backup has ({fmt(want)})",
            table=target.name,
        )


def _create_params(table: str, schema: TableSchema) -> dict[str, Any]:
    """CreateTable parameters from a captured description (read-only fields dropped)."""
    key_attrs = {k["AttributeName"] for k in schema.key_schema}
    index_attrs = {
        k["AttributeName"]
        for idx in [*schema.global_secondary_indexes, *schema.local_secondary_indexes]
        for k in idx.get("KeySchema", [])
    }
    params: dict[str, Any] = {
        "TableName": table,
        "KeySchema": [
            {"AttributeName": k["AttributeName"], "KeyType": k["KeyType"]}
            for k in schema.key_schema
        ],
        "AttributeDefinitions": [
            {"AttributeName": d["AttributeName"], "AttributeType": d["AttributeType"]}
            for d in schema.attribute_definitions
            if d["AttributeName"] in key_attrs | index_attrs
        ],
    }
    provisioned = schema.billing_mode.upper() == "PROVISIONED" and schema.provisioned_throughput
    if provisioned and schema.provisioned_throughput:
        params["BillingMode"] = "PROVISIONED"
        params["ProvisionedThroughput"] = _throughput(schema.provisioned_throughput)
    else:
        params["BillingMode"] = "PAY_PER_REQUEST"

    def index(idx: dict[str, Any], gsi: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "IndexName": idx["IndexName"],
            "KeySchema": idx["KeySchema"],
            "Projection": idx.get("Projection", {"ProjectionType": "ALL"}),
        }
        if gsi and provisioned and idx.get("ProvisionedThroughput"):
            out["ProvisionedThroughput"] = _throughput(idx["ProvisionedThroughput"])
        return out

    if schema.global_secondary_indexes:
        params["GlobalSecondaryIndexes"] = [index(i, True) for i in schema.global_secondary_indexes]
    if schema.local_secondary_indexes:
        params["LocalSecondaryIndexes"] = [index(i, False) for i in schema.local_secondary_indexes]
    stream = schema.stream_specification or {}
    if stream.get("StreamEnabled"):
        params["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": stream.get("StreamViewType", "NEW_AND_OLD_IMAGES"),
        }
    sse = schema.sse_description or {}
    if sse.get("SSEType") == "KMS" and sse.get("KMSMasterKeyArn"):
        params["SSESpecification"] = {
            "Enabled": True,
            "SSEType": "KMS",
            "KMSMasterKeyId": sse["KMSMasterKeyArn"],
        }
    if schema.table_class:
        params["TableClass"] = schema.table_class
    if schema.deletion_protection is not None:
        params["DeletionProtectionEnabled"] = schema.deletion_protection
    return params


def _throughput(pt: dict[str, Any]) -> dict[str, int]:
    return {
        "ReadCapacityUnits": max(1, int(pt.get("ReadCapacityUnits") or 1)),
        "WriteCapacityUnits": max(1, int(pt.get("WriteCapacityUnits") or 1)),
    }


async def create_table_from_schema(
    dynamodb: Any,
    table: str,
    schema: TableSchema,
    *,
    retry: RetryPolicy | None = None,
    wait_seconds: float = 600.0,
    poll: float = 2.0,
    tags: dict[str, str] | None = None,
) -> TargetTable:
    """Create ``table`` like the backed-up one and wait until it is ACTIVE.

    Time to live is *not* enabled: expiry running during a restore would
    delete restored items; the caller reports it as a note instead.
    ``tags`` are set at creation (a drill's scratch tables are marked so).
    """
    retry = retry or RetryPolicy()
    params = _create_params(table, schema)
    if tags:
        params["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]

    async def create() -> None:
        try:
            await dynamodb.create_table(**params)
        except ClientError as exc:
            if error_code(exc) != "ResourceInUseException":  # created meanwhile: fine
                raise

    await call_with_retries(retry, create, operation="CreateTable", table=table)
    log.info("table created", extra={"table": table})
    loop = asyncio.get_running_loop()
    until = loop.time() + wait_seconds
    while True:
        target = await describe_target(dynamodb, table, retry=retry)
        ready = target is not None and target.status == "ACTIVE"
        if target is not None and ready and all(s == "ACTIVE" for s in target.index_statuses):
            check_key_schema(target, schema)
            return target
        if loop.time() > until:
            raise TableError(
                f"table {table} did not become ACTIVE in {wait_seconds:.0f}s", table=table
            )
        await asyncio.sleep(poll)


def missing_table_error(table: str) -> TableNotFoundError:
    return TableNotFoundError(
        f"target table {table} does not exist (create it with the backup's key schema, "
        "or set create_missing_tables: true)",
        table=table,
    )
