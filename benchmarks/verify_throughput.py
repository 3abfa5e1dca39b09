"""Backup verification speed: MB of compressed export data per client CPU-second.

    .venv/bin/python benchmarks/verify_throughput.py --n 300000

Runs ``ddb_backup.verify.verify_files`` (as the restore does before writing)
over a synthetic export in moto's S3, in a fresh process (moto runs in this
orchestrating process, so serving S3 is not counted); every line is parsed and
checked, as everywhere. ``CPU s`` counts everything after the
clients exist (reading AWS's manifests and the first S3 calls included);
``files CPU s`` only the streaming of the data files, the per-megabyte rate. JSON goes to
``benchmarks/results/verify_throughput.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import build_export, child_env, moto_s3, run_child, save, table, upload_export

COLUMNS = [
    ("mode", "mode", "s"),
    ("n", "items", "d"),
    ("compressed_mb", "compressed MB", ".1f"),
    ("cpu_s", "CPU s", ".2f"),
    ("mb_per_cpu_s", "MB / CPU-s", ".0f"),
    ("files_cpu_s", "files CPU s", ".2f"),
    ("mb_per_files_cpu_s", "files MB / CPU-s", ".0f"),
    ("items_per_cpu_s", "items / CPU-s", ",.0f"),
    ("peak_rss_mb", "peak RSS MB", ".0f"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=300_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--files-in-flight", type=int, default=2)
    opts = parser.parse_args()
    spec = build_export(opts.n, opts.files)
    rows: list[dict[str, Any]] = []
    with moto_s3() as s3_url:
        env = child_env(s3_url, "http://127.0.0.1:9")  # DynamoDB is not used
        folder = upload_export(s3_url, spec, f"verify-{opts.n}")
        for mode in ("every line checked",):
            args = {"folder": folder, "files_in_flight": opts.files_in_flight}
            r = run_child("verify", args, env)
            if r["items"] != opts.n:
                raise RuntimeError(f"verified {r['items']} items, expected {opts.n}")
            mb = spec.compressed_bytes / 1e6
            rows.append(
                {
                    **r,
                    "mode": mode,
                    "n": opts.n,
                    "compressed_mb": mb,
                    "mb_per_cpu_s": mb / r["cpu_s"],
                    "mb_per_files_cpu_s": mb / r["files_cpu_s"],
                    "items_per_cpu_s": opts.n / r["cpu_s"],
                }
            )
    print(table(rows, COLUMNS))
    print(f"raw/compressed: {spec.raw_bytes / spec.compressed_bytes:.2f}x")
    path = save("verify_throughput", {"options": vars(opts), "rows": rows})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
