"""Predicted vs measured step time on this machine, after calibration.

    python benchmarks/bench_predict_accuracy.py [--threads 1] [--budget-s 30] [--min-time 2] [--save]

For each case (a transformer and a CNN, two sizes each, training and
inference) it traces the workload, predicts one step with
``mlfootprint.analysis.predict.prediction.predict_step`` on the calibrated profile ``this``
measured in the same run by ``mlfootprint.measure.calibrate`` and refined by
the per-op-class calibration ``mlfootprint.analysis.predict.opcal``, then runs the same
model on real tensors and times it
(the fastest of the timed steps after warm-up; with one torch thread, in CPU time of that thread, so that
other processes sharing the machine do not count; wall-clock figures are printed too). It prints each case's error and the
median absolute error. Nothing here asserts: the figures are for the record.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve()

# --------------------------------------------------------------------------- CNN factories (used as file.py:callable)


class SmallCNN(nn.Module):
    """A VGG/ResNet-flavoured CNN: conv-BN-ReLU stages with pooling, then a linear head."""

    def __init__(self, widths: tuple[int, ...], classes: int = 100) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                       nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            c = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


def cnn_small() -> nn.Module:
    return SmallCNN((16, 32, 64))


def cnn_medium() -> nn.Module:
    return SmallCNN((32, 64, 128, 256))


# --------------------------------------------------------------------------- cases

GPT_SMALL = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": 8192, "n_positions": 256,
             "n_embd": 256, "n_layer": 4, "n_head": 4, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
             "tie_word_embeddings": True}
GPT_MEDIUM = {**GPT_SMALL, "vocab_size": 16384, "n_positions": 512, "n_embd": 512, "n_layer": 6, "n_head": 8}


def cases(tmp: Path) -> list[dict]:
    out = []
    for name, cfg, batch, seq in (("gpt-small", GPT_SMALL, 8, 128), ("gpt-medium", GPT_MEDIUM, 4, 256)):
        d = tmp / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps(cfg))
        for mode in ("train", "inference"):
            out.append({"name": f"{name} {mode}", "model": str(d / "config.json"), "inputs": [], "batch": batch,
                        "seq": seq, "mode": mode})
    for name, batch in (("cnn_small", 32), ("cnn_medium", 16)):
        for mode in ("train", "inference"):
            out.append({"name": f"{name.replace('_', '-')} {mode}", "model": f"{HERE}:{name}",
                        "inputs": [f"{batch}x3x64x64"], "batch": batch, "seq": None, "mode": mode})
    return out


# --------------------------------------------------------------------------- measuring


def _init_real(module: nn.Module) -> None:
    """Built without initialisation (uninitialised memory may hold NaNs/denormals that distort timing)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() == 1 and ("weight" in name and ("norm" in name or "ln" in name or "bn" in name)):
                p.fill_(1.0)
            elif p.dim() == 1:
                p.zero_()
            else:
                p.normal_(0.0, 0.02, generator=g)
        for name, b in module.named_buffers():
            if "running_var" in name:
                b.fill_(1.0)
            elif b.is_floating_point() and "running_mean" in name:
                b.zero_()


