"""A DynamoDB sink with a provisioned write capacity, for the write-budget benchmark.

Like ``instant_dynamodb.py`` (same HTTP, ``DescribeTable``, its own process),
but ``BatchWriteItem`` is served as a provisioned table would: a token bucket
of ``--capacity`` write units per second (at most ``--burst-seconds`` of them
saved up) pays for each request in turn, 1 unit per started KB of the item
(DynamoDB's size rules, :func:`ddb_backup.items.wire_item_size`), a delete 1.
What the bucket cannot pay for comes back in ``UnprocessedItems``; a batch of
which nothing could be paid is refused with ``ProvisionedThroughputExceededException``.
Every answer carries ``ConsumedCapacity`` (asked or not).

It keeps a digest per stored key (so a benchmark can check every item arrived
intact) and, per second since its first write, the units consumed, the
requests and the requests refused (throttled, or with items unprocessed).
``GET /stats`` answers all of it.

    python benchmarks/throttling_dynamodb.py --capacity 300 [--port 0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import math
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from instant_dynamodb import _Http, serve

from ddb_backup.items import wire_item_size

_PTEE = "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"


def item_digest(item: dict[str, Any]) -> bytes:
    """What the sink keeps of an item: a digest of its canonical JSON."""
    return hashlib.sha256(orjson.dumps(item, option=orjson.OPT_SORT_KEYS)).digest()


def content_digest(digests: list[bytes]) -> str:
    """One digest for a table's items, whatever order they were written in."""
    return hashlib.sha256(b"".join(sorted(digests))).hexdigest()


class Sink:
    capacity = 300.0
    burst_seconds = 1.0
    tokens = 0.0
    at = 0.0
    started: float | None = None
    stored: dict[bytes, bytes] = {}
    per_second: dict[int, dict[str, float]] = defaultdict(
        lambda: {"units": 0.0, "requests": 0, "refused": 0, "throttled": 0}
    )

    @classmethod
    def pay(cls, cost: float) -> bool:
        now = time.monotonic()
        saved = cls.tokens + (now - cls.at) * cls.capacity
        cls.tokens = min(cls.capacity * cls.burst_seconds, saved)
        cls.at = now
        if cls.tokens < cost:
            return False
        cls.tokens -= cost
        return True


class _Throttling(_Http):
    def answer(self, path: str, target: str, body: bytes) -> tuple[str, bytes]:
        if target.endswith(".BatchWriteItem"):
            return _batch_write(body)
        if path == "/stats":
            return "200 OK", orjson.dumps(_stats())
        return super().answer(path, target, body)


def _batch_write(body: bytes) -> tuple[str, bytes]:
    doc = orjson.loads(body)
    now = time.monotonic()
    if Sink.started is None:
        Sink.started = now
    second = Sink.per_second[int(now - Sink.started)]
    second["requests"] += 1
    unprocessed: dict[str, list[Any]] = {}
    consumed: dict[str, float] = {}
    for table, requests in doc["RequestItems"].items():
        for request in requests:
            put = request.get("PutRequest")
            cost = 1 if put is None else max(1, math.ceil(wire_item_size(put["Item"]) / 1024))
            if not Sink.pay(cost):
                unprocessed.setdefault(table, []).append(request)
                continue
            consumed[table] = consumed.get(table, 0.0) + cost
            if put is not None:
                item = put["Item"]
                key = orjson.dumps([item["pk"], item.get("sk")])
                Sink.stored[key] = item_digest(item)
    units = sum(consumed.values())
    second["units"] += units
    if unprocessed:
        second["refused"] += 1
    if not units:
        second["throttled"] += 1
        return "400 Bad Request", orjson.dumps(
            {"__type": _PTEE, "message": "The level of configured provisioned throughput..."}
        )
    answer = {
        "UnprocessedItems": unprocessed,
        "ConsumedCapacity": [{"TableName": t, "CapacityUnits": u} for t, u in consumed.items()],
    }
    return "200 OK", orjson.dumps(answer)


def _stats() -> dict[str, Any]:
    seconds = max(Sink.per_second, default=-1) + 1
    return {
        "capacity": Sink.capacity,
        "items_stored": len(Sink.stored),
        "content_sha256": content_digest(list(Sink.stored.values())),
        "per_second": [Sink.per_second[s] for s in range(seconds)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--capacity", type=float, default=300.0, help="write units per second")
    parser.add_argument("--burst-seconds", type=float, default=1.0)
    parser.add_argument("--exit-with-stdin", action="store_true", help="stop when stdin closes")
    args = parser.parse_args()
    Sink.capacity, Sink.burst_seconds = args.capacity, args.burst_seconds
    Sink.at = time.monotonic()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.exit_with_stdin, _Throttling))


if __name__ == "__main__":
    main()
