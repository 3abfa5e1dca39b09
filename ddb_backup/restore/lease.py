"""One restore per table at a time: a lease per target table, in S3.

``<prefix>/_restore/_leases/<table>.json`` holds the restore id, an owner
(host and process) and an expiry. It is created with ``If-None-Match: *``,
so of two restores started together exactly one gets it; the other is
refused (:class:`LeaseHeldError`, answered 409) before it reads, clears or
writes anything. While a restore runs, a background task renews its leases
with ``If-Match`` on the ETag it holds, so a lease taken over by another
restore (after it expired) is noticed and the run stops before writing
more (:class:`LeaseLostError`). A lease whose expiry passed (a crashed run)
is taken over. Rounds of the same restore (a resume token, the plan and the
shards of a fan-out) share its lease: they take it over whatever its expiry.
A lease is released at the end by overwriting it, only while it is still
this restore's, with a record that has already expired (no role of this
project may delete an object in the backup bucket); between a 202 and its
resume it is kept, so it must be resumed within :data:`LEASE_SECONDS` or
another restore may take the table.

Expiries are wall-clock times: machines running restores need clocks within
a small fraction of :data:`LEASE_SECONDS` of each other (NTP, as Lambda has).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
import uuid
from collections.abc import Callable, Iterable

from pydantic import BaseModel, ConfigDict, ValidationError

from ddb_backup.concurrency import in_background
from ddb_backup.errors import DdbBackupError, LeaseHeldError, LeaseLostError
from ddb_backup.keys import lease_key
from ddb_backup.log import get_logger
from ddb_backup.storage import S3Storage

__all__ = ["LEASE_SECONDS", "RENEW_SECONDS", "LeaseRecord", "TableLeases"]

log = get_logger("lease")

#: How long a lease outlives its last renewal (a crashed run blocks this long).
LEASE_SECONDS = 600.0
#: Seconds between renewals while a restore runs.
RENEW_SECONDS = 60.0
#: Conditional writes tried before giving up on a lease that keeps changing hands.
_ATTEMPTS = 5


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LeaseRecord(BaseModel):
    """The lease object's content (names and times only)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    restore_id: str
    owner: str
    table: str
    expires_at: dt.datetime
    released: bool = False


