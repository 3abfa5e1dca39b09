"""The chain of verified incremental windows behind point-in-time recovery.

A chain starts at a verified full backup (its ``ExportTime``) and grows by one
window at a time, each ``[from, to)`` starting where the previous one ended.
Its record in S3 is append-only: one object per fact, each written with a
conditional put (``If-None-Match: *``), never rewritten::

    <prefix>/incremental/<table>/chains/<chain-id>/chain.json            ChainStart
    <prefix>/incremental/<table>/chains/<chain-id>/windows/<from>_<to>.json  ChainWindow
    <prefix>/incremental/<table>/chains/<chain-id>/break.json            ChainBreak
    <prefix>/incremental/<table>/chains/<chain-id>/superseded.json       ChainSuperseded

A break (a window that failed, PITR switched off and on, the table recreated)
ends a chain; the windows before it stay restorable, and a new chain starts
from a fresh full backup. A chain is also ended, without a break, once a newer
full backup exists and the chain has reached its export time: a new chain
starts from that backup (daily), the old one is marked superseded and keeps its
windows. So every object of a chain is written after the full backup it builds
on, and an age-based lifecycle rule expires it no earlier than that backup; a
chain whose ``chain.json`` has expired is skipped by :func:`list_chains`.
Everything here but the S3 reads and writes is pure (times are passed in), so
planning and resolution are tested with fixed times.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ddb_backup.changes import OutputView
from ddb_backup.errors import BackupNotFoundError, ChainError, ConfigError
from ddb_backup.incremental import VerifiedWindow
from ddb_backup.keys import chain_prefix, check_key_inside
from ddb_backup.manifest import BackupManifest, DataFile, TableStatus
from ddb_backup.storage import Storage

__all__ = [
    "MAX_WINDOW",
    "MIN_WINDOW",
    "BreakReason",
    "Chain",
    "ChainBreak",
    "ChainProblem",
    "ChainStart",
    "ChainSuperseded",
    "ChainWindow",
    "ConditionalStorage",
    "FullBackupPoint",
    "PlannedWindow",
    "RestorePoint",
    "append_window",
    "chain_id_for",
    "check_contiguity",
    "check_interval",
    "detect_break",
    "floor_boundary",
    "full_backup_points",
    "incremental_client_token",
    "list_chains",
    "load_chain",
    "newest_chain",
    "plan_next_window",
    "record_break",
    "record_superseded",
    "resolve_restore_point",
    "start_chain",
    "time_stamp",
]

#: AWS's bounds on one incremental export's window.
MIN_WINDOW = dt.timedelta(minutes=15)
MAX_WINDOW = dt.timedelta(hours=24)
#: INCREMENTAL_INTERVAL_MINUTES bounds.
MIN_INTERVAL_MINUTES = 15
MAX_INTERVAL_MINUTES = 1440

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_M = TypeVar("_M", bound=BaseModel)


class ConditionalStorage(Storage, Protocol):
    """A store that can write a key only if it is not taken (S3's ``If-None-Match``)."""

    async def put_bytes_if_absent(
        self, key: str, data: bytes, *, content_type: str = ...
    ) -> bool: ...


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


def _start_key(prefix: str, table: str, chain_id: str) -> str:
    return f"{chain_prefix(prefix, table, chain_id)}/chain.json"


def _window_key(prefix: str, table: str, chain_id: str, w: ChainWindow) -> str:
    stamps = f"{time_stamp(w.export_from_time)}_{time_stamp(w.export_to_time)}"
    return f"{chain_prefix(prefix, table, chain_id)}/windows/{stamps}.json"


def _break_key(prefix: str, table: str, chain_id: str) -> str:
    return f"{chain_prefix(prefix, table, chain_id)}/break.json"


def _superseded_key(prefix: str, table: str, chain_id: str) -> str:
    return f"{chain_prefix(prefix, table, chain_id)}/superseded.json"


async def _put_once(
    storage: ConditionalStorage, key: str, model: BaseModel, *, ignore: set[str], table: str
) -> bool:
    """Write ``model`` at ``key`` unless taken; the same content already there
    (a retry) is fine, other content is a :class:`ChainError`. True if written."""
    data = model.model_dump_json(indent=2).encode()
    if await storage.put_bytes_if_absent(key, data):
        return True
    existing = await storage.get_bytes(key)
    try:
        there = type(model).model_validate_json(existing)
    except ValidationError as exc:
        raise ChainError(f"chain record {key} is unreadable", table=table) from exc
    if there.model_dump(exclude=ignore) != model.model_dump(exclude=ignore):
        raise ChainError(
            f"chain record {key} already exists with other content; not overwritten",
            table=table,
        )
    return False


async def start_chain(storage: ConditionalStorage, prefix: str, start: ChainStart) -> None:
    """Record a chain's start (idempotent; a different start under the id is refused)."""
    key = _start_key(prefix, start.table, start.chain_id)
    await _put_once(storage, key, start, ignore={"started_at"}, table=start.table)


async def append_window(
    storage: ConditionalStorage, prefix: str, chain: Chain, window: ChainWindow
) -> Chain:
    """Add a verified window at the chain's head; returns the longer chain.

    Refused (nothing written): a broken or superseded chain, a window that
    does not start at the head, or of another table. Re-appending the same window (a retried
    invocation) is accepted without a second object.
    """
    table = chain.start.table
    if chain.broken is not None or chain.problems:
        raise ChainError(f"chain {chain.chain_id} of {table} is broken", table=table)
    if chain.superseded is not None:
        raise ChainError(
            f"chain {chain.chain_id} of {table} is superseded by {chain.superseded.superseded_by}",
            table=table,
        )
    if window.table != table or window.chain_id != chain.chain_id:
        raise ChainError("window belongs to another chain", table=table)
    problems = check_contiguity(chain.start, [*chain.windows, window])
    if problems:
        raise ChainError(f"window refused: {problems[0].detail}", table=table)
    key = _window_key(prefix, table, chain.chain_id, window)
    await _put_once(storage, key, window, ignore={"verified_at"}, table=table)
    return Chain(chain.start, [*chain.windows, window])


async def record_break(storage: ConditionalStorage, prefix: str, brk: ChainBreak) -> bool:
    """Record that a chain is broken; the first break recorded stays (False if one was)."""
    key = _break_key(prefix, brk.table, brk.chain_id)
    return await storage.put_bytes_if_absent(key, brk.model_dump_json(indent=2).encode())


async def record_superseded(
    storage: ConditionalStorage, prefix: str, record: ChainSuperseded
) -> bool:
    """Record that a newer chain took over (idempotent: a retry writes nothing, a
    record naming another chain is a :class:`ChainError`). True if written."""
    key = _superseded_key(prefix, record.table, record.chain_id)
    return await _put_once(storage, key, record, ignore={"recorded_at"}, table=record.table)


def _load(model: type[_M], data: bytes, key: str, table: str) -> _M:
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        raise ChainError(f"chain record {key} is invalid", table=table) from exc


async def load_chain(storage: Storage, prefix: str, table: str, chain_id: str) -> Chain:
    """Read a chain's record; its windows in time order, problems found named."""
    key = _start_key(prefix, table, chain_id)
    return await _load_chain(storage, prefix, table, chain_id, await storage.get_bytes(key))


async def _load_chain(
    storage: Storage, prefix: str, table: str, chain_id: str, raw_start: bytes
) -> Chain:
    base = chain_prefix(prefix, table, chain_id)
    key = _start_key(prefix, table, chain_id)
    start = _load(ChainStart, raw_start, key, table)
    if start.table != table or start.chain_id != chain_id:
        raise ChainError(f"chain record {key} is of another chain", table=table)
    windows = []
    async for obj in storage.list_objects(f"{base}/windows/"):
        check_key_inside(obj.key, f"{base}/windows")
        w = _load(ChainWindow, await storage.get_bytes(obj.key), obj.key, table)
        if _window_key(prefix, table, chain_id, w) != obj.key:
            raise ChainError(f"chain record {obj.key} holds another window", table=table)
        windows.append(w)
    windows.sort(key=lambda w: (w.export_from_time, w.export_to_time))
    raw_break = await storage.get_bytes_or_none(_break_key(prefix, table, chain_id))
    brk = None
    if raw_break is not None:
        brk = _load(ChainBreak, raw_break, _break_key(prefix, table, chain_id), table)
    raw_superseded = await storage.get_bytes_or_none(_superseded_key(prefix, table, chain_id))
    superseded = None
    if raw_superseded is not None:
        key = _superseded_key(prefix, table, chain_id)
        superseded = _load(ChainSuperseded, raw_superseded, key, table)
    return Chain(start, windows, brk, check_contiguity(start, windows), superseded)


async def _chain_ids(storage: Storage, prefix: str, table: str) -> list[str]:
    """The chain folders of ``table``, oldest first (ids sort in time order)."""
    base = chain_prefix(prefix, table)
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in await storage.list_prefixes(f"{base}/"))


