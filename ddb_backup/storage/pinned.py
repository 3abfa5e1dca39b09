"""A store whose every read of a key sees one object version for a whole run."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ddb_backup.storage.protocol import (
    CHUNK_SIZE,
    ObjectInfo,
    ObjectPin,
    PinCallback,
    Storage,
    WholeReadsByStream,
)


class PinnedReads(WholeReadsByStream):
    """A :class:`Storage` whose every read of a key sees one object: the one
    given in :attr:`pins`, else the first one read (then remembered).

    Whole reads (:meth:`get_bytes`: manifests) are pinned like streamed ones
    (data files). A restore reads through it, so what it verified is what it
    writes, and the pins it learnt go into its checkpoint for later rounds
    and shards (data files; the manifests of a point-in-time restore's
    windows, which a resumed round reads again). A local copy has no versions:
    nothing is pinned there.
    """

    def __init__(self, inner: Storage, pins: dict[str, ObjectPin] | None = None) -> None:
        self.inner = inner
        self.pins: dict[str, ObjectPin] = dict(pins or {})

    @property
    def location(self) -> str:
        return self.inner.location

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
