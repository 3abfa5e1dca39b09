"""What every handler shares: the response shape, the deadline, logging."""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import ValidationError

from ddb_backup.log import configure_logging

__all__ = [
    "DEADLINE_MARGIN_SECONDS",
    "LambdaContext",
    "deadline_seconds",
    "response",
    "setup",
    "validation_problems",
]

#: Time kept back from Lambda's limit to write state/checkpoints and answer.
DEADLINE_MARGIN_SECONDS = 30.0


class LambdaContext(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


def setup() -> None:
    configure_logging()


def deadline_seconds(
    context: LambdaContext | None, margin: float = DEADLINE_MARGIN_SECONDS
) -> float | None:
    """Seconds the core may use, or ``None`` without a Lambda context (no deadline)."""
    if context is None or not hasattr(context, "get_remaining_time_in_millis"):
        return None
    return max(0.0, context.get_remaining_time_in_millis() / 1000 - margin)


def response(status_code: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status_code, "body": body}


def validation_problems(exc: ValidationError) -> list[str]:
    """Every problem of a pydantic error as ``field: message`` (input values left out)."""
    out = []
    for err in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "event"
        out.append(f"{where}: {err['msg']}")
    return out
