"""Tuning sweep: restore throughput and CPU over max_workers x files in flight.

    .venv/bin/python benchmarks/sweep.py --n 100000 --workers 4,8,16,32 --files-in-flight 1,2,4

Each cell is a project restore of the same N-item export (``--files`` data
files) in a fresh process against the instant DynamoDB endpoint, so it shows
the client-side cost and ceiling of each setting. Real DynamoDB answers in a
few milliseconds rather than ~0, so reaching the same rate there needs about
``rate x latency / 25`` batches in flight. JSON goes to
``benchmarks/results/sweep.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    build_export,
    child_env,
    instant_dynamodb,
    moto_s3,
    run_child,
    save,
    server_stats,
    table,
    upload_export,
)

COLUMNS = [
    ("max_workers", "max_workers", "d"),
    ("files_in_flight", "files in flight", "d"),
    ("items_per_s", "wall items/s", ",.0f"),
    ("cpu_s_per_m", "CPU s / 1M items", ".1f"),
    ("peak_rss_mb", "peak RSS MB", ".0f"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--workers", default="4,8,16,32")
    parser.add_argument("--files-in-flight", default="1,2,4")
    parser.add_argument("--mode", default="project")
    opts = parser.parse_args()
    rows: list[dict[str, Any]] = []
    spec = build_export(opts.n, opts.files)
    with moto_s3() as s3_url, instant_dynamodb() as ddb_url:
        env = child_env(s3_url, ddb_url)
        folder = upload_export(s3_url, spec, f"sweep-{opts.n}")
        for fif in (int(x) for x in opts.files_in_flight.split(",")):
            for workers in (int(x) for x in opts.workers.split(",")):
                print(f"... workers={workers} files_in_flight={fif}", file=sys.stderr, flush=True)
                before = server_stats(ddb_url)["write_requests"]
                args = {"folder": folder, "max_workers": workers, "files_in_flight": fif}
                r = run_child(opts.mode, args, env)
                arrived = server_stats(ddb_url)["write_requests"] - before
                if r["items"] != opts.n or arrived != opts.n:
                    raise RuntimeError(f"{r['items']} read, {arrived} arrived, {opts.n} expected")
                r["items_per_s"] = opts.n / r["wall_s"]
                r["cpu_s_per_m"] = r["cpu_s"] / opts.n * 1e6
                rows.append(r)
    print(table(rows, COLUMNS))
    best = max(rows, key=lambda r: r["items_per_s"])
    print(
        f"fastest: max_workers={best['max_workers']} files_in_flight={best['files_in_flight']} "
        f"({best['items_per_s']:,.0f} items/s)"
    )
    path = save("sweep", {"options": vars(opts), "rows": rows})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
