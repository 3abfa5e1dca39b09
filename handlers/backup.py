"""Lambda entry point of the daily backup: event and environment in, one run, response out.

Accepted events: EventBridge's scheduled event, ``{}``, or
``{"backup_date": "YYYY-MM-DD"}`` (what a wait loop sends to drive a run that
answered 202 to completion, even after midnight UTC); any other field is a
400 naming it. Settings come from the environment (see
:meth:`ddb_backup.config.BackupConfig.from_environ`).

The core works for :func:`handlers.common.working_seconds` of the invocation
(Lambda's remaining time less up to 30 s, never less than half of it): a short
invocation still polls and verifies what finished. With 5 s or less left it
answers 202 at once without an AWS call.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Any

from ddb_backup import concurrency
from ddb_backup.aws import aws_clients
from ddb_backup.backup import BackupBody, BackupResult, Polling, run_backup
from ddb_backup.backup.answer import DeferredBody, deferred_body
from ddb_backup.config import BackupConfig
from ddb_backup.errors import ConfigError
from ddb_backup.log import get_logger
from ddb_backup.manifest import BACKUP_TYPE
from ddb_backup.metrics import emit_metrics
from handlers.common import (
    MIN_WORKING_SECONDS,
    DatedEvent,
    LambdaContext,
    parse_event,
    remaining_seconds,
    response,
    setup,
    working_seconds,
)

__all__ = ["BackupEvent", "handler"]

log = get_logger("handlers.backup")

#: DescribeExport backoff (exports take minutes on AWS; tests shorten it).
POLLING = Polling()


class BackupEvent(DatedEvent):
    """The backup's event: today's run, or ``backup_date``'s (see :class:`DatedEvent`)."""


def handler(event: Any, context: LambdaContext | None) -> dict[str, Any]:
    """Run, resume or report today's backup (or ``backup_date``'s run)."""
    setup()
    started = time.monotonic()
    parsed = parse_event(BackupEvent, event, "backup")
    if isinstance(parsed, dict):
        return parsed
    try:
        config = BackupConfig.from_environ(os.environ)
    except ConfigError as exc:
        log.error("invalid configuration; nothing started", extra={"error": str(exc)})
        _emit(None, 500, None, started)
        return response(500, {"error": str(exc), "backup_type": BACKUP_TYPE})
    log.info(
        "backup invocation",
        extra={
            "environment": config.environment,
            "tables": list(config.tables),
            "event_id": parsed.id,
            "backup_date": parsed.backup_date.isoformat() if parsed.backup_date else None,
        },
    )
    deadline = working_seconds(context)
    if deadline is not None and deadline <= 0:
        body = _too_little_time(config, parsed.backup_date, remaining_seconds(context))
        _emit(config, 202, None, started)
        return response(202, body)
    result = concurrency.run(_run(config, deadline, parsed.backup_date))
    _emit(config, result.status_code, result.body, started)
    return response(result.status_code, result.body)


def _too_little_time(
    config: BackupConfig, backup_date: dt.date | None, remaining: float | None
) -> DeferredBody:
    """202 without a single AWS call: too little time left to start or check
    anything safely; the caller invokes again with the date, as after any 202."""
    date = backup_date or dt.datetime.now(dt.UTC).date()
    log.warning(
        "too little time left; nothing checked or started",
        extra={"backup_date": date.isoformat(), "remaining_seconds": remaining},
    )
    return deferred_body(
        date,
        config.environment,
        f"only {remaining or 0:.1f} s left in this invocation (at most "
        f"{MIN_WORKING_SECONDS:g} s): nothing was checked or started; invoke again",
    )


async def _run(
    config: BackupConfig, deadline: float | None, backup_date: dt.date | None
) -> BackupResult:
    pool = config.concurrency * config.verify_concurrency + config.concurrency
    async with aws_clients(max_pool_connections=min(pool, 128)) as clients:
        return await run_backup(
            config,
            clients,
            deadline_seconds=deadline,
            backup_date=backup_date,
            polling=POLLING,
        )


def _emit(
    config: BackupConfig | None, status: int, body: BackupBody | None, started: float
) -> None:
    """One EMF line per invocation, for the alarms on failed or partial runs.

    A run's outcome is counted once, by the invocation that made it final (or
    cut it off); invocations that only re-read a final manifest (a repeating
    schedule, a wait loop) report their duration and nothing else.
    """
    dimensions = {"Function": "backup", "Environment": config.environment if config else "unknown"}
    duration = round(time.monotonic() - started, 3)
    if body is not None and body["already_final"]:
        emit_metrics(
            {
                "runs_already_final": 1,
                "tables_not_backed_up": len(body["not_backed_up"]),
                "duration_seconds": duration,
            },
            dimensions,
        )
        return
    emit_metrics(
        {
            "tables_succeeded": body["successful_exports"] if body else 0,
            "tables_failed": body["failed_exports"] if body else 0,
            "tables_in_progress": body["in_progress_exports"] if body else 0,
            "items_exported": body["total_items_exported"] if body else 0,
            "runs_failed": 1 if status == 500 else 0,
            "runs_partial": 1 if status == 207 else 0,
            "duration_seconds": duration,
        },
        dimensions,
    )
