"""Chunks of a ``.json.gz`` export file in, complete lines out, in constant memory.

:class:`GzipLineDecoder` is pure and synchronous (so it is easy to test with
any chunking); :func:`iter_lines` drives it from an async byte stream while
hashing the raw bytes, the way AWS computes ``md5Checksum``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import types
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from ddb_backup.errors import ChecksumMismatchError, CorruptDataError, ItemCountMismatchError

_inflate: types.ModuleType
try:  # ISA-L inflates gzip about 2.5x faster than zlib; same API, same checks.
    from isal import isal_zlib

    _inflate = isal_zlib
    _INFLATE_ERRORS: tuple[type[Exception], ...] = (
        zlib.error,
        cast(type[Exception], isal_zlib.error),
    )
except ImportError:  # pragma: no cover - isal has wheels for Lambda's x86_64 and arm64
    _inflate = zlib
    _INFLATE_ERRORS = (zlib.error,)

__all__ = [
    "GzipDecoder",
    "GzipLineDecoder",
    "LineSplitter",
    "StreamStats",
    "check_streamed_again",
    "closing",
    "iter_decompressed",
    "iter_line_blocks",
    "iter_lines",
]

# Bound on one line: DynamoDB items are at most 400 KB, and DynamoDB JSON with
# base64 and type tags stays well under 4x that. A longer "line" is corruption,
# and refusing it keeps memory bounded on a file with no newlines at all.
MAX_LINE_BYTES = 4 * 1024 * 1024

#: Most bytes one inflate step may produce (memory stays flat on a gzip bomb).
MAX_BLOCK_BYTES = 1024 * 1024

T = TypeVar("T")


def check_streamed_again(
    stats: StreamStats,
    *,
    key: str,
    lines: int,
    count: int | None,
    md5: str | None,
    what: str,
    step: str,
) -> None:
    """A file verified before, checked again as it was actually streamed (by
    ``step``, e.g. "restore"): the same number of lines (``what``, e.g.
    "items") and the same MD5, when known."""
    if count is not None and lines != count:
        raise ItemCountMismatchError(
            f"held {lines} {what} in the {step}, {count} when verified", key=key
        )
    if md5 is not None and stats.md5_base64 != md5:
        raise ChecksumMismatchError(f"changed between verification and {step}", key=key)


@contextlib.asynccontextmanager
async def closing(it: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Close an async generator when leaving early (its S3 body with it); a
    plain ``AsyncIterator`` has no ``aclose`` (so ``contextlib.aclosing`` does not fit)."""
    try:
        yield it
    finally:
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            await aclose()


class LineSplitter:
    """Incremental splitter on ``\\n``; keeps at most one partial line."""

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        self._rest = b""
        self._max_line = max_line

    def feed(self, data: bytes) -> list[bytes]:
        if not data:
            return []
        if self._rest:
            data = self._rest + data
        # bytes.split hands out the lines themselves: no per-line copy.
        lines = data.split(b"\n")
        self._rest = lines.pop()
        self._check_size()
        return lines

    def flush(self) -> list[bytes]:
        """The last line, if the data did not end with a newline."""
        rest, self._rest = self._rest, b""
        return [rest] if rest else []

    def _check_size(self) -> None:
        if len(self._rest) > self._max_line:
            raise ValueError(f"line longer than {self._max_line} bytes")