class TableLeases:
    """The leases one invocation of a restore holds (table -> ETag)."""

    def __init__(
        self,
        storage: S3Storage,
        prefix: str,
        restore_id: str,
        *,
        ttl: float = LEASE_SECONDS,
        renew_every: float = RENEW_SECONDS,
        clock: Callable[[], dt.datetime] = _now,
    ) -> None:
        self.storage = storage
        self.prefix = prefix
        self.restore_id = restore_id
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.ttl = ttl
        self.renew_every = renew_every
        self.clock = clock
        self.held: dict[str, str] = {}
        self.lost: LeaseLostError | None = None
        self._valid_until: dt.datetime | None = None

    # -- taking, renewing, releasing -----------------------------------------

    async def acquire(self, tables: Iterable[str]) -> None:
        """Take (or, for this restore, keep) the lease of every table, or none:
        raises :class:`LeaseHeldError` naming the holder after releasing what it took."""
        try:
            for table in sorted(set(tables)):
                self.held[table] = await self._claim(table, None, renewing=False)
        except BaseException:
            await self.release()
            raise
        self._valid_until = self.clock() + dt.timedelta(seconds=self.ttl)

    async def renew(self) -> None:
        """Push every expiry on; raises :class:`LeaseLostError` if one is no longer ours."""
        deadline = self.clock() + dt.timedelta(seconds=self.ttl)
        for table, etag in list(self.held.items()):
            try:
                self.held[table] = await self._claim(table, etag, renewing=True)
            except LeaseLostError as exc:
                del self.held[table]
                self.lost = exc
                raise
        self._valid_until = deadline

    async def release(self, tables: Iterable[str] | None = None) -> None:
        """Release the leases (default: all held) that are still this restore's:
        each is overwritten (``If-Match``) by a record that has already expired."""
        for table in list(self.held) if tables is None else list(tables):
            key = lease_key(self.prefix, table)
            etag = self.held.pop(table, None)
            released = self._record(table, released=True)
            if etag is not None and await self.storage.put_conditional(key, released, etag=etag):
                continue
            current = await self.storage.get_bytes_and_etag(key)
            if current is not None and self._holder(current[0], key).restore_id == self.restore_id:
                await self.storage.put_conditional(key, released, etag=current[1])

    def check(self) -> LeaseLostError | None:
        """The loss, if the leases were taken or could not be renewed in time."""
        if (
            self.lost is None
            and self._valid_until is not None
            and self.clock() >= self._valid_until
        ):
            self.lost = LeaseLostError(
                "the table leases could not be renewed before they expired; stopped so that "
                "no other restore's table is written",
                table=", ".join(sorted(self.held)),
            )
        return self.lost

    def renewing(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Renew in the background for the duration of the block."""
        return in_background(self._renew_loop())

    async def _renew_loop(self) -> None:
        while self.held:
            await asyncio.sleep(self.renew_every)
            try:
                await self.renew()
            except LeaseLostError as exc:
                log.error("restore lease lost", extra={"error": str(exc)})
                return
            except DdbBackupError as exc:  # S3 hiccup: try again; check() bounds the wait
                log.warning("restore lease not renewed", extra={"error": str(exc)})

    # -- one lease -------------------------------------------------------------

    def _record(self, table: str, *, released: bool = False) -> bytes:
        expires = self.clock() + dt.timedelta(seconds=0 if released else self.ttl)
        record = LeaseRecord(
            restore_id=self.restore_id,
            owner=self.owner,
            table=table,
            expires_at=expires,
            released=released,
        )
        return record.model_dump_json().encode()

    def _holder(self, data: bytes, key: str) -> LeaseRecord:
        try:
            return LeaseRecord.model_validate_json(data)
        except ValidationError:
            # Refused rather than taken: an unreadable lease may still be in use.
            return LeaseRecord(
                restore_id="unknown (unreadable lease: delete it if no restore runs)",
                owner="unknown",
                table=key,
                expires_at=dt.datetime.max.replace(tzinfo=dt.UTC),
            )

    async def _claim(self, table: str, etag: str | None, *, renewing: bool) -> str:
        """Write this restore's record over ``etag`` (None: only if absent); on a
        conflict, re-read: ours again (another round or shard), or an expired
        one when not renewing, is taken over; anything else is refused/lost."""
        key = lease_key(self.prefix, table)
        for _ in range(_ATTEMPTS):
            new = await self.storage.put_conditional(key, self._record(table), etag=etag)
            if new is not None:
                return new
            current = await self.storage.get_bytes_and_etag(key)
            if current is None:
                if renewing:
                    raise LeaseLostError(
                        f"the lease of table {table} was deleted while this restore ran "
                        f"({key}); stopped before writing more",
                        table=table,
                    )
                etag = None
                continue
            data, etag = current
            holder = self._holder(data, key)
            if holder.restore_id == self.restore_id:
                continue
            if renewing:
                raise LeaseLostError(
                    f"restore {holder.restore_id} took the lease of table {table} "
                    "(this restore's had expired); stopped before writing more",
                    table=table,
                )
            if holder.expires_at > self.clock():
                raise LeaseHeldError(
                    f"table {table} is being restored by restore {holder.restore_id} "
                    f"(owner {holder.owner}, lease {key} until "
                    f"{holder.expires_at:%Y-%m-%dT%H:%M:%SZ}); "
                    "one restore per table at a time: nothing was read, cleared or written",
                    table=table,
                )
            if not holder.released:
                log.warning(
                    "restore lease taken over",
                    extra={"table": table, "expired_restore_id": holder.restore_id},
                )
        raise LeaseHeldError(
            f"the lease of table {table} kept changing hands ({key}); try again", table=table
        )
