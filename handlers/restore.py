"""Lambda entry point for restores: validate, then hand over to the core.

An invalid event is answered with 400 and every problem listed before
anything is read or written; a missing or malformed environment variable
with 500 naming it. The deadline comes from the Lambda context.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from pydantic import ValidationError

from ddb_backup.config import RestoreConfig
from ddb_backup.errors import ConfigError
from ddb_backup.events import RestoreRequest
from ddb_backup.log import get_logger
from ddb_backup.metrics import emit_metrics
from ddb_backup.restore import RestoreResult, restore_clients, run_restore
from handlers.common import (
    LambdaContext,
    deadline_seconds,
    response,
    setup,
    validation_problems,
)

__all__ = ["handler"]

log = get_logger("handlers.restore")


def handler(event: Any, context: LambdaContext | None = None) -> dict[str, Any]:
    setup()
    if not isinstance(event, dict):
        return response(
            400,
            {"error": "invalid event", "problems": ["event: must be a JSON object"]},
        )
    try:
        request = RestoreRequest.model_validate(event)
    except ValidationError as exc:
        problems = validation_problems(exc)
        log.warning("invalid restore event", extra={"problems": problems})
        return response(400, {"error": "invalid event", "problems": problems})
    try:
        config = RestoreConfig.from_environ(os.environ)
    except ConfigError as exc:
        log.error("bad configuration", extra={"error": str(exc)})
        return response(500, {"error": str(exc)})
    result = asyncio.run(_run(config, request, deadline_seconds(context)))
    _metrics(config, result)
    return response(result.status_code, result.body)


async def _run(
    config: RestoreConfig, request: RestoreRequest, deadline: float | None
) -> RestoreResult:
    async with restore_clients(request.max_workers) as clients:
        return await run_restore(config, request, clients, deadline_seconds=deadline)


def _metrics(config: RestoreConfig, result: RestoreResult) -> None:
    body = result.body
    emit_metrics(
        {
            "tables_succeeded": float(body.get("successful_restores", 0)),
            "tables_partial": float(body.get("partial_restores", 0)),
            "tables_failed": float(body.get("failed_restores", 0) or (result.status_code >= 400)),
            "items_restored": float(body.get("total_items_written", 0)),
            "items_failed": float(body.get("total_items_failed", 0)),
            "duration_seconds": float(body.get("duration_seconds", 0.0)),
        },
        {"Function": "restore", "Environment": config.environment},
    )
