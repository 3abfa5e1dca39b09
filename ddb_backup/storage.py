"""Where backups live: S3, or a local copy made by ``ddb-backup download``.

Both stores speak the same small protocol, so verification and restore run
unchanged on either. S3 bodies are read in chunks; a body cut off part-way is
resumed with a byte-range request from the last byte received, so a dropped
connection never costs (or duplicates) an item.

Every read of an S3 object is pinned: range requests that resume a body are
sent with the first answer's ``VersionId`` (versioned bucket) or ``If-Match``
on its ETag, and a caller may pin the first request too (:class:`ObjectPin`,
recorded at verification), so bytes of a replaced object are never mixed in:
S3 answers 412 / ``NoSuchVersion``, raised as :class:`DataFileChangedError`.
:class:`PinnedReads` remembers the first pin seen per key for a whole run.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiofiles
import aiofiles.os
from botocore.exceptions import BotoCoreError, ClientError

from ddb_backup.aws import error_code, is_retryable, raise_aws_error
from ddb_backup.errors import DataFileChangedError, DataFileMissingError, UnsafeNameError

__all__ = [
    "CHUNK_SIZE",
    "LocalStorage",
    "ObjectInfo",
    "ObjectPin",
    "PinnedReads",
    "S3Storage",
    "Storage",
    "content_md5",
]

#: Bytes read from a body at a time: large enough to keep syscalls rare,
#: small enough that N files in flight stay within a 128 MB Lambda.
CHUNK_SIZE = 256 * 1024


#: What S3 answers a conditional write (or delete) whose condition does not
#: hold: the key taken (If-None-Match), the ETag changed or the object gone (If-Match).
_REFUSED = frozenset(
    {"PreconditionFailed", "ConditionalRequestConflict", "412", "NoSuchKey", "404"}
)


def content_md5(data: bytes) -> str:
    """Base64 MD5, as S3's ``Content-MD5``, AWS's ``md5Checksum`` and ``.md5`` sidecars."""
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


#: What S3 answers a read pinned to an object that is no longer there as pinned.
_CHANGED = frozenset({"PreconditionFailed", "412", "NoSuchVersion"})


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int


@dataclass(frozen=True, slots=True)
class ObjectPin:
    """The one object version a read must see: S3's ``VersionId`` where the
    bucket is versioned (immutable), else its ETag (sent as ``If-Match``)."""

    etag: str | None = None
    version_id: str | None = None

    def get_params(self) -> dict[str, str]:
        if self.version_id:
            return {"VersionId": self.version_id}
        return {"IfMatch": self.etag} if self.etag else {}

    def describe(self) -> str:
        return f"VersionId {self.version_id}" if self.version_id else f"ETag {self.etag}"


#: Called once per :meth:`Storage.stream` with the pin of the object read.
PinCallback = Callable[[ObjectPin], None]


class Storage(Protocol):
    """What the core needs from a place that holds backups."""

    @property
    def location(self) -> str:
        """Human-readable root, e.g. ``s3://bucket`` or a directory."""
        ...

    async def get_bytes(self, key: str) -> bytes: ...

    async def get_bytes_or_none(self, key: str) -> bytes | None: ...

    def stream(
        self,
        key: str,
        *,
        chunk_size: int = CHUNK_SIZE,
        pin: ObjectPin | None = None,
        on_pin: PinCallback | None = None,
    ) -> AsyncIterator[bytes]: ...

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

    async def stream(
        self,
        key: str,
        *,
        chunk_size: int = CHUNK_SIZE,
        pin: ObjectPin | None = None,
        on_pin: PinCallback | None = None,
    ) -> AsyncIterator[bytes]:
        """A local copy has no versions: reads are unpinned (``pin`` is ignored);
        the restore's MD5 check over each whole file still catches a change."""
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


class PinnedReads:
    """A :class:`Storage` whose every read of a key sees one object: the one
    given in :attr:`pins`, else the first one read (then remembered).

    A restore reads through it, so what it verified is what it writes, and
    the pins it learnt go into its checkpoint for later rounds and shards.
    """

    def __init__(self, inner: Storage, pins: dict[str, ObjectPin] | None = None) -> None:
        self.inner = inner
        self.pins: dict[str, ObjectPin] = dict(pins or {})

    @property
    def location(self) -> str:
        return self.inner.location

    async def get_bytes(self, key: str) -> bytes:
        return await self.inner.get_bytes(key)

    async def get_bytes_or_none(self, key: str) -> bytes | None:
        return await self.inner.get_bytes_or_none(key)

    def stream(
        self,
        key: str,
        *,
        chunk_size: int = CHUNK_SIZE,
        pin: ObjectPin | None = None,
        on_pin: PinCallback | None = None,
    ) -> AsyncIterator[bytes]:
        def seen(p: ObjectPin) -> None:
            self.pins.setdefault(key, p)
            if on_pin is not None:
                on_pin(p)

        return self.inner.stream(
            key, chunk_size=chunk_size, pin=pin or self.pins.get(key), on_pin=seen
        )

    def list_objects(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        return self.inner.list_objects(prefix)

    async def list_prefixes(self, prefix: str) -> list[str]:
        return await self.inner.list_prefixes(prefix)

    async def put_bytes(
        self, key: str, data: bytes, *, content_type: str = "application/json"
    ) -> None:
        await self.inner.put_bytes(key, data, content_type=content_type)
