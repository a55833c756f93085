"""Process-wide state a trace must leave as it found it.

A trace builds models with transformers (whose config and model code warn about things that are not the user's
business here) and runs the user's code; either may change global settings of torch or of a library's logger.
The caller's settings are restored on the way out, whatever happens inside.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch

# Loggers whose warnings a trace silences while it runs (transformers.logging.set_verbosity_error() sets the
# level of the "transformers" logger; this does the same and puts the caller's level back afterwards).
QUIET_LOGGERS = ("transformers",)


@contextlib.contextmanager
def isolated_global_state() -> Iterator[None]:
    """Silence :data:`QUIET_LOGGERS` inside; on exit restore their levels, torch's default dtype and its
    deterministic-algorithm flags to what the caller had."""
    loggers = {name: logging.getLogger(name) for name in QUIET_LOGGERS}
    levels = {name: lg.level for name, lg in loggers.items()}
    dtype = torch.get_default_dtype()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    for lg in loggers.values():
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, lg in loggers.items():
            lg.setLevel(levels[name])
        if torch.get_default_dtype() != dtype:
            torch.set_default_dtype(dtype)
        if (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()) \
                != (deterministic, warn_only):
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
