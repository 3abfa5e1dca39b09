"""What a point-in-time restore answers: new fields of the restore response.

Counts only, never attribute values. ``behind_asked_seconds`` is how far the
boundary reached (``restored_to``) lies before the time asked (0 for "latest").
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Interval",
    "PointInTimeAnswer",
    "VerifiedCounts",
    "WindowAnswer",
    "WindowCounts",
    "WindowSpan",
]


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """What applying a window did so far (all rounds): requests written by kind,
    requests failed (dead-lettered), and whether the window is finished."""

    puts: int
    deletes: int
    failed: int
    done: bool

    @classmethod
    def verified(cls, window: VerifiedCounts) -> WindowCounts:
        """What a dry run answers: the counts verification made, nothing written."""
        return cls(window.puts, window.deletes, 0, False)


class WindowSpan(Protocol):
    """What names a window: a chain's record, a verified export or a checkpoint mark."""

    @property
    def folder(self) -> str: ...
    @property
    def export_from_time(self) -> dt.datetime: ...
    @property
    def export_to_time(self) -> dt.datetime: ...


class VerifiedCounts(Protocol):
    """A window's changes by kind, as its verification counted them."""

    @property
    def puts(self) -> int: ...
    @property
    def deletes(self) -> int: ...


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Interval(_Answer):
    """``[start, end)``: a time no applied export covers (``--allow-gaps``)."""

    start: dt.datetime
    end: dt.datetime


class WindowAnswer(_Answer):
    """One incremental window applied (or, in a dry run, what it would apply)."""

    export_from_time: dt.datetime
    export_to_time: dt.datetime
    folder: str
    puts: int = Field(default=0, ge=0)
    deletes: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)
    done: bool = False
    dead_letter_folder: str | None = None

    @classmethod
    def of(
        cls,
        window: WindowSpan,
        counts: WindowCounts | None = None,
        *,
        dead_letter_folder: str | None = None,
    ) -> WindowAnswer:
        """The answer of ``window`` with ``counts`` (None: nothing applied yet)."""
        counts = counts or WindowCounts(0, 0, 0, False)
        return cls(
            export_from_time=window.export_from_time,
            export_to_time=window.export_to_time,
            folder=window.folder,
            puts=counts.puts,
            deletes=counts.deletes,
            failed=counts.failed,
            done=counts.done,
            dead_letter_folder=dead_letter_folder,
        )


class PointInTimeAnswer(_Answer):
    """Per table: the boundary reached, what was asked, and every window's counts."""

    restored_to: dt.datetime | None
    asked: dt.datetime | None = None  # None: "latest" (or an export chain given by hand)
    behind_asked_seconds: float = Field(default=0.0, ge=0)
    full_backup_date: dt.date | None = None
    full_export_time: dt.datetime | None = None
    chain_id: str | None = None
    windows: list[WindowAnswer] = Field(default_factory=list)
    uncovered: list[Interval] = Field(default_factory=list)
    puts: int = Field(default=0, ge=0)
    deletes: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)

    def add_totals(self) -> PointInTimeAnswer:
        """The per-table counts as the sum of the windows' (returns self)."""
        self.puts = sum(w.puts for w in self.windows)
        self.deletes = sum(w.deletes for w in self.windows)
        self.failed = sum(w.failed for w in self.windows)
        return self
