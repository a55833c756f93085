"""Render a Report: dispatch by --format to one renderer per format."""
from __future__ import annotations

import argparse
from collections.abc import Callable

from ..core.errors import UserError
from .schema import Report

Renderer = Callable[[Report, argparse.Namespace | None], str]
_RENDERERS: dict[str, Renderer] = {}


def renderer(fmt: str) -> Callable[[Renderer], Renderer]:
    def deco(fn: Renderer) -> Renderer:
        _RENDERERS[fmt] = fn
        return fn

    return deco


def render(report: Report, fmt: str, args: argparse.Namespace | None = None) -> str:
    _load_builtin()
    try:
        fn = _RENDERERS[fmt]
    except KeyError:
        raise UserError(f"unknown format {fmt!r}; choose one of: {', '.join(sorted(_RENDERERS))}") from None
    return fn(report, args)


def formats() -> list[str]:
    _load_builtin()
    return sorted(_RENDERERS)


def _load_builtin() -> None:
    # Importing registers them; optional renderers may be absent.
    import importlib

    for name in ("json_out", "text", "markdown", "latex", "csv_out", "html"):
        try:
            importlib.import_module(f"mlfootprint.report.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"mlfootprint.report.{name}":
                raise


@renderer("json")
def _json(report: Report, args: argparse.Namespace | None) -> str:
    return report.to_json()
