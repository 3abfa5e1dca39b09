"""One measured run, in its own process (started by the benchmark scripts).

    python benchmarks/runner.py MODE '{"folder": ..., "max_workers": 16, ...}'

Prints one JSON line: items, wall seconds, client CPU seconds (user+system of
this process, every thread included, measured around the work only, from the
moment the mode's clients exist; their creation is ``setup_cpu_s``), and
peak RSS of this process. Modes:

* ``project``  - the project's restore of anyone's export (``restore_export``:
  no captured schema, so every key is also checked for duplicates); ``"sender"``
  picks ``default`` (``writer.default_sender``), ``direct``, ``fast`` or
  ``generic``;
* ``backup``   - the restore handler's path: ``run_restore`` of a daily backup in
  the project's format (captured key schema), the same export;
* ``pipeline`` - the project's pieces: S3Storage.stream -> iter_lines ->
  parse_item_line -> batches of 25 -> BatchWriter(direct_sender);
  ``"verify": true`` first runs verify_files (as the restore does);
  ``"sender": "generic"`` uses botocore's ordinary path instead;
* ``baseline`` - written like the replaced system: boto3, a ThreadPoolExecutor,
  each data file read and decompressed whole, ``batch_write_item`` per 25;
* ``floor``    - no SDK: signed aiohttp GET, zlib, orjson, SigV4-signed POSTs;
* ``verify``   - ``ddb_backup.verify.verify_files`` over the export.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

BUCKET = "ddb-backup-bench"
TABLE = "mfa-api_bench_u2f_global"
#: The bench table's key attributes, as every line is checked against them.
KEYS = (("pk", "S"), ("sk", "S"))


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _peak_rss_mb() -> float:
    """This process's own peak RSS. ``ru_maxrss`` would not do: Linux carries the
    parent's high-water mark across fork+exec, and the parent holds moto's data."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _preload(mode: str) -> None:
    """Import everything any mode uses before measuring: imports are not the work."""
    import importlib
    import pkgutil

    import aiohttp  # noqa: F401
    import boto3  # noqa: F401
    import orjson  # noqa: F401

    if mode not in ("project", "backup", "pipeline", "verify"):
        return
    import ddb_backup

    # Modules the restore imports lazily (a Lambda pays them once per cold start).
    for module in pkgutil.walk_packages(ddb_backup.__path__, "ddb_backup."):
        if not module.name.startswith("ddb_backup.cli"):
            importlib.import_module(module.name)


_WORK_STARTED: dict[str, float] = {}


def _project_loop(main: Coroutine[Any, Any, int]) -> int:
    """The project's modes run as the handlers do (``concurrency.run``: uvloop
    where installed); ``BENCH_LOOP=asyncio`` runs them on the standard loop, to
    measure what the loop is worth. The floor and the baseline keep asyncio.run."""
    if os.environ.get("BENCH_LOOP") == "asyncio":
        return asyncio.run(main)
    from ddb_backup.concurrency import run

    return run(main)


def work_starts() -> None:
    """Called by a mode once its clients exist: what follows is the measured work.

    Client creation (botocore loads service models and endpoint rules, ~0.2 s
    of CPU) is paid once per process or Lambda cold start, not per item; it is
    reported separately as ``setup_cpu_s``.
    """
    _WORK_STARTED.setdefault("cpu", _cpu())
    _WORK_STARTED.setdefault("wall", time.perf_counter())


class _GcClock:
    """Time spent in the cyclic garbage collector, per generation (gc.callbacks)."""

    def __init__(self) -> None:
        import gc

        self.seconds = [0.0, 0.0, 0.0]
        self.counts = [0, 0, 0]
        self._started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.seconds[info["generation"]] += time.process_time() - self._started
            self.counts[info["generation"]] += 1


def _measure(mode: str, work: Callable[[], int]) -> dict[str, Any]:
    _preload(mode)
    gc_clock = _GcClock()
    cpu0, wall0 = _cpu(), time.perf_counter()
    items = work()
    wall_end, cpu_end = time.perf_counter(), _cpu()
    work_cpu0 = _WORK_STARTED.get("cpu", cpu0)
    files_cpu0 = _WORK_STARTED.get("files_cpu")
    extra = {"files_cpu_s": cpu_end - files_cpu0} if files_cpu0 is not None else {}
    return {
        **extra,
        "items": items,
        "wall_s": wall_end - _WORK_STARTED.get("wall", wall0),
        "cpu_s": cpu_end - work_cpu0,
        "setup_cpu_s": work_cpu0 - cpu0,
        "peak_rss_mb": _peak_rss_mb(),
        "gc_cpu_s": [round(x, 3) for x in gc_clock.seconds],
        "gc_collections": gc_clock.counts,
    }


