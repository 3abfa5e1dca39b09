"""One incremental window's export: its run state, start and poll, verification.

The daily run's :class:`~ddb_backup.backup.exports.Exporter` does the work;
:class:`WindowExporter` only changes what is asked (``INCREMENTAL_EXPORT`` of
``[from, to)`` with ``NEW_AND_OLD_IMAGES`` and the window's own ``ClientToken``)
and how a lost start is found again (ListExports, by the window's times).
A window joins its chain only once :func:`verify_window` passed: every data
file's MD5 and line count, every line a change record inside the window, the
same table ARN and id as the chain, and the times AWS reports (DescribeExport
and ``manifest-summary.json``) equal to the window asked for.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from ddb_backup.backup.exports import Exporter
from ddb_backup.backup.state import RunStateStore, StoredRun, TableRun, fail_table
from ddb_backup.chain import Chain, ChainWindow, PlannedWindow, incremental_client_token, time_stamp
from ddb_backup.changes import OutputView
from ddb_backup.config import BackupConfig
from ddb_backup.errors import DdbBackupError, VerificationError
from ddb_backup.export import (
    ExportDescription,
    ExportRequest,
    folder_from_export_manifest,
)
from ddb_backup.incremental import INCREMENTAL_EXPORT, verify_incremental_folder
from ddb_backup.keys import incremental_exports_prefix, window_state_key
from ddb_backup.log import get_logger
from ddb_backup.manifest import TableStatus
from ddb_backup.storage import S3Storage

__all__ = [
    "IncrementalExportDescription",
    "IncrementalExportRequest",
    "IncrementalExportSpec",
    "WindowExporter",
    "WindowRun",
    "WindowState",
    "new_window_state",
    "verify_window",
    "window_store",
]

log = get_logger(__name__)


class IncrementalExportSpec(BaseModel):
    """``IncrementalExportSpecification`` as DescribeExport reports it."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    export_from_time: dt.datetime | None = Field(default=None, alias="ExportFromTime")
    export_to_time: dt.datetime | None = Field(default=None, alias="ExportToTime")
    export_view_type: str | None = Field(default=None, alias="ExportViewType")


