"""The `mlfootprint` command: verbs → API calls → renderers, no logic of its own.

Each verb lives in ``mlfootprint.commands.<verb>`` and exposes
``register(subparsers)`` (adds its parser and sets ``func``). A verb's ``func``
returns a :class:`Report` (rendered here with --format/-o) or ``None`` when it
printed its own output. A :class:`UserError` becomes one line and exit 2.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from . import __version__
from .core.errors import UserError

# Order is the order of `mlfootprint --help`.
VERB_MODULES = (
    "analyze", "count", "memory", "predict", "plan", "mfu", "bench", "footprint",
    "models", "hardware", "report", "compare", "history", "claims",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's usage errors: one line, exit 2
        raise UserError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mlfootprint", description="What a neural network costs to train and to serve.")
    parser.add_argument("--version", action="version", version=f"mlfootprint {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    for name in VERB_MODULES:
        try:
            module = importlib.import_module(f"mlfootprint.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"mlfootprint.commands.{name}":
                continue  # verb not built yet
            raise
        module.register(sub)
    return parser


def emit(report, args: argparse.Namespace) -> None:
    from .commands.output import output_format, write_output
    from .report.render import render

    text = render(report, output_format(args), args)
    write_output(args, text)
    if getattr(args, "save", False):
        from .report.history import save_to_history

        entry = save_to_history(report, db=getattr(args, "db", None), label=getattr(args, "label", None))
        print(f"mlfootprint: saved to the history as entry {entry}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 0
        if getattr(args, "output", None) and args.output != "-":
            from .core.files import check_writable

            check_writable(args.output, force=bool(getattr(args, "force", False)))  # refuse before any work
        report = args.func(args)
        if report is not None:
            emit(report, args)
        return 0
    except UserError as exc:
        print(f"mlfootprint: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mlfootprint: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `mlfootprint ... | head`: not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
