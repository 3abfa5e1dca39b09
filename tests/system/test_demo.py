"""`make demo` is one of the two commands: it must run from a clean environment
and end with every table identical, printing a short account."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT


def test_demo_restores_every_table_item_for_item_and_keeps_its_output_short(
    tmp_path: Path,
) -> None:
    # The demo starts its own moto server: no AWS setting may leak in from the suite.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "demo" / "demo.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines.count("RESULT: every table restored item for item") == 1
    assert sum("IDENTICAL to the original" in line for line in lines) == 3
    # The point-in-time act: the bad write undone by a restore to the boundary before it.
    assert any(line.startswith("restore_to ") and "statusCode 200" in line for line in lines)
    assert any("IDENTICAL to its state at" in line for line in lines)
    assert len(lines) < 40  # the account is short: logs and responses went to files
    assert '"level"' not in proc.stdout  # no JSON log line on the terminal
    responses = (tmp_path / "responses.json").read_text()
    assert '"statusCode": 200' in responses
    assert (tmp_path / "handler-logs.jsonl").read_text().count("\n") > 0