class IncrementalExportDescription(ExportDescription):
    """DescribeExport of an incremental export: the times AWS reports are the
    ones recorded (an omitted ``ExportToTime`` means "latest available")."""

    table_id: str | None = Field(default=None, alias="TableId")
    incremental: IncrementalExportSpec | None = Field(
        default=None, alias="IncrementalExportSpecification"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class IncrementalExportRequest(ExportRequest):
    """ExportTableToPointInTime for one window ``[export_from, export_to)``.

    AWS ignores ``export_time`` (inherited) for incremental exports: pass
    ``export_to``. Started with :func:`ddb_backup.export.start_export`; the
    answer parsed with :class:`IncrementalExportDescription`.
    """

    export_from: dt.datetime
    export_to: dt.datetime
    view_type: OutputView = OutputView.NEW_AND_OLD_IMAGES

    def params(self) -> dict[str, Any]:
        # Not super(): slots=True rebuilds the class, which zero-argument super() misses.
        params = ExportRequest.params(self)
        del params["ExportTime"]
        params["ExportType"] = INCREMENTAL_EXPORT
        params["IncrementalExportSpecification"] = {
            "ExportFromTime": self.export_from,
            "ExportToTime": self.export_to,
            "ExportViewType": self.view_type.value,
        }
        return params


class WindowRun(TableRun):
    """One window's export in flight, as saved in its run state."""

    chain_id: str
    table_id: str | None = None
    export_from: dt.datetime
    export_to: dt.datetime
    reported_from: dt.datetime | None = None  # as DescribeExport reports them
    reported_to: dt.datetime | None = None
    verified: ChainWindow | None = None


class WindowState(StoredRun):
    """The run state of one window, at :func:`ddb_backup.keys.window_state_key`."""

    state_version: Literal[1] = 1
    environment: str
    bucket: str
    prefix: str
    window: WindowRun


def window_store(
    storage: S3Storage, config: BackupConfig, table: str, chain: Chain
) -> RunStateStore[WindowState]:
    """The run state of the window that extends ``chain`` from its head."""
    key = window_state_key(config.prefix, table, chain.chain_id, time_stamp(chain.head))
    head = chain.head

    def belongs(state: WindowState) -> str | None:
        w = state.window
        mine = (config.environment, config.bucket, config.prefix, table, chain.chain_id)
        there = (state.environment, state.bucket, state.prefix, w.table_name, w.chain_id)
        if there == mine and w.export_from == head:
            return None
        return f"belongs to environment {state.environment}, table {w.table_name}"

    return RunStateStore(storage, key, WindowState, belongs, what="window run state")


def new_window_state(
    config: BackupConfig,
    table: str,
    chain: Chain,
    planned: PlannedWindow,
    table_arn: str,
    now: dt.datetime,
) -> WindowState:
    return WindowState(
        environment=config.environment,
        bucket=config.bucket,
        prefix=config.prefix,
        started_at=now,
        updated_at=now,
        window=WindowRun(
            table_name=table,
            table_arn=table_arn,
            s3_prefix=incremental_exports_prefix(config.prefix, table),
            chain_id=chain.chain_id,
            table_id=chain.start.table_id,
            export_from=planned.export_from,
            export_to=planned.export_to,
        ),
    )


def _window(table: TableRun) -> WindowRun:
    assert isinstance(table, WindowRun)
    return table


def _reports(desc: ExportDescription, w: WindowRun) -> bool:
    """An export of exactly this window (ListExports finds the table's every window)."""
    spec = desc.incremental if isinstance(desc, IncrementalExportDescription) else None
    return spec is not None and (spec.export_from_time, spec.export_to_time) == (
        w.export_from,
        w.export_to,
    )


@dataclass
class WindowExporter(Exporter):
    """The daily run's exporter, for incremental windows."""

    description_model: ClassVar[type[ExportDescription]] = IncrementalExportDescription

    def request(self, table: TableRun) -> ExportRequest:
        w = _window(table)
        assert w.table_arn is not None
        planned = PlannedWindow(w.export_from, w.export_to)
        return IncrementalExportRequest(
            table=w.table_name,
            table_arn=w.table_arn,
            bucket=self.config.bucket,
            s3_prefix=w.s3_prefix,
            export_time=w.export_to,  # ignored by AWS for incremental exports
            client_token=incremental_client_token(
                self.config.bucket, self.config.prefix, w.table_name, planned
            ),
            bucket_owner=self.config.expected_bucket_owner,
            kms_key_id=self.config.kms_key_id,
            export_from=w.export_from,
            export_to=w.export_to,
        )

    def accepts(self, table: TableRun, desc: ExportDescription) -> bool:
        return _reports(desc, _window(table))

    def completed(self, table: TableRun, desc: ExportDescription) -> None:
        super().completed(table, desc)
        w = _window(table)
        if isinstance(desc, IncrementalExportDescription) and desc.incremental is not None:
            w.reported_from = desc.incremental.export_from_time
            w.reported_to = desc.incremental.export_to_time


async def verify_window(
    storage: S3Storage, w: WindowRun, *, key_types: dict[str, str], concurrency: int
) -> None:
    """COMPLETED with its chain entry once every file and line checks out, else FAILED."""
    try:
        planned = (w.export_from, w.export_to)
        if (
            None not in (w.reported_from, w.reported_to)
            and (
                w.reported_from,
                w.reported_to,
            )
            != planned
        ):
            raise VerificationError(
                f"DescribeExport reports the window [{w.reported_from}, {w.reported_to}), "
                f"not the one asked [{w.export_from.isoformat()}, {w.export_to.isoformat()})",
                key=w.export_arn or w.s3_prefix,
            )
        export_id = (w.export_arn or "").rsplit("/", 1)[-1]
        folder = w.export_folder or (
            folder_from_export_manifest(w.export_manifest, w.s3_prefix)
            or f"{w.s3_prefix}/AWSDynamoDB/{export_id}"
        )
        verified = await verify_incremental_folder(
            storage,
            folder,
            key_types=key_types,
            table_arn=w.table_arn,
            table_id=w.table_id,
            concurrency=concurrency,
        )
        reported = (verified.summary.export_from_time, verified.summary.export_to_time)
        if reported != planned:
            raise VerificationError(
                f"manifest-summary.json holds the window [{reported[0].isoformat()}, "
                f"{reported[1].isoformat()}), not [{planned[0].isoformat()}, "
                f"{planned[1].isoformat()})",
                key=f"{verified.folder}/manifest-summary.json",
            )
        if w.export_item_count is not None and w.export_item_count != verified.records:
            raise VerificationError(
                f"the data files hold {verified.records} records, DescribeExport ItemCount "
                f"says {w.export_item_count}",
                key=verified.folder,
            )
    except DdbBackupError as exc:
        fail_table(w, exc, None)
        return
    w.verified = ChainWindow.from_verified(
        w.table_name, w.chain_id, verified, verified_at=dt.datetime.now(dt.UTC)
    )
    w.export_folder = verified.folder
    w.files = verified.files
    w.item_count = verified.records
    w.status = TableStatus.COMPLETED
    w.error = None
    log.info(
        "incremental window verified",
        extra={
            "table": w.table_name,
            "window_from": w.export_from.isoformat(),
            "window_to": w.export_to.isoformat(),
            "records": verified.records,
            "puts": verified.puts,
            "deletes": verified.deletes,
        },
    )