def measure(spec, wl, min_time: float) -> float:
    from mlfootprint.trace.optim import make_optimizer
    from mlfootprint.models.build import build

    torch.manual_seed(0)
    built = build(spec, wl)
    model = built.module
    _init_real(model)
    args, kwargs = built.make_inputs()
    if wl.training:
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt, _ = make_optimizer(wl, params)

        def step() -> None:
            loss = built.loss(model(*args, **kwargs))
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    else:
        model.eval()

        def step() -> None:
            with torch.no_grad():
                model(*args, **kwargs)

    for _ in range(3):
        step()
    walls: list[float] = []
    cpus: list[float] = []
    start = time.perf_counter()
    while len(walls) < 5 or (time.perf_counter() - start < min_time and len(walls) < 200):
        c0, t0 = time.thread_time(), time.perf_counter()
        step()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.thread_time() - c0)
    # This machine's cores may be shared with other processes. With one torch thread, the CPU time of this
    # thread leaves out the time the OS gave to others; the fastest step is the least disturbed one.
    return min(cpus), min(walls), statistics.median(walls)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for calibration and measurement alike (default 1: on a shared machine a "
                         "co-running process stalls multi-threaded kernels at every barrier)")
    ap.add_argument("--budget-s", type=float, default=30.0, help="calibration budget in seconds (profile; op classes get 2/3 of it)")
    ap.add_argument("--min-time", type=float, default=2.0, help="seconds of timed steps per case")
    ap.add_argument("--save", action="store_true", help="save the profile and op-class curves as the device 'this'")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    from mlfootprint.measure.calibrate import calibrate, save_profile
    from mlfootprint.analysis.predict.prediction import predict_step
    from mlfootprint.measure import opcal
    from mlfootprint.trace.run import trace
    from mlfootprint.verbs.common import resolve_model
    from mlfootprint.analysis.predict.efficiency import efficiency_for
    from mlfootprint.workload import Workload

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    print(f"calibrating this machine with {args.threads} thread(s) ({args.budget_s:g} s for the profile) …", flush=True)
    device = calibrate("cpu", budget_s=args.budget_s)
    peaks = ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in device.peak_flops.items())
    print(f"  profile: {peaks}; bandwidth {device.memory_bandwidth_bytes_per_s / 1e9:.1f} GB/s; "
          f"per-op overhead {device.per_op_overhead_s * 1e6:.2f} µs", flush=True)
    single = args.threads == 1
    clock = time.thread_time if single else time.perf_counter
    curves = opcal.measure(args.budget_s * 2 / 3, lambda m: print("  op classes:", m, flush=True), clock=clock)
    if args.save:
        print(f"  saved {save_profile(device)} and {opcal.save(curves, note=f'{args.threads} torch threads')}")
    plain = efficiency_for(device)
    plain.curves = None
    curved = efficiency_for(device)
    curved.curves, curved.curves_source = curves, "measured in this run"

    rows = []
    print(f"measured = fastest step, {'CPU time of the one compute thread' if single else 'wall time'}")
    print(f"{'case':<22} {'measured':>10} {'profile only':>22} {'+ op-class curves':>24}")
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases(Path(tmp)):
            wl = Workload(batch=case["batch"], seq=case["seq"], mode=case["mode"])
            spec = resolve_model(case["model"], case["inputs"])
            tr = trace(spec, wl, checkpoint_early_stop=False)
            p0 = predict_step(spec, wl, tr, device, efficiency=plain)
            p1 = predict_step(spec, wl, tr, device, efficiency=curved)
            cpu_min, wall_min, meas_median = measure(spec, wl, args.min_time)
            meas = cpu_min if single else wall_min
            e0 = (p0.step_s - meas) / meas
            e1 = (p1.step_s - meas) / meas
            b = p1.breakdown
            rows.append({"case": case["name"], "measured_s": meas, "measured_cpu_min_s": cpu_min,
                         "measured_wall_min_s": wall_min, "measured_wall_median_s": meas_median,
                         "predicted_profile_s": p0.step_s, "error_profile": e0,
                         "predicted_s": p1.step_s, "error": e1,
                         "compute_s": b["compute_s"], "memory_s": b["memory_s"], "overhead_s": b["overhead_s"]})
            print(f"{case['name']:<22} {meas * 1e3:8.2f}ms {p0.step_s * 1e3:9.2f}ms ({e0:+7.1%}) "
                  f"{p1.step_s * 1e3:9.2f}ms ({e1:+7.1%})   [wall min {wall_min * 1e3:.2f}, median {meas_median * 1e3:.2f} ms; "
                  f"compute {b['compute_s'] * 1e3:.1f} / memory {b['memory_s'] * 1e3:.1f} / overhead "
                  f"{b['overhead_s'] * 1e3:.1f} ms]", flush=True)
    med0 = statistics.median(abs(r["error_profile"]) for r in rows)
    med1 = statistics.median(abs(r["error"]) for r in rows)
    print(f"median absolute error: {med1:.1%} with op-class curves, {med0:.1%} with the profile only "
          f"({len(rows)} cases; aim < 25%)")
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "cases": rows, "median_abs_error": med1,
                                               "median_abs_error_profile_only": med0}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
