"""mlfootprint: what a neural network costs to train and to serve.

    import mlfootprint as mf
    rep = mf.analyze("llama-2-7b", mf.Workload(mode="train", seq=4096, hardware="h100-sxm"))

Every verb of the command line is a function here (see :mod:`mlfootprint.api`). Importing the package is
cheap; the verbs (and torch) load on first use.
"""
from __future__ import annotations

from typing import Any

from .core.version import __version__

__all__ = [
    "__version__", "Report", "Workload", "Layout",
    "analyze", "count", "memory", "predict", "plan", "mfu", "bench", "footprint", "track",
    "models_list", "models_show", "hardware_list", "hardware_show", "hardware_calibrate",
    "claims", "compare", "table", "load_report", "history_add", "history_list", "history_show", "history_diff",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'mlfootprint' has no attribute {name!r}")
