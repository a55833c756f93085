"""Per-op-class calibration: what this machine achieves, by kind of operator and by its size.

``mlfootprint hardware calibrate`` measures one matmul peak, one copy bandwidth and one per-op overhead
(``mlfootprint.measure.calibrate``). The operators of a real model are smaller and of many kinds: their rates
depend on their size (caches, threading, blocking) and on their kernel (BLAS matmuls, oneDNN convolutions,
fused attention, batch-norm reductions, pooling with indices, transcendental functions). This module times
each kind of kernel at several sizes on fp32 tensors, keeps the fastest of repeated runs, and writes the
curves that prediction reads (``mlfootprint.analysis.predict.opcurves``):

  kind            probes                                         curve
  matmul          mm n×n (32…1024) and tokens×k @ k×n shapes     FLOP/s by FLOPs per byte moved
  conv            3×3 conv2d, channels 3…128, 8…64 px            FLOP/s by FLOPs per byte moved
  conv_backward   aten.convolution_backward of the same           FLOP/s by FLOPs per byte moved
  attention       scaled_dot_product_attention, seq 32…512       FLOP/s by FLOPs per byte moved
  batch_norm      native_batch_norm, training (and its backward)  bytes/s by bytes moved
                  and with running statistics (eval mode)
  layer_norm      native_layer_norm (and its backward)           bytes/s by bytes moved
  pool            max_pool2d_with_indices (and its backward)     bytes/s by bytes moved
  transcendental  tanh, exp, gelu                                elements/s by elements
  memory          out-of-place add (a new output each time)      bytes/s by bytes moved
"""
from __future__ import annotations

import datetime as _dt
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..analysis.predict.opcurves import BYTE_KINDS, ELEMENT_KINDS, GENERATOR, KINDS, curves_path
from ..core.datafiles import check_ours_to_overwrite
from ..core.files import write_text
import torch
import torch.nn.functional as F

def _best(fn: Callable[[], Any], budget_s: float, min_reps: int = 3,
          clock: Callable[[], float] = time.perf_counter) -> float:
    """Fastest of repeated timed calls (after one warm-up), within a (wall-clock) budget."""
    fn()
    best = math.inf
    reps = 0
    start = time.perf_counter()
    while reps < min_reps or (time.perf_counter() - start < budget_s and reps < 1000):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
        reps += 1
    return max(best, 1e-9)


def _nbytes(*tensors: Any) -> float:
    return float(sum(t.numel() * t.element_size() for t in tensors if t is not None))