class GzipDecoder:
    """Gzip bytes in (any chunking), decompressed bytes out; multi-member allowed."""

    def __init__(self, key: str = "<stream>", *, max_block: int = MAX_BLOCK_BYTES) -> None:
        self._key = key
        self._inflater = _inflate.decompressobj(zlib.MAX_WBITS | 16)
        self._seen_input = False
        self._max_block = max_block

    def feed(self, data: bytes) -> bytes:
        """Everything ``data`` decompresses to (see :meth:`feed_blocks` for bounded output)."""
        blocks = list(self.feed_blocks(data))
        return blocks[0] if len(blocks) == 1 else b"".join(blocks)

    def feed_blocks(self, data: bytes) -> Iterator[bytes]:
        """What ``data`` decompresses to, in blocks of at most ``max_block`` bytes.

        Bounding each inflate step keeps memory flat even for a chunk that
        expands a thousandfold (a gzip bomb, or a long run of one byte).
        """
        try:
            while data:
                self._seen_input = True
                block = self._inflater.decompress(data, self._max_block)
                if block:
                    yield block
                data = self._inflater.unconsumed_tail
                if data:
                    continue
                if not self._inflater.eof:
                    break
                # A new gzip member may follow the end of the previous one.
                data = self._inflater.unused_data
                if data:
                    self._inflater = _inflate.decompressobj(zlib.MAX_WBITS | 16)
        except _INFLATE_ERRORS as exc:
            raise CorruptDataError(f"not valid gzip or JSON lines ({exc})", key=self._key) from exc

    def finish(self) -> bytes:
        """Bytes left at the end; raises if the gzip stream was cut short."""
        if not self._seen_input or not self._inflater.eof:
            raise CorruptDataError("truncated gzip stream", key=self._key)
        try:
            return bytes(self._inflater.flush())
        except _INFLATE_ERRORS as exc:
            raise CorruptDataError(f"not valid gzip ({exc})", key=self._key) from exc


class GzipLineDecoder:
    """Gzip bytes in (any chunking), text lines out; multi-member gzip allowed."""

    def __init__(self, key: str = "<stream>") -> None:
        self._key = key
        self._gzip = GzipDecoder(key)
        self._splitter = LineSplitter()

    def feed(self, data: bytes) -> list[bytes]:
        return [line for block in self.feed_blocks(data) for line in block]

    def feed_blocks(self, data: bytes) -> Iterator[list[bytes]]:
        """Complete lines, one list per bounded block of decompressed bytes."""
        for block in self._gzip.feed_blocks(data):
            try:
                yield self._splitter.feed(block)
            except ValueError as exc:
                raise CorruptDataError(
                    f"not valid gzip or JSON lines ({exc})", key=self._key
                ) from exc

    def finish(self) -> list[bytes]:
        """Lines left at the end; raises if the gzip stream was cut short."""
        tail = self._gzip.finish()
        try:
            return self._splitter.feed(tail) + self._splitter.flush()
        except ValueError as exc:
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


async def iter_decompressed(
    chunks: AsyncIterator[bytes],
    *,
    key: str,
    stats: StreamStats | None = None,
    max_block: int = MAX_BLOCK_BYTES,
) -> AsyncIterator[bytes]:
    """Decompressed blocks (at most ``max_block`` bytes each) of a gzip byte
    stream, hashing the raw bytes as it goes (``stats.lines`` is left to the caller)."""
    decoder = GzipDecoder(key, max_block=max_block)
    stats = stats if stats is not None else StreamStats()
    md5 = stats._md5
    async for chunk in chunks:
        stats.compressed_bytes += len(chunk)
        md5.update(chunk)
        for block in decoder.feed_blocks(chunk):
            yield block
    block = decoder.finish()
    if block:
        yield block


async def iter_line_blocks(
    chunks: AsyncIterator[bytes], *, key: str, stats: StreamStats | None = None
) -> AsyncIterator[list[bytes]]:
    """Like :func:`iter_lines`, a list of lines per chunk read: one await per
    chunk instead of one per line, for callers that count or batch."""
    decoder = GzipLineDecoder(key)
    stats = stats if stats is not None else StreamStats()
    md5 = stats._md5
    async for chunk in chunks:
        stats.compressed_bytes += len(chunk)
        md5.update(chunk)
        for block in decoder.feed_blocks(chunk):
            lines = _non_blank(block)
            if lines:
                stats.lines += len(lines)
                yield lines
    lines = _non_blank(decoder.finish())
    if lines:
        stats.lines += len(lines)
        yield lines


def _non_blank(lines: list[bytes]) -> list[bytes]:
    # Export lines never start with whitespace: when the least line (compared in
    # C) starts above a space, every line does; only odd blocks pay for isspace().
    if not lines or min(lines)[:1] > b" ":
        return lines
    return [line for line in lines if line and not line.isspace()]


async def iter_lines(
    chunks: AsyncIterator[bytes], *, key: str, stats: StreamStats | None = None
) -> AsyncIterator[bytes]:
    """Decompress a gzip byte stream and yield its non-empty lines."""
    async for lines in iter_line_blocks(chunks, key=key, stats=stats):
        for line in lines:
            yield line
