"""The write budget and the adaptive concurrency against a throttling sink.

    .venv/bin/python benchmarks/write_budget.py [--budget-items 12000 --budget 400 ...]

Two restores of a synthetic MFA export (moto S3) into ``throttling_dynamodb.py``
(a sink that accepts N write units per second and refuses the rest, as a
provisioned table does), each in a fresh process:

(a) ``max_write_units`` below the sink's capacity: the units consumed per
    second once settled (after the first 5 seconds), against the budget;
(b) no budget, ``max_workers`` 32, into a sink of limited capacity: the share
    of requests refused for capacity once settled, the capacity used, the
    items written and dead-lettered.

Both check that the sink holds every item, intact (a digest of each item's
canonical JSON against the export's). JSON goes to
``benchmarks/results/write_budget.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    BUCKET,
    TABLE,
    build_export,
    child_env,
    instant_dynamodb,
    mfa_item,
    moto_s3,
    save,
    server_stats,
    upload_export,
)
from throttling_dynamodb import content_digest, item_digest

#: Seconds left out at the start: the restore reads and verifies, then settles.
SETTLE_SECONDS = 5


def _child(args: dict[str, Any]) -> None:
    """The restore (in its own process): ``restore_export`` into the sink."""
    from ddb_backup import concurrency
    from ddb_backup.restore import restore_clients, restore_export
    from ddb_backup.storage import S3Storage

    async def main() -> dict[str, Any]:
        workers = int(args["max_workers"])
        async with restore_clients(workers) as clients:
            started = time.monotonic()
            result = await restore_export(
                S3Storage(clients.s3, BUCKET),
                args["folder"],
                TABLE,
                clients,
                max_workers=workers,
                max_write_units=args.get("max_write_units"),
            )
            wall = time.monotonic() - started
        body = result.body
        return {
            "status": result.status_code,
            "written": body.get("total_items_written"),
            "dead_lettered": body.get("total_items_failed"),
            "wall_s": wall,
        }

    print(json.dumps(concurrency.run(main())))


def run(n: int, files: int, capacity: float, workers: int, budget: int | None) -> dict[str, Any]:
    """One restore of ``n`` items into a sink of ``capacity`` units/s; its figures."""
    spec = build_export(n, files)
    with moto_s3() as s3_url:
        folder = upload_export(s3_url, spec, f"bench-budget-{n}")
        with instant_dynamodb("throttling_dynamodb.py", "--capacity", str(capacity)) as ddb_url:
            args = {"folder": folder, "max_workers": workers, "max_write_units": budget}
            proc = subprocess.run(
                [sys.executable, __file__, "--child", json.dumps(args)],
                env=child_env(s3_url, ddb_url),
                capture_output=True,
                text=True,
                check=False,
                timeout=900,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"restore failed:\n{proc.stderr[-4000:]}")
            restore: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
            stats: dict[str, Any] = server_stats(ddb_url)
    expected = content_digest([item_digest(mfa_item(i)) for i in range(n)])
    seconds = stats["per_second"]
    settled = seconds[SETTLE_SECONDS:-1]  # the last second is partial
    units = [s["units"] for s in settled]
    requests = sum(s["requests"] for s in settled)
    refused = sum(s["refused"] for s in settled)
    return {
        "items": n,
        "capacity": capacity,
        "max_workers": workers,
        "max_write_units": budget,
        **restore,
        "items_in_sink": stats["items_stored"],
        "content_ok": stats["content_sha256"] == expected,
        "settled_seconds": len(settled),
        "units_per_s_mean": sum(units) / len(units) if units else None,
        "units_per_s_min": min(units, default=None),
        "units_per_s_max": max(units, default=None),
        "requests_settled": requests,
        "refused_settled": refused,
        "refused_ratio_settled": refused / requests if requests else None,
        "requests_total": sum(s["requests"] for s in seconds),
        "refused_total": sum(s["refused"] for s in seconds),
        "units_per_second": [round(s["units"]) for s in seconds],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--budget-items", type=int, default=12_000)
    parser.add_argument("--budget", type=int, default=400, help="(a) max_write_units")
    parser.add_argument("--budget-capacity", type=float, default=1000, help="(a) sink capacity")
    parser.add_argument("--limited-items", type=int, default=12_000)
    parser.add_argument("--limited-capacity", type=float, default=300, help="(b) sink capacity")
    parser.add_argument("--max-workers", type=int, default=32)
    args = parser.parse_args()
    if args.child:
        _child(json.loads(args.child))
        return
    budgeted = run(args.budget_items, args.files, args.budget_capacity, 8, args.budget)
    limited = run(args.limited_items, args.files, args.limited_capacity, args.max_workers, None)
    path = save("write_budget", {"budget": budgeted, "limited": limited})
    b, lim = budgeted, limited
    print(
        f"(a) max_write_units {b['max_write_units']} into a sink of {b['capacity']:.0f} WCU/s, "
        f"{b['items']} items: after {SETTLE_SECONDS} s, {b['settled_seconds']} s settled at "
        f"{b['units_per_s_mean']:.1f} WCU/s mean (min {b['units_per_s_min']:.0f}, "
        f"max {b['units_per_s_max']:.0f}) = {b['units_per_s_mean'] / b['max_write_units']:.1%} "
        f"of the budget; status {b['status']}, {b['written']} written, "
        f"{b['dead_lettered']} dead-lettered, sink holds {b['items_in_sink']}, "
        f"content {'OK' if b['content_ok'] else 'DIFFERS'}, {b['wall_s']:.1f} s"
    )
    print(f"    WCU per second: {b['units_per_second']}")
    print(
        f"(b) no budget, max_workers {lim['max_workers']}, into a sink of "
        f"{lim['capacity']:.0f} WCU/s, {lim['items']} items: after {SETTLE_SECONDS} s, "
        f"{lim['refused_settled']} of {lim['requests_settled']} requests refused for capacity "
        f"({lim['refused_ratio_settled']:.1%}; overall {lim['refused_total']} of "
        f"{lim['requests_total']}), {lim['units_per_s_mean']:.1f} WCU/s mean = "
        f"{lim['units_per_s_mean'] / lim['capacity']:.1%} of the capacity; status "
        f"{lim['status']}, {lim['written']} written, {lim['dead_lettered']} dead-lettered, "
        f"sink holds {lim['items_in_sink']}, content {'OK' if lim['content_ok'] else 'DIFFERS'}, "
        f"{lim['wall_s']:.1f} s"
    )
    print(f"    WCU per second: {lim['units_per_second']}")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
