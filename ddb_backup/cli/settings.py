"""Flags over environment: the CLI reads the same variables as the Lambda handlers.

A flag, when given, wins over its variable; the core still receives the
frozen configs of :mod:`ddb_backup.config`, so both edges validate alike.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiobotocore.session import AioSession

from ddb_backup.aws import AwsClients, aws_clients
from ddb_backup.config import DEFAULT_PREFIX, BackupConfig, IncrementalConfig, RestoreConfig
from ddb_backup.errors import ConfigError
from ddb_backup.keys import check_prefix
from ddb_backup.restore import restore_clients as core_restore_clients
from ddb_backup.restore.writer import RetryPolicy
from ddb_backup.storage import LocalStorage, S3Storage, Storage

__all__ = [
    "FLAG_FOR_VARIABLE",
    "Location",
    "backup_config",
    "cli_environ",
    "clients",
    "location",
    "restore_clients",
    "restore_config",
    "retry_policy",
    "storage",
]

#: Which flag stands for which environment variable (named in error hints).
FLAG_FOR_VARIABLE = {
    "BACKUP_BUCKET": "--bucket",
    "ENVIRONMENT": "--environment",
    "S3_EXPORTS_PREFIX": "--prefix",
    "BACKUP_BUCKET_OWNER": "--bucket-owner",
    "DYNAMODB_TABLES": "--tables",
    "EXPORT_KMS_KEY_ID": "--kms-key-id",
}


def cli_environ(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The process environment with every given flag written over its variable."""
    env = dict(os.environ if environ is None else environ)
    for attr, var in (
        ("bucket", "BACKUP_BUCKET"),
        ("environment", "ENVIRONMENT"),
        ("prefix", "S3_EXPORTS_PREFIX"),
        ("bucket_owner", "BACKUP_BUCKET_OWNER"),
        ("kms_key_id", "EXPORT_KMS_KEY_ID"),
    ):
        value = getattr(args, attr, None)
        if value:
            env[var] = value
    return env


def backup_config(args: argparse.Namespace) -> BackupConfig:
    return BackupConfig.from_environ(_backup_environ(args))


def incremental_config(args: argparse.Namespace) -> IncrementalConfig:
    env = _backup_environ(args)
    if getattr(args, "interval", None):
        env["INCREMENTAL_INTERVAL_MINUTES"] = args.interval
    return IncrementalConfig.from_environ(env)


def _backup_environ(args: argparse.Namespace) -> dict[str, str]:
    env = cli_environ(args)
    if getattr(args, "tables", None):
        env["DYNAMODB_TABLES"] = orjson.dumps(list(args.tables)).decode()
    return env


#: Stands in for the bucket when a restore reads a local copy and none is set:
#: the core then reads, checkpoints and dead-letters in the directory only.
LOCAL_BUCKET_PLACEHOLDER = "local-directory"


def restore_config(args: argparse.Namespace) -> RestoreConfig:
    env = cli_environ(args)
    if getattr(args, "from_dir", None) and not env.get("BACKUP_BUCKET", "").strip():
        env["BACKUP_BUCKET"] = LOCAL_BUCKET_PLACEHOLDER
    return RestoreConfig.from_environ(env)


@dataclass(frozen=True, slots=True)
class Location:
    """Where backups are read from: a bucket, or a local copy (``--from DIR``)."""

    prefix: str
    bucket: str | None
    directory: Path | None
    expected_owner: str | None = None


def location(args: argparse.Namespace) -> Location:
    """Bucket and prefix (or ``--from DIR``) for the read-only commands."""
    env = cli_environ(args)
    prefix = check_prefix(env.get("S3_EXPORTS_PREFIX") or DEFAULT_PREFIX)
    directory = getattr(args, "from_dir", None)
    if directory is not None:
        path = Path(directory)
        if not path.is_dir():
            raise ConfigError(f"--from {directory}: not a directory")
        return Location(prefix, None, path, None)
    bucket = env.get("BACKUP_BUCKET", "").strip()
    if not bucket:
        raise ConfigError("environment variable BACKUP_BUCKET is required")
    return Location(prefix, bucket, None, env.get("BACKUP_BUCKET_OWNER") or None)


def storage(loc: Location, aws: AwsClients | None) -> Storage:
    if loc.directory is not None:
        return LocalStorage(loc.directory)
    assert aws is not None
    assert loc.bucket is not None
    return S3Storage(aws.s3, loc.bucket, expected_owner=loc.expected_owner)


def _session(args: argparse.Namespace) -> AioSession:
    session = AioSession(profile=getattr(args, "profile", None) or None)
    region = getattr(args, "region", None)
    if region:
        session.set_config_variable("region", region)
    return session


def retry_policy() -> RetryPolicy | None:
    """The restore's own retry budget, from ``AWS_MAX_ATTEMPTS`` when it is set."""
    if not os.environ.get("AWS_MAX_ATTEMPTS", "").strip():
        return None
    return RetryPolicy(max_attempts=max(1, _max_attempts()))


def _max_attempts() -> int:
    # The shared client config pins retries; honour the standard variable here.
    attempts = os.environ.get("AWS_MAX_ATTEMPTS", "").strip()
    if attempts and not attempts.isdigit():
        raise ConfigError("environment variable AWS_MAX_ATTEMPTS must be a whole number")
    return int(attempts or 6)


@contextlib.asynccontextmanager
async def clients(args: argparse.Namespace) -> AsyncIterator[AwsClients]:
    """AWS clients from the standard settings, with ``--profile`` / ``--region`` on top."""
    async with aws_clients(session=_session(args), max_attempts=_max_attempts()) as aws:
        yield aws


@contextlib.asynccontextmanager
async def restore_clients(args: argparse.Namespace, max_workers: int) -> AsyncIterator[AwsClients]:
    """:func:`ddb_backup.restore.restore_clients` on the CLI's session and settings."""
    async with core_restore_clients(
        max_workers, session=_session(args), s3_max_attempts=_max_attempts()
    ) as aws:
        yield aws