async def _load_if_kept(storage: Storage, prefix: str, table: str, chain_id: str) -> Chain | None:
    """The chain, or None once its ``chain.json`` has expired (the lifecycle rule
    takes a chain's oldest objects first; its later windows may linger a day)."""
    raw = await storage.get_bytes_or_none(_start_key(prefix, table, chain_id))
    if raw is None:
        return None
    return await _load_chain(storage, prefix, table, chain_id, raw)


async def list_chains(storage: Storage, prefix: str, table: str) -> list[Chain]:
    """Every chain of ``table`` still kept, oldest first (expired ones skipped)."""
    out = []
    for chain_id in await _chain_ids(storage, prefix, table):
        chain = await _load_if_kept(storage, prefix, table, chain_id)
        if chain is not None:
            out.append(chain)
    return out


async def newest_chain(
    storage: Storage, prefix: str, table: str, *, before: str | None = None
) -> Chain | None:
    """The newest kept chain of ``table`` (older than chain id ``before`` if given),
    read alone: a scheduled round needs no other."""
    for chain_id in reversed(await _chain_ids(storage, prefix, table)):
        if before is not None and chain_id >= before:
            continue
        chain = await _load_if_kept(storage, prefix, table, chain_id)
        if chain is not None:
            return chain
    return None


