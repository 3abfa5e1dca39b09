"""Copying the point-in-time chains' verified windows to the vault, as copy_date does a date.

For every table under ``<prefix>/incremental/`` and every chain kept there, each
window the chain's record lists (so verified; an export folder not yet in a
record is never copied) is copied with :class:`~ddb_backup.vault.copy_object.Copier`:
its export folder's objects (manifests, sidecars; checked against the source's
MD5) and the data files its record lists (in the shared ``data/`` folder;
checked against the record's MD5). The chain's own records follow once every
window object is in the vault, so the vault never holds a record of a window it
lacks. Idempotent (equal objects are skipped) and resumable across invocations.

Each chain record is read once per run: the bytes read to list the chains give the
MD5 its copy is checked against, so a bucket whose ETags are no MD5 (SSE-KMS) is
not read a second time to learn it.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

from ddb_backup.aws import AwsClients
from ddb_backup.chain import list_chains
from ddb_backup.concurrency import run_workers
from ddb_backup.errors import DdbBackupError
from ddb_backup.keys import chain_prefix, check_key_inside, incremental_prefix
from ddb_backup.log import get_logger
from ddb_backup.storage import S3Storage, content_md5
from ddb_backup.vault.config import VaultConfig
from ddb_backup.vault.copy_date import VaultFailure
from ddb_backup.vault.copy_object import (
    COPY_CONCURRENCY,
    MULTIPART_THRESHOLD,
    PART_SIZE,
    Copier,
    CopyFailed,
)
from ddb_backup.vault.verify_windows import incremental_tables

log = get_logger("ddb_backup.vault")


@dataclass(slots=True)
class WindowsResult:
    """What one invocation did to the chains' copies: which keys were copied, skipped, failed."""

    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[VaultFailure] = field(default_factory=list)
    remaining: int = 0
    windows: int = 0

    @property
    def status_code(self) -> int:
        """200 every verified window in the vault, 202 to be continued, 500 an object failed."""
        if self.failed:
            return 500
        return 202 if self.remaining else 200

    def body(self) -> dict[str, Any]:
        return {
            "windows": self.windows,
            "copied": len(self.copied),
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "conflicts": sum(f.conflict for f in self.failed),
            "remaining": self.remaining,
            "failures": [{"key": f.key, "reason": f.reason} for f in self.failed],
        }


class _Remembering(S3Storage):
    """The primary bucket, remembering the MD5 of every object it read whole."""

    def __init__(self, config: VaultConfig, clients: AwsClients) -> None:
        super().__init__(clients.s3, config.bucket, expected_owner=config.expected_bucket_owner)
        self.md5s: dict[str, str] = {}

    async def get_bytes_or_none(self, key: str) -> bytes | None:
        data = await super().get_bytes_or_none(key)
        if data is not None:
            self.md5s[key] = content_md5(data)
        return data


_Expected = dict[str, str | None]


async def _plan(
    copier: Copier, config: VaultConfig, clients: AwsClients
) -> tuple[_Expected, _Expected, int]:
    """Window objects and chain records (copied after them), each key -> the MD5 it
    must have (the window's record, the bytes read here; None: the source's), and
    how many windows there are."""
    prefix = config.prefix
    reader = _Remembering(config, clients)
    objects: _Expected = {}
    records: list[str] = []
    windows = 0
    for table in await incremental_tables(copier.primary, prefix):
        inside = incremental_prefix(prefix, table)
        for chain in await list_chains(reader, prefix, table):
            for window in chain.windows:
                windows += 1
                folder = check_key_inside(window.folder + "/", inside)
                async for obj in copier.primary.list_objects(folder):
                    objects.setdefault(obj.key, None)
                for f in window.files:
                    objects[check_key_inside(f.key, inside)] = f.md5
            base = chain_prefix(prefix, table, chain.chain_id) + "/"
            records += [o.key async for o in copier.primary.list_objects(base)]
    # Records are written once (conditional puts), so the bytes read above are what
    # is copied; one changed since fails its MD5 check and is copied next run.
    return objects, {k: reader.md5s.get(k) for k in sorted(records)}, windows


async def copy_windows_to_vault(
    config: VaultConfig,
    clients: AwsClients,
    *,
    deadline_seconds: float | None = None,
    multipart_threshold: int = MULTIPART_THRESHOLD,
    part_size: int = PART_SIZE,
    now: dt.datetime | None = None,
) -> WindowsResult:
    """Copy every chain's verified windows and records to the vault, verified and locked.

    Stops starting objects after ``deadline_seconds`` (``remaining`` > 0: invoke
    again; what is in the vault and equal is then skipped).
    """
    started = time.monotonic()
    copier = Copier(
        config,
        clients,
        now=now or dt.datetime.now(dt.UTC),
        multipart_threshold=multipart_threshold,
        part_size=part_size,
    )
    objects, records, windows = await _plan(copier, config, clients)
    result = WindowsResult(windows=windows)

    async def work(item: tuple[str, str | None]) -> None:
        key, expected = item
        if deadline_seconds is not None and time.monotonic() - started >= deadline_seconds:
            result.remaining += 1
            return
        try:
            _, copied = await copier.copy_one(key, expected)
        except CopyFailed as exc:
            result.failed.append(VaultFailure(key, exc.reason, exc.conflict))
            return
        except DdbBackupError as exc:
            result.failed.append(VaultFailure(key, str(exc)))
            return
        (result.copied if copied else result.skipped).append(key)

    await run_workers(sorted(objects.items()), work, concurrency=COPY_CONCURRENCY)
    # A chain record only once the windows it lists are all in the vault.
    if result.failed or result.remaining:
        result.remaining += len(records)
    else:
        await run_workers(list(records.items()), work, concurrency=COPY_CONCURRENCY)
    log.info(
        "vault copy of point-in-time windows",
        extra={k: v for k, v in result.body().items() if k != "failures"},
    )
    return result
