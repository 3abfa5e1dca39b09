"""The restore event, validated strictly before anything is read or written.

A typo must not silently change behaviour, so unknown fields are refused, and
``"false"`` is not a boolean: only JSON ``true``/``false`` are. Every problem
is collected by pydantic, so a 400 lists all of them at once.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from ddb_backup.errors import UnsafeNameError
from ddb_backup.keys import check_date, check_table_name

__all__ = [
    "MAX_TABLES",
    "MAX_WORKERS",
    "MAX_WRITE_UNITS",
    "FinalizeEvent",
    "RestoreRequest",
    "ShardRef",
    "parse_restore_to",
]

#: Upper bound on ``tables`` / ``table_mapping`` entries (DynamoDB's default
#: account quota is 2,500 tables; a restore event never needs more than this).
MAX_TABLES = 100
MAX_WORKERS = 64
#: Upper bound on ``max_write_units`` (DynamoDB's default per-table write quota is 40,000).
MAX_WRITE_UNITS = 1_000_000

_RESTORE_ID_RE = r"^[A-Za-z0-9_.\-]{1,128}$"

TableName = Annotated[str, StringConstraints(min_length=3, max_length=255)]


def parse_restore_to(text: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """An ISO-8601 time with an explicit offset (``Z`` or ``+hh:mm``), in UTC;
    a time without one (whose zone would be a guess) or in the future is refused."""
    if not re.fullmatch(
        r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})", text
    ):
        raise ValueError(
            f'restore_to {text!r} is not "latest" or an ISO-8601 time with its offset '
            "(e.g. 2026-11-28T14:30:00Z)"
        )
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)
    except ValueError as exc:
        raise ValueError(f"restore_to {text!r} is not a valid time: {exc}") from exc
    if when > (now or dt.datetime.now(dt.UTC)):
        raise ValueError(f"restore_to {text!r} is in the future")
    return when


def _table(name: str) -> str:
    try:
        return check_table_name(name)
    except UnsafeNameError as exc:
        raise ValueError(str(exc)) from exc


class ShardRef(BaseModel):
    """One shard of a planned fan-out restore (see issue 4's planning step)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    restore_id: Annotated[str, StringConstraints(pattern=_RESTORE_ID_RE)]
    shard_id: int = Field(ge=0, le=100_000)


class RestoreRequest(BaseModel):
    """What an operator may ask of a restore (Lambda event or library call)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    backup_date: str = Field(default="latest", description='"latest" or YYYY-MM-DD')
    #: Point-in-time restore: "latest" (the end of the newest verified window) or
    #: an ISO-8601 time with its offset (kept normalised to UTC); instead of backup_date.
    restore_to: str | None = Field(default=None, max_length=64)
    tables: list[TableName] | None = Field(default=None, min_length=1, max_length=MAX_TABLES)
    dry_run: bool = False
    clear_existing_data: bool = False
    max_workers: int = Field(default=5, ge=1, le=MAX_WORKERS)
    #: Write units per second per table at most (measured from ConsumedCapacity).
    max_write_units: int | None = Field(default=None, ge=1, le=MAX_WRITE_UNITS)
    table_mapping: dict[TableName, TableName] | None = Field(default=None, max_length=MAX_TABLES)
    create_missing_tables: bool = False
    items_per_shard: int | None = Field(default=None, ge=1, le=10**9)
    resume_token: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    shard: ShardRef | None = None

    @field_validator("backup_date")
    @classmethod
    def _date(cls, v: str) -> str:
        if v == "latest":
            return v
        try:
            date = check_date(v)
        except UnsafeNameError as exc:
            raise ValueError(str(exc)) from exc
        # Backups are dated in UTC; allow for a caller one timezone ahead.
        if date > dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1):
            raise ValueError(f"backup_date {v} is in the future")
        return v

    @field_validator("restore_to")
    @classmethod
    def _restore_to(cls, v: str | None) -> str | None:
        if v is None or v == "latest":
            return v
        return parse_restore_to(v).isoformat()

    @field_validator("tables")
    @classmethod
    def _tables(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        for name in v:
            _table(name)
        if len(set(v)) != len(v):
            raise ValueError("table names must be unique")
        return v

    @field_validator("table_mapping")
    @classmethod
    def _mapping(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        if v is None:
            return v
        for source, target in v.items():
            _table(source)
            _table(target)
        if len(set(v.values())) != len(v):
            raise ValueError("two source tables are mapped to the same target table")
        return v

    @field_validator("resume_token")
    @classmethod
    def _token(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9_.\-=]+", v):
            raise ValueError("resume_token is not a token this service issued")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> RestoreRequest:
        if self.table_mapping and self.tables is not None:
            extra = sorted(set(self.table_mapping) - set(self.tables))
            if extra:
                raise ValueError(
                    "table_mapping names tables that are not being restored: " + ", ".join(extra)
                )
        if self.table_mapping:
            # A target may not be another restored table's own (unmapped) name.
            sources = set(self.tables or []) - set(self.table_mapping)
            clash = sorted(set(self.table_mapping.values()) & sources)
            if clash:
                raise ValueError(
                    "table_mapping targets a table that is also restored under its own name: "
                    + ", ".join(clash)
                )
        if self.restore_to is not None and "backup_date" in self.model_fields_set:
            raise ValueError("restore_to and backup_date are alternatives: give one of them")
        if self.resume_token is not None:
            # A resumed restore continues exactly what the first event asked.
            fixed = self.model_fields_set - {"resume_token", "max_workers", "max_write_units"}
            if fixed:
                raise ValueError(
                    "resume_token continues a restore as first requested; "
                    "do not combine it with: " + ", ".join(sorted(fixed))
                )
        return self

    @property
    def restore_point(self) -> dt.datetime | Literal["latest"] | None:
        """``restore_to`` as a UTC time or "latest"; ``None`` for a restore of a daily backup."""
        if self.restore_to is None:
            return None
        if self.restore_to == "latest":
            return "latest"
        return dt.datetime.fromisoformat(self.restore_to)

    def targets(self, sources: list[str]) -> dict[str, str]:
        """``{source: target}`` for the tables restored."""
        mapping = self.table_mapping or {}
        return {s: mapping.get(s, s) for s in sources}

    def echo(self) -> dict[str, Any]:
        """The request as it goes into responses and checkpoints."""
        # restore_to only when given: responses and checkpoints of daily-backup
        # restores stay as they were; backup_date only without it (they are
        # alternatives, and a resumed round validates the echo again).
        unset = {"restore_to"} if self.restore_to is None else {"backup_date"}
        return self.model_dump(mode="json", exclude={"resume_token", *unset})


class FinalizeEvent(BaseModel):
    """The finalize step's input: the plan's id and one result per shard."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    restore_id: Annotated[str, StringConstraints(pattern=_RESTORE_ID_RE)]
    shard_results: list[dict[str, Any]] = Field(default_factory=list, max_length=100_000)
