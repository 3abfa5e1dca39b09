"""A restore's progress as data: what the report, the progress log and the
checkpoint of a resumable restore are all made from.

Per table: its phase, its counts and, per data file, how many leading items
are *known* handled (written, or failed and in the dead-letter object).
Batches complete out of order; a file's ``lines_done`` only advances over a
contiguous run of completed batches, so "every earlier item is known written"
holds exactly, and a resumed restore starts at that line.

A point-in-time table also carries its chain (:class:`PointInTimeState`):
the full backup and windows chosen when the restore started, and per window
the same kind of mark (:class:`WindowProgress`), so a resumed round applies
exactly that chain even if newer windows appeared meanwhile.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from ddb_backup.chain import ChainWindow
from ddb_backup.errors import CheckpointError, LeaseLostError
from ddb_backup.incremental import VerifiedWindow
from ddb_backup.manifest import DataFile
from ddb_backup.restore.point_answer import PointInTimeAnswer, WindowAnswer, WindowCounts
from ddb_backup.storage import ObjectPin, PinnedReads

__all__ = [
    "FileState",
    "Outcome",
    "PinnedObject",
    "PointInTimeState",
    "RestoreState",
    "RestoreStatus",
    "ShardFile",
    "ShardPlan",
    "TablePhase",
    "TableProgress",
    "TableState",
    "WindowCounts",
    "WindowProgress",
    "pinned_objects",
    "record_pins",
    "reuse_pins",
]


class TablePhase(StrEnum):
    """Where a table is; stored in the state, and reported to ``on_progress``."""

    PENDING = "pending"  # not verified yet
    VERIFYING = "verifying"  # reported while verifying (the state says PENDING until it ends)
    READY = "ready"  # verified, target checked: may be cleared and written
    CLEARING = "clearing"
    WRITING = "writing"
    DONE = "done"
    FAILED = "failed"  # verification or target check failed: untouched


class RestoreStatus(StrEnum):
    """The ``status`` of a restore's answer and of each of its tables."""

    COMPLETED = "COMPLETED"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    DRY_RUN = "DRY_RUN_OK"
    IN_PROGRESS = "IN_PROGRESS"  # 202: resume with the token
    PLANNED = "PLANNED"
    PLANNED_PARTIAL = "PLANNED_PARTIAL"


class _State(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


class PinnedObject(_State):
    """An object read at verification: every later read of it is pinned to the
    S3 object verified (VersionId, else ETag)."""

    key: str
    etag: str | None = None
    version_id: str | None = None

    @property
    def pin(self) -> ObjectPin | None:
        if self.etag is None and self.version_id is None:
            return None  # a local copy, or a checkpoint written before pins
        return ObjectPin(etag=self.etag, version_id=self.version_id)


class FileState(PinnedObject):
    item_count: int | None = None  # expected (manifest / verification)
    md5: str | None = None
    size: int | None = None
    lines_done: int = Field(default=0, ge=0)
    done: bool = False
    error: str | None = None  # the last attempt's; cleared when a later round succeeds
    _completed: dict[int, int] = PrivateAttr(default_factory=dict)

    def mark(self, start: int, end: int) -> None:
        """Lines ``[start, end)`` are handled; advance the known-done prefix."""
        # Once per batch: each read of a private attribute is a pydantic __getattr__.
        completed = self._completed
        completed[start] = end
        done = self.lines_done
        if done in completed:
            while done in completed:
                done = completed.pop(done)
            self.lines_done = done

    @classmethod
    def from_data_file(cls, f: DataFile) -> FileState:
        return cls(key=f.key, item_count=f.item_count, md5=f.md5, size=f.size)


def record_pins(storage: PinnedReads, files: Sequence[PinnedObject]) -> None:
    """Record the object each verified file was read from, so every later
    read (this round, later rounds, shards) is of that object only."""
    for f in files:
        pin = storage.pins.get(f.key)
        if pin is not None and f.pin is None:
            f.etag, f.version_id = pin.etag, pin.version_id


def pinned_objects(storage: PinnedReads, keys: Iterable[str]) -> list[PinnedObject]:
    """The objects among ``keys`` read through ``storage`` (so pinned), with their pins."""
    return [
        PinnedObject(key=k, etag=pin.etag, version_id=pin.version_id)
        for k in keys
        if (pin := storage.pins.get(k)) is not None
    ]


def reuse_pins(storage: PinnedReads, files: Iterable[PinnedObject]) -> None:
    """A later round: pin every read of these files to the object recorded."""
    for f in files:
        if f.pin is not None:
            storage.pins.setdefault(f.key, f.pin)


class WindowProgress(_State):
    """The checkpoint mark of one window (see :mod:`ddb_backup.point_in_time.apply`).

    Stored in the restore's checkpoint per window: its folder and times (to
    refuse a checkpoint of another window), per data file in manifest order a
    :class:`FileState` (``lines_done``, ``done``, the verified MD5, count and
    object pin), the pins of its manifests, the counts so far and the
    dead-letter parts and folder.
    """

    folder: str
    export_from_time: dt.datetime
    export_to_time: dt.datetime
    files: list[FileState]
    # Its manifests (and .md5 sidecars) as verified: a resumed round reads them again.
    manifests: list[PinnedObject] = Field(default_factory=list)
    puts: int = Field(default=0, ge=0)
    deletes: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)
    done: bool = False
    dead_letter_files: list[DataFile] = Field(default_factory=list)
    dead_letter_folder: str | None = None  # the export folder restore-export takes

    @classmethod
    def of(cls, window: VerifiedWindow) -> WindowProgress:
        return cls(
            folder=window.folder,
            export_from_time=window.summary.export_from_time,
            export_to_time=window.summary.export_to_time,
            files=[FileState.from_data_file(f) for f in window.files],
        )

    def check_matches(self, window: VerifiedWindow) -> None:
        """Refuse a mark that is not of this window as verified now."""
        same = (
            self.folder == window.folder
            and self.export_from_time == window.summary.export_from_time
            and self.export_to_time == window.summary.export_to_time
            and [(f.key, f.md5, f.item_count) for f in self.files]
            == [(f.key, f.md5, f.item_count) for f in window.files]
        )
        if not same:
            raise CheckpointError(
                f"the checkpoint of window {self.folder} does not match the window verified now "
                "(its files changed since the first round)"
            )

    @property
    def counts(self) -> WindowCounts:
        return WindowCounts(self.puts, self.deletes, self.failed, self.done)


