"""One vault run, as the vault function and ``ddb-backup vault-copy`` make it.

A final backup date (the newest one when none is given) is copied first
(:func:`~ddb_backup.vault.copy_date.copy_to_vault`), then the point-in-time
chains' verified windows and their records
(:func:`~ddb_backup.vault.copy_windows.copy_windows_to_vault`) within what is
left of the same deadline. The answer is the worse of the two.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

from ddb_backup.aws import AwsClients
from ddb_backup.vault.config import VaultConfig
from ddb_backup.vault.copy_date import VaultResult, copy_to_vault
from ddb_backup.vault.copy_windows import WindowsResult, copy_windows_to_vault
from ddb_backup.vault.status import latest_final_date

__all__ = ["VaultRun", "copy_date_and_windows"]


@dataclass(frozen=True, slots=True)
class VaultRun:
    """The date's copy and the windows' copy of one run."""

    date: VaultResult
    windows: WindowsResult

    @property
    def status_code(self) -> int:
        """The worse of the two answers: 500 over 202 over 200."""
        order = (200, 202, 500)
        return max(self.date.status_code, self.windows.status_code, key=order.index)

    def body(self) -> dict[str, Any]:
        """The date's body, with the windows' counts under ``windows``."""
        return self.date.body() | {"windows": self.windows.body()}


async def copy_date_and_windows(
    config: VaultConfig,
    clients: AwsClients,
    date: dt.date | None = None,
    *,
    deadline_seconds: float | None = None,
) -> VaultRun:
    """Copy ``date`` (default: the newest final one), then every verified window.

    Raises :class:`~ddb_backup.errors.BackupNotFoundError` when the date (or any
    date) has no final backup; nothing is copied then.
    """
    started = time.monotonic()
    day = date or await latest_final_date(config, clients)
    result = await copy_to_vault(config, clients, day, deadline_seconds=deadline_seconds)
    left = (
        None
        if deadline_seconds is None
        else max(0.0, deadline_seconds - (time.monotonic() - started))
    )
    windows = await copy_windows_to_vault(config, clients, deadline_seconds=left)
    return VaultRun(result, windows)
