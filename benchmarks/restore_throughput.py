"""Restore throughput: the project vs the replaced system (baseline) vs the floor.

    .venv/bin/python benchmarks/restore_throughput.py --sizes 100000,300000,1000000

For each N: a synthetic MFA export of N items (``--files`` data files) in a
moto S3, restored against an instant DynamoDB endpoint (a subprocess). Each
restore runs in a fresh process; reported: wall items/s, client CPU-seconds
per million items, peak RSS, and the project's CPU as a ratio to the floor
and the baseline, each the median of ``--repeat`` (3) runs interleaved across
the modes. JSON goes to ``benchmarks/results/restore_throughput.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    TABLE,
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
    ("n", "items", "d"),
    ("mode", "mode", "s"),
    ("items_per_s", "wall items/s", ",.0f"),
    ("cpu_s_per_m", "CPU s / 1M items", ".1f"),
    ("peak_rss_mb", "peak RSS MB", ".0f"),
    ("x_floor", "CPU x floor", ".2f"),
    ("x_baseline", "CPU x baseline", ".3f"),
]


def measure(
    mode: str, args: dict[str, Any], env: dict[str, str], ddb_url: str, n: int
) -> dict[str, Any]:
    before = server_stats(ddb_url)["write_requests"]
    r = run_child(mode, args, env)
    arrived = server_stats(ddb_url)["write_requests"] - before
    if r["items"] != n or arrived != n:
        raise RuntimeError(f"{mode}: read {r['items']}, endpoint got {arrived}, expected {n}")
    r["n"] = n
    r["items_per_s"] = n / r["wall_s"]
    r["cpu_s_per_m"] = r["cpu_s"] / n * 1e6
    return r


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median CPU (its other figures are its own), with every run's CPU."""
    ordered = sorted(runs, key=lambda r: float(r["cpu_s"]))
    return {**ordered[(len(ordered) - 1) // 2], "cpu_s_runs": [r["cpu_s"] for r in runs]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100000,300000,1000000")
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--max-workers", type=int, default=16)
    parser.add_argument("--files-in-flight", type=int, default=2)
    parser.add_argument(
        "--modes",
        default="project,floor,baseline",
        help=(
            "comma list of project, backup, pipeline, floor, baseline (backup: the "
            "restore handler's path, from a daily backup; pipeline: no verify pass)"
        ),
    )
    parser.add_argument(
        "--sender",
        default="default",
        help="the project's sender: default, direct or generic",
    )
    parser.add_argument("--baseline-max", type=int, default=10**9, help="skip baseline above N")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs per mode, interleaved; each mode's median-CPU run is reported",
    )
    opts = parser.parse_args()
    sizes = [int(s) for s in opts.sizes.split(",")]
    modes = opts.modes.split(",")
    rows: list[dict[str, Any]] = []
    with moto_s3() as s3_url, instant_dynamodb() as ddb_url:
        env = child_env(s3_url, ddb_url)
        for n in sizes:
            spec = build_export(n, opts.files)
            # Under the exports prefix, as a daily backup's folder is (mode "backup").
            folder = upload_export(s3_url, spec, f"native-exports/bench-{n}/{TABLE}")
            args = {
                "folder": folder,
                "max_workers": opts.max_workers,
                "files_in_flight": opts.files_in_flight,
                "sender": opts.sender,
            }
            runs: dict[str, list[dict[str, Any]]] = {}
            for rep in range(opts.repeat):  # interleaved: a busy spell hits every mode
                for mode in modes:
                    if mode == "baseline" and n > opts.baseline_max:
                        continue
                    print(f"... N={n} {mode} run {rep + 1}", file=sys.stderr, flush=True)
                    runs.setdefault(mode, []).append(measure(mode, args, env, ddb_url, n))
            by_mode = {mode: median_run(mode_runs) for mode, mode_runs in runs.items()}
            for r in by_mode.values():
                if "floor" in by_mode:
                    r["x_floor"] = r["cpu_s"] / by_mode["floor"]["cpu_s"]
                if "baseline" in by_mode:
                    r["x_baseline"] = r["cpu_s"] / by_mode["baseline"]["cpu_s"]
                rows.append(r)
            print(table([r for r in rows if r["n"] == n], COLUMNS), flush=True)
            print(flush=True)
    walls = {r["n"]: r["wall_s"] for r in rows if r["mode"] == "project"}
    summary: dict[str, Any] = {}
    if len(walls) > 1:
        small, large = min(walls), max(walls)
        summary["wall_ratio"] = walls[large] / walls[small]
        summary["size_ratio"] = large / small
        print(
            f"wall time {large:,} vs {small:,}: x{summary['wall_ratio']:.2f} "
            f"for x{summary['size_ratio']:.0f} the items"
        )
    print(table(rows, COLUMNS))
    path = save("restore_throughput", {"options": vars(opts), "rows": rows, "summary": summary})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
