"""Errors that are the user's to fix.

A :class:`UserError` carries a one-line message that says what is wrong and how
to fix it. The CLI prints it and exits with status 2; no traceback is shown.

Messages are written once, in the command line's terms (``--zero 3``); from Python they read in Python's
(``zero=3``, ``mf.hardware_list()``): ``str(error)`` translates unless the command line is running
(:func:`cli_terms`).
"""
from __future__ import annotations

import contextvars
import difflib
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

_CLI = contextvars.ContextVar("mlfootprint_cli_terms", default=False)


@contextmanager
def cli_terms() -> Iterator[None]:
    """Within: errors read in the command line's terms (the CLI wraps its work in this)."""
    token = _CLI.set(True)
    try:
        yield
    finally:
        _CLI.reset(token)


class UserError(Exception):
    """Bad input: a malformed shape, an unknown model or device, an impossible layout."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        # One line, always: the CLI prints it as is.
        super().__init__(" ".join(str(message).split()))

    @property
    def cli_message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        return self.cli_message if _CLI.get() else python_terms(self.cli_message)


# Options whose next word is a value even when it is a word (--mode train), and words that are never values.
_CHOICE_OPTIONS = {"mode", "precision", "recompute", "offload", "quant", "optimizer", "attention", "device",
                   "hardware", "format", "lora-targets"}
_NOT_VALUES = {"must", "applies", "is", "and", "or", "with", "needs", "to", "for", "given", "only", "not", "as",
               "the", "a", "an", "in", "of", "on", "when", "instead", "also", "alone", "both", "exceeds", "does",
               "cannot", "needed", "takes", "gives", "has", "was", "were", "first", "too", "nor"}
_OPTION = re.compile(r"--([a-z][a-z0-9-]*)(?: ([A-Za-z0-9][A-Za-z0-9._:+-]*))?")
_VERB_REF = re.compile(r"'?mlfootprint (models|hardware|history) (list|show|calibrate|add|diff)'?")
_HELP_REF = re.compile(r"'mlfootprint (\w+) --help'")
_PYTHON_NAMES = {"input": "inputs", "inputs": "inputs_ref"}
_SWITCHES = {"--no-user-hooks": "user_hooks=False", "--allow-code": "allow_code=True"}


def python_terms(message: str) -> str:
    """A message in the command line's terms, in Python's: '--zero 3' → 'zero=3', '--mode train' → 'mode="train"',
    'mlfootprint hardware list' → 'mf.hardware_list()'."""
    message = message.replace("--format json", "Report.to_json()")
    for flag, keyword in _SWITCHES.items():  # switches whose Python keyword is the opposite or a True
        message = message.replace(flag, keyword)
    message = _VERB_REF.sub(lambda m: f"mf.{m.group(1)}_{m.group(2)}()", message)
    message = _HELP_REF.sub(lambda m: f"help(mf.{m.group(1)})", message)

    def option(m: re.Match[str]) -> str:
        flag, value = m.group(1), m.group(2)
        name = _PYTHON_NAMES.get(flag, flag.replace("-", "_"))
        if value is None:
            return name
        numeric = bool(re.fullmatch(r"[0-9][0-9._e+-]*[A-Za-z]*", value))
        placeholder = value.isupper()
        if numeric or placeholder:
            return f"{name}={value}"
        if flag in _CHOICE_OPTIONS and value.lower() not in _NOT_VALUES:
            return f'{name}="{value}"'
        return f"{name} {value}"

    return _OPTION.sub(option, message)


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
