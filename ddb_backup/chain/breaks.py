"""What ends a chain: gaps, overlaps, another table id, PITR switched off or reset (pure)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from ddb_backup.chain.model import (
    BreakReason,
    Chain,
    ChainProblem,
    ChainStart,
    ChainWindow,
)


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
