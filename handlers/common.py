"""What every handler shares: the response shape, the deadline, logging."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Annotated, Any, Protocol, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from ddb_backup.errors import UnsafeNameError
from ddb_backup.keys import check_date
from ddb_backup.log import configure_logging, get_logger

__all__ = [
    "DEADLINE_MARGIN_SECONDS",
    "MIN_WORKING_SECONDS",
    "SCHEDULED_EVENT_FIELDS",
    "DatedEvent",
    "LambdaContext",
    "ScheduledEvent",
    "deadline_seconds",
    "parse_event",
    "remaining_seconds",
    "response",
    "setup",
    "validation_problems",
    "working_seconds",
]

#: Time kept back from Lambda's limit to write state/checkpoints and answer.
DEADLINE_MARGIN_SECONDS = 30.0
#: With this many seconds left or fewer, an invocation only answers (no AWS call).
MIN_WORKING_SECONDS = 5.0


class LambdaContext(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


def setup() -> None:
    configure_logging()


def deadline_seconds(
    context: LambdaContext | None, margin: float = DEADLINE_MARGIN_SECONDS
) -> float | None:
    """Seconds the core may use, or ``None`` without a Lambda context (no deadline)."""
    remaining = remaining_seconds(context)
    return None if remaining is None else max(0.0, remaining - margin)


def remaining_seconds(context: LambdaContext | None) -> float | None:
    """Seconds Lambda gives this invocation, or ``None`` without a Lambda context."""
    if context is None or not hasattr(context, "get_remaining_time_in_millis"):
        return None
    return context.get_remaining_time_in_millis() / 1000


def working_seconds(
    context: LambdaContext | None,
    margin: float = DEADLINE_MARGIN_SECONDS,
    floor: float = MIN_WORKING_SECONDS,
) -> float | None:
    """Seconds the core may use: ``margin`` is kept back, but never more than half
    of what is left (nor less than ``floor``), so a short invocation still works
    for half its time; 0 when ``floor`` seconds or fewer are left.

    ``None`` without a Lambda context (no deadline).
    """
    remaining = remaining_seconds(context)
    if remaining is None:
        return None
    if remaining <= floor:
        return 0.0
    return remaining - min(margin, max(floor, remaining / 2))


def response(status_code: int, body: Mapping[str, Any]) -> dict[str, Any]:
    return {"statusCode": status_code, "body": body}


def validation_problems(exc: ValidationError) -> list[str]:
    """Every problem of a pydantic error as ``field: message`` (input values left out)."""
    out = []
    for err in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "event"
        out.append(f"{where}: {err['msg']}")
    return out


#: The envelope of every EventBridge event (a scheduled one's ``detail`` is ``{}``).
SCHEDULED_EVENT_FIELDS = (
    "version",
    "id",
    "detail-type",
    "source",
    "account",
    "time",
    "region",
    "resources",
    "detail",
)


class ScheduledEvent(BaseModel):
    """``{}`` or an EventBridge scheduled event (all of its envelope, AWS's names);
    any other field is refused (subclasses add their own)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str | None = None
    id: str | None = None
    detail_type: str | None = Field(default=None, alias="detail-type")
    source: str | None = None
    account: str | None = None
    time: dt.datetime | None = None
    region: str | None = None
    resources: list[str] | None = None
    detail: dict[str, Any] | None = None

    def _given(self) -> set[str]:
        return {
            f.alias or name
            for name, f in type(self).model_fields.items()
            if name in self.model_fields_set
        }

    def envelope_given(self) -> bool:
        return bool(self._given() & set(SCHEDULED_EVENT_FIELDS))

    @model_validator(mode="after")
    def _complete_envelope(self) -> ScheduledEvent:
        given = self._given()
        missing = [f for f in SCHEDULED_EVENT_FIELDS if f not in given]
        if given & set(SCHEDULED_EVENT_FIELDS) and missing:
            raise ValueError(
                "not a complete EventBridge scheduled event; missing: " + ", ".join(missing)
            )
        return self


_log = get_logger("handlers")
EventModel = TypeVar("EventModel", bound=BaseModel)


def parse_event(model: type[EventModel], event: Any, kind: str) -> EventModel | dict[str, Any]:
    """``event`` as ``model`` (``None`` reads as ``{}``), or the 400 answer listing
    every problem (field and message, never the value) and logging them."""
    try:
        return model.model_validate({} if event is None else event)
    except ValidationError as exc:
        problems = validation_problems(exc)
        _log.error(f"invalid {kind} event", extra={"problems": problems})
        return response(400, {"error": "invalid event", "problems": problems})


def _strict_date(value: Any) -> dt.date:
    """Only a ``YYYY-MM-DD`` string (pydantic would also take a number of seconds)."""
    if isinstance(value, dt.date):
        return value
    try:
        return check_date(value)
    except UnsafeNameError as exc:
        raise ValueError("expected a date as YYYY-MM-DD") from exc


class DatedEvent(ScheduledEvent):
    """``{}``, ``{"backup_date": "YYYY-MM-DD"}`` or an EventBridge scheduled event
    (all of its envelope, AWS's names); anything else is refused, so a mistyped
    field (``backupDate``) cannot silently act on another date."""

    backup_date: Annotated[dt.date | None, BeforeValidator(_strict_date)] = None

    @model_validator(mode="after")
    def _date_alone(self) -> DatedEvent:
        if self.backup_date is not None and self.envelope_given():
            raise ValueError("backup_date cannot be combined with an EventBridge event's fields")
        return self