def check_contiguity(start: ChainStart, windows: Sequence[ChainWindow]) -> list[ChainProblem]:
    """Gaps, overlaps and table changes in time-ordered ``windows`` (pure).

    The first window starts at the full backup's export time; each next one
    where the previous ended (ExportFromTime inclusive, ExportToTime exclusive).
    """
    problems = []
    head = start.base_export_time
    for w in windows:
        if w.table_arn != start.table_arn or (
            start.table_id is not None and w.table_id != start.table_id
        ):
            problems.append(
                ChainProblem(
                    BreakReason.TABLE_RECREATED,
                    w.export_from_time,
                    f"window {w.export_arn} is of table id {w.table_id}, "
                    f"the chain's is {start.table_id}",
                )
            )
        if w.export_from_time > head:
            problems.append(
                ChainProblem(
                    BreakReason.NOT_CONTIGUOUS,
                    head,
                    f"gap: nothing covers [{head.isoformat()}, {w.export_from_time.isoformat()})",
                )
            )
        elif w.export_from_time < head:
            problems.append(
                ChainProblem(
                    BreakReason.NOT_CONTIGUOUS,
                    w.export_from_time,
                    f"overlap: window from {w.export_from_time.isoformat()} starts before "
                    f"the previous end {head.isoformat()}",
                )
            )
        if w.export_to_time <= w.export_from_time:
            problems.append(
                ChainProblem(BreakReason.NOT_CONTIGUOUS, w.export_from_time, "empty window")
            )
        head = max(head, w.export_to_time)
    return sorted(problems, key=lambda p: p.at)


