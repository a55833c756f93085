"""Achieved FLOP/s of cuBLAS GEMMs by shape on a CUDA GPU, cold and at sustained (power-limited) clocks.

    python benchmarks/gemm_sweep.py --out gemm.json            # on a CUDA machine (about 3 minutes)
    python benchmarks/gemm_sweep.py --quick --out gemm.json    # a few shapes (about 30 s; also runs on a CPU)

Why: the step model rates each 16-bit GEMM at peak × efficiency(FLOPs per call) (``analysis/predict/gemm.py``),
from published tables measured on idle GPUs over short runs (OpenXLA's interpolator table, Bekman's maximum
achievable matmul). A training step keeps the GPU busy for hours, where the board's power limit sets the clocks.
This script measures both regimes on the GPU it runs on:

1. **soak**: one large GEMM (8192³ by default) back to back for ``--soak-s`` seconds from an idle GPU; every
   ~0.5 s the achieved FLOP/s with the SM clock, power and temperature that NVML reports (the first samples are
   the cold burst rate, the last ones the sustained rate).
2. **sweep** (right after the soak, the GPU kept busy): m, n, k over powers of two from 256 to 16384 and the
   GEMMs of the linear layers of published training runs (forward, input-gradient and weight-gradient
   transposes), each timed as a CUDA graph of back-to-back calls so host launch gaps are not counted (the step
   model charges launches apart). Operands are standard normal, as trained weights and activations roughly are
   (all-zero operands draw less power and run faster).
3. **unaligned**: the three GEMMs of output layers whose width is not a multiple of 8 (vocabularies of 32,001
   and 50,257): cuBLAS needs 16-byte-aligned leading dimensions for its fast tensor-core kernels.
4. **fp8** (where ``torch._scaled_mm`` runs, sm_89+): the same for e4m3 × e4m3 → bf16 with per-tensor scales,
   accumulating with periodic promotion to fp32 (``--sections fp8fast``: fast accumulation instead).

FLOPs per GEMM are 2·m·n·k. The JSON holds the device, versions, NVML readings and every point as
[m, n, k, achieved FLOP/s] with the mean SM clock and power during its timing window. The output is written
after each section, so a run cut short still leaves what it measured.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import torch

POW2 = (256, 512, 1024, 2048, 4096, 8192, 16384)
# Linear layers of published training runs (benchmarks/data/published_runs.toml): hidden size, the q/k/v
# output width (GQA: h + 2·kv_heads·head_dim), the MLP width (gated MLPs hold two up projections: 2·ffn),
# and the tensor-parallel degrees they ran with. Names are for the reader only.
LINEAR_MODELS = {
    "gpt3-175b": (12288, 3 * 12288, 49152, 49152, (8,)),
    "llama3-405b": (16384, 16384 + 2 * 8 * 128, 2 * 53248, 53248, (8,)),
    "llama-70b": (8192, 8192 + 2 * 8 * 128, 2 * 28672, 28672, (4, 8)),
    "llama3-8b": (4096, 4096 + 2 * 8 * 128, 2 * 14336, 14336, (1,)),
    "llama2-13b": (5120, 3 * 5120, 2 * 13824, 13824, (1, 2)),
    "gpt3-1.3b": (2048, 3 * 2048, 8192, 8192, (1,)),
}
TOKENS = (4096, 8192, 16384)
# Output layers whose width is not a multiple of 8 (16 bytes of bf16): GPT-2's vocabulary of 50,257 and a padded
# Llama vocabulary of 32,001; cuBLAS cannot use its 16-byte-aligned tensor-core kernels on such operands.
UNALIGNED_VOCABS = (32001, 50257)
UNALIGNED_HIDDEN = (768, 2048, 4096)
UNALIGNED_TOKENS = (2048, 8192, 16384)


def linear_gemms(tokens: int, h: int, qkv: int, up: int, ffn: int, tp: int) -> list[tuple[str, int, int, int]]:
    """(what, m, n, k) of the three GEMMs of each linear layer of one transformer block at tensor parallelism tp.

    Forward y = x·Wᵀ is (tokens × in) · (in × out): m = tokens, n = out, k = in; the input gradient is
    (tokens × out) · (out × in); the weight gradient is (out × tokens) · (tokens × in). Column-parallel layers
    (qkv, up) split out by tp, row-parallel ones (proj, down) split in by tp.
    """
    layers = [("qkv", h, qkv // tp), ("proj", h // tp, h), ("up", h, up // tp), ("down", ffn // tp, h)]
    out = []
    for name, fan_in, fan_out in layers:
        out.append((f"{name}.fwd", tokens, fan_out, fan_in))
        out.append((f"{name}.dgrad", tokens, fan_in, fan_out))
        out.append((f"{name}.wgrad", fan_out, fan_in, tokens))
    return out


class Nvml:
    """NVML readings of GPU 0 (SM clock MHz, power W, temperature C), or nothing where NVML is absent."""

    def __init__(self) -> None:
        self.ok = False
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nv = pynvml
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device() if torch.cuda.is_available()
                                                            else 0)
            self.ok = True
        except Exception as exc:  # noqa: BLE001 - a probe: record why and go on
            self.why = f"{type(exc).__name__}: {exc}"

    def read(self) -> dict[str, float]:
        if not self.ok:
            return {}
        nv, h = self.nv, self.handle
        out: dict[str, float] = {}
        for key, fn in (("sm_clock_mhz", lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)),
                        ("power_w", lambda: nv.nvmlDeviceGetPowerUsage(h) / 1e3),
                        ("temp_c", lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))):
            try:
                out[key] = float(fn())
            except Exception:  # noqa: BLE001
                pass
        return out

    def static(self) -> dict[str, Any]:
        if not self.ok:
            return {"nvml": getattr(self, "why", "absent")}
        nv, h = self.nv, self.handle
        out: dict[str, Any] = {}
        for key, fn in (("power_limit_w", lambda: nv.nvmlDeviceGetPowerManagementLimit(h) / 1e3),
                        ("max_sm_clock_mhz", lambda: nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_SM)),
                        ("driver", lambda: nv.nvmlSystemGetDriverVersion())):
            try:
                v = fn()
                out[key] = v.decode() if isinstance(v, bytes) else v
            except Exception:  # noqa: BLE001
                pass
        return out


class Sampler:
    """NVML sampled every 50 ms on a thread; ``window()`` gives the means over a span of wall time."""

    def __init__(self, nvml: Nvml) -> None:
        self.nvml, self.samples, self.stop = nvml, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        if nvml.ok:
            self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.perf_counter(), self.nvml.read()))
            time.sleep(0.05)

    def window(self, t0: float, t1: float) -> dict[str, float]:
        rows = [r for t, r in list(self.samples) if t0 <= t <= t1]
        out = {}
        for key in ("sm_clock_mhz", "power_w", "temp_c"):
            vals = [r[key] for r in rows if key in r]
            if vals:
                out[key] = round(statistics.fmean(vals), 1)
        return out


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_blocks(fn: Callable[[], Any], window_s: float, blocks: int = 1, min_calls: int = 1) -> float:
    """Seconds per call of ``fn`` on the CUDA device: the median over ``blocks`` blocks of back-to-back calls that
    together last about ``window_s`` (CUDA events; two warm-up calls first)."""
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    n = max(min_calls, int(window_s / blocks / max(start.elapsed_time(end) / 1e3, 1e-6)))
    per_call = []
    for _ in range(blocks):
        start.record()
        for _ in range(n):
            fn()
        end.record()
        torch.cuda.synchronize()
        per_call.append(start.elapsed_time(end) / 1e3 / n)
    return statistics.median(per_call)


def time_calls(fn: Callable[[], Any], window_s: float, use_graph: bool) -> tuple[float, int, str]:
    """Seconds per call of ``fn`` on the device, timed over about ``window_s``; with how it was timed."""
    for _ in range(2):
        fn()
    _sync()
    if not torch.cuda.is_available():
        t0 = time.perf_counter()
        fn()
        one = max(time.perf_counter() - t0, 1e-7)
        n = max(3, min(10_000, int(window_s / one)))
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t0) / n, n, "perf_counter"
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    one = max(start.elapsed_time(end) / 1e3, 1e-7)
    how = "eager"
    if use_graph:
        per_graph = max(1, min(50, int(0.002 / one)))  # a graph of at least ~2 ms of work when calls are small
        try:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                fn()  # cuBLAS picks its workspace on this stream before capture
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                for _ in range(per_graph):
                    fn()
            graph.replay()
            torch.cuda.synchronize()
            reps = max(2, int(window_s / (one * per_graph)))
            start.record()
            for _ in range(reps):
                graph.replay()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1e3 / (reps * per_graph), reps * per_graph, "cuda-graph"
        except Exception as exc:  # noqa: BLE001 - fall back to eager launches, and say so
            how = f"eager (graph failed: {type(exc).__name__})"
    n = max(3, int(window_s / one))
    start.record()
    for _ in range(n):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3 / n, n, how


def _operands(m: int, n: int, k: int, what: str, dtype: torch.dtype, dev: torch.device) -> Callable[[], Any]:
    """A closure computing one GEMM of the given transpose kind, as F.linear and autograd issue them. FP8 GEMMs
    whose ``what`` ends in "fast" use cuBLAS's fast accumulation (no periodic promotion to fp32), as Transformer
    Engine's and torchao's forward GEMMs do; the others promote, as their two backward GEMMs do."""
    if dtype == torch.float8_e4m3fn:
        a = torch.randn(m, k, device=dev).to(dtype)
        b = torch.randn(n, k, device=dev).to(dtype).t()  # column-major, as _scaled_mm wants
        one = torch.ones((), device=dev)
        fast = what.endswith("fast")
        return lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16,
                                        use_fast_accum=fast)
    kind = what.rsplit(".", 1)[-1]
    if kind == "dgrad":  # grad_out (m×k) · W (k×n): both row-major
        a, b = torch.randn(m, k, device=dev, dtype=dtype), torch.randn(k, n, device=dev, dtype=dtype)
        return lambda: torch.mm(a, b)
    if kind == "wgrad":  # grad_outᵀ (m×k) · x (k×n): the first operand transposed
        a, b = torch.randn(k, m, device=dev, dtype=dtype).t(), torch.randn(k, n, device=dev, dtype=dtype)
        return lambda: torch.mm(a, b)
    a, w = torch.randn(m, k, device=dev, dtype=dtype), torch.randn(n, k, device=dev, dtype=dtype)
    return lambda: torch.mm(a, w.t())  # forward x·Wᵀ, as F.linear


def measure_point(m: int, n: int, k: int, what: str, dtype: torch.dtype, dev: torch.device, window_s: float,
                  sampler: Sampler) -> dict[str, Any]:
    fn = _operands(m, n, k, what, dtype, dev)
    t0 = time.perf_counter()
    per_call, calls, how = time_calls(fn, window_s, use_graph=dev.type == "cuda")
    t1 = time.perf_counter()
    del fn
    return {"m": m, "n": n, "k": k, "what": what, "seconds_per_call": per_call,
            "flops_per_s": 2.0 * m * n * k / per_call, "calls": calls, "timed": how, **sampler.window(t0, t1)}


def soak(dev: torch.device, size: int, seconds: float, sampler: Sampler) -> list[dict[str, Any]]:
    """One size³ bf16 GEMM back to back from idle for ``seconds``; a sample every ~0.5 s."""
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    a, w = torch.randn(size, size, device=dev, dtype=dtype), torch.randn(size, size, device=dev, dtype=dtype)
    flops = 2.0 * size ** 3
    _sync()
    out, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        calls = 0
        while time.perf_counter() - t0 < 0.5:
            for _ in range(8):
                torch.mm(a, w.t())
            calls += 8
            _sync()
        t1 = time.perf_counter()
        out.append({"t_s": round(t1 - start, 3), "flops_per_s": flops * calls / (t1 - t0), **sampler.window(t0, t1)})
    return out


def unaligned_shapes(quick: bool) -> list[tuple[str, int, int, int]]:
    """The forward, input-gradient and weight-gradient GEMMs of an output layer hidden -> vocab (vocab odd)."""
    out = []
    for vocab in UNALIGNED_VOCABS[-1:] if quick else UNALIGNED_VOCABS:
        for h in UNALIGNED_HIDDEN[:1] if quick else UNALIGNED_HIDDEN:
            for t in UNALIGNED_TOKENS[:1] if quick else UNALIGNED_TOKENS:
                out += [(f"head.v{vocab}.h{h}.t{t}.fwd", t, vocab, h), (f"head.v{vocab}.h{h}.t{t}.dgrad", t, h, vocab),
                        (f"head.v{vocab}.h{h}.t{t}.wgrad", vocab, h, t)]
    return out


def sweep_shapes(quick: bool) -> list[tuple[str, int, int, int]]:
    if quick:
        return [("grid", s, s, s) for s in (256, 1024, 4096, 8192)] + [
            (w, m, n, k) for (w, m, n, k) in linear_gemms(8192, 8192, 10240, 57344, 28672, 8)[:3]]
    shapes = [("grid", m, n, k) for m in POW2 for n in POW2 for k in POW2]
    for model, (h, qkv, up, ffn, tps) in LINEAR_MODELS.items():
        for tp in tps:
            for tokens in TOKENS:
                shapes += [(f"{model}.tp{tp}.t{tokens}.{w}", m, n, k)
                           for (w, m, n, k) in linear_gemms(tokens, h, qkv, up, ffn, tp)]
    return shapes


def environment(nvml: Nvml) -> dict[str, Any]:
    env: dict[str, Any] = {"date": _dt.date.today().isoformat(), "torch": torch.__version__,
                           "cuda": torch.version.cuda, "python": sys.version.split()[0]}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env.update(device=p.name, capability=f"{p.major}.{p.minor}", sms=p.multi_processor_count,
                   memory_bytes=p.total_memory)
        try:
            env["blas"] = str(torch.backends.cuda.preferred_blas_library())
        except Exception:  # noqa: BLE001
            pass
    else:
        env["device"] = "cpu"
    env.update(nvml.static())
    return env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--quick", action="store_true", help="a few shapes, short windows")
    ap.add_argument("--soak-s", type=float, default=None, help="seconds of the soak (default 30; --quick 2)")
    ap.add_argument("--soak-size", type=int, default=None, help="m = n = k of the soak GEMM (default 8192)")
    ap.add_argument("--window-s", type=float, default=None, help="timing window per shape (default 0.06)")
    ap.add_argument("--no-fp8", action="store_true")
    ap.add_argument("--sections", default="bf16,fp8,unaligned",
                    help="comma-separated: bf16 (the grid and layer shapes), fp8, fp8fast (the FP8 grid with fast "
                         "accumulation, instead of fp8), unaligned (odd-width output layers)")
    args = ap.parse_args(argv)
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    soak_s = args.soak_s if args.soak_s is not None else (2.0 if args.quick or not cuda else 30.0)
    soak_size = args.soak_size or (8192 if cuda else 256)
    window = args.window_s or (0.02 if args.quick or not cuda else 0.06)
    nvml = Nvml()
    sampler = Sampler(nvml)
    result: dict[str, Any] = {"environment": environment(nvml), "soak_size": soak_size, "window_s": window,
                              "soak": [], "bf16": [], "fp8": [], "bf16_unaligned": [], "errors": []}
    out = Path(args.out)

    def save() -> None:
        out.write_text(json.dumps(result, indent=1) + "\n")

    started = time.perf_counter()
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = False
    result["idle"] = nvml.read()
    save()
    try:
        result["soak"] = soak(dev, soak_size, soak_s, sampler)
    except Exception as exc:  # noqa: BLE001
        result["errors"].append(f"soak: {type(exc).__name__}: {exc}")
    save()
    dtype = torch.bfloat16 if cuda else torch.float32
    sections = set(args.sections.split(","))
    shapes = sweep_shapes(args.quick or not cuda) if "bf16" in sections else []
    for i, (what, m, n, k) in enumerate(shapes):
        try:
            result["bf16"].append(measure_point(m, n, k, what, dtype, dev, window, sampler))
        except Exception as exc:  # noqa: BLE001
            result["errors"].append(f"bf16 {what} {m}x{n}x{k}: {type(exc).__name__}: {exc}")
        if i % 50 == 49:
            save()
            print(f"bf16 {i + 1}/{len(shapes)} ({time.perf_counter() - started:.0f} s)", flush=True)
    save()
    for what, m, n, k in unaligned_shapes(args.quick or not cuda) if "unaligned" in sections else []:
        try:
            result["bf16_unaligned"].append(measure_point(m, n, k, what, dtype, dev, window, sampler))
        except Exception as exc:  # noqa: BLE001
            result["errors"].append(f"unaligned {what} {m}x{n}x{k}: {type(exc).__name__}: {exc}")
    save()
    fp8_ok = cuda and not args.no_fp8 and bool({"fp8", "fp8fast"} & sections) and \
        torch.cuda.get_device_capability() >= (8, 9)
    if fp8_ok:
        sizes = (1024, 4096, 8192) if args.quick else (1024, 2048, 4096, 8192, 16384)
        fast = "fp8fast" in sections and "fp8" not in sections
        fp8_shapes = [("grid.fast" if fast else "grid", m, n, k) for m in sizes for n in sizes for k in sizes]
        for what, m, n, k in fp8_shapes:
            try:
                result["fp8"].append(measure_point(m, n, k, what, torch.float8_e4m3fn, dev, window, sampler))
            except Exception as exc:  # noqa: BLE001
                result["errors"].append(f"fp8 {m}x{n}x{k}: {type(exc).__name__}: {exc}")
                break
    result["seconds"] = round(time.perf_counter() - started, 1)
    sampler.stop.set()
    save()
    best = max((p["flops_per_s"] for p in result["bf16"]), default=0.0)
    soak_rates = [s["flops_per_s"] for s in result["soak"]]
    print(f"gemm_sweep: {len(result['bf16'])} bf16 points (best {best / 1e12:.1f} TFLOP/s), {len(result['fp8'])} "
          f"fp8, {len(result['bf16_unaligned'])} unaligned; soak {soak_size}³: first {soak_rates[0] / 1e12 if soak_rates else math.nan:.1f}, last "
          f"{soak_rates[-1] / 1e12 if soak_rates else math.nan:.1f} TFLOP/s; {len(result['errors'])} errors; "
          f"{result['seconds']} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
