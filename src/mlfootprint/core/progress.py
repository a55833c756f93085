"""Progress of long work: said by the code that does it, shown (or not) by whoever owns the terminal.

Analysis code wraps work that can take seconds in ``with phase("tracing llama-2-7b"):`` (or, with a
known number of steps, ``with phase("checking 24 claims", total=24) as advance: ... advance()``). Nothing
is shown unless a display is installed: the command line installs a spinner on stderr when stderr is a
terminal (``commands/progress.py``); the Python API stays silent unless the caller installs one.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol


class Display(Protocol):
    def begin(self, description: str, total: int | None) -> Any: ...

    def advance(self, handle: Any, steps: int) -> None: ...

    def end(self, handle: Any) -> None: ...


_display: Display | None = None


def install(display: Display | None) -> Display | None:
    """Show progress on ``display`` from now on (``None``: show nothing); returns the one it replaces."""
    global _display
    previous, _display = _display, display
    return previous


@contextmanager
def phase(description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """A stretch of work, shown while it runs; yields ``advance(steps=1)`` for work of ``total`` steps."""
    display = _display
    if display is None:
        yield lambda steps=1: None
        return
    handle = display.begin(description, total)
    try:
        yield lambda steps=1: display.advance(handle, steps)
    finally:
        display.end(handle)


class LazyPhase:
    """A phase of ``total`` steps that begins at its first ``advance`` rather than when entered: for work that
    forks worker processes first (``core/forked.py``), as a display may start a thread, and forking is only
    safe with one thread running."""

    def __init__(self, description: str, total: int) -> None:
        self.description, self.total = description, total
        self._cm: Any = None
        self._advance: Callable[[int], None] | None = None

    def advance(self, steps: int = 1) -> None:
        if self._advance is None:
            self._cm = phase(self.description, total=self.total)
            self._advance = self._cm.__enter__()
        self._advance(steps)

    def __enter__(self) -> "LazyPhase":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._cm is not None:
            self._cm.__exit__(*exc)
