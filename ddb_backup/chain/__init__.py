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

One module per job: :mod:`.model` (the stored records and a chain as read),
:mod:`.store` (the append-only record in S3), :mod:`.breaks` (contiguity and
what ends a chain), :mod:`.plan` (the next window and its client token),
:mod:`.resolve` (the full backup and windows a restore point applies).
"""

from ddb_backup.chain.breaks import check_contiguity, detect_break
from ddb_backup.chain.model import (
    BreakReason,
    Chain,
    ChainBreak,
    ChainProblem,
    ChainStart,
    ChainSuperseded,
    ChainWindow,
    chain_id_for,
    time_stamp,
)
from ddb_backup.chain.plan import (
    MAX_WINDOW,
    MIN_WINDOW,
    PlannedWindow,
    check_interval,
    floor_boundary,
    incremental_client_token,
    plan_next_window,
)
from ddb_backup.chain.resolve import (
    FullBackupPoint,
    RestorePoint,
    full_backup_points,
    resolve_restore_point,
)
from ddb_backup.chain.store import (
    ConditionalStorage,
    append_window,
    list_chains,
    load_chain,
    newest_chain,
    record_break,
    record_superseded,
    start_chain,
)

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
