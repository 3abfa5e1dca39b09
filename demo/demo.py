"""The whole cycle on an embedded local AWS: backup -> loss -> restore -> compare.

Starts its own moto server on loopback, points the standard AWS settings at
it, creates sample MFA tables, and drives the two Lambda handlers exactly as
Lambda would (event, context, environment). Exits non-zero unless the
restored tables are item-for-item identical to the originals.

It prints a short account; the handlers' JSON logs and their full responses go
to ``build/demo/`` (``--verbose`` prints them too).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import boto3
from moto.server import ThreadedMotoServer

# The second act uses the tests' emulation of incremental exports (moto has none).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

ENVIRONMENT = "demo"
BUCKET = "ddb-backup-demo"
TYPES = ("u2f", "totp", "api-key")
ITEMS_PER_TABLE = 200


class Context:
    """The part of Lambda's context the handlers read."""

    def __init__(self, seconds: int = 900) -> None:
        self._deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


def table_name(kind: str) -> str:
    return f"mfa-api_{ENVIRONMENT}_{kind}_global"


def sample_items(kind: str) -> list[dict[str, Any]]:
    items = []
    for i in range(ITEMS_PER_TABLE):
        items.append(
            {
                "pk": {"S": f"user-{i:04d}"},
                "sk": {"S": f"{kind}#{i % 3}"},
                "secret": {"B": secrets.token_bytes(32)},  # the MFA secret: binary
                "counter": {"N": str(i)},
                "enabled": {"BOOL": i % 5 != 0},
                "transports": {"SS": ["usb", "nfc"]} if kind == "u2f" else {"NULL": True},
                "meta": {"M": {"created": {"S": "2026-11-01T00:00:00Z"}, "v": {"N": "2"}}},
            }
        )
    return items


def scan(ddb: Any, name: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for page in ddb.get_paginator("scan").paginate(TableName=name):
        out.extend(page["Items"])
    return out


def canonical(items: list[dict[str, Any]]) -> list[str]:
    def norm(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: norm(x) for k, x in sorted(v.items())}
        if isinstance(v, list):
            return sorted((norm(x) for x in v), key=repr)
        if isinstance(v, bytes):
            return "b64:" + v.hex()
        return v

    return sorted(json.dumps(norm(i), sort_keys=True) for i in items)


class Record:
    """Where the full story goes: a folder always, the terminal with ``--verbose``."""

    def __init__(self, folder: Path, verbose: bool) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.verbose = verbose
        self.logs: TextIO = (folder / "handler-logs.jsonl").open("w")
        self.responses: dict[str, Any] = {}

    @contextlib.contextmanager
    def capture(self) -> Iterator[None]:
        """Handlers log JSON lines to stdout, as on Lambda: into the log file here."""
        if self.verbose:
            yield
            return
        with contextlib.redirect_stdout(self.logs):
            yield

    def invoke(self, title: str, handler: Callable[..., Any], event: Any) -> dict[str, Any]:
        with self.capture():
            response: dict[str, Any] = handler(event, Context())
        self.responses[title] = response
        if self.verbose:
            print(f"\n=== {title}: statusCode {response['statusCode']} ===")
            print(json.dumps(response["body"], indent=2, default=str))
        return response

    def close(self) -> None:
        self.logs.close()
        text = json.dumps(self.responses, indent=2, default=str)
        (self.folder / "responses.json").write_text(text + "\n")


def _snapshot(ddb: Any, name: str) -> list[str]:
    return canonical(scan(ddb, name))


def backup_line(response: dict[str, Any]) -> str:
    body = response["body"]
    return (
        f"backup {body.get('backup_date')}: statusCode {response['statusCode']}, "
        f"{body.get('successful_exports')} exports verified, "
        f"{body.get('total_items_exported')} items, manifest {body.get('manifest_s3_key')}"
    )


def restore_lines(response: dict[str, Any]) -> list[str]:
    lines = [f"restore: statusCode {response['statusCode']}"]
    for r in response["body"].get("restore_results", []):
        lines.append(
            f"  {r['table']}: {r['status']}, {r.get('items_written')} written, "
            f"{r.get('items_cleared')} cleared, {r.get('items_failed')} failed"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--verbose", action="store_true", help="print logs and full responses")
    parser.add_argument("--out", type=Path, default=Path("build/demo"), help="output folder")
    args = parser.parse_args(argv)
    record = Record(args.out, args.verbose)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    from tests.support.moto_incremental import install

    install()  # incremental exports in this process's moto (tests/support/moto_incremental.py)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "demo",
            "AWS_SECRET_ACCESS_KEY": "demo",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "BACKUP_BUCKET": BUCKET,
            "ENVIRONMENT": ENVIRONMENT,
            "DYNAMODB_TABLES": json.dumps([table_name(k) for k in TYPES]),
            "S3_EXPORTS_PREFIX": "native-exports",
        }
    )
    os.environ.pop("AWS_PROFILE", None)
    # Imported after the environment is set, as Lambda would.
    from handlers import backup as backup_handler
    from handlers import restore as restore_handler

    try:
        ddb = boto3.client("dynamodb")
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        originals: dict[str, list[dict[str, Any]]] = {}
        for kind in TYPES:
            name = table_name(kind)
            ddb.create_table(
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
            ddb.update_continuous_backups(
                TableName=name,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            )
            for item in sample_items(kind):
                ddb.put_item(TableName=name, Item=item)
            originals[name] = scan(ddb, name)
        print(f"Created {len(TYPES)} tables with {ITEMS_PER_TABLE} items each.")

        backup = record.invoke("backup", backup_handler.handler, {})
        print(backup_line(backup))
        if backup["statusCode"] != 200:
            return 1

        # The bad day: items deleted, others overwritten, junk added.
        for name, items in originals.items():
            for item in items[::4]:
                ddb.delete_item(TableName=name, Key={"pk": item["pk"], "sk": item["sk"]})
            for item in items[1::4]:
                ddb.put_item(TableName=name, Item={**item, "secret": {"B": b"overwritten"}})
            ddb.put_item(TableName=name, Item={"pk": {"S": "intruder"}, "sk": {"S": "x"}})
        print("Simulated loss: a quarter of the items deleted, a quarter overwritten, junk added.")

        restore = record.invoke(
            "restore",
            restore_handler.handler,
            {"backup_date": "latest", "clear_existing_data": True, "max_workers": 8},
        )
        print("\n".join(restore_lines(restore)))

        verdicts = {
            name: canonical(scan(ddb, name)) == canonical(items)
            for name, items in originals.items()
        }
        for name, same in verdicts.items():
            print(f"{name}: {'IDENTICAL to the original' if same else 'DIFFERENT'}")
        ok = restore["statusCode"] == 200 and all(verdicts.values())

        import point_in_time

        # Its library calls log where the handlers' logging was pointed: build/demo/.
        pitr_ok = point_in_time.run(
            ddb, BUCKET, ENVIRONMENT, table_name("webauthn"), record.invoke, _snapshot
        )
        ok = ok and pitr_ok
        print("RESULT:", "every table restored item for item" if ok else "FAILED")
        print(f"(handler logs and full responses: {args.out}/)")
        return 0 if ok else 1
    finally:
        record.close()
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
