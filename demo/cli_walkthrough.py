"""The README's operator walkthrough, with real output: ``ddb-backup`` against an
embedded moto server.

Starts a moto server on loopback, points the standard AWS settings at it,
creates three sample MFA tables (PITR on, binary secrets), then runs the
installed command line as an operator would and prints every command with its
output as Markdown. Exits non-zero if a command's exit code is not the one
expected.

    .venv/bin/python demo/cli_walkthrough.py > walkthrough.md
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from moto.server import ThreadedMotoServer

BUCKET = "acme-ddb-backups"
ENVIRONMENT = "prod"
KINDS = ("u2f", "totp", "api-key")
SIZES = {"u2f": 120, "totp": 300, "api-key": 45}


def table_name(kind: str) -> str:
    return f"mfa-api_{ENVIRONMENT}_{kind}_global"


def items(kind: str, n: int) -> list[dict[str, Any]]:
    return [
        {
            "pk": {"S": f"user-{i:05d}"},
            "sk": {"S": f"{kind}#{i % 3}"},
            "secret": {"B": hashlib.sha256(f"{kind}-{i}".encode()).digest()},
            "counter": {"N": str(i)},
            "enabled": {"BOOL": i % 2 == 0},
        }
        for i in range(n)
    ]


async def setup() -> None:
    from ddb_backup.aws import aws_clients

    async with aws_clients() as aws:
        await aws.s3.create_bucket(Bucket=BUCKET)
        for kind in (*KINDS, "scratch"):
            name = table_name(kind)
            await aws.dynamodb.create_table(
                TableName=name,
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                BillingMode="PAY_PER_REQUEST",
            )
            if kind == "scratch":
                continue
            await aws.dynamodb.update_continuous_backups(
                TableName=name,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            )
            rows = items(kind, SIZES[kind])
            for i in range(0, len(rows), 25):
                await aws.dynamodb.batch_write_item(
                    RequestItems={name: [{"PutRequest": {"Item": r}} for r in rows[i : i + 25]]}
                )


def command() -> list[str]:
    script = shutil.which("ddb-backup", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "ddb_backup"]


def run(args: list[str], expect: int, env: dict[str, str], workdir: Path) -> None:
    shown = " ".join(["ddb-backup", *args]).replace(str(workdir), "/tmp/walkthrough")
    done = subprocess.run(
        [*command(), *args], env=env, capture_output=True, text=True, check=False, timeout=300
    )
    output = (done.stderr + done.stdout).replace(str(workdir), "/tmp/walkthrough")
    print(f"```console\n$ {shown}\n{output.rstrip()}\n$ echo $?\n{done.returncode}\n```\n")
    if done.returncode != expect:
        print(f"unexpected exit code {done.returncode} (expected {expect})", file=sys.stderr)
        sys.exit(1)


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_on_terminal(args: list[str], env: dict[str, str], workdir: Path) -> None:
    """Run with the terminal rendering forced; show the last frame of the bars."""
    shown = " ".join(["ddb-backup", *args]).replace(str(workdir), "/tmp/walkthrough")
    done = subprocess.run(
        [*command(), *args],
        env={**env, "DDB_BACKUP_TERMINAL": "1", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    frames = [line.rstrip() for line in _ANSI.sub("", done.stderr).replace("\r", "\n").split("\n")]
    bars = [line for line in frames if line.strip()]
    last = bars[-1:] if bars else []
    print(f"```console\n$ {shown}     # on a terminal: last frame of the bars (stderr)\n")
    print("\n".join(last) + "\n```\n")
    if done.returncode != 0:
        sys.exit(1)


def main() -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }
    )
    os.environ.pop("AWS_PROFILE", None)
    try:
        asyncio.run(setup())
        env = {
            **os.environ,
            "BACKUP_BUCKET": BUCKET,
            "ENVIRONMENT": ENVIRONMENT,
            "COLUMNS": "120",
        }
        env.pop("DDB_BACKUP_TERMINAL", None)
        tables = [table_name(k) for k in KINDS]
        totp, scratch = table_name("totp"), table_name("scratch")
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            copy = workdir / "copy"
            run(["backup", "--tables", *tables, "--poll-seconds", "1"], 0, env, workdir)
            run(["list"], 0, env, workdir)
            run(["list", "--json"], 0, env, workdir)
            run(["show", "latest"], 0, env, workdir)
            run(["verify", "latest"], 0, env, workdir)
            run(["restore", "latest", "--dry-run"], 0, env, workdir)
            run(["restore", "latest", "--tables", totp, "--clear-existing-data"], 2, env, workdir)
            mapped = ["--tables", totp, "--map", f"{totp}={scratch}"]
            run(["restore", "latest", *mapped], 0, env, workdir)
            run_on_terminal(["restore", "latest", *mapped], env, workdir)
            run(["download", "latest", str(copy)], 0, env, workdir)
            run(["download", "latest", str(copy), "--json"], 0, env, workdir)
            offline = {**env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
            offline.pop("BACKUP_BUCKET")
            run(["verify", "latest", "--from", str(copy)], 0, offline, workdir)
            run(["show", "1999-01-01"], 1, env, workdir)
            run(["verify", "yesterday"], 2, env, workdir)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
