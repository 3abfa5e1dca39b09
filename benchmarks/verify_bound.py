"""What each step of verification costs, in-process, on the benchmark export.

    .venv/bin/python benchmarks/verify_bound.py --n 1000000

Verification must hash the gzip bytes (AWS's MD5), inflate them (gzip's CRC, and
the lines), split the lines, parse every line and check it against the rules. This
times each step alone over the same data files (read into memory first, so no
S3 and no event loop), with the collector off as in a tight C loop, and prints
how many MB of gzipped export per CPU-second the steps reach cumulatively: the
ceiling any verification doing them can reach on this machine. JSON goes to
``benchmarks/results/verify_bound.json``.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
from common import build_export, save, table

from ddb_backup.items import check_item_lines
from ddb_backup.stream import GzipDecoder

KEYS = (("pk", "S"), ("sk", "S"))


def cpu_of(step: Callable[[], Any], repeat: int) -> float:
    """The least CPU seconds of ``repeat`` runs of ``step``."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        step()
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    spec = build_export(opts.n, opts.files)
    gz = [Path(f.path).read_bytes() for f in spec.files]
    gz_mb = sum(map(len, gz)) / 1e6
    raw = [GzipDecoder().feed(g) for g in gz]
    lines = [line for r in raw for line in r.split(b"\n") if line]
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("MD5 of the gzip bytes", lambda: [hashlib.md5(g).digest() for g in gz]),
        ("inflate (isal, 1 MB blocks)", lambda: [GzipDecoder().feed(g) for g in gz]),
        ("split lines", lambda: [r.split(b"\n") for r in raw]),
        ("parse every line (orjson)", lambda: all(map(orjson.loads, lines))),
        (
            "check every line (schema)",
            lambda: check_item_lines(lines, key="bound", first_line_no=1, keys=KEYS),
        ),
    ]
    gc.disable()
    rows: list[dict[str, Any]] = []
    total = 0.0
    parse = 0.0
    for name, step in steps:
        cpu = cpu_of(step, opts.repeat)
        if name.startswith("parse"):
            parse = cpu  # the check includes the parse: count it once
        add = cpu - parse if name.startswith("check") else cpu
        total += add
        rows.append(
            {
                "step": name,
                "cpu_s": round(add, 3),
                "us_per_line": round(add / len(lines) * 1e6, 2),
                "cumulative_mb_per_cpu_s": round(gz_mb / total, 1),
            }
        )
    gc.enable()
    print(f"{len(lines):,} lines, {gz_mb:.1f} MB gzipped, {sum(map(len, raw)) / 1e6:.0f} MB raw")
    print(
        table(
            rows,
            [
                ("step", "step", "s"),
                ("cpu_s", "CPU s", ".3f"),
                ("us_per_line", "us / line", ".2f"),
                ("cumulative_mb_per_cpu_s", "cumulative MB gz / CPU-s", ".1f"),
            ],
        )
    )
    path = save("verify_bound", {"options": vars(opts), "rows": rows})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
