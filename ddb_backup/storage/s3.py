"""A bucket as a store: chunked reads resumed and pinned, conditional writes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ddb_backup.aws import error_code, is_retryable, raise_aws_error
from ddb_backup.errors import DataFileChangedError, DataFileMissingError
from ddb_backup.storage.protocol import (
    CHUNK_SIZE,
    ObjectInfo,
    ObjectPin,
    PinCallback,
    WholeReadsByStream,
    content_md5,
)

#: What S3 answers a conditional write (or delete) whose condition does not
#: hold: the key taken (If-None-Match), the ETag changed or the object gone (If-Match).
_REFUSED = frozenset(
    {"PreconditionFailed", "ConditionalRequestConflict", "412", "NoSuchKey", "404"}
)


#: What S3 answers a read pinned to an object that is no longer there as pinned.
_CHANGED = frozenset({"PreconditionFailed", "412", "NoSuchVersion"})


class S3Storage(WholeReadsByStream):
    """A bucket, optionally pinned to an expected owner (``ExpectedBucketOwner``)."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        *,
        expected_owner: str | None = None,
        sse_kms_key_id: str | None = None,
        max_stream_retries: int = 5,
    ) -> None:
        self._s3 = s3
        self.bucket = bucket
        self._owner = {"ExpectedBucketOwner": expected_owner} if expected_owner else {}
        self._kms = (
            {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": sse_kms_key_id}
            if sse_kms_key_id
            else {}
        )
        self._max_stream_retries = max_stream_retries

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}"

    async def stream(
        self,
        key: str,
        *,
        chunk_size: int = CHUNK_SIZE,
        pin: ObjectPin | None = None,
        on_pin: PinCallback | None = None,
    ) -> AsyncIterator[bytes]:
        """Yield the object's bytes in order, resuming by byte range after a cut.

        Every request is pinned to ``pin`` if given, else (range resumes) to
        the object the first answer came from; ``on_pin`` learns that object.
        """
        offset = 0
        failures = 0
        total: int | None = None
        while True:
            params: dict[str, Any] = {"Bucket": self.bucket, "Key": key, **self._owner}
            if pin is not None:
                params.update(pin.get_params())
            if offset:
                params["Range"] = f"bytes={offset}-"
            try:
                resp = await self._s3.get_object(**params)
                if total is None:
                    total = offset + int(resp["ContentLength"])
                    seen = ObjectPin(etag=resp.get("ETag"), version_id=resp.get("VersionId"))
                    pin = pin or seen
                    if on_pin is not None:
                        on_pin(seen)
                body = resp["Body"]
                try:  # not ``async with``: aiobotocore 2.x bodies are no context managers
                    while chunk := await body.read(chunk_size):
                        offset += len(chunk)
                        failures = 0
                        yield chunk
                finally:
                    body.close()
                if offset >= total:
                    return
                # Body ended early without an error (connection closed cleanly).
                raise ConnectionError(f"body ended at byte {offset} of {total}")
            except ClientError as exc:
                if error_code(exc) in {"NoSuchKey", "404", "NotFound"}:
                    raise DataFileMissingError("object not found", key=key) from exc
                if pin is not None and error_code(exc) in _CHANGED:
                    raise DataFileChangedError(
                        f"the S3 object changed since it was verified ({pin.describe()} "
                        "is gone); nothing more of it is read",
                        key=key,
                    ) from exc
                if error_code(exc) == "InvalidRange" and total is not None and offset >= total:
                    return
                failures += 1
                if not is_retryable(exc) or failures > self._max_stream_retries:
                    raise_aws_error(exc, operation="GetObject", key=key)
            except Exception as exc:
                failures += 1
                if not is_retryable(exc) or failures > self._max_stream_retries:
                    raise_aws_error(exc, operation="GetObject", key=key)
            await asyncio.sleep(min(2.0, 0.05 * 2**failures))

    async def list_objects(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        paginator = self._s3.get_paginator("list_objects_v2")
        try:
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, **self._owner):
                for obj in page.get("Contents", []):
                    yield ObjectInfo(key=obj["Key"], size=int(obj["Size"]))
        except (ClientError, BotoCoreError, OSError) as exc:
            raise_aws_error(exc, operation="ListObjectsV2", key=prefix)

    async def list_prefixes(self, prefix: str) -> list[str]:
        """Immediate 'sub-folders' of ``prefix`` (which should end with '/')."""
        out: list[str] = []
        paginator = self._s3.get_paginator("list_objects_v2")
        try:
            async for page in paginator.paginate(
                Bucket=self.bucket, Prefix=prefix, Delimiter="/", **self._owner
            ):
                out.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
        except (ClientError, BotoCoreError, OSError) as exc:
            raise_aws_error(exc, operation="ListObjectsV2", key=prefix)
        return out

    async def put_bytes(
        self, key: str, data: bytes, *, content_type: str = "application/json"
    ) -> None:
        """Upload with an S3-checked MD5, so a damaged upload is refused by S3 itself."""
        await self._put(key, data, content_type=content_type)

    async def put_bytes_if_absent(
        self, key: str, data: bytes, *, content_type: str = "application/json"
    ) -> bool:
        """As :meth:`put_bytes`, only if no object has the key (``If-None-Match: *``);
        False when one already had it."""
        etag = await self._put(key, data, content_type=content_type, condition={"IfNoneMatch": "*"})
        return etag is not None

    async def put_conditional(
        self, key: str, data: bytes, *, etag: str | None, content_type: str = "application/json"
    ) -> str | None:
        """Create the object (``etag=None``: only if absent) or replace it only if
        it still has ``etag`` (``If-Match``); its new ETag, or None if refused."""
        condition = {"IfMatch": etag} if etag is not None else {"IfNoneMatch": "*"}
        return await self._put(key, data, content_type=content_type, condition=condition)

    async def get_bytes_and_etag(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and ETag (one GET), or None if absent."""
        pins: list[ObjectPin] = []
        try:
            data = b"".join([c async for c in self.stream(key, on_pin=pins.append)])
        except DataFileMissingError:
            return None
        return data, pins[0].etag or ""

    async def _put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str,
        condition: dict[str, str] | None = None,
    ) -> str | None:
        try:
            resp = await self._s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ContentType=content_type,
                ContentMD5=content_md5(data),
                **(condition or {}),
                **self._owner,
                **self._kms,
            )
        except ClientError as exc:
            if condition and error_code(exc) in _REFUSED:
                return None
            raise_aws_error(exc, operation="PutObject", key=key)
        except (BotoCoreError, OSError) as exc:
            raise_aws_error(exc, operation="PutObject", key=key)
        return str(resp.get("ETag", ""))
