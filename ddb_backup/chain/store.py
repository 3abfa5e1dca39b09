"""The append-only record of chains in S3: conditional writes, reads in time order."""

from __future__ import annotations

from typing import Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from ddb_backup.chain.breaks import check_contiguity
from ddb_backup.chain.model import (
    Chain,
    ChainBreak,
    ChainStart,
    ChainSuperseded,
    ChainWindow,
    time_stamp,
)
from ddb_backup.errors import ChainError
from ddb_backup.keys import chain_prefix, check_key_inside
from ddb_backup.storage import Storage

_M = TypeVar("_M", bound=BaseModel)


class ConditionalStorage(Storage, Protocol):
    """A store that can write a key only if it is not taken (S3's ``If-None-Match``)."""

    async def put_bytes_if_absent(
        self, key: str, data: bytes, *, content_type: str = ...
    ) -> bool: ...


def _start_key(prefix: str, table: str, chain_id: str) -> str:
    return f"{chain_prefix(prefix, table, chain_id)}/chain.json"


def _window_key(prefix: str, table: str, chain_id: str, w: ChainWindow) -> str:
    stamps = f"{time_stamp(w.export_from_time)}_{time_stamp(w.export_to_time)}"
    return f"{chain_prefix(prefix, table, chain_id)}/windows/{stamps}.json"


def _break_key(prefix: str, table: str, chain_id: str) -> str:
    return f"{chain_prefix(prefix, table, chain_id)}/break.json"


def _superseded_key(prefix: str, table: str, chain_id: str) -> str:
    return f"{chain_prefix(prefix, table, chain_id)}/superseded.json"


async def _put_once(
    storage: ConditionalStorage, key: str, model: BaseModel, *, ignore: set[str], table: str
) -> bool:
    """Write ``model`` at ``key`` unless taken; the same content already there
    (a retry) is fine, other content is a :class:`ChainError`. True if written."""
    data = model.model_dump_json(indent=2).encode()
    if await storage.put_bytes_if_absent(key, data):
        return True
    existing = await storage.get_bytes(key)
    try:
        there = type(model).model_validate_json(existing)
    except ValidationError as exc:
        raise ChainError(f"chain record {key} is unreadable", table=table) from exc
    if there.model_dump(exclude=ignore) != model.model_dump(exclude=ignore):
        raise ChainError(
            f"chain record {key} already exists with other content; not overwritten",
            table=table,
        )
    return False


async def start_chain(storage: ConditionalStorage, prefix: str, start: ChainStart) -> None:
    """Record a chain's start (idempotent; a different start under the id is refused)."""
    key = _start_key(prefix, start.table, start.chain_id)
    await _put_once(storage, key, start, ignore={"started_at"}, table=start.table)


async def append_window(
    storage: ConditionalStorage, prefix: str, chain: Chain, window: ChainWindow
) -> Chain:
    """Add a verified window at the chain's head; returns the longer chain.

    Refused (nothing written): a broken or superseded chain, a window that
    does not start at the head, or of another table. Re-appending the same window (a retried
    invocation) is accepted without a second object.
    """
    table = chain.start.table
    if chain.broken is not None or chain.problems:
        raise ChainError(f"chain {chain.chain_id} of {table} is broken", table=table)
    if chain.superseded is not None:
        raise ChainError(
            f"chain {chain.chain_id} of {table} is superseded by {chain.superseded.superseded_by}",
            table=table,
        )
    if window.table != table or window.chain_id != chain.chain_id:
        raise ChainError("window belongs to another chain", table=table)
    problems = check_contiguity(chain.start, [*chain.windows, window])
    if problems:
        raise ChainError(f"window refused: {problems[0].detail}", table=table)
    key = _window_key(prefix, table, chain.chain_id, window)
    await _put_once(storage, key, window, ignore={"verified_at"}, table=table)
    return Chain(chain.start, [*chain.windows, window])


