"""The command line's progress display: a spinner per running phase on stderr, gone when the work is done.

Installed only when stderr is a terminal (never into a pipe, a log or a file) and ``MLFOOTPRINT_NO_PROGRESS``
is not set; the phases themselves are declared where the work is (``mlfootprint.core.progress``).
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..core import progress


class RichDisplay:
    """rich.progress on stderr, started at the first phase and stopped when the last one ends."""

    def __init__(self) -> None:
        self._progress: Any = None
        self._open = 0

    def _start(self) -> Any:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=20),
                                  MofNCompleteColumn(), TimeElapsedColumn(),
                                  console=Console(stderr=True), transient=True)
        self._progress.start()
        return self._progress

    def begin(self, description: str, total: int | None) -> Any:
        bar = self._progress or self._start()
        self._open += 1
        return bar.add_task(description, total=total)

    def advance(self, handle: Any, steps: int) -> None:
        if self._progress is not None:
            self._progress.advance(handle, steps)

    def end(self, handle: Any) -> None:
        if self._progress is None:
            return
        self._progress.remove_task(handle)
        self._open -= 1
        if self._open == 0:
            self._progress.stop()
            self._progress = None


def wanted(stream: Any = None) -> bool:
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("MLFOOTPRINT_NO_PROGRESS")


@contextmanager
def shown() -> Iterator[None]:
    """Progress on stderr for the duration (when wanted())."""
    previous = progress.install(RichDisplay()) if wanted() else None
    try:
        yield
    finally:
        if wanted():
            progress.install(previous)
