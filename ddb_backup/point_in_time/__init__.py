"""Point-in-time recovery, restore side: plan, verify and apply a chain of windows.

* :mod:`.plan`: :func:`plan_point_in_time` (full backup + windows reaching a
  time, from the catalog and the chain record) and :func:`verify_point_in_time`.
* :mod:`.apply`: :func:`apply_window` streams one verified window into a
  :class:`~ddb_backup.writer.BatchWriter`, resumable through :class:`WindowProgress`.
* :mod:`.dead_letters`: failed puts and deletes of a window as an incremental
  export folder that ``restore-export`` applies later.
* :mod:`.export_chain`: :func:`restore_export_chain` (``restore-export
  FULL --incremental W ...``) for exports made by anyone.
* :mod:`.timeline`: :func:`build_timeline`, what can be restored, per table.
* the response fields: :mod:`ddb_backup.restore.point_answer` (part of the restore answer).
"""

from ddb_backup.point_in_time.apply import WindowCounts, WindowProgress, apply_window
from ddb_backup.point_in_time.dead_letters import ChangeDeadLetterSink
from ddb_backup.point_in_time.export_chain import (
    check_export_order,
    is_incremental_folder,
    restore_export_chain,
)
from ddb_backup.point_in_time.plan import (
    PointInTimePlan,
    plan_point_in_time,
    verify_point_in_time,
)
from ddb_backup.point_in_time.timeline import TableTimeline, build_timeline
from ddb_backup.restore.point_answer import Interval, PointInTimeAnswer, WindowAnswer

__all__ = [
    "ChangeDeadLetterSink",
    "Interval",
    "PointInTimeAnswer",
    "PointInTimePlan",
    "TableTimeline",
    "WindowAnswer",
    "WindowCounts",
    "WindowProgress",
    "apply_window",
    "build_timeline",
    "check_export_order",
    "is_incremental_folder",
    "plan_point_in_time",
    "restore_export_chain",
    "verify_point_in_time",
]
