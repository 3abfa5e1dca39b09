"""What the command line shows: rich tables and progress bars on a terminal,
plain text lines otherwise (a pipe, a log file, CI, or rich not installed).

Results go to stdout; progress goes to stderr so ``--json`` output stays
parseable while a restore is being watched. ``DDB_BACKUP_TERMINAL=1`` forces
the terminal rendering (``0`` forbids it), which the tests and ``script``
sessions use.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from types import TracebackType
from typing import IO, Any, Self

import orjson

__all__ = [
    "BackupView",
    "DownloadView",
    "Output",
    "RestoreView",
    "format_count",
    "format_duration",
    "format_size",
    "rich_available",
]


def rich_available() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def _is_terminal(stream: IO[str]) -> bool:
    forced = os.environ.get("DDB_BACKUP_TERMINAL", "").strip().lower()
    if forced in {"1", "true", "yes", "always"}:
        return rich_available()
    if forced in {"0", "false", "no", "never"}:
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and rich_available()


def format_size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def format_count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def format_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0 or seconds != seconds:  # None, negative, NaN
        return "-"
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Output:
    """stdout for results, stderr for progress and errors; rich when it helps."""

    def __init__(self, stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> None:
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.rich_stdout = _is_terminal(self.stdout)
        self.rich_stderr = _is_terminal(self.stderr)

    def console(self, *, stderr: bool = False) -> Any:
        """A rich Console on stdout/stderr (only when the stream is a terminal)."""
        from rich.console import Console

        return Console(file=self.stderr if stderr else self.stdout, force_terminal=True)

    def line(self, text: str = "") -> None:
        print(text, file=self.stdout, flush=True)

    def note(self, text: str) -> None:
        """A progress or status line on stderr."""
        print(text, file=self.stderr, flush=True)

    def json(self, doc: Any) -> None:
        data = orjson.dumps(doc, option=orjson.OPT_INDENT_2, default=str).decode()
        print(data, file=self.stdout, flush=True)

    def table(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence[str]],
        *,
        title: str | None = None,
        right: Sequence[str] = (),
    ) -> None:
        """Columns named in ``right`` are right-aligned (numbers)."""
        if self.rich_stdout:
            from rich.table import Table
            from rich.text import Text

            table = Table(title=Text(title) if title else None, title_justify="left")
            for c in columns:
                table.add_column(c, justify="right" if c in right else "left")
            for r in rows:
                # Text, not markup: a key or an error may hold "[...]".
                table.add_row(*(Text(cell) for cell in r))
            self.console().print(table)
            return
        if title:
            self.line(title)
        widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]

        def fmt(cells: Sequence[str]) -> str:
            out = [
                cell.rjust(w) if col in right else cell.ljust(w)
                for cell, w, col in zip(cells, widths, columns, strict=True)
            ]
            return "  ".join(out).rstrip()

        self.line(fmt(columns))
        self.line(fmt(["-" * w for w in widths]))
        for r in rows:
            self.line(fmt(r))


class _View:
    """A live display that owns a rich renderer (terminal) or prints lines."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.rich = out.rich_stderr
        self.started = time.monotonic()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - overridden
        pass


