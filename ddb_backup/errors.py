"""Every error ddb-backup raises on purpose.

Foreign errors (botocore ``ClientError``, ``zlib.error``, JSON decode errors,
pydantic ``ValidationError``) are translated where they enter the core, with
``raise ... from exc``, and carry the context an operator needs (table, S3 key,
line number) but never an attribute value.

Exception tree::

    DdbBackupError
    ├── ConfigError                  bad settings or environment variable
    ├── RequestError                 a request that cannot be served as asked (400)
    │   └── UnsafeNameError          a table name, date or key that could escape its prefix
    ├── BackupNotFoundError          no (complete) backup for a date / table
    ├── ManifestError                manifest missing, not JSON, or invalid
    ├── CheckpointError              resume token / checkpoint refused
    ├── TableError                   DynamoDB table unusable
    │   ├── PitrDisabledError        point-in-time recovery is off
    │   ├── TableNotFoundError       target table does not exist
    │   └── KeySchemaMismatchError   target keys differ from the backup's
    ├── ExportError                  an export failed or cannot be located
    ├── ChainError                   an incremental chain is broken, not contiguous, or
    │                                its record conflicts (point-in-time recovery)
    ├── VerificationError            a data file is not what the manifest says
    │   ├── DataFileMissingError
    │   ├── ChecksumMismatchError
    │   ├── ItemCountMismatchError
    │   ├── DuplicateDataFileError   a manifest lists one data file twice
    │   ├── CorruptDataError         bad gzip, a line that is not exactly one item
    │   └── DataFileChangedError     the S3 object changed since it was verified
    ├── LeaseError                   one restore per table at a time
    │   ├── LeaseHeldError           another restore holds the table (answered 409)
    │   └── LeaseLostError           this restore's lease was taken over while it ran
    ├── UnsupportedFormatError       e.g. ION exports
    ├── DrillError                   a restore drill refused a table that is not its own
    └── AwsError                     a translated botocore ClientError / connection error
"""

from __future__ import annotations

__all__ = [
    "AwsError",
    "BackupNotFoundError",
    "ChainError",
    "CheckpointError",
    "ChecksumMismatchError",
    "ConfigError",
    "CorruptDataError",
    "DataFileChangedError",
    "DataFileMissingError",
    "DdbBackupError",
    "DrillError",
    "DuplicateDataFileError",
    "ExportError",
    "ItemCountMismatchError",
    "KeySchemaMismatchError",
    "LeaseError",
    "LeaseHeldError",
    "LeaseLostError",
    "ManifestError",
    "PitrDisabledError",
    "RequestError",
    "TableError",
    "TableNotFoundError",
    "UnsafeNameError",
    "UnsupportedFormatError",
    "VerificationError",
]


class DdbBackupError(Exception):
    """Base class of every error raised on purpose by ddb-backup."""


class ConfigError(DdbBackupError):
    """A setting or environment variable is missing or malformed."""


class DrillError(DdbBackupError):
    """A restore drill refused a table: only its own scratch tables (drill prefix and
    drill tag) may be created, written or deleted by a drill."""

    def __init__(self, message: str, *, table: str) -> None:
        super().__init__(message)
        self.table = table


class RequestError(DdbBackupError, ValueError):
    """A request that cannot be served as asked (answered 400): its values conflict
    or are out of range, e.g. two tables restored into one."""


class UnsafeNameError(RequestError):
    """A name that would escape its S3 prefix (``../``, absolute, encoded tricks)."""


class BackupNotFoundError(DdbBackupError):
    """No usable backup was found."""


class ManifestError(DdbBackupError):
    """A manifest (ours, the legacy one, or AWS's) is missing or invalid."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(f"{message} (s3 key: {key})" if key else message)
        self.key = key


class CheckpointError(DdbBackupError):
    """A checkpoint or resume token does not belong to this restore."""


class TableError(DdbBackupError):
    """A DynamoDB table cannot be used as asked."""

    def __init__(self, message: str, *, table: str) -> None:
        super().__init__(message)
        self.table = table


class PitrDisabledError(TableError):
    """Point-in-time recovery must be enabled before a table can be exported."""


class TableNotFoundError(TableError):
    """The table does not exist."""


class KeySchemaMismatchError(TableError):
    """The table's key schema differs from the backup's."""


class ExportError(DdbBackupError):
    """A DynamoDB export failed, or its S3 folder cannot be found."""

    def __init__(self, message: str, *, table: str | None = None) -> None:
        super().__init__(message)
        self.table = table


class ChainError(DdbBackupError):
    """A chain of incremental windows cannot be used or extended as asked."""

    def __init__(self, message: str, *, table: str | None = None) -> None:
        super().__init__(message)
        self.table = table


class VerificationError(DdbBackupError):
    """A data file does not match what its manifest promises."""

    def __init__(self, message: str, *, key: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.reason = message


class DataFileMissingError(VerificationError):
    """A data file listed by the manifest is not in S3."""


class ChecksumMismatchError(VerificationError):
    """The MD5 of a data file differs from the manifest's."""


class ItemCountMismatchError(VerificationError):
    """A data file holds another number of items than the manifest says."""


class DuplicateDataFileError(VerificationError):
    """A manifest lists one data file more than once."""


class CorruptDataError(VerificationError):
    """A data file is not valid gzip, or a line is not a DynamoDB item."""


class DataFileChangedError(VerificationError):
    """The data file in S3 is no longer the object that was verified (its
    ETag or VersionId changed): nothing more of it is read or written."""


class LeaseError(DdbBackupError):
    """A restore could not hold its lease on a target table."""

    def __init__(self, message: str, *, table: str) -> None:
        super().__init__(message)
        self.table = table


class LeaseHeldError(LeaseError):
    """Another restore holds the lease of a target table: refused, nothing touched."""


class LeaseLostError(LeaseError):
    """Another restore took this restore's lease (it had expired) while it ran."""


class UnsupportedFormatError(DdbBackupError):
    """The export is in a format this tool refuses (checked before any write)."""


class AwsError(DdbBackupError):
    """An AWS call failed; ``code`` is AWS's error code when there is one."""

    def __init__(
        self,
        message: str,
        *,
        operation: str,
        code: str | None = None,
        table: str | None = None,
        key: str | None = None,
    ) -> None:
        where = ", ".join(f"{k}={v}" for k, v in (("table", table), ("key", key)) if v)
        super().__init__(f"{operation} failed: {message}" + (f" ({where})" if where else ""))
        self.operation = operation
        self.code = code
        self.table = table
        self.key = key
