"""A local copy of the bucket (``ddb-backup download``), read like the bucket."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiofiles
import aiofiles.os

from ddb_backup.errors import DataFileMissingError, UnsafeNameError
from ddb_backup.storage.protocol import (
    CHUNK_SIZE,
    ObjectInfo,
    ObjectPin,
    PinCallback,
)


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
