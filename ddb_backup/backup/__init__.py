"""Backups: the daily full export of every table, and the incremental windows.

One module per job:

* :mod:`~ddb_backup.backup.run` -- the daily run (orchestration): :func:`run_backup`
* :mod:`~ddb_backup.backup.state` -- run-state models and :class:`RunStateStore`
  (load, claim with a conditional create, the STARTING lease, save)
* :mod:`~ddb_backup.backup.exports` -- start and poll one table's export
* :mod:`~ddb_backup.backup.verification` -- read a finished export back
* :mod:`~ddb_backup.backup.polling` -- the deadline and the poll loop
* :mod:`~ddb_backup.backup.answer` -- response bodies, pure functions of the state
"""

from ddb_backup.backup.answer import BackupBody, BackupResult, TableResultBody
from ddb_backup.backup.polling import Polling
from ddb_backup.backup.run import run_backup
from ddb_backup.backup.state import RunState, RunStateStore, TableRun

__all__ = [
    "BackupBody",
    "BackupResult",
    "Polling",
    "RunState",
    "RunStateStore",
    "TableResultBody",
    "TableRun",
    "run_backup",
]
