"""Render a Report: dispatch by --format to one renderer per format."""
from __future__ import annotations

import argparse
import importlib
import shutil
from collections.abc import Callable
from typing import Any

from ..core.errors import UserError

# A renderer takes a Report (report/schema.py, which renders through this module) and the options.
Renderer = Callable[[Any, argparse.Namespace | None], str]
_RENDERERS: dict[tuple[str, str | None], Renderer] = {}


def renderer(fmt: str, verb: str | None = None) -> Callable[[Renderer], Renderer]:
    """Register a renderer for a format; with ``verb``, for the reports of that verb only."""
    def deco(fn: Renderer) -> Renderer:
        _RENDERERS[(fmt, verb)] = fn
        return fn

    return deco


def text_width(args: argparse.Namespace | None, default: int = 100) -> int:
    """The width of text output: ``--width`` (a file gets the default), else the terminal's (``COLUMNS``),
    at least 60 columns."""
    width = getattr(args, "width", None) if args is not None else None
    return max(60, int(width or shutil.get_terminal_size((default, 24)).columns))


def render(report: Any, fmt: str, args: argparse.Namespace | None = None) -> str:
    _load_builtin()
    fn = _RENDERERS.get((fmt, report.verb)) or _RENDERERS.get((fmt, None))
    if fn is None:
        raise UserError(f"unknown format {fmt!r}; choose one of: {', '.join(formats())}")
    return fn(report, args)


def formats() -> list[str]:
    _load_builtin()
    return sorted({fmt for fmt, verb in _RENDERERS if verb is None})


def _load_builtin() -> None:
    # Importing registers them (each module decorates its renderers).
    for name in ("json_out", "text", "markdown", "latex", "csv_out", "html", "claims", "history_view", "catalog_view",
                 "paper_table"):
        try:
            importlib.import_module(f"mlfootprint.report.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"mlfootprint.report.{name}":
                raise


@renderer("json")
def _json(report: Any, args: argparse.Namespace | None) -> str:
    return report.to_json()
