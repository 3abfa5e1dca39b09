"""Lambda entry point of the incremental windows: environment in, one round, response out.

Scheduled every ``INCREMENTAL_INTERVAL_MINUTES`` (15 to 1440, default 15) by
EventBridge. Accepted events: ``{}`` or an EventBridge scheduled event; any
other field is a 400 naming it. Settings come from the environment
(:meth:`ddb_backup.config.IncrementalConfig.from_environ`: ``BACKUP_BUCKET``,
``ENVIRONMENT``, ``DYNAMODB_TABLES``, ``S3_EXPORTS_PREFIX``,
``INCREMENTAL_INTERVAL_MINUTES``). Windows still exporting when the invocation
ends answer 202 and are resumed by the next scheduled one.

EMF metrics (namespace DdbBackup): per invocation, dimensions {Environment,
Function=incremental}: ``max_chain_lag_seconds``, ``chain_breaks``,
``windows_verified``, ``window_failures``, ``tables_without_chain``; per
table, dimensions {Environment, Function, Table}: ``chain_lag_seconds``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ddb_backup import concurrency
from ddb_backup.aws import aws_clients
from ddb_backup.backup import (
    IncrementalBody,
    IncrementalResult,
    Polling,
    run_incremental_backup,
)
from ddb_backup.backup.answer import INCREMENTAL_BACKUP_TYPE
from ddb_backup.config import IncrementalConfig
from ddb_backup.errors import ConfigError
from ddb_backup.log import get_logger
from ddb_backup.metrics import emit_metrics
from handlers.common import (
    LambdaContext,
    ScheduledEvent,
    parse_event,
    response,
    setup,
    working_seconds,
)

__all__ = ["IncrementalEvent", "handler"]

log = get_logger("handlers.incremental")

#: DescribeExport backoff (tests shorten it).
POLLING = Polling()


class IncrementalEvent(ScheduledEvent):
    """``{}`` or an EventBridge scheduled event; nothing else."""


def handler(event: Any, context: LambdaContext | None) -> dict[str, Any]:
    """Export, verify and chain every configured table's due windows."""
    setup()
    started = time.monotonic()
    parsed = parse_event(IncrementalEvent, event, "incremental")
    if isinstance(parsed, dict):
        return parsed
    try:
        config = IncrementalConfig.from_environ(os.environ)
    except ConfigError as exc:
        log.error("invalid configuration; nothing started", extra={"error": str(exc)})
        emit_metrics({"runs_failed": 1}, {"Function": "incremental", "Environment": "unknown"})
        return response(500, {"error": str(exc), "backup_type": INCREMENTAL_BACKUP_TYPE})
    log.info(
        "incremental invocation",
        extra={
            "environment": config.environment,
            "tables": list(config.tables),
            "event_id": parsed.id,
        },
    )
    result = concurrency.run(_run(config, working_seconds(context)))
    _emit(config, result.status_code, result.body, started)
    return response(result.status_code, result.body)


async def _run(config: IncrementalConfig, deadline: float | None) -> IncrementalResult:
    pool = config.concurrency * config.verify_concurrency + config.concurrency
    async with aws_clients(max_pool_connections=min(pool, 128)) as clients:
        return await run_incremental_backup(
            config, clients, deadline_seconds=deadline, polling=POLLING
        )


def _emit(config: IncrementalConfig, status: int, body: IncrementalBody, started: float) -> None:
    """One EMF line for the round (alarms: lag, breaks, failures), one per table (lag)."""
    dimensions = {"Function": "incremental", "Environment": config.environment}
    metrics: dict[str, float] = {
        "chain_breaks": body["chain_breaks"],
        "windows_verified": body["windows_verified"],
        "window_failures": body["failed_tables"],
        "tables_without_chain": body["pending_tables"],
        "runs_failed": 1 if status == 500 else 0,
        "duration_seconds": round(time.monotonic() - started, 3),
    }
    if body["max_chain_lag_seconds"] is not None:
        metrics["max_chain_lag_seconds"] = body["max_chain_lag_seconds"]
    emit_metrics(metrics, dimensions)
    for row in body["results"]:
        if row["chain_lag_seconds"] is not None:
            emit_metrics(
                {"chain_lag_seconds": row["chain_lag_seconds"]},
                {**dimensions, "Table": row["table_name"]},
            )
