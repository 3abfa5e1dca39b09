"""Shared benchmark plumbing: a synthetic MFA export, the local AWS, measured children.

* :func:`build_export` writes an AWS-shaped export (``manifest-summary.json``,
  ``manifest-files.json``, ``data/*.json.gz``) of ``n`` MFA-shaped items
  (~300 bytes of DynamoDB JSON each, binary secrets) to a local cache, once.
* :func:`moto_s3` runs a moto server in this (orchestrating) process;
  :func:`instant_dynamodb` runs ``instant_dynamodb.py`` in a subprocess.
* :func:`run_child` runs one measured restore in a fresh ``runner.py``
  process, so its CPU and peak RSS are its own and nothing carries over.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
RESULTS = BENCH / "results"
CACHE = RESULTS / "cache"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

BUCKET = "ddb-backup-bench"
TABLE = "mfa-api_bench_u2f_global"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_SESSION_TOKEN": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


# --------------------------------------------------------------------- data


def mfa_item(i: int) -> dict[str, Any]:
    """One U2F/TOTP-like item in export (wire) form; deterministic in ``i``."""
    seed = hashlib.sha256(i.to_bytes(8, "big")).digest()
    secret = seed  # 32 random-looking bytes, as a TOTP/U2F secret
    credential = hashlib.sha256(seed).digest()
    return {
        "pk": {"S": f"user#{uuid.UUID(bytes=seed[:16])}"},
        "sk": {"S": f"u2f#{i:010d}"},
        "secret": {"B": base64.b64encode(secret).decode()},
        "credential_id": {"B": base64.b64encode(credential).decode()},
        "counter": {"N": str(i % 100_000)},
        "created_at": {"S": "2026-11-28T03:00:00.000Z"},
        "label": {"S": f"YubiKey 5 NFC #{i % 7}"},
        "enabled": {"BOOL": i % 11 != 0},
    }


@dataclass(frozen=True)
class DataFileSpec:
    key: str  # relative to the export folder
    path: str  # local file
    items: int
    md5: str
    size: int


@dataclass(frozen=True)
class ExportSpec:
    n: int
    files: list[DataFileSpec]
    folder: Path
    raw_bytes: int

    @property
    def compressed_bytes(self) -> int:
        return sum(f.size for f in self.files)


def build_export(n: int, files: int) -> ExportSpec:
    """Write (or reuse) an export of ``n`` items in ``files`` data files."""
    folder = CACHE / f"export-{n}-{files}"
    meta = folder / "spec.json"
    if meta.exists():
        raw = json.loads(meta.read_text())
        return ExportSpec(
            n=raw["n"],
            files=[DataFileSpec(**f) for f in raw["files"]],
            folder=folder,
            raw_bytes=raw["raw_bytes"],
        )
    (folder / "data").mkdir(parents=True, exist_ok=True)
    specs: list[DataFileSpec] = []
    raw_bytes = 0
    per_file = [n // files + (1 if k < n % files else 0) for k in range(files)]
    start = 0
    for k, count in enumerate(per_file):
        key = f"data/{hashlib.md5(f'{n}-{k}'.encode()).hexdigest()[:26]}.json.gz"
        path = folder / key
        md5 = hashlib.md5()
        # AWS writes plain gzip at the default level.
        with (
            open(path, "wb") as raw_out,
            gzip.GzipFile(fileobj=_Tee(raw_out, md5), mode="wb", mtime=0) as gz,
        ):
            block: list[bytes] = []
            for i in range(start, start + count):
                block.append(orjson.dumps({"Item": mfa_item(i)}))
                if len(block) == 4096:
                    data = b"\n".join(block) + b"\n"
                    raw_bytes += len(data)
                    gz.write(data)
                    block = []
            if block:
                data = b"\n".join(block) + b"\n"
                raw_bytes += len(data)
                gz.write(data)
        start += count
        specs.append(
            DataFileSpec(
                key=key,
                path=str(path),
                items=count,
                md5=base64.b64encode(md5.digest()).decode(),
                size=path.stat().st_size,
            )
        )
    spec = ExportSpec(n=n, files=specs, folder=folder, raw_bytes=raw_bytes)
    meta.write_text(
        json.dumps({"n": n, "files": [asdict(f) for f in specs], "raw_bytes": raw_bytes})
    )
    return spec


class _Tee:
    def __init__(self, out: Any, md5: Any) -> None:
        self._out, self._md5 = out, md5

    def write(self, data: bytes) -> int:
        self._md5.update(data)
        return int(self._out.write(data))

    def flush(self) -> None:
        self._out.flush()


def upload_export(endpoint: str, spec: ExportSpec, prefix: str) -> str:
    """Put the export into the moto bucket under ``prefix``; returns the folder key."""
    import boto3
    from boto3.s3.transfer import TransferConfig

    s3 = boto3.client("s3", endpoint_url=endpoint, **_boto_credentials())
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=BUCKET)
    export_id = f"01700000000000-{spec.n:08x}"
    folder = f"{prefix}/AWSDynamoDB/{export_id}"
    config = TransferConfig(multipart_threshold=1 << 40)  # one PUT per file, as moto likes
    for f in spec.files:
        s3.upload_file(f.path, BUCKET, f"{folder}/{f.key}", Config=config)
    entries = b"".join(
        orjson.dumps(
            {
                "itemCount": f.items,
                "md5Checksum": f.md5,
                "etag": hashlib.md5(f.md5.encode()).hexdigest() + "-1",
                "dataFileS3Key": f"{folder}/{f.key}",
            }
        )
        + b"\n"
        for f in spec.files
    )
    table_arn = f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}"
    summary = orjson.dumps(
        {
            "version": "2020-06-30",
            "exportArn": f"{table_arn}/export/{export_id}",
            "startTime": "2026-11-28T03:00:00.000Z",
            "endTime": "2026-11-28T03:05:00.000Z",
            "tableArn": table_arn,
            "tableId": str(uuid.uuid4()),
            "exportTime": "2026-11-28T03:00:00.000Z",
            "s3Bucket": BUCKET,
            "s3Prefix": prefix,
            "s3SseAlgorithm": "AES256",
            "s3SseKmsKeyId": None,
            "manifestFilesS3Key": f"{folder}/manifest-files.json",
            "billedSizeBytes": spec.compressed_bytes,
            "itemCount": spec.n,
            "outputFormat": "DYNAMODB_JSON",
        }
    )
    s3.put_object(Bucket=BUCKET, Key=f"{folder}/manifest-files.json", Body=entries)
    s3.put_object(Bucket=BUCKET, Key=f"{folder}/manifest-summary.json", Body=summary)
    s3.put_object(Bucket=BUCKET, Key=f"{folder}/_started", Body=b"")
    return folder


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "aws_session_token": CREDENTIALS["AWS_SESSION_TOKEN"],
        "region_name": CREDENTIALS["AWS_REGION"],
    }


# ------------------------------------------------------------- local AWS


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """A moto server (S3) in this process; yields its URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@contextlib.contextmanager
def instant_dynamodb(
    script: str = "instant_dynamodb.py", *args: str, env: dict[str, str] | None = None
) -> Iterator[str]:
    """The instant BatchWriteItem endpoint (or another ``script`` taking the same
    flags), in its own process; yields its URL."""
    proc = subprocess.Popen(
        [sys.executable, str(BENCH / script), "--exit-with-stdin", *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.terminate()
        proc.wait(timeout=10)


def server_stats(url: str) -> dict[str, int]:
    import urllib.request

    with urllib.request.urlopen(f"{url}/stats", timeout=10) as resp:  # local only
        data: dict[str, int] = json.loads(resp.read())
        return data


# ------------------------------------------------------------ measuring


def child_env(s3_url: str, dynamodb_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(CREDENTIALS)
    env["AWS_ENDPOINT_URL_S3"] = s3_url
    env["AWS_ENDPOINT_URL_DYNAMODB"] = dynamodb_url
    env["PYTHONPATH"] = str(REPO)
    return env


def run_child(mode: str, args: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Run ``runner.py MODE ARGS`` in a fresh process; return its measurement."""
    command = [sys.executable, str(BENCH / "runner.py"), mode, json.dumps(args)]
    spy = os.environ.get("BENCH_PYSPY")  # a folder: a py-spy sampling profile per run
    if spy:
        out = Path(spy) / f"{mode}-{args.get('folder', '').replace('/', '_')}.txt"
        command = ["py-spy", "record", "-r", "400", "-f", "raw", "-o", str(out), "--", *command]
    proc = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{proc.stderr[-4000:]}")
    last = [line for line in proc.stdout.splitlines() if line.startswith("{")][-1]
    result: dict[str, Any] = json.loads(last)
    return result


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **data}, indent=2))
    return path


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    """Plain-text table; ``columns`` = (key, header, format)."""
    cells = [[h for _, h, _ in columns]]
    for r in rows:
        cells.append(
            [
                format(r[k], f) if isinstance(r.get(k), int | float) else str(r.get(k, ""))
                for k, _, f in columns
            ]
        )
    widths = [max(len(row[c]) for row in cells) for c in range(len(columns))]
    lines = ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
