"""CPU per BatchWriteItem-sized POST: aiohttp vs pyreqwest, on asyncio's loop and uvloop.

    .venv/bin/python benchmarks/http_calls.py --calls 6000 --repeat 5

Why the restore writes through reqwest on uvloop (``ddb_backup/restore/transport.py``):
the same 25-item body POSTed ``--calls`` times, 16 at a time, to the instant
DynamoDB endpoint (its own process), each client in a fresh process; the CPU of
the client process (all threads: reqwest's runtime included) per call, the
median of ``--repeat`` runs interleaved. JSON goes to
``benchmarks/results/http_calls.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import instant_dynamodb, save, table

CONCURRENCY = 16
BODY = (
    b'{"RequestItems":{"t":['
    + b",".join([b'{"PutRequest":{"Item":{"pk":{"S":"' + b"x" * 300 + b'"}}}}'] * 25)
    + b"]}}"
)
HEADERS = {
    "X-Amz-Target": "DynamoDB_20120810.BatchWriteItem",
    "Content-Type": "application/x-amz-json-1.0",
    "Accept-Encoding": "identity",
}
CLIENTS = ("aiohttp/asyncio", "aiohttp/uvloop", "pyreqwest/asyncio", "pyreqwest/uvloop")


async def _calls(post: Callable[[], Awaitable[None]], calls: int) -> float:
    """CPU seconds of ``calls`` POSTs, ``CONCURRENCY`` at a time (after one warm-up)."""
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one() -> None:
        async with slots:
            await post()

    await one()
    start = time.process_time()
    await asyncio.gather(*(one() for _ in range(calls)))
    return time.process_time() - start


async def _aiohttp(url: str, calls: int) -> float:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post() -> None:
            async with session.post(url, data=BODY, headers=HEADERS) as resp:
                await resp.read()

        return await _calls(post, calls)


async def _pyreqwest(url: str, calls: int) -> float:
    from pyreqwest.client import ClientBuilder

    async with ClientBuilder().http1_only().max_connections(CONCURRENCY).build() as client:

        async def post() -> None:
            resp = await client.post(url).headers(HEADERS).body_bytes(BODY).build().send()
            await resp.bytes()

        return await _calls(post, calls)


def _child(name: str, url: str, calls: int) -> None:
    library, loop = name.split("/")
    work = (_aiohttp if library == "aiohttp" else _pyreqwest)(url, calls)
    if loop == "uvloop":
        import uvloop

        cpu = uvloop.run(work)
    else:
        cpu = asyncio.run(work)
    print(json.dumps({"cpu_s": cpu}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=6000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:
        _child(opts.child[0], opts.child[1], opts.calls)
        return
    runs: dict[str, list[float]] = {name: [] for name in CLIENTS}
    with instant_dynamodb() as base:
        url = base + "/"
        for _ in range(opts.repeat):
            for name in CLIENTS:
                out = subprocess.run(
                    [sys.executable, __file__, "--calls", str(opts.calls), "--child", name, url],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                cpu = json.loads(out.stdout.splitlines()[-1])["cpu_s"]
                runs[name].append(cpu / opts.calls * 1e6)
    rows: list[dict[str, Any]] = [
        {"client": name, "us_per_call": statistics.median(r), "runs": [round(x, 1) for x in r]}
        for name, r in runs.items()
    ]
    print(table(rows, [("client", "client/loop", "s"), ("us_per_call", "CPU µs per call", ".1f")]))
    path = save("http_calls", {"options": vars(opts), "rows": rows})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
