"""Checking the point-in-time windows' vault copies, per table, as verify does a date.

There is no vault manifest for the windows: the vault's own chain records (copied
only once every window they list was in the vault) say which windows it holds. A
window counts as verified when its record is in the vault, every data file the
record lists is there with the record's MD5 (ETag, else read) and locked, and its
export folder's manifests are there and locked. A window the primary's records
list that the vault's do not is missing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from ddb_backup.aws import AwsClients
from ddb_backup.chain import ChainWindow, list_chains
from ddb_backup.concurrency import run_workers
from ddb_backup.errors import DdbBackupError
from ddb_backup.keys import check_prefix
from ddb_backup.log import get_logger
from ddb_backup.storage import S3Storage
from ddb_backup.vault.config import VaultConfig
from ddb_backup.vault.copy_object import (
    COPY_CONCURRENCY,
    MULTIPART_THRESHOLD,
    PART_SIZE,
    Copier,
    locked,
)

log = get_logger("ddb_backup.vault")

#: What AWS writes in every export folder; a window's copy holds both.
_FOLDER_MANIFESTS = ("manifest-summary.json", "manifest-files.json")


@dataclass(slots=True)
class VaultWindowsStatus:
    """One table: how many of its windows the vault holds, verified, and up to when."""

    table: str
    in_primary: int | None  # windows the primary's records list (None: primary not read)
    copied: int = 0  # windows the vault's records list
    verified: int = 0
    missing: int = 0  # in the primary's records, not in the vault's
    last_window_end: dt.datetime | None = None  # end of the newest verified window
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.missing and self.verified == self.copied

    def doc(self) -> dict[str, Any]:
        end = self.last_window_end
        return {
            "table": self.table,
            "windows_in_primary": self.in_primary,
            "copied": self.copied,
            "verified": self.verified,
            "missing": self.missing,
            "last_window_end": end.isoformat() if end else None,
            "problems": self.problems,
        }


async def incremental_tables(storage: S3Storage, prefix: str) -> list[str]:
    """The tables with point-in-time chains under ``<prefix>/incremental/``."""
    base = f"{check_prefix(prefix)}/incremental/"
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in await storage.list_prefixes(base))


def _window_id(w: ChainWindow) -> tuple[str, dt.datetime, dt.datetime]:
    return (w.chain_id, w.export_from_time, w.export_to_time)


async def _primary_windows(
    primary: S3Storage, prefix: str
) -> dict[str, set[tuple[str, dt.datetime, dt.datetime]]] | None:
    """Per table, the windows the primary's chain records list (None: not readable)."""
    try:
        return {
            t: {_window_id(w) for c in await list_chains(primary, prefix, t) for w in c.windows}
            for t in await incremental_tables(primary, prefix)
        }
    except DdbBackupError as exc:
        # A primary that is gone still leaves the vault to report on.
        log.warning("primary chains not read", extra={"error": str(exc)})
        return None


async def verify_vault_windows(
    config: VaultConfig, clients: AwsClients, *, now: dt.datetime | None = None
) -> list[VaultWindowsStatus]:
    """Per table of the primary or the vault: windows copied, verified, missing."""
    when = now or dt.datetime.now(dt.UTC)
    copier = Copier(
        config, clients, now=when, multipart_threshold=MULTIPART_THRESHOLD, part_size=PART_SIZE
    )
    expected = await _primary_windows(copier.primary, config.prefix)
    in_vault = await incremental_tables(copier.vault, config.prefix)
    out = []
    for table in sorted(set(expected or ()) | set(in_vault)):
        want = None if expected is None else expected.get(table, set())
        status = VaultWindowsStatus(table=table, in_primary=None if want is None else len(want))
        try:
            chains = await list_chains(copier.vault, config.prefix, table)
        except DdbBackupError as exc:
            status.problems.append(f"the vault's chain records are unreadable: {exc}")
            chains = []
        held = [w for c in chains for w in c.windows]
        status.copied = len(held)
        status.missing = len(want - {_window_id(w) for w in held}) if want is not None else 0
        good = [w for w in held if not await _check_window(copier, w, when, status.problems)]
        status.verified = len(good)
        status.last_window_end = max((w.export_to_time for w in good), default=None)
        status.problems.sort()
        out.append(status)
    return out


async def _check_window(
    copier: Copier, window: ChainWindow, when: dt.datetime, problems: list[str]
) -> bool:
    """Check one window's copy; True if a problem was found (named in ``problems``)."""
    found: list[str] = []
    folder = [o.key async for o in copier.vault.list_objects(window.folder + "/")]
    for name in _FOLDER_MANIFESTS:
        if f"{window.folder}/{name}" not in folder:
            found.append(f"{window.folder}/{name}: missing from the vault")
    md5s = dict.fromkeys(folder) | {f.key: f.md5 for f in window.files}

    async def check(item: tuple[str, str | None]) -> None:
        key, md5 = item
        head = await copier.head(copier.config.vault_bucket, key, copier._vault_owner)
        if head is None:
            found.append(f"{key}: missing from the vault")
            return
        if md5 is not None and (await copier.md5_of(copier.vault, key, head)).md5 != md5:
            found.append(f"{key}: checksum differs from the window's record")
        if not locked(head, when):
            found.append(f"{key}: not locked")

    await run_workers(sorted(md5s.items()), check, concurrency=COPY_CONCURRENCY)
    problems += found
    return bool(found)
