"""Starting and polling one table's export: the DynamoDB side of a run.

:class:`Exporter` works on a :class:`~ddb_backup.backup.state.TableRun` in
place (status, ARN, AWS's counts); the caller saves the state. A start whose
answer was lost stays ``STARTING`` and is looked for (ListExports) by the
next invocation before anything is started again. The incremental windows
reuse it, overriding :meth:`Exporter.request`, :meth:`Exporter.accepts`,
:attr:`Exporter.description_model` and :meth:`Exporter.completed`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import ClassVar

from ddb_backup.aws import AwsClients, is_retryable
from ddb_backup.backup.state import ProgressCallback, TableRun, fail_table
from ddb_backup.config import BackupConfig
from ddb_backup.errors import AwsError, DdbBackupError, ExportError
from ddb_backup.export import (
    ExportDescription,
    ExportRequest,
    client_token,
    describe_export,
    describe_source_table,
    find_existing_export,
    start_export,
)
from ddb_backup.log import get_logger
from ddb_backup.manifest import TableStatus

__all__ = ["MAX_POLL_ERRORS", "Exporter"]

log = get_logger(__name__)

#: Consecutive DescribeExport failures before a table is given up.
MAX_POLL_ERRORS = 5


@dataclass
class Exporter:
    """Describe, start and poll the exports of one run (the daily one by default)."""

    config: BackupConfig
    clients: AwsClients
    date: dt.date
    export_time: dt.datetime
    on_progress: ProgressCallback | None = None
    #: Tables whose start may have reached AWS without an answer: looked for first.
    unconfirmed: set[str] = field(default_factory=set)
    _poll_errors: dict[str, int] = field(default_factory=dict)
    #: How DescribeExport and ListExports answers are parsed.
    description_model: ClassVar[type[ExportDescription]] = ExportDescription

    def progress(self, table: TableRun, state: str) -> None:
        if self.on_progress is not None:
            self.on_progress(table.table_name, state)

    def fail(self, table: TableRun, exc: BaseException | str) -> None:
        fail_table(table, exc, self.on_progress)

    # -- what is started (overridden for incremental windows) -----------------

    def request(self, table: TableRun) -> ExportRequest:
        assert table.table_arn is not None
        return ExportRequest(
            table=table.table_name,
            table_arn=table.table_arn,
            bucket=self.config.bucket,
            s3_prefix=table.s3_prefix,
            export_time=self.export_time,
            client_token=client_token(
                self.config.bucket, self.config.prefix, self.date, table.table_name
            ),
            bucket_owner=self.config.expected_bucket_owner,
            kms_key_id=self.config.kms_key_id,
        )

    def accepts(self, table: TableRun, desc: ExportDescription) -> bool:
        """Whether a listed export into the table's prefix is this table's one."""
        return True

    async def find_existing(self, table: TableRun) -> ExportDescription | None:
        assert table.table_arn is not None
        return await find_existing_export(
            self.clients.dynamodb,
            table=table.table_name,
            table_arn=table.table_arn,
            bucket=self.config.bucket,
            s3_prefix=table.s3_prefix,
            model=self.description_model,
            accept=lambda desc: self.accepts(table, desc),
        )

    async def describe(self, table: TableRun) -> ExportDescription:
        assert table.export_arn is not None
        return await describe_export(
            self.clients.dynamodb,
            table.export_arn,
            table=table.table_name,
            model=self.description_model,
        )

    def completed(self, table: TableRun, desc: ExportDescription) -> None:
        """Record what AWS reports of a finished export."""
        table.export_item_count = desc.item_count
        table.billed_size_bytes = desc.billed_size_bytes
        table.export_manifest = desc.export_manifest

    # -- the steps ------------------------------------------------------------

    async def describe_table(self, table: TableRun) -> None:
        """ARN and schema of the source table (refused without PITR)."""
        try:
            source = await describe_source_table(self.clients.dynamodb, table.table_name)
        except DdbBackupError as exc:
            self.fail(table, exc)
            return
        table.table_arn = source.arn
        table.table_schema = source.schema

    async def start(self, table: TableRun) -> None:
        """Start the table's export, or find the one an earlier invocation started."""
        try:
            desc: ExportDescription | None = None
            if table.table_name in self.unconfirmed:
                desc = await self.find_existing(table)
                if desc is not None:
                    log.info(
                        "found the export an earlier invocation started",
                        extra={"table": table.table_name, "export_arn": desc.export_arn},
                    )
            if desc is None:
                desc = await start_export(self.clients.dynamodb, self.request(table))
        except DdbBackupError as exc:
            if exc.__cause__ is not None and is_retryable(exc.__cause__):
                # AWS may have accepted the call before the answer was lost: the
                # table stays STARTING and the next invocation looks for the export
                # (ListExports) before it starts one, instead of failing a table
                # whose export may be running.
                table.error = f"start not confirmed ({exc}); retried on the next invocation"
                self.unconfirmed.add(table.table_name)
                log.warning(
                    "export start not confirmed",
                    extra={"table": table.table_name, "error": str(exc)},
                )
                return
            self.fail(table, exc)
            return
        table.export_arn = desc.export_arn
        table.status = TableStatus.IN_PROGRESS
        table.error = None
        self.progress(table, "IN_PROGRESS")
        if desc.export_status == "FAILED":
            self.fail(table, f"export failed: {desc.failure}")

    async def poll(self, table: TableRun) -> None:
        """DescribeExport once: EXPORTED when AWS finished, FAILED when it gave up."""
        try:
            desc = await self.describe(table)
        except ExportError as exc:
            self.fail(table, exc)
            return
        except AwsError as exc:
            errors = self._poll_errors.get(table.table_name, 0) + 1
            self._poll_errors[table.table_name] = errors
            log.warning(
                "DescribeExport failed; will retry",
                extra={"table": table.table_name, "error": str(exc), "attempt": errors},
            )
            if errors >= MAX_POLL_ERRORS:
                self.fail(table, exc)
            return
        self._poll_errors.pop(table.table_name, None)
        if desc.export_status == "COMPLETED":
            table.status = TableStatus.EXPORTED
            self.completed(table, desc)
            log.info(
                "export completed",
                extra={
                    "table": table.table_name,
                    "export_arn": table.export_arn,
                    "item_count": desc.item_count,
                    "billed_size_bytes": desc.billed_size_bytes,
                },
            )
        elif desc.export_status == "FAILED":
            self.fail(table, f"export failed: {desc.failure}")
