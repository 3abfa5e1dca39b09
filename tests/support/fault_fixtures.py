"""pytest plugin: the ``faulty_aws`` fixture, fast botocore retries, reliability figures.

``faulty_aws`` starts a :class:`~tests.support.faults.FaultProxy` in front of
the (freshly reset) session moto server and points ``AWS_ENDPOINT_URL`` at it
for the test only; with no faults set it is a plain pass-through, so set-up
code may go through it too. The seed is the test's ``@pytest.mark.fault_seed(n)``,
else ``FAULT_SEED`` from the environment, else derived from the test's id.

Tests report what they checked with :func:`record_figures`; at the end of the
session the figures (faults injected per kind, items checked, items lost) are
written to ``.pytest_cache/reliability.json`` for the README's Reliability section.
"""

from __future__ import annotations

import json
import os
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.faults import Fault, FaultProxy

__all__ = ["Fault", "FaultProxy", "fast_retries", "faulty_aws", "record_figures"]

_FIGURES: dict[str, dict[str, Any]] = {}
_PASSED: set[str] = set()
#: Where the session's figures are written (next to pytest's own cache).
REPORT_PATH = Path(__file__).resolve().parents[2] / ".pytest_cache" / "reliability.json"


def record_figures(
    nodeid: str,
    *,
    faults: Counter[str] | dict[str, int] | None = None,
    items_checked: int = 0,
    items_lost: int = 0,
    **extra: Any,
) -> None:
    """Add one test's figures to the session report (merged if called twice)."""
    entry = _FIGURES.setdefault(nodeid, {"faults": {}, "items_checked": 0, "items_lost": 0})
    for kind, n in (faults or {}).items():
        entry["faults"][kind] = entry["faults"].get(kind, 0) + n
    entry["items_checked"] += items_checked
    entry["items_lost"] += items_lost
    entry.update(extra)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fault_seed(n): seed of the fault proxy's random choices")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.passed:
        _PASSED.add(report.nodeid)


def pytest_sessionfinish(session: pytest.Session) -> None:
    # Only tests that passed count (an expected failure proves nothing).
    figures = {k: v for k, v in _FIGURES.items() if k in _PASSED}
    if not figures:
        return
    chaos = {k: v for k, v in figures.items() if "/test_chaos" in k}
    report = {
        **_summary(figures),
        "chaos_tests": _summary(chaos),
        "per_test": dict(sorted(figures.items())),
    }
    REPORT_PATH.parent.mkdir(parents=True, exist_ok=True)
    REPORT_PATH.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")


def _summary(figures: dict[str, dict[str, Any]]) -> dict[str, Any]:
    totals: Counter[str] = Counter()
    for entry in figures.values():
        totals.update(entry["faults"])
    return {
        "tests": len(figures),
        "faults_injected": sum(n for k, n in totals.items() if k != "unprocessed_items"),
        "faults_by_kind": dict(sorted(totals.items())),
        "items_checked": sum(e["items_checked"] for e in figures.values()),
        "items_lost": sum(e["items_lost"] for e in figures.values()),
    }


def main() -> None:
    """``python -m tests.support.fault_fixtures``: the last run's figures, for the README."""
    report = json.loads(REPORT_PATH.read_text())
    for title, part in (("all fault tests", report), ("chaos tests", report["chaos_tests"])):
        print(
            f"{title}: {part['tests']} tests, {part['faults_injected']} faults injected, "
            f"{part['items_checked']} items checked, {part['items_lost']} items lost"
        )
        for kind, n in part["faults_by_kind"].items():
            print(f"  {kind:<50} {n:>6}")


if __name__ == "__main__":
    main()


@pytest.fixture
def faulty_aws(moto: str, request: pytest.FixtureRequest) -> Iterator[FaultProxy]:
    """A fault proxy before a clean moto; AWS_ENDPOINT_URL points at it for this test."""
    marker = request.node.get_closest_marker("fault_seed")
    if marker is not None:
        seed = int(marker.args[0])
    elif os.environ.get("FAULT_SEED"):
        seed = int(os.environ["FAULT_SEED"])
    else:
        seed = zlib.crc32(request.node.nodeid.encode())
    with FaultProxy(moto, seed=seed) as proxy, pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        for var in ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_S3"):
            env.delenv(var, raising=False)
        request.node.user_properties.append(("fault_seed", seed))
        yield proxy
        if proxy.counts:
            record_figures(request.node.nodeid, faults=proxy.counts, seed=seed)


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scale botocore's own retry backoff down 100x (same jitter, same attempts)."""
    from botocore.retries.standard import ExponentialBackoff

    original = ExponentialBackoff.delay_amount

    def quick(self: ExponentialBackoff, context: Any) -> float:
        return float(original(self, context)) / 100

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", quick)
