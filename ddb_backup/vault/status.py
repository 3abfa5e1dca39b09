"""What is final in the primary and what is copied and verified in the vault."""

from __future__ import annotations

import datetime as dt

from ddb_backup.aws import AwsClients
from ddb_backup.catalog import list_backups
from ddb_backup.errors import BackupNotFoundError, DdbBackupError
from ddb_backup.log import get_logger
from ddb_backup.storage import S3Storage
from ddb_backup.vault.config import VaultConfig
from ddb_backup.vault.verify import VaultDateStatus, verify_vault_copy

log = get_logger("ddb_backup.vault")


async def vault_status(
    config: VaultConfig, clients: AwsClients, *, now: dt.datetime | None = None
) -> list[VaultDateStatus]:
    """Every final date of the primary and every date in the vault, newest first."""
    primary = S3Storage(clients.s3, config.bucket, expected_owner=config.expected_bucket_owner)
    vault = S3Storage(clients.s3, config.vault_bucket, expected_owner=config.vault_bucket_owner)
    try:
        final = {e.date for e in await list_backups(primary, config.prefix) if e.manifest}
    except DdbBackupError as exc:
        # A primary that is gone still leaves the vault to report on.
        log.warning("primary bucket not listed", extra={"error": str(exc)})
        final = set()
    in_vault = {e.date for e in await list_backups(vault, config.prefix) if e.manifest}
    out = []
    for date in sorted(final | in_vault, reverse=True):
        status = await verify_vault_copy(config, clients, date, now=now)
        status.final_in_primary = date in final
        out.append(status)
    return out


async def latest_final_date(config: VaultConfig, clients: AwsClients) -> dt.date:
    """The newest date of the primary whose manifest is final."""
    primary = S3Storage(clients.s3, config.bucket, expected_owner=config.expected_bucket_owner)
    for entry in await list_backups(primary, config.prefix):
        if entry.manifest is not None:
            return entry.date
    raise BackupNotFoundError(f"no final backup under s3://{config.bucket}/{config.prefix}/")
