"""Chunks of a ``.json.gz`` export file in, complete lines out, in constant memory.

:class:`GzipLineDecoder` is pure and synchronous (so it is easy to test with
any chunking); :func:`iter_lines` drives it from an async byte stream while
hashing the raw bytes, the way AWS computes ``md5Checksum``.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from ddb_backup.errors import CorruptDataError

__all__ = ["GzipLineDecoder", "LineSplitter", "StreamStats", "iter_lines"]

# Bound on one line: DynamoDB items are at most 400 KB, and DynamoDB JSON with
# base64 and type tags stays well under 4x that. A longer "line" is corruption,
# and refusing it keeps memory bounded on a file with no newlines at all.
MAX_LINE_BYTES = 4 * 1024 * 1024


class LineSplitter:
    """Incremental splitter on ``\\n``; keeps at most one partial line."""

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        self._buffer = bytearray()
        self._max_line = max_line

    def feed(self, data: bytes) -> list[bytes]:
        if not data:
            return []
        self._buffer += data
        if b"\n" not in data:
            self._check_size()
            return []
        *lines, rest = self._buffer.split(b"\n")
        self._buffer = bytearray(rest)
        self._check_size()
        return [bytes(line) for line in lines]

    def flush(self) -> list[bytes]:
        """The last line, if the data did not end with a newline."""
        rest, self._buffer = bytes(self._buffer), bytearray()
        return [rest] if rest else []

    def _check_size(self) -> None:
        if len(self._buffer) > self._max_line:
            raise ValueError(f"line longer than {self._max_line} bytes")


class GzipLineDecoder:
    """Gzip bytes in (any chunking), text lines out; multi-member gzip allowed."""

    def __init__(self, key: str = "<stream>") -> None:
        self._key = key
        self._inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
        self._splitter = LineSplitter()
        self._seen_input = False

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        try:
            while data:
                self._seen_input = True
                out += self._splitter.feed(self._inflater.decompress(data))
                if not self._inflater.eof:
                    break
                # A new gzip member may follow the end of the previous one.
                data = self._inflater.unused_data
                if data:
                    self._inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
        except (zlib.error, ValueError) as exc:
            raise CorruptDataError(f"not valid gzip or JSON lines ({exc})", key=self._key) from exc
        return out

    def finish(self) -> list[bytes]:
        """Lines left at the end; raises if the gzip stream was cut short."""
        if not self._seen_input or not self._inflater.eof:
            raise CorruptDataError("truncated gzip stream", key=self._key)
        try:
            tail = self._inflater.flush()
            return self._splitter.feed(tail) + self._splitter.flush()
        except (zlib.error, ValueError) as exc:
            raise CorruptDataError(f"not valid gzip ({exc})", key=self._key) from exc


@dataclass(slots=True)
class StreamStats:
    """What a pass over one file measured: raw size, MD5 (as AWS writes it), lines."""

    compressed_bytes: int = 0
    lines: int = 0
    _md5: Any = field(default_factory=lambda: hashlib.md5(usedforsecurity=False))

    @property
    def md5_base64(self) -> str:
        return base64.b64encode(self._md5.digest()).decode()


async def iter_lines(
    chunks: AsyncIterator[bytes], *, key: str, stats: StreamStats | None = None
) -> AsyncIterator[bytes]:
    """Decompress a gzip byte stream and yield its non-empty lines."""
    decoder = GzipLineDecoder(key)
    stats = stats if stats is not None else StreamStats()
    async for chunk in chunks:
        stats.compressed_bytes += len(chunk)
        stats._md5.update(chunk)
        for line in decoder.feed(chunk):
            if line.strip():
                stats.lines += 1
                yield line
    for line in decoder.finish():
        if line.strip():
            stats.lines += 1
            yield line
