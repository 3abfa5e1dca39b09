"""Batch senders that misbehave on purpose, so restores end with dead letters."""

from __future__ import annotations

from typing import Any

from ddb_backup.restore.writer import BatchSender, WireRequest, request_item

__all__ = ["poisoned", "refusing_sender"]


def poisoned(items: list[dict[str, Any]], every: int) -> set[str]:
    """The partition keys of every ``every``-th item."""
    return {it["pk"]["S"] for i, it in enumerate(items) if i % every == 0}


def refusing_sender(real: BatchSender, poison: set[str]) -> BatchSender:
    """Never accepts poisoned items (always UnprocessedItems); writes the rest."""

    async def send(table: str, requests: list[WireRequest]) -> list[WireRequest]:
        bad = [r for r in requests if request_item(r)["pk"]["S"] in poison]
        good = [r for r in requests if request_item(r)["pk"]["S"] not in poison]
        rest = await real(table, good) if good else []
        return rest + bad

    return send
