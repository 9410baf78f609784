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
def progress_bars(enabled: bool | None = None) -> Iterator[Report | None]:
    """A `Report` that draws one bar per kind of work while the block runs (None: quiet)."""
    if not (on_terminal() if enabled is None else enabled):
        yield None
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

    bars = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(),
                    console=Console(file=sys.stderr), transient=True)
    tasks: dict[str, TaskID] = {}

    def report(what: str, done: int, total: int) -> None:
        if what not in tasks:
            tasks[what] = bars.add_task(what, total=total)
        bars.update(tasks[what], completed=done, total=total)
        if bars.finished:
            bars.stop()  # all done: the bars go, whatever runs on is shown plainly

    with bars:
        yield report


@contextmanager
def spinner(text: str) -> Iterator[None]:
    """A spinner with `text` on a terminal while the block runs; nothing when piped."""
    if not on_terminal():
        yield
        return
    from rich.console import Console

    with Console(file=sys.stderr).status(text):
        yield
