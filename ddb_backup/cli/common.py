"""What every command shares: exit codes, the usage error, the storage a command reads."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ddb_backup.cli import settings
from ddb_backup.cli.display import (
    Output,
)
from ddb_backup.storage import Storage

if TYPE_CHECKING:
    pass

__all__ = [
    "EXIT_BUSY",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Command",
    "UsageError",
    "with_storage",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
#: Another restore holds a target table: nothing was done; the same command can be
#: run again once that restore ends (a script may wait and retry).
EXIT_BUSY = 3


class UsageError(Exception):
    """The command was refused before it did anything (exit code 2)."""


Command = Callable[[argparse.Namespace, Output], Coroutine[Any, Any, int]]


async def with_storage(
    args: argparse.Namespace, work: Callable[[Storage, settings.Location], Awaitable[int]]
) -> int:
    """Run ``work`` on the bucket, or on ``--from DIR`` without any AWS client."""
    loc = settings.location(args)
    if loc.directory is not None:
        return await work(settings.storage(loc, None), loc)
    async with settings.clients(args) as aws:
        return await work(settings.storage(loc, aws), loc)
