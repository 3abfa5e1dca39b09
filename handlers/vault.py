"""Lambda entry point of the vault copy: one final backup date copied, verified, locked.

Invoked after a backup is final (e.g. by the backup's state machine or a
schedule after it). Accepted events: ``{}`` (the newest final date), an
EventBridge scheduled event (the same), or ``{"backup_date": "YYYY-MM-DD"}``;
any other field is a 400 naming it. Settings come from the environment
(:meth:`ddb_backup.vault.VaultConfig.from_environ`).

Answers 200 (complete and verified), 202 (time ran out; invoke again with the
date: the copy resumes), 404 (no final backup for the date), 500 (an object
failed or conflicted: the body names each). After the date, the same invocation
copies the point-in-time chains' verified windows and records
(:func:`ddb_backup.vault.copy_date_and_windows`, within the same deadline);
their counts are the body's ``windows`` and count in the status code. EMF
metrics (namespace DdbBackup, dimensions {Environment, Function=vault}): ``vault_objects_copied``,
``vault_objects_skipped``, ``vault_objects_failed``, ``vault_conflicts``,
``vault_window_objects_copied``, ``vault_window_objects_failed``, and
``final_backups_without_vault_copy`` (1 while the date's copy is not complete
and verified: alarm on it staying above 0 for longer than a copy takes).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Any

from ddb_backup import concurrency
from ddb_backup.aws import aws_clients
from ddb_backup.errors import BackupNotFoundError, ConfigError, DdbBackupError
from ddb_backup.log import get_logger
from ddb_backup.metrics import emit_metrics
from ddb_backup.vault import (
    VaultConfig,
    VaultResult,
    VaultRun,
    WindowsResult,
    copy_date_and_windows,
)

# Not handlers.backup's event: this function's import closure (its IAM role, see
# deploy/checks/iam.py) stays the vault's own.
from handlers.common import (
    DatedEvent,
    LambdaContext,
    parse_event,
    response,
    setup,
    working_seconds,
)

__all__ = ["VaultEvent", "handler"]

log = get_logger("handlers.vault")


class VaultEvent(DatedEvent):
    """The vault copy's event: the newest final date, or ``backup_date``'s."""


def handler(event: Any, context: LambdaContext | None) -> dict[str, Any]:
    """Copy one final backup date to the vault (resuming an earlier invocation's copy)."""
    setup()
    started = time.monotonic()
    parsed = parse_event(VaultEvent, event, "vault")
    if isinstance(parsed, dict):
        return parsed
    try:
        config = VaultConfig.from_environ(os.environ)
    except ConfigError as exc:
        log.error("invalid configuration; nothing copied", extra={"error": str(exc)})
        _emit("unknown", None, started)
        return response(500, {"error": str(exc)})
    try:
        run = concurrency.run(_run(config, parsed.backup_date, working_seconds(context)))
    except BackupNotFoundError as exc:
        return response(404, {"error": str(exc)})
    except DdbBackupError as exc:
        log.error("vault copy failed", extra={"error": str(exc)})
        _emit(config.environment, None, started)
        return response(500, {"error": str(exc)})
    _emit(config.environment, run.date, started, run.windows)
    return response(run.status_code, run.body())


async def _run(config: VaultConfig, date: dt.date | None, deadline: float | None) -> VaultRun:
    """The date's copy, then the point-in-time windows' within what is left of the deadline."""
    async with aws_clients() as clients:
        return await copy_date_and_windows(config, clients, date, deadline_seconds=deadline)


def _emit(
    environment: str,
    result: VaultResult | None,
    started: float,
    windows: WindowsResult | None = None,
) -> None:
    """One EMF line per invocation; a run that could not start counts as a missing copy."""
    emit_metrics(
        {
            "vault_objects_copied": len(result.copied) if result else 0,
            "vault_objects_skipped": len(result.skipped) if result else 0,
            "vault_objects_failed": len(result.failed) if result else 0,
            "vault_conflicts": result.body()["conflicts"] if result else 0,
            "final_backups_without_vault_copy": 0 if result and result.status_code == 200 else 1,
            "vault_window_objects_copied": len(windows.copied) if windows else 0,
            "vault_window_objects_failed": len(windows.failed) if windows else 0,
            "duration_seconds": round(time.monotonic() - started, 3),
        },
        {"Function": "vault", "Environment": environment},
    )