# ---------------------------------------------------------------- project


def run_project(args: dict[str, Any]) -> int:
    """The project's restore: ``ddb_backup.restore.restore_export`` with the
    clients the restore handler uses (verification first, then the writes)."""
    from ddb_backup.restore import restore_clients, restore_export
    from ddb_backup.restore.sender import direct_sender
    from ddb_backup.restore.writer import BatchSender, generic_sender
    from ddb_backup.storage import S3Storage

    max_workers = int(args["max_workers"])
    # "default": the restore's own choice, as the handler makes it (reqwest where it can).
    senders: dict[str, Callable[[Any], BatchSender]] = {
        "direct": direct_sender,
        "generic": generic_sender,
    }
    choice = str(args.get("sender", "default"))

    async def main() -> int:
        async with restore_clients(max_workers) as clients:
            work_starts()
            result = await restore_export(
                S3Storage(clients.s3, BUCKET),
                args["folder"],
                TABLE,
                clients,
                max_workers=max_workers,
                files_in_flight=int(args.get("files_in_flight", 2)),
                sender=None if choice == "default" else senders[choice](clients.dynamodb),
            )
        body = result.body
        written = int(body.get("total_items_written", 0))
        if result.status_code != 200:
            raise SystemExit(f"restore answered {result.status_code}: {body}")
        return written

    return _project_loop(main())


def run_backup(args: dict[str, Any]) -> int:
    """The restore handler's path: ``run_restore`` of a daily backup in the
    project's format (a manifest with the table's captured key schema), written
    for the export before the measured work starts."""
    import datetime as dt

    from ddb_backup.config import RestoreConfig
    from ddb_backup.events import RestoreRequest
    from ddb_backup.export_folder import read_export_folder
    from ddb_backup.keys import manifest_key
    from ddb_backup.manifest import (
        BackupManifest,
        BackupStatus,
        DataFile,
        TableBackup,
        TableSchema,
        TableStatus,
    )
    from ddb_backup.restore import restore_clients, run_restore
    from ddb_backup.storage import S3Storage

    max_workers = int(args["max_workers"])
    date = dt.date(2026, 11, 28)
    config = RestoreConfig(bucket=BUCKET, environment="bench", prefix="native-exports")
    schema = TableSchema.model_validate(
        {
            "KeySchema": [
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            "AttributeDefinitions": [
                {"AttributeName": name, "AttributeType": "S"} for name in ("pk", "sk")
            ],
            "BillingMode": "PAY_PER_REQUEST",
        }
    )

    async def main() -> int:
        async with restore_clients(max_workers) as clients:
            listing = await read_export_folder(S3Storage(clients.s3, BUCKET), args["folder"])
            files = [
                DataFile(key=f.key, item_count=f.item_count or 0, md5=f.md5, size=f.size)
                for f in listing.files
            ]
            table = TableBackup(
                table_name=TABLE,
                status=TableStatus.COMPLETED,
                s3_prefix=args["folder"].split("/AWSDynamoDB/")[0],
                export_folder=args["folder"],
                item_count=sum(f.item_count for f in files),
                files=files,
                table_schema=schema,
            )
            manifest = BackupManifest(
                backup_date=date,
                environment="bench",
                bucket=BUCKET,
                prefix=config.prefix,
                status=BackupStatus.COMPLETE,
                tables=[table],
            )
            await clients.s3.put_object(
                Bucket=BUCKET,
                Key=manifest_key(config.prefix, date),
                Body=manifest.model_dump_json(by_alias=True).encode(),
            )
            work_starts()
            result = await run_restore(
                config,
                RestoreRequest(
                    backup_date=date.isoformat(), tables=[TABLE], max_workers=max_workers
                ),
                clients,
                files_in_flight=int(args.get("files_in_flight", 2)),
            )
        if result.status_code != 200:
            raise SystemExit(f"restore answered {result.status_code}: {result.body}")
        return int(result.body.get("total_items_written", 0))

    return _project_loop(main())


def run_pipeline(args: dict[str, Any]) -> int:
    from ddb_backup.aws import aws_clients
    from ddb_backup.concurrency import run_workers
    from ddb_backup.export_folder import ExpectedFile, read_export_folder
    from ddb_backup.items import check_item_line
    from ddb_backup.restore.sender import direct_sender
    from ddb_backup.restore.writer import BatchWriter, generic_sender
    from ddb_backup.storage import S3Storage
    from ddb_backup.stream import iter_lines
    from ddb_backup.verify import verify_files

    max_workers = int(args["max_workers"])
    files_in_flight = int(args.get("files_in_flight", 2))

    async def main() -> int:
        async with aws_clients(max_pool_connections=max_workers + 4, max_attempts=1) as aws:
            work_starts()
            storage = S3Storage(aws.s3, BUCKET)
            listing = await read_export_folder(storage, args["folder"])
            if args.get("verify"):
                verdicts = await verify_files(
                    storage, listing.files, concurrency=files_in_flight, keys=KEYS
                )
                bad = [v for v in verdicts if v.error]
                if bad:
                    raise SystemExit(f"verification failed: {bad[0].error}")
            if args.get("sender") == "generic":
                sender = generic_sender(aws.dynamodb)
            else:
                sender = direct_sender(aws.dynamodb)
            async with BatchWriter(TABLE, sender, max_workers=max_workers) as writer:

                async def one(f: ExpectedFile) -> int:
                    batch: list[dict[str, Any]] = []
                    n = 0
                    async for line in iter_lines(storage.stream(f.key), key=f.key):
                        n += 1
                        item = check_item_line(line, key=f.key, line_no=n, keys=KEYS)
                        batch.append({"PutRequest": {"Item": item}})
                        if len(batch) == 25:
                            await writer.submit(batch)
                            batch = []
                    if batch:
                        await writer.submit(batch)
                    return n

                counts = await run_workers(listing.files, one, concurrency=files_in_flight)
            if writer.stats.failed:
                raise SystemExit(f"{writer.stats.failed} items failed")
            return sum(counts)

    return _project_loop(main())


# ---------------------------------------------------------------- baseline


def run_baseline(args: dict[str, Any]) -> int:
    """The replaced system's shape: whole files in memory, boto3 from threads."""
    import base64
    import gzip
    from concurrent.futures import ThreadPoolExecutor

    import boto3
    from botocore.config import Config

    max_workers = int(args["max_workers"])
    config = Config(max_pool_connections=max_workers + 4, retries={"max_attempts": 3})
    s3 = boto3.client("s3", config=config)
    dynamodb = boto3.client("dynamodb", config=config)
    work_starts()
    data_keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, Prefix=f"{args['folder']}/data/"
        )
        for o in page.get("Contents", [])
    ]

    def decode(value: dict[str, Any]) -> dict[str, Any]:
        ((t, v),) = value.items()
        if t == "B":
            return {"B": base64.b64decode(v)}
        if t == "BS":
            return {"BS": [base64.b64decode(b) for b in v]}
        if t == "L":
            return {"L": [decode(x) for x in v]}
        if t == "M":
            return {"M": {k: decode(x) for k, x in v.items()}}
        return value

    def write(batch: list[dict[str, Any]]) -> None:
        pending = batch
        while pending:
            resp = dynamodb.batch_write_item(RequestItems={TABLE: pending})
            pending = resp.get("UnprocessedItems", {}).get(TABLE, [])

    total = 0
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        for key in data_keys:
            body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            text = gzip.decompress(body).decode("utf-8")
            items = []
            for line in text.splitlines():
                if line.strip():
                    doc = json.loads(line)
                    items.append({k: decode(v) for k, v in doc["Item"].items()})
            futures = [
                pool.submit(write, [{"PutRequest": {"Item": it}} for it in items[i : i + 25]])
                for i in range(0, len(items), 25)
            ]
            for fut in futures:
                fut.result()
            total += len(items)
    return total


