"""What a caller may tune about a restore, in one frozen value.

:class:`RestoreOptions` is what travels from the entry points to the run
(storage, deadline, work budget, sender, retries, progress reporting, shard
size); the public functions still take the same keyword arguments
(:class:`RestoreKeywords`) and fold them into it. :class:`RunScope` is what
one run does with its state (dry run, clear, create, workers, write budget,
where dead letters go): decided by the entry from the request and the state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypedDict

from ddb_backup.restore.state import TableProgress
from ddb_backup.restore.writer import BatchSender, RetryPolicy
from ddb_backup.storage import Storage

__all__ = [
    "DEFAULT_FILES_IN_FLIGHT",
    "PROGRESS_INTERVAL",
    "ProgressCallback",
    "RestoreKeywords",
    "RestoreOptions",
    "RunKeywords",
    "RunScope",
]

#: Data files streamed at once per table (each holds one S3 chunk and its lines).
DEFAULT_FILES_IN_FLIGHT = 2
#: Seconds between progress log lines.
PROGRESS_INTERVAL = 10.0

ProgressCallback = Callable[[TableProgress], None]


class RunKeywords(TypedDict, total=False):
    """The keyword arguments every entry point takes (see :class:`RestoreOptions`)."""

    on_progress: ProgressCallback | None
    retry: RetryPolicy | None
    sender: BatchSender | None
    files_in_flight: int
    progress_interval: float
    max_write_units: int | None


class RestoreKeywords(RunKeywords, total=False):
    """The keyword arguments of ``run_restore`` and ``plan_restore``."""

    storage: Storage | None
    deadline_seconds: float | None
    max_batches: int | None
    items_per_shard: int | None


@dataclass(frozen=True, slots=True)
class RestoreOptions:
    """``storage``: where the backup is (default: the configured bucket).
    ``deadline_seconds``: stop taking new work after this long, checkpoint and
    answer 202. ``max_batches``: the same after that many batches (a work budget
    per invocation). ``sender``/``retry``: how batches are written.
    ``items_per_shard``: a plan's shard size (default: the request's).
    ``max_write_units``: write units per second per table at most (default:
    the request's; see :mod:`ddb_backup.restore.ratelimit`)."""

    storage: Storage | None = None
    deadline_seconds: float | None = None
    on_progress: ProgressCallback | None = None
    retry: RetryPolicy | None = None
    sender: BatchSender | None = None
    files_in_flight: int = DEFAULT_FILES_IN_FLIGHT
    max_batches: int | None = None
    progress_interval: float = PROGRESS_INTERVAL
    items_per_shard: int | None = None
    max_write_units: int | None = None

    @classmethod
    def of(cls, options: RestoreOptions | None, keywords: RunKeywords) -> RestoreOptions:
        """``options`` (or the defaults) with the keyword arguments given on top."""
        return dataclasses.replace(options or cls(), **keywords)


@dataclass(frozen=True, slots=True)
class RunScope:
    """What one run does: decided from the request and the state, not by the caller."""

    max_workers: int
    dry_run: bool
    clear: bool
    create_missing: bool
    dead_letter_storage: Storage
    dead_letter_root: str
    max_write_units: int | None = None  # per table, per second
