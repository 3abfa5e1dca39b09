"""Lambda entry points for restores: validate, then hand over to the core.

* :func:`handler`: a whole restore, one shard of a fan-out, or a resume.
* :func:`plan_handler`: the planning step of a fan-out (verify, clear once, shards).
* :func:`finalize_handler`: adds up the shards.

An invalid event is answered with 400 and every problem listed before
anything is read or written; a missing or malformed environment variable
with 500 naming it. The deadline comes from the Lambda context.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ddb_backup import concurrency
from ddb_backup.config import RestoreConfig
from ddb_backup.errors import ConfigError
from ddb_backup.events import MAX_WORKERS, FinalizeEvent, RestoreRequest
from ddb_backup.log import get_logger
from ddb_backup.metrics import emit_metrics
from ddb_backup.restore import (
    RestoreResult,
    finalize_restore,
    plan_restore,
    restore_clients,
    run_restore,
)
from handlers.common import (
    LambdaContext,
    deadline_seconds,
    response,
    setup,
    validation_problems,
)

__all__ = ["finalize_handler", "handler", "plan_handler"]

log = get_logger("handlers.restore")

E = TypeVar("E", bound=BaseModel)


def handler(event: Any, context: LambdaContext | None = None) -> dict[str, Any]:
    """A restore (``{}`` / a restore event), a shard (``{"shard": ...}``) or a resume."""
    return _handle("restore", event, context)


def plan_handler(event: Any, context: LambdaContext | None = None) -> dict[str, Any]:
    """The planning step of a fan-out restore (a restore event, or a resume)."""
    return _handle("plan", event, context)


def finalize_handler(event: Any, context: LambdaContext | None = None) -> dict[str, Any]:
    """``{"restore_id", "shard_results"}`` -> the response of a whole restore."""
    parsed = _parse(event, FinalizeEvent)
    if isinstance(parsed, dict):
        return parsed
    request, config = parsed

    async def run() -> RestoreResult:
        async with restore_clients() as clients:
            return await finalize_restore(
                config, request.restore_id, clients, shard_results=request.shard_results
            )

    result = concurrency.run(run())
    _metrics(config, result, tables_only=True)
    return response(result.status_code, result.body)


def _invalid(problems: list[str]) -> dict[str, Any]:
    log.warning("invalid restore event", extra={"problems": problems})
    return response(400, {"error": "invalid event", "problems": problems})


def _parse(event: Any, model: type[E]) -> tuple[E, RestoreConfig] | dict[str, Any]:
    """The validated event and settings, or the 400/500 response that refuses them."""
    setup()
    if not isinstance(event, dict):
        return _invalid(["event: must be a JSON object"])
    try:
        request = model.model_validate(event)
    except ValidationError as exc:
        return _invalid(validation_problems(exc))
    try:
        config = RestoreConfig.from_environ(os.environ)
    except ConfigError as exc:
        log.error("bad configuration", extra={"error": str(exc)})
        return response(500, {"error": str(exc)})
    return request, config


def _handle(kind: str, event: Any, context: LambdaContext | None) -> dict[str, Any]:
    parsed = _parse(event, RestoreRequest)
    if isinstance(parsed, dict):
        return parsed
    request, config = parsed
    result = concurrency.run(_run(kind, config, request, deadline_seconds(context)))
    # One EMF line per finished unit of work, so nothing is counted twice: a
    # restore or a shard when final (not per 202 round); a plan only when it
    # fails (otherwise finalize counts its tables).
    if result.status_code != 202 and (kind == "restore" or result.status_code >= 500):
        is_shard = request.shard is not None or result.answer.shard_id is not None
        _metrics(config, result, shard=is_shard)
    return response(result.status_code, result.body)


async def _run(
    kind: str, config: RestoreConfig, request: RestoreRequest, deadline: float | None
) -> RestoreResult:
    # A resume or a shard runs with the max_workers of the restore it continues,
    # unknown until its state is read: size the pool for the largest.
    continues = request.resume_token is not None or request.shard is not None
    workers = MAX_WORKERS if continues and "max_workers" not in request.model_fields_set else None
    async with restore_clients(workers or request.max_workers) as clients:
        if kind == "plan":
            return await plan_restore(config, request, clients, deadline_seconds=deadline)
        return await run_restore(config, request, clients, deadline_seconds=deadline)


def _metrics(
    config: RestoreConfig, result: RestoreResult, *, shard: bool = False, tables_only: bool = False
) -> None:
    """Finalize counts tables (the shards counted their items); a shard counts items only."""
    answer = result.answer
    tables = {
        "tables_succeeded": float(answer.successful_restores or 0),
        "tables_partial": float(answer.partial_restores or 0),
        "tables_failed": float(answer.failed_restores or (result.status_code >= 400)),
    }
    items = {
        "items_restored": float(answer.total_items_written or 0),
        "items_failed": float(answer.total_items_failed or 0),
    }
    metrics = {} if shard else tables
    if not tables_only:
        metrics |= items
    emit_metrics(
        {**metrics, "duration_seconds": float(answer.duration_seconds or 0.0)},
        {"Function": "restore", "Environment": config.environment},
    )
