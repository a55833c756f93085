"""Every operator of one real training step on a GPU, with its output dtypes and the memory allocated after it.

    python benchmarks/gpu_op_census.py --case gpt2-train --batch 4 --seq 1024 --out census.json   # on CUDA

The step is ``gpu_validation.py``'s (the same model builder, transforms, autocast and optimizer). Each aten
operator it dispatches is logged under a ``TorchDispatchMode`` with ``torch.cuda.memory_allocated()`` after it,
so the real step's memory peak can be placed at an operator and the operators compared, one by one, with what
mlfootprint's trace for a GPU target records. ``--device cpu --scale small`` runs the same code on a CPU (memory
figures 0), as a smoke test.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_validation as gv  # noqa: E402


class Census(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[Any]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        flat, _ = tree_flatten(out)
        ts = [t for t in flat if isinstance(t, torch.Tensor)]
        self.rows.append([str(func), [str(t.dtype).replace("torch.", "") for t in ts], [list(t.shape) for t in ts],
                          torch.cuda.memory_allocated() if torch.cuda.is_available() else 0])
        return out


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        cases = {c.name: c for c in gv.make_cases(args.scale, Path(tmp))}
        case = cases[args.case]
        if args.batch:
            case.workload = {**case.workload, "batch": args.batch}
        if args.seq:
            case.workload = {**case.workload, "seq": args.seq}
        dev = torch.device(args.device)
        cuda = dev.type == "cuda"
        real = gv.build_real(case, dev)
        for _ in range(2):
            real.step()
        base = 0
        if cuda:
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        census = Census()
        with census:
            real.step()
        peak = 0
        if cuda:
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() - base
        rows = [[op, dt, sh, alloc - base] for op, dt, sh, alloc in census.rows]
        at = max(range(len(rows)), key=lambda i: rows[i][3])
        print(f"{case.name} {case.workload}: {len(rows)} ops; peak above the step's start {peak:,} B; largest "
              f"allocated after an op {rows[at][3]:,} B at op {at} {rows[at][0]}")
        counts = collections.Counter((op, tuple(dt)) for op, dt, _, _ in rows)
        for (op, dt), n in counts.most_common(25):
            print(f"  {n:5d} {op} {list(dt)}")
        if args.out:
            Path(args.out).write_text(json.dumps({"case": case.name, "workload": case.workload, "base_bytes": base,
                                                  "peak_bytes": peak, "torch": torch.__version__, "rows": rows}))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="gpt2-train", help="a model case of gpu_validation.py")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--seq", type=int, default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (a smoke test: no memory figures)")
    ap.add_argument("--scale", default="full", choices=("full", "small"), help="gpu_validation.py's case sizes")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_op_census: needs a CUDA GPU", file=sys.stderr)
        return 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
