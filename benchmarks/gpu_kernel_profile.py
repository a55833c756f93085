"""Where a real training step's time goes on a GPU: kernel time per aten operator, GPU busy time, host gaps.

    python benchmarks/gpu_kernel_profile.py --cases gpt2-train,llama-gqa-train --out profile.json   # on CUDA
    python benchmarks/gpu_kernel_profile.py --device cpu --scale small --cases gpt2-train --out p.json  # smoke test

The step is ``gpu_validation.py``'s (the same model builder, transforms, autocast and optimizer). After warm-up
steps, the step's wall time is taken with CUDA events around each of ``--steps`` steps (synchronized), then the
same number of steps run under ``torch.profiler`` (CPU and CUDA activities). From the profile: the device time
of the kernels each aten operator launched itself (``self_device_time_total``, summed by operator name, per
step), the sum of all kernel durations per step (GPU busy time), and so the share of the step the GPU idles
waiting for the host (eager dispatch, ``.item()`` syncs). These are what the step model's per-operator
roofline and per-operator overhead are compared against, operator class by class.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_validation as gv  # noqa: E402


def _device_time_us(evt: Any, self_only: bool) -> float:
    for name in (("self_device_time_total", "self_cuda_time_total") if self_only else
                 ("device_time_total", "cuda_time_total")):
        v = getattr(evt, name, None)
        if v is not None:
            return float(v)
    return 0.0


def profile_case(case: Any, dev: torch.device, steps: int) -> dict[str, Any]:
    from torch.profiler import ProfilerActivity, profile

    real = gv.build_real(case, dev)
    for _ in range(3):
        real.step()
    gv._sync(dev)
    walls = []
    for _ in range(steps):
        t0 = time.perf_counter()
        real.step()
        gv._sync(dev)
        walls.append(time.perf_counter() - t0)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(steps):
            real.step()
        gv._sync(dev)
    ops: dict[str, dict[str, float]] = {}
    for e in prof.key_averages():
        if not e.key.startswith("aten::") and not e.key.startswith("Optimizer"):
            continue
        ops[e.key] = {"calls": e.count / steps, "self_device_s": _device_time_us(e, True) / 1e6 / steps,
                      "device_s": _device_time_us(e, False) / 1e6 / steps,
                      "self_cpu_s": e.self_cpu_time_total / 1e6 / steps, "cpu_s": e.cpu_time_total / 1e6 / steps}
    kernels: dict[str, dict[str, float]] = {}
    busy = 0.0
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            d = (e.time_range.end - e.time_range.start) / 1e6
            busy += d
            k = kernels.setdefault(e.name[:160], {"calls": 0.0, "s": 0.0})
            k["calls"] += 1 / steps
            k["s"] += d / steps
    step = statistics.median(walls)
    top = dict(sorted(kernels.items(), key=lambda kv: -kv[1]["s"])[:60])
    return {"case": case.name, "workload": case.workload, "step_wall_s": step, "step_walls_s": walls,
            "gpu_busy_s": busy / steps, "gpu_idle_share": (1 - busy / steps / step) if step else None,
            "aten_ops": dict(sorted(ops.items(), key=lambda kv: -kv[1]["self_device_s"])),
            "aten_calls_per_step": sum(v["calls"] for k, v in ops.items() if k.startswith("aten::")),
            "kernels_top": top, "kernel_launches_per_step": sum(k["calls"] for k in kernels.values())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", required=True, help="comma-separated gpu_validation case names")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--scale", default="full", choices=("full", "small"))
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("gpu_kernel_profile: no CUDA GPU here (--device cpu --scale small for a smoke test)", file=sys.stderr)
        return 2
    result: dict[str, Any] = {"environment": gv.environment(dev), "cases": [], "errors": []}
    out = Path(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        cases = {c.name: c for c in gv.make_cases(args.scale, Path(tmp))}
        if dev.type == "cuda":
            gv.warm_library_workspaces(dev)
        for name in args.cases.split(","):
            try:
                row = profile_case(cases[name], dev, args.steps)
                result["cases"].append(row)
                print(f"{name}: step {row['step_wall_s'] * 1e3:.2f} ms, GPU busy {row['gpu_busy_s'] * 1e3:.2f} ms, "
                      f"{row['aten_calls_per_step']:.0f} aten calls, {row['kernel_launches_per_step']:.0f} kernels",
                      flush=True)
            except Exception as exc:  # noqa: BLE001 - record and go on to the next case
                result["errors"].append(f"{name}: {type(exc).__name__}: {exc}"[:400])
                print(result["errors"][-1], flush=True)
            out.write_text(json.dumps(result, indent=1, default=str) + "\n")
            gv._free(dev)
    return 0


if __name__ == "__main__":
    sys.exit(main())