class PointInTimeState(_State):
    """A point-in-time table's chain, fixed when the restore started.

    ``windows`` are the chain record's windows chosen then, in order (a resumed
    round applies exactly these); ``marks`` one :class:`WindowProgress` per
    window once verified (with the object each file was read from); ``halted``
    why no further window is applied (a window or the full backup had writes
    that failed: their dead letters, restored later, must not undo a later change).
    """

    asked: dt.datetime | None  # None: "latest"
    restored_to: dt.datetime  # the boundary the chain reaches
    full_backup_date: dt.date
    full_export_time: dt.datetime
    chain_id: str | None = None
    table_arn: str | None = None
    table_id: str | None = None
    windows: list[ChainWindow] = Field(default_factory=list)
    marks: list[WindowProgress] = Field(default_factory=list)
    full_written: bool = False  # the full backup written whole, nothing failed
    halted: str | None = None

    def reached(self) -> dt.datetime | None:
        """The boundary the table is at: the end of the last window applied in
        order without a failed write, else the full backup's time when it was
        written whole, else ``None``."""
        if not self.full_written:
            return None
        at = self.full_export_time
        for mark in self.marks:
            if not mark.done or mark.failed:
                break
            at = mark.export_to_time
        return at

    def not_done(self) -> list[str]:
        """The folders of the windows not (completely) applied, in order."""
        done = {m.folder for m in self.marks if m.done}
        return [w.folder for w in self.windows if w.folder not in done]

    def answer(self, *, dry_run: bool) -> PointInTimeAnswer:
        """The table's ``point_in_time``: a dry run's windows with what they would
        write (the counts verification made), else the counts so far."""
        marks = {m.folder: m for m in self.marks}
        windows = []
        for w in self.windows:
            m = marks.get(w.folder)
            counts = WindowCounts.verified(w) if dry_run else m.counts if m is not None else None
            dead = m.dead_letter_folder if m is not None else None
            windows.append(WindowAnswer.of(w, counts, dead_letter_folder=dead))
        restored_to = self.restored_to if dry_run else self.reached()
        behind = (
            self.asked - restored_to
            if self.asked is not None and restored_to is not None
            else dt.timedelta(0)
        )
        return PointInTimeAnswer(
            restored_to=restored_to,
            asked=self.asked,
            behind_asked_seconds=behind.total_seconds(),
            full_backup_date=self.full_backup_date,
            full_export_time=self.full_export_time,
            chain_id=self.chain_id,
            windows=windows,
        ).add_totals()


