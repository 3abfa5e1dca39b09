"""Where things are, for tests in any folder: the repository root and the sample events."""

from __future__ import annotations

from pathlib import Path

#: The repository root (tests/support/paths.py is two folders below it).
ROOT = Path(__file__).resolve().parents[2]
#: Sample Lambda events (tests/events/), as the README and the handlers' docs show them.
EVENTS = ROOT / "tests" / "events"