def detect_break(
    chain: Chain,
    *,
    table_arn: str,
    table_id: str | None,
    pitr_enabled: bool,
    earliest_restorable: dt.datetime | None,
) -> ChainProblem | None:
    """Why ``chain`` cannot be extended on the table as it is now, if it cannot (pure).

    The inputs come from DescribeTable and DescribeContinuousBackups. PITR
    switched off and on shows as an ``EarliestRestorableDateTime`` later than
    the chain's head: the changes in between are gone from PITR.
    """
    head = chain.head
    if chain.broken is not None:
        return ChainProblem(chain.broken.reason, chain.broken.head, chain.broken.detail)
    if chain.problems:
        return chain.problems[0]
    start = chain.start
    if table_arn != start.table_arn or (
        start.table_id is not None and table_id is not None and table_id != start.table_id
    ):
        return ChainProblem(
            BreakReason.TABLE_RECREATED,
            head,
            f"table id is {table_id}, the chain's {start.table_id}",
        )
    if not pitr_enabled:
        return ChainProblem(BreakReason.PITR_DISABLED, head, "point-in-time recovery is off")
    if earliest_restorable is not None and earliest_restorable > head:
        return ChainProblem(
            BreakReason.PITR_RESET,
            head,
            f"PITR restorable only from {earliest_restorable.isoformat()}, "
            f"after the chain's head {head.isoformat()}",
        )
    return None


def check_interval(minutes: int) -> int:
    """INCREMENTAL_INTERVAL_MINUTES: 15 to 1440 (AWS's window bounds)."""
    if not MIN_INTERVAL_MINUTES <= minutes <= MAX_INTERVAL_MINUTES:
        raise ConfigError(
            f"INCREMENTAL_INTERVAL_MINUTES must be {MIN_INTERVAL_MINUTES} to "
            f"{MAX_INTERVAL_MINUTES}, not {minutes}"
        )
    return minutes


def floor_boundary(when: dt.datetime, interval_minutes: int) -> dt.datetime:
    """The last window boundary at or before ``when``: multiples of the interval
    since the epoch (so UTC midnight is one whenever the interval divides a day)."""
    step = dt.timedelta(minutes=check_interval(interval_minutes))
    return _EPOCH + ((when - _EPOCH) // step) * step


@dataclass(frozen=True, slots=True)
class PlannedWindow:
    export_from: dt.datetime
    export_to: dt.datetime


def plan_next_window(
    head: dt.datetime, *, safe_until: dt.datetime, interval_minutes: int
) -> PlannedWindow | None:
    """The next window to export, or ``None`` while it is not due (pure).

    ``head``: the end of the chain's last window, or the full backup's
    ``ExportTime`` for a new chain. ``safe_until``: the latest time whose data
    is surely exportable, e.g. ``min(now - a few minutes,
    LatestRestorableDateTime)``. The window ends at the last boundary at or
    before ``safe_until``, at most 24 hours after ``head`` (a chain that fell
    behind catches up one such window per call, in order) and at least
    15 minutes after it (AWS's bounds).
    """
    to = floor_boundary(min(safe_until, head + MAX_WINDOW), interval_minutes)
    if to - head < MIN_WINDOW:
        return None
    return PlannedWindow(head, to)


def incremental_client_token(bucket: str, prefix: str, table: str, window: PlannedWindow) -> str:
    """ClientToken of one window's export (64 hex characters, no ``$``):
    a retried invocation gets the same export back instead of a second one."""
    material = "\n".join(
        (
            "ddb-backup/incremental/v1",
            bucket,
            prefix.strip("/"),
            table,
            time_stamp(window.export_from),
            time_stamp(window.export_to),
        )
    )
    return hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True, slots=True, order=True)
