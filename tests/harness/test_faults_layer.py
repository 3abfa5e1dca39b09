"""The fault proxy itself: every kind of fault is really seen by an aiobotocore client."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from ddb_backup.aws import aws_clients, error_code, is_retryable
from ddb_backup.errors import AwsError
from ddb_backup.storage import S3Storage
from tests.support.backups import BUCKET
from tests.support.data import (
    canonical,
    create_table,
    every_type_items,
    put_items,
    scan_all,
    to_wire,
)
from tests.support.faults import Fault, FaultProxy

TABLE = "faults-table"


def same_items(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> bool:
    # Compared in export form (binary as base64 text), which canonical() sorts cleanly.
    return canonical([to_wire(i) for i in got]) == canonical([to_wire(i) for i in want])


async def test_passes_everything_through_and_logs_it(faulty_aws: FaultProxy) -> None:
    async with aws_clients() as aws:
        await create_table(aws.dynamodb, TABLE)
        await put_items(aws.dynamodb, TABLE, every_type_items(30))
        assert len(await scan_all(aws.dynamodb, TABLE)) == 30
        await aws.s3.create_bucket(Bucket=BUCKET)
        await aws.s3.put_object(Bucket=BUCKET, Key="a/b.txt", Body=b"hello")
        got = await aws.s3.get_object(Bucket=BUCKET, Key="a/b.txt")
        async with got["Body"] as body:
            assert await body.read() == b"hello"
    ops = [(r.service, r.operation) for r in faulty_aws.requests]
    assert ("dynamodb", "CreateTable") in ops
    assert ("dynamodb", "BatchWriteItem") in ops
    assert ("s3", "CreateBucket") in ops
    assert ("s3", "PutObject") in ops
    assert ("s3", "GetObject") in ops
    assert faulty_aws.total_injected == 0


@pytest.mark.parametrize("code", ["ProvisionedThroughputExceededException", "ThrottlingException"])
async def test_throttling_is_parsed_by_botocore(faulty_aws: FaultProxy, code: str) -> None:
    async with aws_clients(max_attempts=1) as aws:
        await create_table(aws.dynamodb, TABLE)
        faulty_aws.set_faults(Fault.throttle(code=code, operation="PutItem"))
        with pytest.raises(ClientError) as info:
            await aws.dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "a"}, "sk": {"S": "b"}})
    assert error_code(info.value) == code
    assert is_retryable(info.value)
    assert faulty_aws.counts[f"throttle_{code}"] == 1
    faulty_aws.clear_faults()
    async with aws_clients() as aws:
        assert await scan_all(aws.dynamodb, TABLE) == []  # refused, so not written


async def test_botocore_retries_through_limited_throttling(
    faulty_aws: FaultProxy, fast_retries: None
) -> None:
    async with aws_clients(max_attempts=6) as aws:
        await create_table(aws.dynamodb, TABLE)
        faulty_aws.set_faults(Fault.throttle(operation="PutItem", limit=3))
        await aws.dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "a"}, "sk": {"S": "b"}})
        assert len(await scan_all(aws.dynamodb, TABLE)) == 1
    assert faulty_aws.counts["throttle_ProvisionedThroughputExceededException"] == 3
    assert len(faulty_aws.requests_for("dynamodb", "PutItem")) == 4  # 3 refused, 1 done


@pytest.mark.parametrize("fraction", [0.4, 1.0, None])
async def test_unprocessed_items_really_unprocessed(
    faulty_aws: FaultProxy, fraction: float | None
) -> None:
    items = every_type_items(25)
    async with aws_clients() as aws:
        await create_table(aws.dynamodb, TABLE)
        faulty_aws.set_faults(Fault.unprocessed(fraction=fraction))
        resp = await aws.dynamodb.batch_write_item(
            RequestItems={TABLE: [{"PutRequest": {"Item": it}} for it in items]}
        )
        held = resp["UnprocessedItems"].get(TABLE, [])
        faulty_aws.clear_faults()
        stored = await scan_all(aws.dynamodb, TABLE)
        if fraction is not None:
            assert len(held) == round(25 * fraction)
        assert 1 <= len(held) <= 25
        held_keys = {it["PutRequest"]["Item"]["pk"]["S"] for it in held}
        stored_keys = {it["pk"]["S"] for it in stored}
        # Exactly the complement was written; the held-back requests round-trip intact.
        assert held_keys.isdisjoint(stored_keys)
        assert held_keys | stored_keys == {it["pk"]["S"] for it in items}
        if held:
            again = await aws.dynamodb.batch_write_item(RequestItems={TABLE: held})
            assert not again["UnprocessedItems"]
        assert same_items(await scan_all(aws.dynamodb, TABLE), items)
    assert faulty_aws.counts["unprocessed"] == 1
    assert faulty_aws.counts["unprocessed_items"] == len(held)


async def test_unprocessed_every_other_batch(faulty_aws: FaultProxy) -> None:
    async with aws_clients() as aws:
        await create_table(aws.dynamodb, TABLE)
        faulty_aws.set_faults(Fault.unprocessed(every=2))
        partial = []
        for i in range(6):
            batch = every_type_items(5 * (i + 1))[-5:]
            resp = await aws.dynamodb.batch_write_item(
                RequestItems={TABLE: [{"PutRequest": {"Item": it}} for it in batch]}
            )
            partial.append(bool(resp["UnprocessedItems"]))
    assert partial == [False, True] * 3
    assert faulty_aws.counts["unprocessed"] == 3


@pytest.mark.parametrize(
    ("status", "code"), [(500, "InternalServerError"), (503, "ServiceUnavailable")]
)
async def test_dynamodb_5xx(faulty_aws: FaultProxy, status: int, code: str) -> None:
    async with aws_clients(max_attempts=1) as aws:
        faulty_aws.set_faults(Fault.http_error(status, service="dynamodb"))
        with pytest.raises(ClientError) as info:
            await aws.dynamodb.list_tables()
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert error_code(info.value) == code
    assert is_retryable(info.value)
    assert faulty_aws.counts[f"http_{status}"] == 1


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (Fault.slow_down(operation="GetObject"), "SlowDown"),
        (Fault.http_error(500, service="s3", operation="GetObject"), "InternalError"),
        (Fault.http_error(503, service="s3", operation="GetObject"), "ServiceUnavailable"),
    ],
)
async def test_s3_errors_are_parsed(faulty_aws: FaultProxy, fault: Fault, code: str) -> None:
    async with aws_clients(max_attempts=1) as aws:
        await aws.s3.create_bucket(Bucket=BUCKET)
        await aws.s3.put_object(Bucket=BUCKET, Key="k", Body=b"x")
        faulty_aws.set_faults(fault)
        with pytest.raises(ClientError) as info:
            await aws.s3.get_object(Bucket=BUCKET, Key="k")
    assert error_code(info.value) == code
    assert is_retryable(info.value)
    assert faulty_aws.counts[fault.label] == 1


async def test_s3_storage_translates_exhausted_slowdown(faulty_aws: FaultProxy) -> None:
    async with aws_clients(max_attempts=1) as aws:
        await aws.s3.create_bucket(Bucket=BUCKET)
        await aws.s3.put_object(Bucket=BUCKET, Key="k", Body=b"x")
        faulty_aws.set_faults(Fault.slow_down(operation="GetObject"))
        storage = S3Storage(aws.s3, BUCKET, max_stream_retries=1)
        with pytest.raises(AwsError, match="SlowDown") as info:
            await storage.get_bytes("k")
    assert info.value.key == "k"
    assert faulty_aws.counts["http_503_SlowDown"] == 2


async def test_latency_is_injected(faulty_aws: FaultProxy) -> None:
    async with aws_clients() as aws:
        faulty_aws.set_faults(Fault.latency(0.05, service="dynamodb", every=1))
        await aws.dynamodb.list_tables()
        await aws.dynamodb.list_tables()
    assert faulty_aws.counts["latency"] == 2


async def test_reset_before_response_is_a_connection_error(faulty_aws: FaultProxy) -> None:
    async with aws_clients(max_attempts=1) as aws:
        await create_table(aws.dynamodb, TABLE)
        faulty_aws.set_faults(Fault.reset(service="dynamodb", operation="PutItem"))
        with pytest.raises(Exception) as info:
            await aws.dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "a"}, "sk": {"S": "b"}})
        assert is_retryable(info.value), repr(info.value)
        faulty_aws.clear_faults()
        assert await scan_all(aws.dynamodb, TABLE) == []  # never reached moto
    assert faulty_aws.counts["reset"] == 1


async def test_reset_after_work_loses_only_the_answer(faulty_aws: FaultProxy) -> None:
    async with aws_clients(max_attempts=1) as aws:
        await create_table(aws.dynamodb, TABLE)
        faulty_aws.set_faults(Fault.reset(operation="PutItem", after=True))
        with pytest.raises(Exception) as info:
            await aws.dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "a"}, "sk": {"S": "b"}})
        assert is_retryable(info.value), repr(info.value)
        faulty_aws.clear_faults()
        assert len(await scan_all(aws.dynamodb, TABLE)) == 1  # the work was done
    assert faulty_aws.counts["reset_after"] == 1


async def test_cut_body_breaks_a_raw_read(faulty_aws: FaultProxy) -> None:
    data = bytes(range(256)) * 2000
    async with aws_clients(max_attempts=1) as aws:
        await aws.s3.create_bucket(Bucket=BUCKET)
        await aws.s3.put_object(Bucket=BUCKET, Key="blob", Body=data)
        faulty_aws.set_faults(Fault.cut_body())
        resp = await aws.s3.get_object(Bucket=BUCKET, Key="blob")
        assert resp["ContentLength"] == len(data)  # the full length was announced
        got = bytearray()

        async def read_all() -> None:
            async with resp["Body"] as body:
                while chunk := await body.read(4096):
                    got.extend(chunk)

        with pytest.raises(Exception) as info:
            await read_all()
        assert is_retryable(info.value), repr(info.value)
        assert len(got) < len(data)
    assert faulty_aws.counts["cut_body"] == 1


@pytest.mark.parametrize("cuts", [1, 4])
async def test_s3_storage_resumes_cut_bodies_by_range(faulty_aws: FaultProxy, cuts: int) -> None:
    data = bytes((i * 31 + i // 7) % 256 for i in range(300_000))
    async with aws_clients() as aws:
        await aws.s3.create_bucket(Bucket=BUCKET)
        await aws.s3.put_object(Bucket=BUCKET, Key="blob", Body=data)
        faulty_aws.set_faults(Fault.cut_body(limit=cuts))
        storage = S3Storage(aws.s3, BUCKET)
        got = b"".join([c async for c in storage.stream("blob", chunk_size=8192)])
    assert got == data
    assert faulty_aws.counts["cut_body"] == cuts
    gets = faulty_aws.requests_for("s3", "GetObject")
    assert len(gets) == cuts + 1
    assert "range" not in gets[0].headers
    assert all(g.headers["range"].startswith("bytes=") for g in gets[1:])


async def test_expected_bucket_owner_is_sent(faulty_aws: FaultProxy) -> None:
    async with aws_clients() as aws:
        await aws.s3.create_bucket(Bucket=BUCKET)
        await aws.s3.put_object(Bucket=BUCKET, Key="p/k", Body=b"x")
        start = len(faulty_aws.requests)
        storage = S3Storage(aws.s3, BUCKET, expected_owner="123456789012")
        await storage.put_bytes("p/new", b"{}")
        assert await storage.get_bytes("p/k") == b"x"
        assert [o.key async for o in storage.list_objects("p/")] == ["p/k", "p/new"]
    ours = faulty_aws.requests[start:]
    assert {r.operation for r in ours} == {"GetObject", "PutObject", "ListObjectsV2"}
    assert all(r.headers.get("x-amz-expected-bucket-owner") == "123456789012" for r in ours)


async def test_same_seed_same_faults(moto: str) -> None:
    def pattern(seed: int) -> list[tuple[str, ...]]:
        import urllib.request

        with FaultProxy(moto, seed=seed) as proxy:
            proxy.set_faults(Fault.http_error(503, rate=0.5))
            for _ in range(40):
                req = urllib.request.Request(f"{proxy.endpoint}/", method="GET")
                try:
                    with urllib.request.urlopen(req, timeout=10) as resp:
                        resp.read()
                except OSError:
                    pass
            return [r.faults for r in proxy.requests]

    first = pattern(7)
    assert first == pattern(7)
    assert first != pattern(8)
    assert 5 < sum(1 for f in first if f) < 35


@pytest.mark.parametrize("operation", ["PutObject", "ListObjectsV2"])
async def test_s3_storage_translates_connection_errors(
    faulty_aws: FaultProxy, operation: str
) -> None:
    """A connection lost for good surfaces as AwsError (with the key), not a botocore error."""
    async with aws_clients(max_attempts=1) as aws:
        await aws.s3.create_bucket(Bucket=BUCKET)
        storage = S3Storage(aws.s3, BUCKET)
        faulty_aws.set_faults(Fault.reset(service="s3", operation=operation))

        async def call() -> None:
            if operation == "PutObject":
                await storage.put_bytes("p/k", b"{}")
            else:
                _ = [o async for o in storage.list_objects("p/")]

        with pytest.raises(AwsError, match=operation) as info:
            await call()
    assert info.value.key is not None
