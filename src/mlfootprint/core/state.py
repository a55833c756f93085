"""Process-wide state a trace must leave as it found it.

A trace builds models with transformers (whose config and model code warn about things that are not the user's
business here) and runs the user's code; either may change global settings of torch or of a library's logger.
The caller's settings are restored on the way out, whatever happens inside.
"""
from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

# Loggers whose warnings a trace silences while it runs (transformers.logging.set_verbosity_error() sets the
# level of the "transformers" logger; this does the same and puts the caller's level back afterwards). Each is
# also the name of the library's module.
QUIET_LOGGERS = ("transformers",)
_active = 0  # isolated_global_state() blocks running


def quiet_dependency_loggers() -> None:
    """Inside isolated_global_state(): silence the libraries again (call after importing one, which sets its own
    level on first import)."""
    if _active:
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)


def _library_default_level(name: str) -> int:
    """The level a library sets on its first import (transformers: TRANSFORMERS_VERBOSITY or WARNING)."""
    utils = getattr(sys.modules.get(name), "utils", None)
    getter = getattr(getattr(utils, "logging", None), "_get_default_logging_level", None)
    try:
        return int(getter()) if callable(getter) else logging.WARNING
    except Exception:  # noqa: BLE001 - a library's private helper: fall back to logging's default
        return logging.WARNING


@contextlib.contextmanager
def isolated_global_state() -> Iterator[None]:
    """Silence :data:`QUIET_LOGGERS` inside; on exit restore their levels, torch's default dtype and its
    deterministic-algorithm flags to what the caller had."""
    global _active
    import torch

    loggers = {name: logging.getLogger(name) for name in QUIET_LOGGERS}
    levels = {name: lg.level for name, lg in loggers.items()}
    imported = {name: name in sys.modules for name in QUIET_LOGGERS}
    dtype = torch.get_default_dtype()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    _active += 1
    quiet_dependency_loggers()
    try:
        yield
    finally:
        _active -= 1
        for name, lg in loggers.items():
            # a library first imported inside gets the level its own import would have set
            first_import = not imported[name] and name in sys.modules
            lg.setLevel(_library_default_level(name) if first_import else levels[name])
        if torch.get_default_dtype() != dtype:
            torch.set_default_dtype(dtype)
        if (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()) \
                != (deterministic, warn_only):
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
