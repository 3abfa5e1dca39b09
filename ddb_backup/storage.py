"""Where backups live: S3, or a local copy made by ``ddb-backup download``.

Both stores speak the same small protocol, so verification and restore run
unchanged on either. S3 bodies are read in chunks; a body cut off part-way is
resumed with a byte-range request from the last byte received, so a dropped
connection never costs (or duplicates) an item.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiofiles
import aiofiles.os
from botocore.exceptions import BotoCoreError, ClientError

from ddb_backup.aws import error_code, is_retryable, raise_aws_error
from ddb_backup.errors import DataFileMissingError, UnsafeNameError

__all__ = [
    "CHUNK_SIZE",
    "LocalStorage",
    "ObjectInfo",
    "S3Storage",
    "Storage",
    "content_md5",
]

#: Bytes read from a body at a time: large enough to keep syscalls rare,
#: small enough that N files in flight stay within a 128 MB Lambda.
CHUNK_SIZE = 256 * 1024


#: What S3 answers a conditional write whose key is already taken.
_ALREADY_THERE = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412"})


def content_md5(data: bytes) -> str:
    """Base64 MD5, as S3's ``Content-MD5``, AWS's ``md5Checksum`` and ``.md5`` sidecars."""
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int


class Storage(Protocol):
    """What the core needs from a place that holds backups."""

    @property
    def location(self) -> str:
        """Human-readable root, e.g. ``s3://bucket`` or a directory."""
        ...

    async def get_bytes(self, key: str) -> bytes: ...

    async def get_bytes_or_none(self, key: str) -> bytes | None: ...

    def stream(self, key: str, *, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]: ...

    def list_objects(self, prefix: str) -> AsyncIterator[ObjectInfo]: ...

    async def list_prefixes(self, prefix: str) -> list[str]: ...

    async def put_bytes(self, key: str, data: bytes, *, content_type: str = ...) -> None: ...


class S3Storage:
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

    async def get_bytes(self, key: str) -> bytes:
        data = await self.get_bytes_or_none(key)
        if data is None:
            raise DataFileMissingError("object not found", key=key)
        return data

    async def get_bytes_or_none(self, key: str) -> bytes | None:
        chunks = []
        try:
            async for chunk in self.stream(key):
                chunks.append(chunk)
        except DataFileMissingError:
            return None
        return b"".join(chunks)

    async def stream(self, key: str, *, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        """Yield the object's bytes in order, resuming by byte range after a cut."""
        offset = 0
        failures = 0
        total: int | None = None
        while True:
            params: dict[str, Any] = {"Bucket": self.bucket, "Key": key, **self._owner}
            if offset:
                params["Range"] = f"bytes={offset}-"
            try:
                resp = await self._s3.get_object(**params)
                if total is None:
                    total = offset + int(resp["ContentLength"])
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
        return await self._put(key, data, content_type=content_type, if_none_match=True)

    async def _put(
        self, key: str, data: bytes, *, content_type: str, if_none_match: bool = False
    ) -> bool:
        extra = {"IfNoneMatch": "*"} if if_none_match else {}
        try:
            await self._s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ContentType=content_type,
                ContentMD5=content_md5(data),
                **extra,
                **self._owner,
                **self._kms,
            )
        except ClientError as exc:
            if if_none_match and error_code(exc) in _ALREADY_THERE:
                return False
            raise_aws_error(exc, operation="PutObject", key=key)
        except (BotoCoreError, OSError) as exc:
            raise_aws_error(exc, operation="PutObject", key=key)
        return True


class LocalStorage:
    """A directory laid out like the bucket (keys are relative paths)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()

    @property
    def location(self) -> str:
        return str(self.root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if path != self.root and self.root not in path.parents:
            raise UnsafeNameError(f"key {key!r} escapes {self.root}")
        return path

    async def get_bytes(self, key: str) -> bytes:
        data = await self.get_bytes_or_none(key)
        if data is None:
            raise DataFileMissingError("file not found", key=key)
        return data

    async def get_bytes_or_none(self, key: str) -> bytes | None:
        try:
            async with aiofiles.open(self._path(key), "rb") as f:
                return await f.read()
        except FileNotFoundError:
            return None

    async def stream(self, key: str, *, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        try:
            async with aiofiles.open(self._path(key), "rb") as f:
                while chunk := await f.read(chunk_size):
                    yield chunk
        except FileNotFoundError as exc:
            raise DataFileMissingError("file not found", key=key) from exc

    async def list_objects(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        # os.walk is cheap next to the reads that follow; run it off the loop.
        found = await asyncio.to_thread(self._walk, prefix)
        for info in found:
            yield info

    def _walk(self, prefix: str) -> list[ObjectInfo]:
        out = []
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix) and not name.endswith(".part"):
                    out.append(ObjectInfo(key=key, size=full.stat().st_size))
        return sorted(out, key=lambda o: o.key)

    async def list_prefixes(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if not await aiofiles.os.path.isdir(base):
            return []
        names = await aiofiles.os.listdir(base)
        return sorted(
            [f"{prefix}{name}/" for name in names if await aiofiles.os.path.isdir(base / name)]
        )

    async def put_bytes(
        self, key: str, data: bytes, *, content_type: str = "application/json"
    ) -> None:
        path = self._path(key)
        await aiofiles.os.makedirs(path.parent, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        async with aiofiles.open(tmp, "wb") as f:
            await f.write(data)
        await aiofiles.os.replace(tmp, path)