# ---------------------------------------------------------------- floor


def run_floor(args: dict[str, Any]) -> int:
    """The irreducible work: signed GET, gunzip, orjson, signed POST; no SDK."""
    import zlib

    import aiohttp
    import orjson
    from botocore.auth import S3SigV4Auth, SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    max_workers = int(args["max_workers"])
    files_in_flight = int(args.get("files_in_flight", 2))
    creds = Credentials(
        os.environ["AWS_ACCESS_KEY_ID"],
        os.environ["AWS_SECRET_ACCESS_KEY"],
        os.environ.get("AWS_SESSION_TOKEN"),
    )
    region = os.environ["AWS_DEFAULT_REGION"]
    s3_url = os.environ["AWS_ENDPOINT_URL_S3"].rstrip("/")
    ddb_url = os.environ["AWS_ENDPOINT_URL_DYNAMODB"].rstrip("/") + "/"
    ddb_auth = SigV4Auth(creds, "dynamodb", region)
    s3_auth = S3SigV4Auth(creds, "s3", region)
    target = {
        "X-Amz-Target": "DynamoDB_20120810.BatchWriteItem",
        "Content-Type": "application/x-amz-json-1.0",
    }

    async def main() -> int:
        slots = asyncio.Semaphore(max_workers)
        tasks: set[asyncio.Task[None]] = set()
        connector = aiohttp.TCPConnector(limit=max_workers + files_in_flight)
        async with aiohttp.ClientSession(connector=connector) as http:
            work_starts()

            def signed(auth: Any, method: str, url: str, body: bytes, headers: dict[str, str]):  # type: ignore[no-untyped-def]
                req = AWSRequest(method=method, url=url, data=body, headers=headers)
                auth.add_auth(req)
                return dict(req.headers.items())

            async def post(body: bytes) -> None:
                try:
                    while True:
                        headers = signed(ddb_auth, "POST", ddb_url, body, dict(target))
                        async with http.post(ddb_url, data=body, headers=headers) as resp:
                            answer = orjson.loads(await resp.read())
                        if resp.status != 200:
                            raise RuntimeError(f"HTTP {resp.status}")
                        left = answer.get("UnprocessedItems", {}).get(TABLE)
                        if not left:
                            return
                        body = orjson.dumps({"RequestItems": {TABLE: left}})
                finally:
                    slots.release()

            async def send(batch: list[Any]) -> None:
                await slots.acquire()
                body = orjson.dumps({"RequestItems": {TABLE: batch}})
                task = asyncio.create_task(post(body))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

            async def one(key: str) -> int:
                url = f"{s3_url}/{BUCKET}/{key}"
                headers = signed(s3_auth, "GET", url, b"", {})
                inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
                rest = b""
                batch: list[Any] = []
                n = 0
                async with http.get(url, headers=headers) as resp:
                    async for chunk in resp.content.iter_chunked(256 * 1024):
                        lines = (rest + inflater.decompress(chunk)).split(b"\n")
                        rest = lines.pop()
                        for line in lines:
                            if line:
                                batch.append({"PutRequest": {"Item": orjson.loads(line)["Item"]}})
                                n += 1
                                if len(batch) == 25:
                                    await send(batch)
                                    batch = []
                tail = rest + inflater.flush()
                for line in tail.split(b"\n"):
                    if line:
                        batch.append({"PutRequest": {"Item": orjson.loads(line)["Item"]}})
                        n += 1
                if batch:
                    await send(batch)
                return n

            list_url = f"{s3_url}/{BUCKET}?list-type=2&prefix={args['folder']}/data/"
            async with http.get(list_url, headers=signed(s3_auth, "GET", list_url, b"", {})) as r:
                listing = await r.text()
            keys = [
                part.split("</Key>")[0] for part in listing.split("<Key>")[1:] if "</Key>" in part
            ]
            queue: asyncio.Queue[str] = asyncio.Queue()
            for k in keys:
                queue.put_nowait(k)
            counts: list[int] = []

            async def worker() -> None:
                while not queue.empty():
                    counts.append(await one(queue.get_nowait()))

            await asyncio.gather(*(worker() for _ in range(files_in_flight)))
            while tasks:
                await asyncio.gather(*list(tasks))
            return sum(counts)

    return asyncio.run(main())


