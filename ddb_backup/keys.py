"""The S3 layout of a backup, and the guards that keep every key inside it.

::

    <prefix>/<YYYY-MM-DD>/manifest.json                     written last, once final
    <prefix>/<YYYY-MM-DD>/_run/state.json                   backup run in progress
    <prefix>/<YYYY-MM-DD>/<table>/AWSDynamoDB/<id>/...      AWS's export folder
    <prefix>/_restore/<restore-id>/checkpoint.json          restore checkpoints
    <prefix>/_restore/<restore-id>/dead-letter/<table>/...  items that could not be written
    <prefix>/_restore/_leases/<table>.json                  lease: one restore per table at a time
    <prefix>/incremental/<table>/exports/AWSDynamoDB/...    AWS's incremental exports (shared data/)
    <prefix>/incremental/<table>/chains/<chain-id>/...      the chain record (one object per window)
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse

from ddb_backup.errors import UnsafeNameError

__all__ = [
    "chain_prefix",
    "check_date",
    "check_key",
    "check_key_inside",
    "check_prefix",
    "check_table_name",
    "date_prefix",
    "dead_letter_prefix",
    "export_dead_letter_root",
    "incremental_exports_prefix",
    "incremental_prefix",
    "lease_key",
    "manifest_key",
    "restore_prefix",
    "run_state_key",
    "table_export_prefix",
    "window_state_key",
]

# DynamoDB's own rule for table names: 3-255 of [a-zA-Z0-9_.-].
_TABLE_RE = re.compile(r"^[A-Za-z0-9_.\-]{3,255}$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PREFIX_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


def check_table_name(name: str) -> str:
    """Return ``name`` if it is a valid DynamoDB table name and a safe key segment."""
    if not isinstance(name, str) or not _TABLE_RE.fullmatch(name) or set(name) == {"."}:
        raise UnsafeNameError(f"invalid table name {name!r}: expected 3-255 of [A-Za-z0-9_.-]")
    if name in {".", ".."} or name.startswith(".."):
        raise UnsafeNameError(f"invalid table name {name!r}: may not start with '..'")
    return name


def check_date(value: str) -> dt.date:
    """Parse a ``YYYY-MM-DD`` backup date strictly."""
    if not isinstance(value, str) or not _DATE_RE.fullmatch(value):
        raise UnsafeNameError(f"invalid date {value!r}: expected YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise UnsafeNameError(f"invalid date {value!r}: {exc}") from exc


def check_prefix(prefix: str) -> str:
    """A key prefix made of safe segments, without leading/trailing slashes."""
    stripped = prefix.strip("/")
    if not stripped:
        raise UnsafeNameError("the S3 prefix may not be empty")
    for segment in stripped.split("/"):
        if segment in {".", ".."} or not _PREFIX_SEGMENT_RE.fullmatch(segment):
            raise UnsafeNameError(f"invalid S3 prefix {prefix!r}: bad segment {segment!r}")
    return stripped


def _segment_is_safe(segment: str) -> bool:
    """A key segment that means itself under any number of URL decodings.

    S3 keys are literal, so a genuine export's ``100%``, ``a b``, ``a+b`` or
    ``été`` are kept; what is refused is a segment that some layer decoding it
    would turn into ``.``/``..`` or split (``%2e%2e``, ``..%2f``, ``%252e``).
    """
    value = segment
    while True:
        if value in {"", ".", ".."} or any(c in value for c in "/\\\x00"):
            return False
        decoded = urllib.parse.unquote(value)
        if decoded == value:
            return True
        value = decoded


def _key_is_safe(key: str) -> bool:
    segments = key.split("/") if isinstance(key, str) else [""]
    if len(segments) > 1 and segments[-1] == "":
        segments.pop()  # a folder's trailing slash
    return all(_segment_is_safe(s) for s in segments)


def check_key(key: str) -> str:
    """Refuse a relative key (or folder) with an empty, ``.``/``..`` or encoded-escape
    segment, a backslash or a NUL; keep every other character as it is."""
    if not _key_is_safe(key):
        raise UnsafeNameError(f"unsafe S3 key {key!r}")
    return key


def check_key_inside(key: str, prefix: str) -> str:
    """Refuse a key (e.g. read from a manifest) that is not below ``prefix/``."""
    if not _key_is_safe(key) or not key.startswith(prefix.rstrip("/") + "/"):
        raise UnsafeNameError(f"key {key!r} is outside {prefix.rstrip('/')}/")
    return key


def date_prefix(prefix: str, date: dt.date) -> str:
    return f"{check_prefix(prefix)}/{date.isoformat()}"


def table_export_prefix(prefix: str, date: dt.date, table: str) -> str:
    """The ``S3Prefix`` given to ExportTableToPointInTime (no trailing slash)."""
    return f"{date_prefix(prefix, date)}/{check_table_name(table)}"


def manifest_key(prefix: str, date: dt.date) -> str:
    return f"{date_prefix(prefix, date)}/manifest.json"


def run_state_key(prefix: str, date: dt.date) -> str:
    return f"{date_prefix(prefix, date)}/_run/state.json"


def restore_prefix(prefix: str, restore_id: str) -> str:
    if not _PREFIX_SEGMENT_RE.fullmatch(restore_id) or restore_id in {".", ".."}:
        raise UnsafeNameError(f"invalid restore id {restore_id!r}")
    return f"{check_prefix(prefix)}/_restore/{restore_id}"


def dead_letter_prefix(prefix: str, restore_id: str, table: str) -> str:
    return f"{restore_prefix(prefix, restore_id)}/dead-letter/{check_table_name(table)}"


#: Where ``restore_export`` puts dead letters when the folder's first segment
#: is not a plain prefix segment (a space, ``%``, non-ASCII...) or is the folder.
EXPORT_DEAD_LETTER_ROOT = "ddb-backup"


def export_dead_letter_root(folder: str) -> str:
    """The prefix under which a restore of export ``folder`` keeps its dead letters.

    The folder's first segment when it is a plain segment (so dead letters sit
    next to the exports), else :data:`EXPORT_DEAD_LETTER_ROOT`: a genuine export
    may have any characters in its prefix, the dead-letter location never does.
    """
    segments = folder.strip("/").split("/")
    first = segments[0]
    if len(segments) > 1 and _PREFIX_SEGMENT_RE.fullmatch(first) and first not in {".", ".."}:
        return first
    return EXPORT_DEAD_LETTER_ROOT


def incremental_prefix(prefix: str, table: str) -> str:
    """Everything point-in-time recovery keeps for one table."""
    return f"{check_prefix(prefix)}/incremental/{check_table_name(table)}"


def incremental_exports_prefix(prefix: str, table: str) -> str:
    """The ``S3Prefix`` of a table's incremental exports (they share ``AWSDynamoDB/data/``)."""
    return f"{incremental_prefix(prefix, table)}/exports"


def chain_prefix(prefix: str, table: str, chain_id: str | None = None) -> str:
    """A table's chains folder, or one chain's folder."""
    base = f"{incremental_prefix(prefix, table)}/chains"
    if chain_id is None:
        return base
    if not _PREFIX_SEGMENT_RE.fullmatch(chain_id) or chain_id in {".", ".."}:
        raise UnsafeNameError(f"invalid chain id {chain_id!r}")
    return f"{base}/{chain_id}"


def lease_key(prefix: str, table: str) -> str:
    """The lease of a target table (``_leases`` is no restore id: ids start with a digit)."""
    return f"{check_prefix(prefix)}/_restore/_leases/{check_table_name(table)}.json"


def window_state_key(prefix: str, table: str, chain_id: str, head_stamp: str) -> str:
    """Run state of the window a chain exports next, from its head (``chain.time_stamp``)."""
    chain_prefix(prefix, table, chain_id)  # checks the chain id
    if not _PREFIX_SEGMENT_RE.fullmatch(head_stamp) or head_stamp in {".", ".."}:
        raise UnsafeNameError(f"invalid window stamp {head_stamp!r}")
    return f"{incremental_prefix(prefix, table)}/runs/{chain_id}/{head_stamp}.json"