class BackupView(_View):
    """Each export's state: a live table on a terminal, a line per change otherwise."""

    def __init__(self, out: Output) -> None:
        super().__init__(out)
        self.states: dict[str, tuple[str, float]] = {}
        self._live: Any = None
        if self.rich:
            from rich.live import Live

            self._live = Live(
                self._render(), console=out.console(stderr=True), refresh_per_second=4
            )
            self._live.start()

    def _render(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        table = Table(title="backup", title_justify="left")
        table.add_column("table")
        table.add_column("state")
        table.add_column("since", justify="right")
        now = time.monotonic()
        for name, (state, since) in self.states.items():
            table.add_row(Text(name), Text(state), format_duration(now - since))
        return table

    def update(self, table: str, state: str) -> None:
        state = str(state)
        previous = self.states.get(table)
        if previous and previous[0] == state:
            return
        self.states[table] = (state, time.monotonic())
        if self._live is not None:
            self._live.update(self._render())
        else:
            elapsed = format_duration(time.monotonic() - self.started)
            self.out.note(f"[{elapsed}] backup {table}: {state}")

    def close(self) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.stop()
            self._live = None


class RestoreView(_View):
    """A bar per table (items written, items/s, ETA) or plain periodic lines.

    The core reports each phase change and then every :attr:`tick` seconds;
    a bar wants frequent updates, a plain log a line per ``interval`` (and
    none that repeats the previous one).
    """

    #: Seconds between the core's progress reports while a bar is shown.
    BAR_TICK = 0.5

    def __init__(
        self,
        out: Output,
        *,
        interval: float = 5.0,
        verb: str = "restore",
        dry_run: bool = False,
    ) -> None:
        super().__init__(out)
        self.interval = interval
        self.dry_run = dry_run
        self.tick = self.BAR_TICK if self.rich else max(interval, 0.1)
        self.verb = verb
        self._last: dict[str, str] = {}
        self._tasks: dict[str, Any] = {}
        self._progress: Any = None
        if self.rich:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._progress = Progress(
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("items"),
                TextColumn("{task.fields[rate]} items/s"),
                TextColumn("ETA {task.fields[eta]}"),
                console=out.console(stderr=True),
                refresh_per_second=4,
            )
            self._progress.start()

    @staticmethod
    def _numbers(p: Any) -> tuple[str, int, int | None, float, float | None]:
        phase = str(getattr(p, "phase", ""))
        written = int(getattr(p, "items_written", 0) or 0)
        expected = getattr(p, "items_expected", None)
        elapsed = float(getattr(p, "elapsed", 0.0) or 0.0)
        rate = written / elapsed if elapsed > 0 else 0.0
        eta = None
        if expected is not None and rate > 0:
            eta = max(0.0, (int(expected) - written) / rate)
        if phase == "done":
            eta = 0.0
        return phase, written, None if expected is None else int(expected), rate, eta

    def update(self, progress: Any) -> None:
        table = str(getattr(progress, "table", "?"))
        phase, written, expected, rate, eta = self._numbers(progress)
        failed = int(getattr(progress, "items_failed", 0) or 0)
        cleared = int(getattr(progress, "items_cleared", 0) or 0)
        if self._progress is not None:
            description = f"{table} ({phase})"
            if cleared:
                description += f" cleared {cleared:,}"
            if failed:
                description += f" failed {failed:,}"
            fields = {"rate": f"{rate:,.0f}", "eta": format_duration(eta)}
            if table not in self._tasks:
                self._tasks[table] = self._progress.add_task(
                    description, total=expected, completed=written, **fields
                )
            else:
                self._progress.update(
                    self._tasks[table],
                    description=description,
                    total=expected,
                    completed=written,
                    **fields,
                )
            return
        parts = [f"{self.verb} {table}: {phase}"]
        if self.dry_run and phase == "done":
            parts[0] += " (dry run: nothing written)"
        elif phase in {"writing", "done"}:
            parts.append(f"{written:,}/{format_count(expected)} items written")
        if failed:
            parts.append(f"{failed:,} failed")
        if cleared:
            parts.append(f"{cleared:,} cleared")
        files_done, files_total = (
            getattr(progress, "files_done", None),
            getattr(progress, "files_total", None),
        )
        if files_total and phase in {"writing", "done"} and not self.dry_run:
            parts.append(f"files {files_done}/{files_total}")
        key = ", ".join(parts)
        if self._last.get(table) == key:
            return  # a tick with nothing new
        self._last[table] = key
        if phase in {"writing", "done"} and not self.dry_run:
            parts.append(f"{rate:,.0f} items/s")
        if phase == "writing":
            parts.append(f"ETA {format_duration(eta)}")
        self.out.note(", ".join(parts))

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class DownloadView(_View):
    """Files copied: a bar on a terminal, a line per file otherwise."""

    def __init__(self, out: Output) -> None:
        super().__init__(out)
        self._progress: Any = None
        self._task: Any = None
        if self.rich:
            from rich.progress import Progress, SpinnerColumn, TextColumn

            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("download: {task.completed} files, {task.fields[size]} copied"),
                console=out.console(stderr=True),
            )
            self._task = self._progress.add_task("download", total=None, size="0 B")
            self._progress.start()
        self._bytes = 0

    def update(self, copied: Any) -> None:
        if self._progress is not None:
            self._bytes += 0 if copied.skipped else copied.size
            self._progress.update(self._task, advance=1, size=format_size(self._bytes))
            return
        if copied.error:
            self.out.note(f"failed  {copied.key}: {copied.error}")
        elif copied.skipped:
            self.out.note(f"skipped {copied.key} (present, MD5 matches)")
        else:
            self.out.note(f"copied  {copied.key} ({format_size(copied.size)})")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