# ---------------------------------------------------------------- verify


def run_verify(args: dict[str, Any]) -> int:
    """``verify_files`` as the restore runs it (every line parsed and checked)."""
    from ddb_backup.aws import aws_clients
    from ddb_backup.export_folder import read_export_folder
    from ddb_backup.storage import S3Storage
    from ddb_backup.verify import verify_files

    async def main() -> int:
        async with aws_clients(max_attempts=1) as aws:
            work_starts()
            storage = S3Storage(aws.s3, BUCKET)
            listing = await read_export_folder(storage, args["folder"])
            # From here on only the data files are streamed: the listing (AWS's
            # manifests, the first S3 calls) is per backup, not per megabyte.
            _WORK_STARTED.setdefault("files_cpu", _cpu())
            concurrency = int(args.get("files_in_flight", 2))
            verdicts = await verify_files(
                storage, listing.files, concurrency=concurrency, keys=KEYS
            )
            bad = [v for v in verdicts if v.error]
            if bad:
                raise SystemExit(f"verification failed: {bad[0].error}")
            return sum(v.data_file.item_count for v in verdicts if v.data_file)

    return _project_loop(main())


MODES: dict[str, Callable[[dict[str, Any]], int]] = {
    "project": run_project,
    "backup": run_backup,
    "pipeline": run_pipeline,
    "baseline": run_baseline,
    "floor": run_floor,
    "verify": run_verify,
}


def main() -> None:
    mode, raw = sys.argv[1], sys.argv[2]
    args = json.loads(raw)
    profile_to = os.environ.get("BENCH_PROFILE")  # a pstats file: where the CPU goes
    if profile_to:
        import cProfile

        profiler = cProfile.Profile()
        result = profiler.runcall(_measure, mode, lambda: MODES[mode](args))
        profiler.dump_stats(f"{profile_to}.{mode}")
    else:
        result = _measure(mode, lambda: MODES[mode](args))
    print(json.dumps({"mode": mode, **args, **result}))


if __name__ == "__main__":
    main()
