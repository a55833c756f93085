"""Merge the per-rank files of a tracked job into one report, after any failure.

    python -m mlfootprint.measure.merge run.json.ranks -o run.json

PATHS are per-rank files (``rank<N>.jsonl``), folders of them, or a report
path whose ``<report>.ranks`` folder exists. The report is what rank 0 writes
at the end of a run that went well (see :mod:`mlfootprint.measure.distributed`);
ranks that wrote no final record are marked ``partial``, absent ones ``missing``.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..core.errors import UserError
from .distributed import merge_rank_files, write_report


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mlfootprint.measure.merge",
                                description="Merge per-rank tracking files into one report.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="rank<N>.jsonl files, their folder, or the report path")
    p.add_argument("-o", "--output", default=None, help="write the report (JSON) here instead of stdout")
    p.add_argument("--warmup-steps", type=int, default=None, help="steps left out of rates (default: as tracked)")
    args = p.parse_args(argv)
    try:
        if args.warmup_steps is not None and args.warmup_steps < 0:
            raise UserError(f"--warmup-steps must be >= 0, got {args.warmup_steps}")
        rep = merge_rank_files(args.paths, warmup=args.warmup_steps)
        if args.output:
            write_report(rep, args.output)
        else:
            sys.stdout.write(rep.to_json() + "\n")
    except UserError as exc:
        print(f"mlfootprint: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
