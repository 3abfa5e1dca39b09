"""Lambda entry point of the weekly restore drill (see :mod:`ddb_backup.drill`).

Accepted events: ``{}`` or EventBridge's scheduled event; anything else is a
400 naming the problem before anything is read. Settings come from the
environment as for the restore (``BACKUP_BUCKET``, ``ENVIRONMENT``,
``S3_EXPORTS_PREFIX``, ``BACKUP_BUCKET_OWNER``); the drill takes the latest
complete backup, every table. Answers 200 when it passed, 500 when it failed
or was cut off (the record in S3 says which), and emits one EMF line.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ddb_backup import concurrency
from ddb_backup.config import RestoreConfig
from ddb_backup.drill import DrillResult, DrillStatus, run_drill
from ddb_backup.errors import ConfigError, DdbBackupError
from ddb_backup.log import get_logger
from ddb_backup.metrics import emit_metrics
from ddb_backup.restore import restore_clients
from handlers.common import (
    LambdaContext,
    ScheduledEvent,
    deadline_seconds,
    parse_event,
    response,
    setup,
)

__all__ = ["handler"]

log = get_logger("handlers.drill")


def handler(event: Any, context: LambdaContext | None = None) -> dict[str, Any]:
    """Drill the latest backup into scratch tables and compare; one EMF line."""
    setup()
    started = time.monotonic()
    parsed = parse_event(ScheduledEvent, event, "drill")
    if isinstance(parsed, dict):
        return parsed
    try:
        config = RestoreConfig.from_environ(os.environ)
    except ConfigError as exc:
        log.error("bad configuration", extra={"error": str(exc)})
        return response(500, {"error": str(exc)})
    try:
        result = concurrency.run(_run(config, deadline_seconds(context)))
    except DdbBackupError as exc:  # no backup to drill, or S3/DynamoDB refused
        log.error("drill not run", extra={"error": str(exc)})
        _emit(config, None, time.monotonic() - started)
        return response(500, {"error": str(exc), "error_type": type(exc).__name__})
    _emit(config, result, time.monotonic() - started)
    return response(200 if result.passed else 500, result.model_dump(mode="json"))


async def _run(config: RestoreConfig, deadline: float | None) -> DrillResult:
    async with restore_clients() as clients:
        return await run_drill(config, clients, deadline_seconds=deadline)


def _emit(config: RestoreConfig, result: DrillResult | None, duration: float) -> None:
    """``drills_passed`` / ``drills_failed`` (the alarm's metric: a drill not
    run counts as failed), tables, items and speed."""
    tables = result.tables if result is not None else []
    items = sum(t.items_restored or 0 for t in tables)
    restore_seconds = sum(t.restore_seconds or 0.0 for t in tables)
    emit_metrics(
        {
            "drills_passed": float(result is not None and result.passed),
            "drills_failed": float(result is None or not result.passed),
            "tables_failed": float(sum(t.status is not DrillStatus.PASSED for t in tables)),
            "items_restored": float(items),
            "items_per_second": round(items / restore_seconds, 1) if restore_seconds else 0.0,
            "duration_seconds": round(duration, 3),
        },
        {"Function": "drill", "Environment": config.environment},
    )
