"""What every store speaks (:class:`Storage`), object pins, and MD5 as S3 writes it."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from ddb_backup.errors import DataFileMissingError

#: Bytes read from a body at a time: large enough to keep syscalls rare,
#: small enough that N files in flight stay within a 128 MB Lambda.
CHUNK_SIZE = 256 * 1024


def content_md5(data: bytes) -> str:
    """Base64 MD5, as S3's ``Content-MD5``, AWS's ``md5Checksum`` and ``.md5`` sidecars."""
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


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


class WholeReadsByStream:
    """``get_bytes``/``get_bytes_or_none`` read through the class's own ``stream``,
    so a whole read gets every property a streamed one has (retries, pins)."""

    def stream(self, key: str) -> AsyncIterator[bytes]:
        raise NotImplementedError

    async def get_bytes(self, key: str) -> bytes:
        data = await self.get_bytes_or_none(key)
        if data is None:
            raise DataFileMissingError("object not found", key=key)
        return data

    async def get_bytes_or_none(self, key: str) -> bytes | None:
        """The whole object, or None if it is absent."""
        try:
            return b"".join([chunk async for chunk in self.stream(key)])
        except DataFileMissingError:
            return None
