"""Scratch tables of restore drills: their names and tags, deletion, the sweep.

A scratch table is named ``ddb-backup-drill-<drill id>-<n>`` (the id is a
timestamp plus random hex, so the name cannot be a real table's) and tagged
``ddb-backup:drill=true`` and ``ddb-backup:environment=<environment>``. A table
that lacks the prefix or the tags is never deleted: :class:`DrillError`. The
sweep deletes the tagged tables an earlier drill of the same environment left
behind (a Lambda killed at its timeout runs no ``finally``).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

from ddb_backup.aws import error_code, raise_aws_error
from ddb_backup.errors import DdbBackupError, DrillError
from ddb_backup.log import get_logger
from ddb_backup.manifest import TableSchema

log = get_logger("drill")

#: Every scratch table's name starts with this; no real table may.
DRILL_PREFIX = "ddb-backup-drill-"
#: The tag every scratch table carries (key, value).
DRILL_TAG = ("ddb-backup:drill", "true")
#: The tag naming the environment whose drill made the table: a drill deletes only
#: its own environment's tables (two environments may share an account).
ENVIRONMENT_TAG = "ddb-backup:environment"
_NAME = re.compile(re.escape(DRILL_PREFIX) + r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}-[0-9]+")


def new_drill_id(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def is_drill_table_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


async def _aws(operation: str, table: str, call: Any) -> Any:
    """One DynamoDB call, its errors translated."""
    try:
        return await call
    except DdbBackupError:
        raise
    except Exception as exc:  # translated at this boundary
        raise_aws_error(exc, operation=operation, table=table)


async def _drill_tags(dynamodb: Any, name: str) -> dict[str, str] | None:
    """The table's tags, or None if the table is gone."""
    try:
        desc = await dynamodb.describe_table(TableName=name)
        arn = desc["Table"]["TableArn"]
        tags = await dynamodb.list_tags_of_resource(ResourceArn=arn)
    except Exception as exc:  # translated at this boundary
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise_aws_error(exc, operation="ListTagsOfResource", table=name)
    return {str(t.get("Key")): str(t.get("Value")) for t in tags.get("Tags", [])}


async def delete_drill_table(dynamodb: Any, name: str, environment: str) -> bool:
    """Delete a scratch table; True once it is gone (or was). Refuses (raises
    :class:`DrillError`) any table without the drill prefix and tag, or made
    by another environment's drill."""
    if not is_drill_table_name(name):
        raise DrillError(f"refusing to delete {name}: not a drill table name", table=name)
    tags = await _drill_tags(dynamodb, name)
    if tags is None:
        return True
    key, value = DRILL_TAG
    if tags.get(key) != value:
        raise DrillError(f"refusing to delete {name}: it lacks the drill tag", table=name)
    if tags.get(ENVIRONMENT_TAG) != environment:
        raise DrillError(
            f"refusing to delete {name}: it belongs to another environment's drill", table=name
        )
    try:
        await dynamodb.delete_table(TableName=name)
    except Exception as exc:  # translated at this boundary
        if error_code(exc) == "ResourceNotFoundException":
            return True
        raise_aws_error(exc, operation="DeleteTable", table=name)
    log.info("drill table deleted", extra={"table": name})
    return True


async def _drill_table_names(dynamodb: Any) -> list[str]:
    names: list[str] = []
    start: str | None = None
    while True:
        params: dict[str, Any] = {"ExclusiveStartTableName": start} if start else {}
        page = await _aws("ListTables", "*", dynamodb.list_tables(**params))
        names += [n for n in page.get("TableNames", []) if is_drill_table_name(n)]
        start = page.get("LastEvaluatedTableName")
        if not start:
            return names


async def sweep_drill_tables(dynamodb: Any, environment: str) -> list[str]:
    """Delete the tagged drill tables earlier drills of ``environment`` left
    behind; their names. Any other table with a drill name is left alone (logged)."""
    swept = []
    for name in await _drill_table_names(dynamodb):
        try:
            await delete_drill_table(dynamodb, name, environment)
            swept.append(name)
        except DrillError as exc:
            log.warning("drill sweep left a table alone", extra={"table": name, "error": str(exc)})
        except DdbBackupError as exc:  # e.g. still CREATING: the next sweep deletes it
            log.warning("drill sweep could not delete", extra={"table": name, "error": str(exc)})
    return swept


def scratch_schema(schema: TableSchema) -> TableSchema:
    """The captured schema for a scratch table: on demand, no deletion
    protection (it must be deletable), no stream (nobody reads it)."""
    return schema.model_copy(
        update={
            "billing_mode": "PAY_PER_REQUEST",
            "provisioned_throughput": None,
            "deletion_protection": None,
            "stream_specification": None,
        }
    )


async def delete_quietly(dynamodb: Any, name: str, environment: str) -> bool:
    """Delete a scratch table in a ``finally``: a failure is logged (the next
    drill's sweep deletes it), never raised over the drill's own outcome."""
    try:
        return await delete_drill_table(dynamodb, name, environment)
    except DdbBackupError as exc:
        log.warning("drill table not deleted", extra={"table": name, "error": str(exc)})
        return False
