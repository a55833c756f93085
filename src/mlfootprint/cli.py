"""The ``mlfootprint`` command: parse the arguments, call the verb, render its Report. No logic of its own.

Each verb's arguments live in ``mlfootprint.commands.<verb>`` (``register(subparsers)`` adds its parser and
sets ``func``). A verb's ``func`` returns a :class:`~mlfootprint.report.schema.Report`, which is rendered with
``--format``/``-o`` (``None`` only for help and listings printed directly). A :class:`UserError` becomes
one line and exit 2. A command may set ``args.after_emit`` (the report → an exit status) to decide the status
once its answer is out (``claims --check``).
"""
from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import os
import sys
from collections.abc import Iterator, Sequence

from .commands import (analyze, bench, claims, compare, count, footprint, hardware, history, memory, mfu, models,
                       plan, predict, report, table)
from .commands.output import emit, output_format
from .commands.progress import shown as progress_shown
from .core.errors import UserError, cli_terms
from .core.files import check_not_read, check_writable
from .core.version import __version__

# Order is the order of `mlfootprint --help`.
COMMANDS = (analyze, count, memory, predict, plan, mfu, bench, footprint, models, hardware, report, compare,
            table, history, claims)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's usage errors: one line, exit 2
        raise UserError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mlfootprint", description="What a neural network costs to train and to serve.")
    parser.add_argument("--version", action="version", version=f"mlfootprint {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    with cli_terms(), _rare_full_collections():  # errors read in the command line's terms ('--zero 3', not 'zero=3')
        return _main(argv)


def run() -> None:
    """The installed ``mlfootprint`` command and ``python -m mlfootprint``: :func:`main`, then the exit.

    The exit skips the interpreter's teardown. Once torch and transformers are imported, Python's finalization
    (freeing every module's objects one by one, then libtorch's static destructors) takes about a second on a
    2-core machine: a fifth of a cold ``plan``, all of it after the answer is out. What a normal exit does that
    matters is done here first: the ``atexit`` callbacks (logging's flush, ``weakref.finalize`` clean-ups,
    coverage's data file), then stdout and stderr flushed. Files the command wrote are already closed (reports
    and cache entries are written and renamed into place before their function returns). Under a tracer or a
    profiler (``python -m cProfile``), which write their results after the module returns, the normal exit."""
    code = main()
    if sys.gettrace() is not None or sys.getprofile() is not None:
        sys.exit(code)
    _exit_now(code)


def _exit_now(code: int) -> None:
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # `| head` closed the pipe, or the stream is already closed
            pass
    os._exit(code)


@contextlib.contextmanager
def _rare_full_collections() -> Iterator[None]:
    """A verb imports torch and transformers and builds large object graphs that reference counting frees; each
    full (generation-2) garbage collection rescans all of them for little garbage, a fifth of a cold `count` of a
    70B model. Full collections 100 times rarer while a command runs (as mypy's command line does); the
    process's settings come back after."""
    before = gc.get_threshold()
    gc.set_threshold(before[0], before[1], max(before[2], 1000))
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _named_files(args: argparse.Namespace) -> list[tuple[str, str]]:
    """Every argument that names a path (reports to compare, a history database, a model's config): (option,
    path) pairs, for -o not to replace a file the command reads."""
    found = []
    for name, value in vars(args).items():
        if name == "output" or callable(value):
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, (str, os.PathLike)) and str(v) and str(v) != "-":
                found.append(("an input" if name in ("files", "model") else "--" + name.replace("_", "-"), str(v)))
    return found


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # named with the verb's own help (argparse names the top-level parser's)
            words = list(sys.argv[1:] if argv is None else argv)
            verb = getattr(args, "verb", None) or next((w for w in words if not w.startswith("-")), None)
            where = f"mlfootprint {verb}" if verb else "mlfootprint"
            raise UserError(f"unrecognized arguments: {' '.join(extra)} (see '{where} --help')")
        if not getattr(args, "func", None):
            parser.print_help()
            return 0
        if getattr(args, "output", None) and args.output != "-":
            force = bool(getattr(args, "force", False))
            output_format(args)  # an extension naming a format the verb does not write: said before any work
            check_writable(args.output, force=force)  # refuse before any work
            check_not_read(args.output, _named_files(args), force=force)
        with progress_shown():  # a spinner on stderr for long work, only on a terminal
            rep = args.func(args)
        if rep is not None:
            emit(rep, args)
            after = getattr(args, "after_emit", None)
            if after is not None:
                return after(rep)
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
    run()
