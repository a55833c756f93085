"""Where a verb's answer goes: ``--format``, ``-o FILE`` and ``--force``, the same for every verb."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from ..core.errors import UserError
from ..core.files import write_text
from ..report.history import save_to_history
from ..report.render import render
from ..report.text import DEFAULT_WIDTH

ALL_FORMATS = ("table", "json", "md", "latex", "csv", "html")

# -o's extension picks the format when --format is not given.
_BY_EXTENSION = {".json": "json", ".md": "md", ".markdown": "md", ".tex": "latex", ".csv": "csv",
                 ".html": "html", ".htm": "html", ".txt": "table"}


def add_output_options(p: argparse.ArgumentParser, formats: Sequence[str] = ALL_FORMATS) -> None:
    """--format, -o and --force, shared by every verb."""
    p.add_argument("--format", choices=list(formats), default=None,
                   help="output format (default: from -o's extension, else table)")
    p.add_argument("-o", "--output", metavar="FILE", default=None,
                   help="write the output to FILE instead of stdout (a regular file; the extension picks the format)")
    p.add_argument("--force", action="store_true",
                   help="with -o: replace FILE even if mlfootprint did not write it")
    p.add_argument("--details", action="store_true",
                   help="every breakdown and every assumption, not just the answer (table, md, latex)")
    p.set_defaults(output_formats=tuple(formats))


def output_format(args: argparse.Namespace) -> str:
    """--format if given, else the one -o's extension names (when the verb has it), else table."""
    fmt = getattr(args, "format", None)
    if fmt:
        return fmt
    out = str(getattr(args, "output", None) or "").lower()
    allowed = getattr(args, "output_formats", ALL_FORMATS)
    for ext, by_ext in _BY_EXTENSION.items():
        if out.endswith(ext):
            if by_ext not in allowed:  # a box-drawn table in a .tex or .csv file is not what its name says
                raise UserError(f"-o {args.output} names the {by_ext} format, which this command does not write "
                                f"({', '.join(allowed)}); give --format, or a file name with another extension")
            return by_ext
    return "table"


def write_output(args: argparse.Namespace, text: str) -> None:
    """Print ``text``, or write it to -o FILE by the safe-file rules (mlfootprint.core.files)."""
    text = text if text.endswith("\n") else text + "\n"
    output = getattr(args, "output", None)
    if output and output != "-":
        write_text(output, text, force=bool(getattr(args, "force", False)))
    else:
        sys.stdout.write(text)


def emit(report: Any, args: argparse.Namespace) -> None:
    """Render a verb's Report in the format asked, write it (stdout or -o), and save it (--save)."""
    fmt = output_format(args)
    to_file = bool(getattr(args, "output", None)) and args.output != "-"
    # colour only on a terminal (report/text.py also honours NO_COLOR); a file gets the default width
    args.color = not to_file and sys.stdout.isatty()
    if to_file and not getattr(args, "width", None):
        args.width = DEFAULT_WIDTH
    text = render(report, fmt, args)
    entry = None
    if getattr(args, "save", False):
        # saved before -o is written: a history that refuses the report (a folder, a foreign file) leaves the
        # output file as it was (-o was checked before any work, so the write below does not refuse)
        entry = save_to_history(report, db=getattr(args, "db", None), label=getattr(args, "label", None))
    write_output(args, text)
    memory = report.get("memory") if hasattr(report, "get") else None
    if memory and memory.get("fits") is False:
        # said on stderr too: a JSON answer, a file or a pipe would not show it to the person who ran this
        print("mlfootprint: warning: the workload does not fit in device memory (see memory.suggestions)",
              file=sys.stderr)
    if entry is not None:
        print(f"mlfootprint: saved to the history as entry {entry}", file=sys.stderr)
