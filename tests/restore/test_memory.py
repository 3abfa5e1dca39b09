"""A data file larger than the memory the restore may use is restored in
bounded memory (test-sized: ~48 MB decompressed, a 10 MiB budget).

The restore runs in a subprocess (the moto server, which holds the table,
lives in this one) and measures its own peak RSS growth around
``run_restore``: the kernel's high-water mark (VmHWM) is reset once the
clients are loaded, and read afterwards. ``MEM_MODE=trace`` measures the peak
of Python allocations with ``tracemalloc`` instead.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import sys
from typing import Any

import orjson
import pytest

from ddb_backup.aws import AwsClients
from tests.support.backups import ENVIRONMENT, PREFIX, make_backup
from tests.support.data import create_table, scan_all
from tests.support.paths import ROOT

TABLE = "mfa-api_test_big_global"
ITEMS = 3000
BLOB = 12_000  # raw bytes per item; 16 KB of base64 in the file
#: "rss" (default): peak RSS growth via VmHWM; "trace": also tracemalloc's peak
#: (tracemalloc's own bookkeeping inflates RSS, so the two are not combined).
MODE = os.environ.get("MEM_MODE", "rss")
BUDGET = 10 * 1024 * 1024

SCRIPT = r"""
import asyncio, json, sys, tracemalloc
from ddb_backup.aws import aws_clients
from ddb_backup.config import RestoreConfig
from ddb_backup.events import RestoreRequest
from ddb_backup.restore import run_restore
from ddb_backup.restore.writer import RetryPolicy

def status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0

def reset_peak_rss():
    # Linux: writing 5 resets VmHWM (the peak RSS) to the current RSS.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")

async def main():
    config = RestoreConfig(bucket=sys.argv[1], environment=sys.argv[2], prefix=sys.argv[3])
    async with aws_clients() as aws:
        # Load the service models first: they are not what is measured.
        await aws.dynamodb.describe_limits()
        await aws.s3.list_buckets()
        reset_peak_rss()
        before = status_kib("VmRSS")
        if sys.argv[4] == "trace":
            tracemalloc.start()
        result = await run_restore(
            config, RestoreRequest(max_workers=2), aws,
            retry=RetryPolicy(max_attempts=5, base_delay=0.001, max_delay=0.01),
            files_in_flight=1,
        )
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    grown = status_kib("VmHWM") - before
    print(json.dumps({"status": result.status_code, "peak": peak, "rss_growth_kib": grown,
                      "written": result.body["total_items_written"]}))

asyncio.run(main())
"""


def big_items() -> list[dict[str, Any]]:
    rng = random.Random(0)
    return [
        {
            "pk": {"S": f"user-{i:06d}"},
            "sk": {"S": "device#0"},
            "secret": {"B": rng.randbytes(BLOB)},
        }
        for i in range(ITEMS)
    ]


@pytest.mark.slow
async def test_big_file_restored_in_bounded_memory(aws: AwsClients, bucket: str) -> None:
    items = big_items()
    decompressed = sum(len(base64.b64encode(it["secret"]["B"])) for it in items)
    assert decompressed > 4 * BUDGET
    await make_backup(aws.s3, bucket, PREFIX, "2026-11-27", {TABLE: items}, files=1, empty_files=0)
    await create_table(aws.dynamodb, TABLE, pitr=False)

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SCRIPT,
        bucket,
        ENVIRONMENT,
        PREFIX,
        MODE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode == 0, stderr.decode()[-3000:]
    report = orjson.loads(stdout.splitlines()[-1])
    print(f"decompressed {decompressed / 2**20:.1f} MiB, measured {report}")
    assert report["status"] == 200
    assert report["written"] == ITEMS
    if MODE == "trace":
        assert report["peak"] < BUDGET, report
    else:
        assert report["rss_growth_kib"] * 1024 < BUDGET, report
    assert len(await scan_all(aws.dynamodb, TABLE)) == ITEMS
