"""Progress for long work (`sim`, `demo`, `cluster`): a rich progress bar or spinner on stderr
when it is a terminal, nothing when it is piped or redirected (so logs and scripts get only
the results)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (rich is imported when a bar is drawn)
    from rich.progress import TaskID


Report = Callable[[str, int, int], None]  # (what, done, of how many)


def on_terminal() -> bool:
    return sys.stderr.isatty()


@contextmanager
def progress_bars(enabled: bool | None = None, until_done: bool = False
                  ) -> Iterator[Report | None]:
    """A `Report` for the block: bars on stderr when it is a terminal; when it is not, plain
    lines every tenth of the way if `enabled` asks for progress anyway; else None (quiet).
    `until_done`: the bars go as soon as every one is full (work that runs on afterwards,
    as `cluster` does, is then shown plainly)."""
    wanted = on_terminal() if enabled is None else enabled
    if not wanted:
        yield None
        return
    if not on_terminal():
        yield tenths()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    # Not redirecting stdout: results printed meanwhile stay on stdout (piped, say).
    bars = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=Console(file=sys.stderr),
                    transient=True, redirect_stdout=False, redirect_stderr=False)
    tasks: dict[str, TaskID] = {}

    def report(what: str, done: int, total: int) -> None:
        if what not in tasks:
            tasks[what] = bars.add_task(what, total=total)
        bars.update(tasks[what], completed=done, total=total)
        if until_done and bars.finished:
            bars.stop()

    with bars:
        yield report


def tenths() -> Report:
    """Progress as a line on stderr every tenth of the way (for logs and pipes)."""
    said: dict[str, int] = {}

    def report(what: str, done: int, total: int) -> None:
        tenth = done * 10 // max(1, total)
        if tenth > said.get(what, 0):
            said[what] = tenth
            print(f"  {done}/{total} {what}", file=sys.stderr, flush=True)

    return report


@contextmanager
def spinner(text: str) -> Iterator[None]:
    """A spinner with `text` on a terminal while the block runs; nothing when piped."""
    if not on_terminal():
        yield
        return
    from rich.console import Console

    with Console(file=sys.stderr).status(text):
        yield
