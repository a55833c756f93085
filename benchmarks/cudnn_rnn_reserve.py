"""Measure cuDNN's RNN reserve space (what a training-mode LSTM/GRU/RNN keeps for its backward) on a CUDA GPU.

    python benchmarks/cudnn_rnn_reserve.py --out reserve.json          # on a CUDA machine (about 30 s)
    python benchmarks/cudnn_rnn_reserve.py --quick                     # a handful of shapes

cuDNN publishes no size rule for the reserve space: ``cudnnGetRNNTempSpaceSizes`` reports it at run time only.
So this script asks the real kernel. For each shape it runs ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` in training
mode and reads the reserve tensor that autograd saved for ``_cudnn_rnn_backward`` (result 3 of
``aten._cudnn_rnn``), and it measures with the caching allocator what the forward keeps beyond its outputs and
the transient peaks of the forward and the backward. The JSON it writes is the source of the size rule in
``src/mlfootprint/trace/data/cudnn_rnn.toml``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import sys
from typing import Any

import torch
from torch import nn

MODES = {"LSTM": nn.LSTM, "GRU": nn.GRU, "RNN_TANH": nn.RNN}


def _reserve_from_graph(out: torch.Tensor) -> tuple[int | None, str | None]:
    """Bytes of the reserve tensor autograd saved for cuDNN's RNN backward, found by walking the graph."""
    seen, stack = set(), [out.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        if type(fn).__name__.startswith("CudnnRnnBackward"):
            t = getattr(fn, "_saved_result3", None)
            if isinstance(t, torch.Tensor):
                return t.numel() * t.element_size(), str(t.dtype)
            return None, None
        stack.extend(f for f, _ in fn.next_functions)
    return None, None


def measure(mode: str, dtype: torch.dtype, layers: int, bidir: bool, seq: int, batch: int, inp: int, hidden: int,
            proj: int = 0) -> dict[str, Any]:
    dev = torch.device("cuda")
    kwargs: dict[str, Any] = {"num_layers": layers, "bidirectional": bidir}
    if proj:
        kwargs["proj_size"] = proj
    rnn = MODES[mode](inp, hidden, **kwargs).to(dev, dtype)
    rnn.flatten_parameters()  # one contiguous weight buffer, as cuDNN wants (else it compacts at every call)
    rnn.train()
    x = torch.randn(seq, batch, inp, device=dev, dtype=dtype, requires_grad=True)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out, state = rnn(x)
    torch.cuda.synchronize()
    fwd_peak = torch.cuda.max_memory_allocated() - before
    kept = torch.cuda.memory_allocated() - before
    states = state if isinstance(state, tuple) else (state,)
    outputs = sum(t.numel() * t.element_size() for t in (out, *states))
    reserve, reserve_dtype = _reserve_from_graph(out)
    after_fwd = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out.float().sum().backward()
    torch.cuda.synchronize()
    bwd_peak = torch.cuda.max_memory_allocated() - after_fwd
    rec = {"mode": mode, "dtype": str(dtype).replace("torch.", ""), "layers": layers, "bidirectional": bidir,
           "seq": seq, "batch": batch, "input": inp, "hidden": hidden, "proj": proj,
           "reserve_bytes": reserve, "reserve_dtype": reserve_dtype, "forward_kept_bytes": kept,
           "outputs_bytes": outputs, "forward_peak_bytes": fwd_peak, "backward_peak_bytes": bwd_peak}
    del rnn, x, out, state
    return rec


def shapes(quick: bool) -> list[tuple[Any, ...]]:
    if quick:
        return [("LSTM", torch.float32, 2, False, 64, 8, 256, 256, 0), ("GRU", torch.bfloat16, 1, True, 32, 4, 64, 128, 0)]
    grid = []
    dims = [(64, 64), (256, 512), (1024, 1024)]
    seqb = [(16, 4), (64, 8), (128, 32), (33, 7)]
    for mode, dtype, layers, bidir, (s, b), (i, h) in itertools.product(
            MODES, (torch.float32, torch.bfloat16), (1, 2), (False, True), seqb, dims):
        grid.append((mode, dtype, layers, bidir, s, b, i, h, 0))
    for dtype, (s, b) in itertools.product((torch.float32, torch.bfloat16), seqb):
        grid.append(("LSTM", dtype, 2, False, s, b, 1024, 1024, 256))
    return grid


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="JSON file to write (default: print only)")
    ap.add_argument("--quick", action="store_true", help="a handful of shapes")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("cudnn_rnn_reserve: needs a CUDA GPU (cuDNN reports its reserve space at run time only)",
              file=sys.stderr)
        return 2
    torch.backends.cudnn.enabled = True
    env = {"date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "device": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version()}
    print(json.dumps(env), flush=True)
    records, failures = [], []
    def write() -> None:  # after every shape: a run stopped early keeps what it measured
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"environment": env, "records": records, "failures": failures}, f, indent=0)

    for shape in shapes(args.quick):
        try:
            records.append(measure(*shape))
        except Exception as exc:  # noqa: BLE001 - one shape's failure must not end the run
            failures.append({"shape": [str(s) for s in shape], "error": f"{type(exc).__name__}: {exc}"[:300]})
        torch.cuda.empty_cache()
        write()
    for r in records[:6]:
        print(r)
    print(f"{len(records)} shapes measured, {len(failures)} failed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