class FullBackupPoint:
    """A verified full backup of one table, by the time it reflects."""

    export_time: dt.datetime
    backup_date: dt.date


def full_backup_points(manifests: Iterable[BackupManifest], table: str) -> list[FullBackupPoint]:
    """The completed full backups of ``table`` that record their export time."""
    out = []
    for m in manifests:
        t = m.table(table)
        if t is not None and t.status is TableStatus.COMPLETED and t.export_time is not None:
            out.append(FullBackupPoint(t.export_time, m.backup_date))
    return sorted(out)


@dataclass(frozen=True, slots=True)
class RestorePoint:
    """What a restore to ``asked`` applies: a full backup, then windows in order."""

    full: FullBackupPoint
    chain_id: str | None
    windows: list[ChainWindow]
    restored_to: dt.datetime
    asked: dt.datetime | None  # None: "latest"

    @property
    def behind_asked(self) -> dt.timedelta:
        """How far before the asked time the restore lands (zero for "latest")."""
        return self.asked - self.restored_to if self.asked is not None else dt.timedelta(0)


def _windows_from(
    full: FullBackupPoint, chain: Chain, until: dt.datetime | None
) -> list[ChainWindow]:
    """The chain's windows applied on top of ``full``, ending at or before ``until``.

    The first is the window holding the full backup's export time (its records
    are final images, so changes already in the full backup are written again
    harmlessly); each next one starts where the previous ended, up to the first
    problem (gap, overlap, other table id) from there on. What comes before that
    first window does not matter to this full backup: a chain whose oldest
    windows have expired still carries a newer full backup it holds.
    """
    windows = chain.windows
    first = next(
        (
            i
            for i, w in enumerate(windows)
            if w.export_from_time <= full.export_time < w.export_to_time
        ),
        None,
    )
    if first is None:
        return []
    since = windows[first].export_from_time
    cut = min((p.at for p in chain.problems if p.at >= since), default=None)
    out: list[ChainWindow] = []
    for w in windows[first:]:
        if until is not None and w.export_to_time > until:
            break
        if cut is not None and w.export_to_time > cut:
            break
        if out and w.export_from_time != out[-1].export_to_time:
            break
        out.append(w)
    return out


def resolve_restore_point(
    fulls: Sequence[FullBackupPoint],
    chains: Sequence[Chain],
    at: dt.datetime | Literal["latest"],
) -> RestorePoint:
    """The full backup and windows that bring the table closest to ``at`` (pure).

    For a time: among the full backups at or before it, each followed by the
    contiguous verified windows after it up to the last boundary at or before
    the time, the one reaching furthest (the newest full backup on a tie, so
    fewer windows). That is the newest full backup at or before the time, unless
    an older one's chain reaches closer. Any chain may carry any full backup
    whose export time one of its windows holds: just after a daily full backup,
    the chain it superseded often reaches closer than the new chain has got
    yet. "latest": the furthest any chain reaches.
    """
    until = None if at == "latest" else at
    candidates = [f for f in fulls if until is None or f.export_time <= until]
    if not candidates:
        raise BackupNotFoundError(
            f"no verified full backup at or before {at if until is None else until.isoformat()}"
        )
    best: RestorePoint | None = None
    for full in sorted(candidates, reverse=True):  # newest first: it wins ties
        options: list[tuple[str | None, list[ChainWindow]]] = [(None, [])]
        options += [(c.chain_id, _windows_from(full, c, until)) for c in chains]
        for chain_id, windows in options:
            reached = windows[-1].export_to_time if windows else full.export_time
            if best is None or reached > best.restored_to:
                best = RestorePoint(full, chain_id if windows else None, windows, reached, until)
    assert best is not None  # candidates is not empty
    return best
