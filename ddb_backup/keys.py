"""The S3 layout of a backup, and the guards that keep every key inside it.

::

    <prefix>/<YYYY-MM-DD>/manifest.json                     written last, once final
    <prefix>/<YYYY-MM-DD>/_run/state.json                   backup run in progress
    <prefix>/<YYYY-MM-DD>/<table>/AWSDynamoDB/<id>/...      AWS's export folder
    <prefix>/_restore/<restore-id>/checkpoint.json          restore checkpoints
    <prefix>/_restore/<restore-id>/dead-letter/<table>/...  items that could not be written
    <prefix>/_restore/_leases/<table>.json                  lease: one restore per table at a time
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse

from ddb_backup.errors import UnsafeNameError

__all__ = [
    "check_date",
    "check_key_inside",
    "check_prefix",
    "check_table_name",
    "date_prefix",
    "dead_letter_prefix",
    "lease_key",
    "manifest_key",
    "restore_prefix",
    "run_state_key",
    "table_export_prefix",
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


def check_key_inside(key: str, prefix: str) -> str:
    """Refuse a key (e.g. read from a manifest) that is not below ``prefix/``."""
    decoded = urllib.parse.unquote(key)
    parts = decoded.split("/")
    if (
        decoded != key
        or key.startswith("/")
        or ".." in parts
        or "." in parts
        or "" in parts[:-1]
        or "\\" in key
        or "\x00" in key
        or not key.startswith(prefix.rstrip("/") + "/")
    ):
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


def lease_key(prefix: str, table: str) -> str:
    """The lease of a target table (``_leases`` is no restore id: ids start with a digit)."""
    return f"{check_prefix(prefix)}/_restore/_leases/{check_table_name(table)}.json"
