"""Errors that are the user's to fix.

A :class:`UserError` carries a one-line message that says what is wrong and how
to fix it. The CLI prints it and exits with status 2; no traceback is shown.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input: a malformed shape, an unknown model or device, an impossible layout."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        # One line, always: the CLI prints it as is.
        super().__init__(" ".join(str(message).split()))


class MissingExtraError(UserError):
    """An optional dependency is needed for this input."""

    def __init__(self, what: str, extra: str, module: str) -> None:
        super().__init__(
            f"{what} needs the optional package '{module}', which is not installed; "
            f"install it with: pip install 'mlfootprint[{extra}]'"
        )


def suggest(name: str, candidates: Iterable[str], n: int = 3) -> str:
    """Return ' Did you mean: a, b?' for the closest candidates, or ''."""
    names = sorted(set(candidates))
    close = difflib.get_close_matches(name.lower(), [c.lower() for c in names], n=n, cutoff=0.5)
    by_lower = {c.lower(): c for c in names}
    if not close:
        # substring matches help with prefixes like "llama" or "opt".
        close = [c.lower() for c in names if name.lower() in c.lower()][:n]
    if not close:
        return ""
    return " Did you mean: " + ", ".join(by_lower[c] for c in close) + "?"