class TableState(_State):
    source_table: str
    target_table: str
    s3_prefix: str | None = None
    phase: TablePhase = TablePhase.PENDING
    key_names: list[str] = Field(default_factory=list)
    #: The target's key types (S/N/B) in ``key_names`` order; every line is checked against them.
    key_types: list[str] = Field(default_factory=list)
    items_expected: int | None = None
    items_read: int = 0
    items_written: int = 0
    items_failed: int = 0
    items_cleared: int = 0
    items_clear_failed: int = 0
    items_to_clear: int | None = None  # dry run: what a real run would delete
    created: bool = False
    files: list[FileState] = Field(default_factory=list)
    dead_letter_files: list[DataFile] = Field(default_factory=list)
    dead_letter_folder: str | None = None
    dead_letter_folders: list[str] = Field(default_factory=list)  # fan-out: one per shard
    errors: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    verified_against_manifest: bool = True
    duration_seconds: float = 0.0
    point_in_time: PointInTimeState | None = None  # a restore_to restore: its chain
    #: A fan-out: how many shards write this table; each holds this share of
    #: ``max_write_units`` (set by the plan, see ``shards.share_write_budget``).
    write_shards: int = Field(default=1, ge=1)

    @property
    def all_errors(self) -> list[str]:
        return [*self.errors, *(f.error for f in self.files if f.error and not f.done)]

    @property
    def files_done(self) -> int:
        return sum(f.done for f in self.files)

    def status(self, dry_run: bool) -> RestoreStatus:
        if self.phase is TablePhase.FAILED:
            # FAILED means untouched; a table cleared or partly written is not.
            touched = self.items_cleared or self.items_written
            return RestoreStatus.PARTIAL if touched else RestoreStatus.FAILED
        if dry_run:
            if self.phase is TablePhase.PENDING:
                return RestoreStatus.IN_PROGRESS  # not verified yet (the deadline came first)
            return RestoreStatus.DRY_RUN if not self.all_errors else RestoreStatus.FAILED
        complete = (
            self.phase is TablePhase.DONE
            and not self.all_errors
            and self.items_failed == 0
            and self.items_clear_failed == 0
            and self.items_expected is not None
            and self.items_written == self.items_expected
            and all(f.done for f in self.files)
        )
        if complete:
            return RestoreStatus.COMPLETED
        if self.items_written or self.items_cleared:
            return RestoreStatus.PARTIAL
        return RestoreStatus.FAILED


class SkippedDate(_State):
    date: dt.date
    reason: str


class ShardFile(_State):
    table: str  # source table
    key: str


class ShardPlan(_State):
    """One shard of a fan-out restore: a group of data files."""

    shard_id: int
    files: list[ShardFile]
    items: int = 0
    size: int = 0


class RestoreState(_State):
    """Everything a restore knows; written as the checkpoint of a resumable run.

    ``kind``: ``single`` (one restore, resumable), ``plan`` (the planning step
    of a fan-out: verify, clear once, split into ``shards``) or ``shard`` (the
    files of one shard, written with no clear).
    """

    version: Literal[1] = 1
    kind: Literal["single", "plan", "shard"] = "single"
    shard_id: int | None = None
    restore_id: str
    bucket: str
    environment: str
    prefix: str
    backup_date: dt.date | None = None
    request: dict[str, Any] = Field(default_factory=dict)
    tables: list[TableState] = Field(default_factory=list)
    skipped_backups: list[SkippedDate] = Field(default_factory=list)
    skipped_tables: list[dict[str, str]] = Field(default_factory=list)
    shards: list[ShardPlan] = Field(default_factory=list)
    started_at: dt.datetime | None = None
    round: int = 1
    elapsed_seconds: float = 0.0
    finished: bool = False


@dataclass(frozen=True, slots=True)
class TableProgress:
    """A snapshot handed to ``on_progress`` callbacks (and logged)."""

    table: str
    phase: TablePhase
    items_expected: int | None
    items_written: int
    items_failed: int
    items_cleared: int
    files_done: int
    files_total: int
    elapsed: float
    #: Write units per second over the last seconds (None before any write), and the budget.
    write_units_per_second: float | None = None
    max_write_units: int | None = None

    @classmethod
    def of(
        cls,
        state: TableState,
        phase: TablePhase,
        elapsed: float,
        rate: tuple[float | None, int | None] = (None, None),
    ) -> TableProgress:
        return cls(
            table=state.target_table,
            phase=phase,
            items_expected=state.items_expected,
            items_written=state.items_written,
            items_failed=state.items_failed,
            items_cleared=state.items_cleared,
            files_done=state.files_done,
            files_total=len(state.files),
            elapsed=elapsed,
            write_units_per_second=rate[0],
            max_write_units=rate[1],
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What :meth:`~ddb_backup.restore.run.RestoreRun.conclude` recorded: what an
    answer is built from."""

    duration: float  # this restore's seconds so far, all rounds
    resume_token: str | None = None  # checkpointed: invoke again with it (202)
    unfinished: int = 0
    lost: LeaseLostError | None = None  # the lease was taken over (409)
