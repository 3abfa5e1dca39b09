"""Restore: verify first, then clear (if asked), then stream every item back.

One module per step, in the order a run takes them:

* :mod:`.entry`: ``run_restore``, ``plan_restore``, ``restore_export`` and the dispatch;
* :mod:`.options`: what a caller tunes (:class:`~.options.RestoreOptions`) and the run's scope;
* :mod:`.resolve`: which backup and which tables (or the checkpoint, or the shard);
* :mod:`.lease`: one restore per table at a time;
* :mod:`.prepare`: verification and target checks (:mod:`.tables`);
* :mod:`.run`: the run's context and each table's steps: :mod:`.clear`, then
  :mod:`.write` (the files into :mod:`.writer`, sent by :mod:`.sender`);
* :mod:`.budget`: the deadline, the batch budget and the progress ticker;
* :mod:`.checkpoint`: the checkpoint and resume token of a run cut short;
* :mod:`.shards`: the fan-out: plan, shards, finalize;
* :mod:`.state`: the restore's progress as data; :mod:`.answer`: the response body.
"""

from ddb_backup.restore.answer import RestoreResult
from ddb_backup.restore.entry import plan_restore, restore_clients, restore_export, run_restore
from ddb_backup.restore.resolve import new_restore_id
from ddb_backup.restore.shards import finalize_restore
from ddb_backup.restore.state import TableProgress

__all__ = [
    "RestoreResult",
    "TableProgress",
    "finalize_restore",
    "new_restore_id",
    "plan_restore",
    "restore_clients",
    "restore_export",
    "run_restore",
]