async def record_break(storage: ConditionalStorage, prefix: str, brk: ChainBreak) -> bool:
    """Record that a chain is broken; the first break recorded stays (False if one was)."""
    key = _break_key(prefix, brk.table, brk.chain_id)
    return await storage.put_bytes_if_absent(key, brk.model_dump_json(indent=2).encode())


async def record_superseded(
    storage: ConditionalStorage, prefix: str, record: ChainSuperseded
) -> bool:
    """Record that a newer chain took over (idempotent: a retry writes nothing, a
    record naming another chain is a :class:`ChainError`). True if written."""
    key = _superseded_key(prefix, record.table, record.chain_id)
    return await _put_once(storage, key, record, ignore={"recorded_at"}, table=record.table)


def _load(model: type[_M], data: bytes, key: str, table: str) -> _M:
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        raise ChainError(f"chain record {key} is invalid", table=table) from exc


async def load_chain(storage: Storage, prefix: str, table: str, chain_id: str) -> Chain:
    """Read a chain's record; its windows in time order, problems found named."""
    key = _start_key(prefix, table, chain_id)
    return await _load_chain(storage, prefix, table, chain_id, await storage.get_bytes(key))


async def _load_chain(
    storage: Storage, prefix: str, table: str, chain_id: str, raw_start: bytes
) -> Chain:
    base = chain_prefix(prefix, table, chain_id)
    key = _start_key(prefix, table, chain_id)
    start = _load(ChainStart, raw_start, key, table)
    if start.table != table or start.chain_id != chain_id:
        raise ChainError(f"chain record {key} is of another chain", table=table)
    windows = []
    async for obj in storage.list_objects(f"{base}/windows/"):
        check_key_inside(obj.key, f"{base}/windows")
        w = _load(ChainWindow, await storage.get_bytes(obj.key), obj.key, table)
        if _window_key(prefix, table, chain_id, w) != obj.key:
            raise ChainError(f"chain record {obj.key} holds another window", table=table)
        windows.append(w)
    windows.sort(key=lambda w: (w.export_from_time, w.export_to_time))
    raw_break = await storage.get_bytes_or_none(_break_key(prefix, table, chain_id))
    brk = None
    if raw_break is not None:
        brk = _load(ChainBreak, raw_break, _break_key(prefix, table, chain_id), table)
    raw_superseded = await storage.get_bytes_or_none(_superseded_key(prefix, table, chain_id))
    superseded = None
    if raw_superseded is not None:
        key = _superseded_key(prefix, table, chain_id)
        superseded = _load(ChainSuperseded, raw_superseded, key, table)
    return Chain(start, windows, brk, check_contiguity(start, windows), superseded)


async def _chain_ids(storage: Storage, prefix: str, table: str) -> list[str]:
    """The chain folders of ``table``, oldest first (ids sort in time order)."""
    base = chain_prefix(prefix, table)
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in await storage.list_prefixes(f"{base}/"))


async def _load_if_kept(storage: Storage, prefix: str, table: str, chain_id: str) -> Chain | None:
    """The chain, or None once its ``chain.json`` has expired (the lifecycle rule
    takes a chain's oldest objects first; its later windows may linger a day)."""
    raw = await storage.get_bytes_or_none(_start_key(prefix, table, chain_id))
    if raw is None:
        return None
    return await _load_chain(storage, prefix, table, chain_id, raw)


async def list_chains(storage: Storage, prefix: str, table: str) -> list[Chain]:
    """Every chain of ``table`` still kept, oldest first (expired ones skipped)."""
    out = []
    for chain_id in await _chain_ids(storage, prefix, table):
        chain = await _load_if_kept(storage, prefix, table, chain_id)
        if chain is not None:
            out.append(chain)
    return out


async def newest_chain(
    storage: Storage, prefix: str, table: str, *, before: str | None = None
) -> Chain | None:
    """The newest kept chain of ``table`` (older than chain id ``before`` if given),
    read alone: a scheduled round needs no other."""
    for chain_id in reversed(await _chain_ids(storage, prefix, table)):
        if before is not None and chain_id >= before:
            continue
        chain = await _load_if_kept(storage, prefix, table, chain_id)
        if chain is not None:
            return chain
    return None
