"""Per-run metrics in CloudWatch Embedded Metric Format (EMF).

EMF is Lambda's own convention: one JSON line on stdout with an ``_aws``
block is turned into metrics by CloudWatch Logs, with no API call and no
extra dependency in the Lambda package. Only counts and durations go here.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

import orjson

__all__ = ["NAMESPACE", "emf_document", "emit_metrics"]

NAMESPACE = "DdbBackup"

_UNITS = {
    "duration_seconds": "Seconds",
    "chain_lag_seconds": "Seconds",
    "max_chain_lag_seconds": "Seconds",
    "items_per_second": "Count/Second",
}


def emf_document(
    metrics: Mapping[str, float],
    dimensions: Mapping[str, str],
    *,
    namespace: str = NAMESPACE,
    timestamp_ms: int | None = None,
) -> dict[str, Any]:
    """Build one EMF document (exposed for tests)."""
    return {
        "_aws": {
            "Timestamp": timestamp_ms if timestamp_ms is not None else int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [sorted(dimensions)],
                    "Metrics": [
                        {"Name": name, "Unit": _UNITS.get(name, "Count")} for name in metrics
                    ],
                }
            ],
        },
        **dimensions,
        **metrics,
    }


def emit_metrics(
    metrics: Mapping[str, float],
    dimensions: Mapping[str, str],
    *,
    namespace: str = NAMESPACE,
    stream: TextIO | None = None,
) -> None:
    """Write one EMF line, e.g. ``emit_metrics({"tables_failed": 1}, {"Function": "backup"})``."""
    out = stream or sys.stdout
    out.write(orjson.dumps(emf_document(metrics, dimensions, namespace=namespace)).decode() + "\n")
    out.flush()