def measure(budget_s: float = 20.0, progress: Callable[[str], None] | None = None,
            clock: Callable[[], float] = time.perf_counter) -> dict[str, list[list[float]]]:
    """Rate curves of this CPU: {kind: [[x, rate], …]} (see the module docstring for x and rate).

    ``clock``: wall time by default; with one torch thread, ``time.thread_time`` measures the CPU time
    of the computing thread, which leaves out the time other processes hold the core.
    """
    say = progress or (lambda m: None)
    aten = torch.ops.aten
    g = torch.Generator().manual_seed(0)
    probes: list[tuple[str, Callable[[], Any], float, float]] = []  # kind, fn, x, work (FLOPs / bytes / elements)

    def rnd(*shape: int, grad: bool = False) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    for n in (32, 64, 128, 256, 512, 1024):
        a, b = rnd(n, n), rnd(n, n)
        probes.append(("matmul", (lambda a=a, b=b: torch.mm(a, b)), 2.0 * n**3 / (3 * 4 * n * n), 2.0 * n**3))
    for m, k, n in ((128, 256, 256), (1024, 256, 1024), (1024, 512, 2048), (1024, 256, 8192), (256, 64, 64)):
        a, b = rnd(m, k), rnd(k, n)
        flops = 2.0 * m * k * n
        probes.append(("matmul", (lambda a=a, b=b: torch.mm(a, b)), flops / (4.0 * (m * k + k * n + m * n)), flops))
    for batch, c_in, c_out, px in ((8, 3, 16, 64), (8, 16, 16, 64), (8, 32, 32, 32), (8, 64, 64, 16),
                                   (8, 128, 128, 8), (8, 64, 128, 32)):
        x, w = rnd(batch, c_in, px, px), rnd(c_out, c_in, 3, 3)
        out = F.conv2d(x, w, padding=1)
        flops = 2.0 * batch * px * px * c_in * c_out * 9
        probes.append(("conv", (lambda x=x, w=w: F.conv2d(x, w, padding=1)), flops / _nbytes(x, w, out), flops))
        go = torch.randn_like(out)
        mask = [c_in != 3, True, False]  # a first layer's input needs no gradient
        bflops = flops * (2 if mask[0] else 1)

        def conv_bwd(go=go, x=x, w=w, mask=mask):
            return aten.convolution_backward(go, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask)

        outs = conv_bwd()
        probes.append(("conv_backward", conv_bwd, bflops / _nbytes(go, x, w, *outs), bflops))
    for s in (32, 64, 128, 256, 512):
        q, k, v = (rnd(1, 16, s, 64) for _ in range(3))
        flops = 4.0 * 16 * s * s * 64
        probes.append(("attention", (lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v)),
                       flops / _nbytes(q, k, v, q), flops))
    for batch, c, px in ((8, 16, 32), (32, 16, 64), (16, 64, 32), (16, 256, 8)):
        x = rnd(batch, c, px, px)
        wgt, bias, rm, rv = torch.ones(c), torch.zeros(c), torch.zeros(c), torch.ones(c)
        out, mean, invstd = aten.native_batch_norm(x, wgt, bias, rm, rv, True, 0.1, 1e-5)
        moved = _nbytes(x, out)
        probes.append(("batch_norm", (lambda x=x, wgt=wgt, bias=bias, rm=rm, rv=rv:
                                      aten.native_batch_norm(x, wgt, bias, rm, rv, True, 0.1, 1e-5)), moved, moved))
        probes.append(("batch_norm_eval", (lambda x=x, wgt=wgt, bias=bias, rm=rm, rv=rv:
                                           aten.native_batch_norm(x, wgt, bias, rm, rv, False, 0.1, 1e-5)), moved, moved))
        go = torch.randn_like(out)

        def bn_bwd(go=go, x=x, wgt=wgt, rm=rm, rv=rv, mean=mean, invstd=invstd):
            return aten.native_batch_norm_backward(go, x, wgt, rm, rv, mean, invstd, True, 1e-5, [True, True, True])

        moved_b = _nbytes(go, x, *bn_bwd())
        probes.append(("batch_norm_backward", bn_bwd, moved_b, moved_b))
        pooled, idx = aten.max_pool2d_with_indices(x, [2, 2], [2, 2])
        moved_p = _nbytes(x, pooled, idx)
        probes.append(("pool", (lambda x=x: aten.max_pool2d_with_indices(x, [2, 2], [2, 2])), moved_p, moved_p))
        gp = torch.randn_like(pooled)
        moved_pb = _nbytes(gp, x, idx, x)
        probes.append(("pool_backward", (lambda gp=gp, x=x, idx=idx: aten.max_pool2d_with_indices_backward(
            gp, x, [2, 2], [2, 2], [0, 0], [1, 1], False, idx)), moved_pb, moved_pb))
    for tokens, hidden in ((256, 256), (1024, 256), (1024, 512), (4096, 1024)):
        x = rnd(tokens, hidden)
        wgt, bias = torch.ones(hidden), torch.zeros(hidden)
        out, mean, rstd = aten.native_layer_norm(x, [hidden], wgt, bias, 1e-5)
        moved = _nbytes(x, out)
        probes.append(("layer_norm", (lambda x=x, wgt=wgt, bias=bias, hidden=hidden:
                                      aten.native_layer_norm(x, [hidden], wgt, bias, 1e-5)), moved, moved))
        go = torch.randn_like(out)

        def ln_bwd(go=go, x=x, mean=mean, rstd=rstd, wgt=wgt, bias=bias, hidden=hidden):
            return aten.native_layer_norm_backward(go, x, [hidden], mean, rstd, wgt, bias, [True, True, True])

        moved_b = _nbytes(go, x, *ln_bwd())
        probes.append(("layer_norm_backward", ln_bwd, moved_b, moved_b))
    for n in (2**14, 2**17, 2**20, 2**22):
        x = rnd(n)
        for fn in (torch.tanh, torch.exp, F.gelu):
            probes.append(("transcendental", (lambda x=x, fn=fn: fn(x)), float(n), float(n)))
    for n in (2**14, 2**16, 2**18, 2**20, 2**22, 2**24):
        x, y = rnd(n), rnd(n)
        probes.append(("memory", (lambda x=x, y=y: x + y), 12.0 * n, 12.0 * n))

    per = budget_s / len(probes)
    points: dict[str, list[list[float]]] = {k: [] for k in KINDS}
    probes.sort(key=lambda p: KINDS.index(p[0]))
    with torch.no_grad():
        for i, (kind, fn, x, work) in enumerate(probes):
            t = _best(fn, per, clock=clock)
            points[kind].append([x, work / t])
            if i + 1 == len(probes) or probes[i + 1][0] != kind:
                lo, hi = min(r for _, r in points[kind]), max(r for _, r in points[kind])
                unit = "B/s" if kind in BYTE_KINDS else ("elements/s" if kind in ELEMENT_KINDS else "FLOP/s")
                say(f"{kind}: {lo / 1e9:.3g}-{hi / 1e9:.3g} G{unit}")
    # Several probes at one x (the transcendental functions): keep their mean rate.
    out: dict[str, list[list[float]]] = {}
    for kind, pts in points.items():
        by_x: dict[float, list[float]] = {}
        for x, r in pts:
            by_x.setdefault(x, []).append(r)
        out[kind] = [[x, sum(rs) / len(rs)] for x, rs in sorted(by_x.items())]
    return out


def to_toml(curves: dict[str, list[list[float]]], note: str = "") -> str:
    lines = [f"# Per-op-class rates of this machine, written by {GENERATOR} on {_dt.date.today().isoformat()}.",
             "# See mlfootprint/predict/opcal.py: x is FLOPs per byte moved (compute kinds), bytes moved or",
             "# elements; rate is FLOP/s, bytes/s or elements/s. Fastest of repeated timings.",
             'schema = "mlfootprint.efficiency/1"', f'generator = "{GENERATOR}"']
    if note:
        lines.append(f'note = "{note}"')
    for kind, pts in curves.items():
        lines.append(f"\n[curves.{kind}]")
        lines.append("points = [" + ", ".join(f"[{x:.6g}, {r:.6g}]" for x, r in pts) + "]")
    return "\n".join(lines) + "\n"


def save(curves: dict[str, list[list[float]]], path: str | Path | None = None, note: str = "") -> Path:
    target = Path(path) if path is not None else curves_path()
    check_ours_to_overwrite(target, GENERATOR)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text(target, to_toml(curves, note), force=True)  # ours: checked above
    return target


def calibrate(budget_s: float = 20.0, progress: Callable[[str], None] | None = None,
              path: str | Path | None = None) -> Path:
    """Measure the curves on this machine (at torch's current thread count) and save them for ``--hardware this``."""
    curves = measure(budget_s, progress)
    return save(curves, path, note=f"{torch.get_num_threads()} torch threads")
