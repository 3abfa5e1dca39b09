"""ddb-backup: verified, resumable backup and restore of DynamoDB tables.

The asyncio core; the Lambda handlers (``handlers/``) and the command line
(``ddb_backup.cli``) only translate between the outside world and it.
"""

from ddb_backup.aws import AwsClients, aws_clients
from ddb_backup.backup import BackupResult, run_backup
from ddb_backup.config import BackupConfig, RestoreConfig
from ddb_backup.errors import (
    AwsError,
    BackupNotFoundError,
    CheckpointError,
    ChecksumMismatchError,
    ConfigError,
    CorruptDataError,
    DataFileMissingError,
    DdbBackupError,
    ExportError,
    ItemCountMismatchError,
    KeySchemaMismatchError,
    ManifestError,
    PitrDisabledError,
    TableError,
    TableNotFoundError,
    UnsafeNameError,
    UnsupportedFormatError,
    VerificationError,
)
from ddb_backup.events import RestoreRequest
from ddb_backup.manifest import BackupManifest, DataFile, TableBackup, TableSchema
from ddb_backup.restore import RestoreResult, restore_export, run_restore
from ddb_backup.restore.writer import RetryPolicy
from ddb_backup.storage import LocalStorage, S3Storage, Storage

__all__ = [
    "AwsClients",
    "AwsError",
    "BackupConfig",
    "BackupManifest",
    "BackupNotFoundError",
    "BackupResult",
    "CheckpointError",
    "ChecksumMismatchError",
    "ConfigError",
    "CorruptDataError",
    "DataFile",
    "DataFileMissingError",
    "DdbBackupError",
    "ExportError",
    "ItemCountMismatchError",
    "KeySchemaMismatchError",
    "LocalStorage",
    "ManifestError",
    "PitrDisabledError",
    "RestoreConfig",
    "RestoreRequest",
    "RestoreResult",
    "RetryPolicy",
    "S3Storage",
    "Storage",
    "TableBackup",
    "TableError",
    "TableNotFoundError",
    "TableSchema",
    "UnsafeNameError",
    "UnsupportedFormatError",
    "VerificationError",
    "aws_clients",
    "restore_export",
    "run_backup",
    "run_restore",
]

__version__ = "0.1.0"
