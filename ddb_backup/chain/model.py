"""The chain's stored records (start, window, break, superseded) and a chain as read."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ddb_backup.changes import OutputView
from ddb_backup.incremental import VerifiedWindow
from ddb_backup.manifest import DataFile


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class ChainStart(_Model):
    """Where a chain starts: a verified full backup of the table."""

    format_version: Literal[1] = 1
    table: str
    chain_id: str
    table_arn: str
    table_id: str | None = None
    base_backup_date: dt.date | None = None
    base_export_time: dt.datetime
    started_at: dt.datetime


class ChainWindow(_Model):
    """One verified incremental export in a chain."""

    format_version: Literal[1] = 1
    table: str
    chain_id: str
    export_from_time: dt.datetime
    export_to_time: dt.datetime
    export_arn: str
    folder: str
    table_arn: str
    table_id: str | None = None
    output_view: OutputView = OutputView.NEW_AND_OLD_IMAGES
    files: list[DataFile]
    records: int = Field(ge=0)
    puts: int = Field(ge=0)
    deletes: int = Field(ge=0)
    verified_at: dt.datetime

    @classmethod
    def from_verified(
        cls, table: str, chain_id: str, window: VerifiedWindow, *, verified_at: dt.datetime
    ) -> ChainWindow:
        s = window.summary
        return cls(
            table=table,
            chain_id=chain_id,
            export_from_time=s.export_from_time,
            export_to_time=s.export_to_time,
            export_arn=s.export_arn,
            folder=window.folder,
            table_arn=s.table_arn,
            table_id=s.table_id,
            output_view=s.output_view,
            files=window.files,
            records=window.records,
            puts=window.puts,
            deletes=window.deletes,
            verified_at=verified_at,
        )


class BreakReason(StrEnum):
    WINDOW_FAILED = "window_failed"  # an export or its verification failed
    PITR_DISABLED = "pitr_disabled"  # PITR is off now
    PITR_RESET = "pitr_reset"  # EarliestRestorableDateTime later than the head
    TABLE_RECREATED = "table_recreated"  # another table id (or ARN)
    NOT_CONTIGUOUS = "not_contiguous"  # the stored windows have a gap or overlap


class ChainBreak(_Model):
    format_version: Literal[1] = 1
    table: str
    chain_id: str
    reason: BreakReason
    detail: str
    head: dt.datetime
    detected_at: dt.datetime


class ChainSuperseded(_Model):
    """A chain ended because a newer full backup carries the next one: no break;
    its windows stay restorable until they expire."""

    format_version: Literal[1] = 1
    table: str
    chain_id: str
    superseded_by: str  # the chain id of the next chain
    new_base_backup_date: dt.date | None = None
    new_base_export_time: dt.datetime
    head: dt.datetime  # where this chain ended
    recorded_at: dt.datetime


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """Why a chain cannot be followed past ``at``."""

    reason: BreakReason
    at: dt.datetime
    detail: str


@dataclass(frozen=True, slots=True)
class Chain:
    """A chain as stored: its start, windows in time order, its break, and
    whether a newer chain took over."""

    start: ChainStart
    windows: list[ChainWindow]
    broken: ChainBreak | None = None
    problems: list[ChainProblem] = field(default_factory=list)
    superseded: ChainSuperseded | None = None

    @property
    def chain_id(self) -> str:
        return self.start.chain_id

    @property
    def usable(self) -> list[ChainWindow]:
        """The windows up to the first problem (all of them in a sound chain)."""
        if not self.problems:
            return self.windows
        first = self.problems[0].at
        return [w for w in self.windows if w.export_to_time <= first]

    @property
    def head(self) -> dt.datetime:
        """Where the next window starts: the end of the last usable window."""
        usable = self.usable
        return usable[-1].export_to_time if usable else self.start.base_export_time


def time_stamp(when: dt.datetime) -> str:
    """A UTC time as a key segment that sorts in time order (microseconds kept)."""
    return when.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")


def chain_id_for(base_export_time: dt.datetime) -> str:
    """A chain is named after the export time of the full backup it starts from."""
    return time_stamp(base_export_time)
