"""Batch senders that misbehave on purpose (so restores end with dead letters),
and the small helpers the writer tests share."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from ddb_backup.restore.writer import BatchSender, BatchWriter, WireRequest, request_item
from tests.support.data import to_wire

__all__ = ["client_error", "poisoned", "puts", "refusing_sender", "write_all"]


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


def puts(items: list[dict[str, Any]]) -> list[WireRequest]:
    return [{"PutRequest": {"Item": to_wire(it)}} for it in items]


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": "injected"},
            "ResponseMetadata": {"HTTPStatusCode": status},  # type: ignore[typeddict-item]
        },
        "BatchWriteItem",
    )


async def write_all(writer: BatchWriter, requests: list[WireRequest]) -> list[tuple[int, int]]:
    done: list[tuple[int, int]] = []
    async with writer:
        for i in range(0, len(requests), 25):
            await writer.submit(requests[i : i + 25], lambda w, f: done.append((w, f)))
    return done
