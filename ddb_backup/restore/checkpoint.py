"""Checkpoints of a restore cut short by its deadline, and the resume token.

The checkpoint is the restore's :class:`~ddb_backup.restore.state.RestoreState`
at ``<prefix>/_restore/<restore-id>/checkpoint.json``. The token names it and
pins it: bucket, environment, prefix, backup date, round and the SHA-256 of
the checkpoint's bytes. A token is not a secret (no HMAC): it is checked
against this deployment's configuration and against the checkpoint itself,
so a token from another bucket/environment, a checkpoint edited or replaced
in S3, or a stale token (the restore moved on) are all refused.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from ddb_backup.config import RestoreConfig
from ddb_backup.errors import CheckpointError, UnsafeNameError
from ddb_backup.keys import restore_prefix
from ddb_backup.restore.state import RestoreState
from ddb_backup.storage import Storage

__all__ = [
    "ResumeToken",
    "checkpoint_key",
    "load_checkpoint",
    "load_state",
    "plan_key",
    "save_checkpoint",
    "save_state",
]

_TOKEN_VERSION = "v1"  # noqa: S105 - a format tag, not a password


class ResumeToken(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    restore_id: str
    bucket: str
    environment: str
    prefix: str
    backup_date: str | None
    shard_id: int | None = None
    round: int
    sha256: str

    def encode(self) -> str:
        raw = orjson.dumps(self.model_dump(), option=orjson.OPT_SORT_KEYS)
        return f"{_TOKEN_VERSION}.{base64.urlsafe_b64encode(raw).decode().rstrip('=')}"

    @classmethod
    def decode(cls, token: str) -> ResumeToken:
        version, _, body = token.partition(".")
        if version != _TOKEN_VERSION or not body:
            raise CheckpointError("resume_token is not a token this service issued")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return cls.model_validate(orjson.loads(raw))
        except (binascii.Error, ValueError, ValidationError) as exc:
            raise CheckpointError("resume_token is malformed") from exc


def checkpoint_key(prefix: str, restore_id: str, shard_id: int | None = None) -> str:
    """``checkpoint.json`` of a restore (or its plan), or of one of its shards."""
    base = restore_prefix(prefix, restore_id)
    if shard_id is None:
        return f"{base}/checkpoint.json"
    return f"{base}/shards/{int(shard_id):05d}/checkpoint.json"


def plan_key(prefix: str, restore_id: str) -> str:
    return f"{restore_prefix(prefix, restore_id)}/plan.json"


def _dump(state: RestoreState) -> bytes:
    return orjson.dumps(state.model_dump(mode="json"), option=orjson.OPT_INDENT_2)


async def save_state(storage: Storage, key: str, state: RestoreState) -> None:
    await storage.put_bytes(key, _dump(state))


async def load_state(
    storage: Storage, key: str, config: RestoreConfig, restore_id: str
) -> RestoreState | None:
    """A plan or shard state written by this deployment; ``None`` if absent."""
    data = await storage.get_bytes_or_none(key)
    if data is None:
        return None
    try:
        state = RestoreState.model_validate_json(data)
    except ValidationError as exc:
        raise CheckpointError(f"{key} is invalid") from exc
    _check_owner(state, config, key, restore_id)
    return state


def _check_owner(state: RestoreState, config: RestoreConfig, key: str, restore_id: str) -> None:
    mismatch = [
        name
        for name, have, want in (
            ("restore_id", state.restore_id, restore_id),
            ("bucket", state.bucket, config.bucket),
            ("environment", state.environment, config.environment),
            ("prefix", state.prefix, config.prefix),
        )
        if have != want
    ]
    if mismatch:
        raise CheckpointError(f"{key} does not belong to this restore: {mismatch}")


def _date(d: dt.date | None) -> str | None:
    return d.isoformat() if d else None


async def save_checkpoint(storage: Storage, state: RestoreState) -> str:
    """Write the checkpoint; return the token that resumes from exactly it."""
    data = _dump(state)
    await storage.put_bytes(checkpoint_key(state.prefix, state.restore_id, state.shard_id), data)
    return ResumeToken(
        restore_id=state.restore_id,
        bucket=state.bucket,
        environment=state.environment,
        prefix=state.prefix,
        backup_date=_date(state.backup_date),
        shard_id=state.shard_id,
        round=state.round,
        sha256=hashlib.sha256(data).hexdigest(),
    ).encode()


async def load_checkpoint(storage: Storage, config: RestoreConfig, token: str) -> RestoreState:
    """The checkpoint a token names, after checking it belongs to this deployment."""
    claims = ResumeToken.decode(token)
    for name, mine in (
        ("bucket", config.bucket),
        ("environment", config.environment),
        ("prefix", config.prefix),
    ):
        if getattr(claims, name) != mine:
            raise CheckpointError(
                f"resume_token belongs to another {name} ({getattr(claims, name)!r}, "
                f"this deployment uses {mine!r})"
            )
    try:
        key = checkpoint_key(config.prefix, claims.restore_id, claims.shard_id)
    except UnsafeNameError as exc:
        raise CheckpointError("resume_token names an invalid restore id") from exc
    data = await storage.get_bytes_or_none(key)
    if data is None:
        raise CheckpointError(f"no checkpoint for restore {claims.restore_id} ({key})")
    if hashlib.sha256(data).hexdigest() != claims.sha256:
        raise CheckpointError(
            f"checkpoint {key} does not match the resume_token (changed since round "
            f"{claims.round}, or the token is not the newest one)"
        )
    try:
        state = RestoreState.model_validate_json(data)
    except ValidationError as exc:
        raise CheckpointError(f"checkpoint {key} is invalid") from exc
    mismatch = [
        name
        for name, have, want in (
            ("restore_id", state.restore_id, claims.restore_id),
            ("bucket", state.bucket, config.bucket),
            ("environment", state.environment, config.environment),
            ("prefix", state.prefix, config.prefix),
            ("backup_date", _date(state.backup_date), claims.backup_date),
            ("shard_id", state.shard_id, claims.shard_id),
            ("round", state.round, claims.round),
        )
        if have != want
    ]
    if mismatch:
        raise CheckpointError(f"checkpoint {key} does not belong to this restore: {mismatch}")
    if state.finished:
        raise CheckpointError(f"restore {claims.restore_id} already finished")
    return state
