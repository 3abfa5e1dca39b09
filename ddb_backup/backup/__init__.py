"""Backups: the daily full export of every table, and the incremental windows.

One module per job:

* :mod:`~ddb_backup.backup.run` -- the daily run (orchestration): :func:`run_backup`
* :mod:`~ddb_backup.backup.state` -- run-state models and :class:`RunStateStore`
  (load, claim with a conditional create, the STARTING lease, save)
* :mod:`~ddb_backup.backup.exports` -- start and poll one table's export
* :mod:`~ddb_backup.backup.verification` -- read a finished export back
* :mod:`~ddb_backup.backup.polling` -- the deadline and the poll loop
* :mod:`~ddb_backup.backup.answer` -- response bodies, pure functions of the state
* :mod:`~ddb_backup.backup.windows` -- the scheduled incremental round:
  :func:`run_incremental_backup`; :mod:`~ddb_backup.backup.chains` (which chain,
  breaks) and :mod:`~ddb_backup.backup.window_export` (one window's export)
"""

from ddb_backup.backup.answer import (
    BackupBody,
    BackupResult,
    IncrementalBody,
    IncrementalResult,
    TableResultBody,
    WindowTableBody,
)
from ddb_backup.backup.polling import Polling
from ddb_backup.backup.run import run_backup
from ddb_backup.backup.state import RunState, RunStateStore, TableRun
from ddb_backup.backup.windows import run_incremental_backup

__all__ = [
    "BackupBody",
    "BackupResult",
    "IncrementalBody",
    "IncrementalResult",
    "Polling",
    "RunState",
    "RunStateStore",
    "TableResultBody",
    "TableRun",
    "WindowTableBody",
    "run_backup",
    "run_incremental_backup",
]
