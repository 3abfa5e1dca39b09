"""Peak memory of a restore does not grow with the data file's size.

    .venv/bin/python benchmarks/memory.py --sizes 100000,1000000

Each N is one single data file of N items (1M items: ~350 MB of DynamoDB JSON,
~100 MB gzipped), restored by the project in a fresh process against the
instant DynamoDB endpoint; reported: peak RSS of that process. ``--baseline``
adds the replaced system's shape (whole file in memory) for contrast. JSON goes
to ``benchmarks/results/memory.json``.
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
    ("mode", "mode", "s"),
    ("n", "items (1 file)", ",d"),
    ("raw_mb", "file MB (raw)", ".0f"),
    ("gz_mb", "file MB (gz)", ".0f"),
    ("peak_rss_mb", "peak RSS MB", ".0f"),
    ("wall_s", "wall s", ".1f"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--max-workers", type=int, default=16)
    parser.add_argument("--baseline", action="store_true", help="also run the replaced system")
    opts = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with moto_s3() as s3_url, instant_dynamodb() as ddb_url:
        env = child_env(s3_url, ddb_url)
        for n in (int(s) for s in opts.sizes.split(",")):
            spec = build_export(n, 1)
            folder = upload_export(s3_url, spec, f"memory-{n}")
            modes = ["project", "baseline"] if opts.baseline else ["project"]
            for mode in modes:
                print(f"... N={n} {mode}", file=sys.stderr, flush=True)
                before = server_stats(ddb_url)["write_requests"]
                r = run_child(mode, {"folder": folder, "max_workers": opts.max_workers}, env)
                arrived = server_stats(ddb_url)["write_requests"] - before
                if r["items"] != n or arrived != n:
                    raise RuntimeError(f"{mode}: {r['items']} read, {arrived} arrived, of {n}")
                rows.append(
                    {
                        **r,
                        "n": n,
                        "raw_mb": spec.raw_bytes / 1e6,
                        "gz_mb": spec.compressed_bytes / 1e6,
                    }
                )
    print(table(rows, COLUMNS))
    project = [r for r in rows if r["mode"] == "project"]
    summary: dict[str, Any] = {}
    if len(project) > 1:
        small, large = project[0], project[-1]
        summary["rss_growth"] = large["peak_rss_mb"] / small["peak_rss_mb"] - 1
        print(
            f"peak RSS {large['n']:,} vs {small['n']:,} items: "
            f"{summary['rss_growth'] * 100:+.1f}% for {large['n'] / small['n']:.0f}x the data"
        )
    path = save("memory", {"options": vars(opts), "rows": rows, "summary": summary})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
