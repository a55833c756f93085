"""Calls that may block (an energy meter's read, the job's key-value store after a rank died), bounded in time.

The call runs in a daemon thread and is waited for at most ``timeout_s``. A call that blocks longer is
abandoned: its thread stays blocked (Python cannot stop a thread), but as a daemon it does not keep the process
alive, and the caller goes on with :class:`CallTimeout`.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar
from ..core.units import plain_number

_T = TypeVar("_T")


class CallTimeout(Exception):
    """The call did not return within its time limit (it was abandoned)."""


def call_bounded(fn: Callable[[], _T], timeout_s: float, what: str = "call") -> _T:
    """``fn()``, or CallTimeout after `timeout_s` seconds; an exception of ``fn`` is raised here."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name=f"mlfootprint-{what}"[:60], daemon=True).start()
    if not done.wait(max(0.0, timeout_s)):
        raise CallTimeout(f"{what} did not answer within {plain_number(timeout_s, 3)} s")
    if "error" in box:
        raise box["error"]
    return box["value"]
