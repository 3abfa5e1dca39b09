"""The whole cycle on an embedded local AWS: backup -> loss -> restore -> compare.

Starts its own moto server on loopback, points the standard AWS settings at
it, creates sample MFA tables, and drives the two Lambda handlers exactly as
Lambda would (event, context, environment). Exits non-zero unless the
restored tables are item-for-item identical to the originals.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import time
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

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


def show(title: str, response: dict[str, Any]) -> None:
    print(f"\n=== {title}: statusCode {response['statusCode']} ===")
    print(json.dumps(response["body"], indent=2, default=str))


def main() -> int:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
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

        backup = backup_handler.handler({}, Context())
        show("backup", backup)
        if backup["statusCode"] != 200:
            return 1
        manifest_key = backup["body"]["manifest_s3_key"]
        manifest = boto3.client("s3").get_object(Bucket=BUCKET, Key=manifest_key)["Body"].read()
        print(f"\n=== manifest s3://{BUCKET}/{manifest_key} ===")
        print(manifest.decode())

        # The bad day: items deleted, others overwritten, junk added.
        for name, items in originals.items():
            for item in items[::4]:
                ddb.delete_item(TableName=name, Key={"pk": item["pk"], "sk": item["sk"]})
            for item in items[1::4]:
                ddb.put_item(TableName=name, Item={**item, "secret": {"B": b"overwritten"}})
            ddb.put_item(TableName=name, Item={"pk": {"S": "intruder"}, "sk": {"S": "x"}})
        print(
            "\nSimulated loss: a quarter of the items deleted, a quarter overwritten, junk added."
        )

        restore = restore_handler.handler(
            {"backup_date": "latest", "clear_existing_data": True, "max_workers": 8}, Context()
        )
        show("restore", restore)

        verdicts = {
            name: canonical(scan(ddb, name)) == canonical(items)
            for name, items in originals.items()
        }
        print("\n=== verdict ===")
        for name, same in verdicts.items():
            print(f"{name}: {'IDENTICAL to the original' if same else 'DIFFERENT'}")
        ok = restore["statusCode"] == 200 and all(verdicts.values())
        print("RESULT:", "every table restored item for item" if ok else "FAILED")
        return 0 if ok else 1
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
