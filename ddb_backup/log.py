"""Structured JSON-lines logging, in the shape Lambda's JSON log format uses.

Only names, keys, counts and timings are ever logged. Attribute values are
never passed to a logger anywhere in the package (the tables hold MFA
secrets); the tests restore marker secrets and search every line for them.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Any

import orjson

__all__ = ["JsonFormatter", "configure_logging", "get_logger"]

_STANDARD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "timestamp": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                doc[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            # Type and message only: a traceback's locals could hold item data.
            doc["error_type"] = record.exc_info[0].__name__
            doc["error"] = str(record.exc_info[1])
        return orjson.dumps(doc, default=str).decode()


def configure_logging(level: str | int = "INFO", stream: Any = None) -> None:
    """Route the ``ddb_backup`` loggers to JSON lines (idempotent)."""
    logger = logging.getLogger("ddb_backup")
    logger.setLevel(level)
    for handler in list(logger.handlers):
        if getattr(handler, "_ddb_backup", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    handler._ddb_backup = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.propagate = False


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name if name.startswith("ddb_backup") else f"ddb_backup.{name}")
