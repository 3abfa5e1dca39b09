"""Settings as frozen models. Only the edges (handlers, CLI) read the environment;
they call :meth:`BackupConfig.from_environ` / :meth:`RestoreConfig.from_environ`
with the mapping, and the core receives the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, TypeVar

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from ddb_backup.errors import ConfigError
from ddb_backup.keys import check_prefix, check_table_name

__all__ = ["BackupConfig", "IncrementalConfig", "RestoreConfig"]

C = TypeVar("C", bound="_Config")

DEFAULT_PREFIX = "native-exports"

Bucket = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")]
Environment = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]
AccountId = Annotated[str, StringConstraints(pattern=r"^\d{12}$")]


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    bucket: Bucket
    environment: Environment
    prefix: str = DEFAULT_PREFIX
    expected_bucket_owner: AccountId | None = None

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return check_prefix(v)


class BackupConfig(_Config):
    tables: tuple[str, ...] = Field(min_length=1)
    kms_key_id: str | None = None
    concurrency: int = Field(default=8, ge=1, le=64)
    verify_concurrency: int = Field(default=4, ge=1, le=64)

    @field_validator("tables")
    @classmethod
    def _tables(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for name in v:
            check_table_name(name)
        if len(set(v)) != len(v):
            raise ValueError("table names must be unique")
        return v

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> BackupConfig:
        """Build from ``BACKUP_BUCKET``, ``ENVIRONMENT``, ``DYNAMODB_TABLES`` (JSON array)..."""
        return _build(cls, _backup_fields(env))


class IncrementalConfig(BackupConfig):
    """The incremental windows' settings: the daily backup's, and how long a window is."""

    interval_minutes: int = Field(default=15, ge=15, le=1440)

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> IncrementalConfig:
        """As :meth:`BackupConfig.from_environ`, plus ``INCREMENTAL_INTERVAL_MINUTES``
        (15 to 1440, default 15)."""
        fields = _backup_fields(env)
        raw = env.get("INCREMENTAL_INTERVAL_MINUTES", "").strip()
        if raw:
            fields["interval_minutes"] = ("INCREMENTAL_INTERVAL_MINUTES", raw)
        return _build(cls, fields)


def _backup_fields(env: Mapping[str, str]) -> dict[str, tuple[str, object]]:
    raw_tables = _required(env, "DYNAMODB_TABLES")
    try:
        tables = orjson.loads(raw_tables)
    except orjson.JSONDecodeError as exc:
        raise ConfigError("DYNAMODB_TABLES is not valid JSON (expected a JSON array)") from exc
    if not isinstance(tables, list) or not all(isinstance(t, str) for t in tables):
        raise ConfigError("DYNAMODB_TABLES must be a JSON array of table names")
    return {
        "bucket": ("BACKUP_BUCKET", _required(env, "BACKUP_BUCKET")),
        "environment": ("ENVIRONMENT", _required(env, "ENVIRONMENT")),
        "tables": ("DYNAMODB_TABLES", tuple(tables)),
        "prefix": ("S3_EXPORTS_PREFIX", env.get("S3_EXPORTS_PREFIX") or DEFAULT_PREFIX),
        "kms_key_id": ("EXPORT_KMS_KEY_ID", env.get("EXPORT_KMS_KEY_ID") or None),
        "expected_bucket_owner": (
            "BACKUP_BUCKET_OWNER",
            env.get("BACKUP_BUCKET_OWNER") or None,
        ),
    }


class RestoreConfig(_Config):
    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> RestoreConfig:
        """Build from ``BACKUP_BUCKET``, ``ENVIRONMENT``, ``S3_EXPORTS_PREFIX``."""
        return _build(
            cls,
            {
                "bucket": ("BACKUP_BUCKET", _required(env, "BACKUP_BUCKET")),
                "environment": ("ENVIRONMENT", _required(env, "ENVIRONMENT")),
                "prefix": ("S3_EXPORTS_PREFIX", env.get("S3_EXPORTS_PREFIX") or DEFAULT_PREFIX),
                "expected_bucket_owner": (
                    "BACKUP_BUCKET_OWNER",
                    env.get("BACKUP_BUCKET_OWNER") or None,
                ),
            },
        )


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"environment variable {name} is required")
    return value


def _build(cls: type[C], fields: dict[str, tuple[str, object]]) -> C:
    """Validate, naming the environment variable (not the field) in the error."""
    try:
        return cls.model_validate({k: v for k, (_, v) in fields.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        var = fields.get(field, (field, None))[0]
        raise ConfigError(f"environment variable {var} is invalid: {first['msg']}") from exc
