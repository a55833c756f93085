"""`bench`: real runs on the CPU of a small transformer and a CNN, the measured section, the comparison with the
prediction, the out-of-memory retry, energy-meter faults, the statistics and the live-tensor memory tracker.

Timings themselves are never asserted (they depend on the machine); what is asserted is how figures are derived
from them (throughput = work / median, MFU = counted FLOPs / (median × peak), error = (predicted − measured) / measured).
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch

from mlfootprint.core.errors import UserError
from mlfootprint.measure import stats
from mlfootprint.measure.bench import is_oom
from mlfootprint.verbs.bench import bench
from mlfootprint.measure.energy import EnergyMeter, EnergyReading, SafeMeter
from mlfootprint.measure.memory import PROFILER_METHOD
from mlfootprint.report.schema import Report
from mlfootprint.workload import Workload

HERE = Path(__file__).resolve()  # the models below are also loaded by reference: f"{HERE}:small_cnn"
TINY_GPT2 = str(HERE.parent / "data" / "configs" / "tiny-gpt2")
PEAK_FP32 = 5e10  # the fake profile's fp32 peak, FLOP/s


# --------------------------------------------------------------------------- models used by reference


class SmallCNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 16, 3, padding=1)
        self.head = torch.nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.nn.functional.max_pool2d(x, 2)
        x = torch.relu(self.conv2(x))
        return self.head(x.mean(dim=(2, 3)))


def small_cnn() -> torch.nn.Module:
    return SmallCNN()


class OomAbove(torch.nn.Module):
    """Raises PyTorch's out-of-memory error for batches above `limit` (a stand-in for a full GPU)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.lin = torch.nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.limit:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB (simulated, batch {x.shape[0]})")
        return self.lin(x)


def oom_above_2() -> torch.nn.Module:
    return OomAbove(2)


def oom_always() -> torch.nn.Module:
    return OomAbove(0)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def profile():
    """A calibrated profile 'this' for the CPU (in the test's own config folder), so predictions and MFU exist."""
    from mlfootprint.measure.calibrate import save_profile
    from mlfootprint.hardware.catalog import Device

    src = {"source": "test profile", "date": "2025-01", "provenance": "measured"}
    dev = Device(id="this", name="test CPU", vendor="test", kind="cpu", peak_flops={"fp32": PEAK_FP32},
                 memory_bytes=8 * 2**30, memory_bandwidth_bytes_per_s=1e10, per_op_overhead_s=1e-5,
                 sources={k: src for k in ("peak_flops.fp32", "memory_bytes", "memory_bandwidth_bytes_per_s",
                                           "per_op_overhead_s")})
    save_profile(dev)
    return dev


def _wl(**kw) -> Workload:
    wl = Workload(**kw)
    return wl


def _check_measured(rep: Report, throughput_key: str, work_per_step: float) -> dict:
    m = rep.sections["measured"]
    times = [row["latency_s"] for row in m["series"]]
    assert len(times) == m["runs"] == m["latency_samples"]
    # The distribution is computed from the recorded runs.
    assert m["latency_median_s"] == pytest.approx(statistics.median(times))
    assert m["latency_p90_s"] == pytest.approx(stats.percentile(times, 0.9))
    assert m["latency_p99_s"] == pytest.approx(stats.percentile(times, 0.99))
    assert m["latency_min_s"] <= m["latency_median_s"] <= m["latency_p90_s"] <= m["latency_p99_s"] <= m["latency_max_s"]
    assert m["step_s"] == m["latency_median_s"]
    # throughput = work per step / median latency
    assert m[throughput_key] == pytest.approx(work_per_step / m["latency_median_s"])
    assert m["peak_bytes"] > 0 and m["memory_method"] == PROFILER_METHOD  # the memory module's CPU method
    for key in ("latency_median_s", "latency_p90_s", "latency_p99_s", "step_s", throughput_key, "peak_bytes"):
        assert rep.provenance[f"measured.{key}"] == "measured"
    return m


def _check_comparison(m: dict, fig: str) -> None:
    row = m["vs_predicted"][fig]
    if row["predicted"] is None:
        assert row["predicted_by"].startswith("not available (")
        assert row["error_fraction"] is None
    else:
        assert row["error_fraction"] == pytest.approx((row["predicted"] - row["measured"]) / row["measured"])


# --------------------------------------------------------------------------- acceptance


def test_bench_small_transformer_train(profile):
    rep = bench(TINY_GPT2, _wl(mode="train", batch=2, seq=16), repeats=3, warmup=1, progress=False)
    m = _check_measured(rep, "tokens_per_s", 2 * 16)  # 2 sequences × 16 tokens per step
    assert m["tokens_per_step"] == 32 and m["batch"] == 2 and m["seq"] == 16 and m["runs"] == 3
    assert m["samples_per_s"] == pytest.approx(2 / m["latency_median_s"])
    # MFU = model FLOPs of the step (counted from the trace) / (median × the profile's fp32 peak)
    assert m["model_flops_per_step"] == rep.sections["flops"]["model"]
    assert m["peak_flop_per_s"] == PEAK_FP32
    assert m["mfu"] == pytest.approx(m["model_flops_per_step"] / (m["latency_median_s"] * PEAK_FP32))
    assert rep.provenance["measured.model_flops_per_step"] == "counted"
    assert rep.provenance["measured.peak_flop_per_s"] == "measured"  # a calibrated profile
    # Predicted step time, throughput and MFU come from mlfootprint.analysis.predict on the same device profile.
    for fig in ("step_s", "tokens_per_s", "mfu", "peak_bytes"):
        _check_comparison(m, fig)
    assert m["vs_predicted"]["step_s"]["predicted"] is not None, m["vs_predicted"]["step_s"]
    # Peak memory is compared with the memory estimate of tensors only (its framework allowance left out).
    mem = m["vs_predicted"]["peak_bytes"]
    assert mem["predicted"] is not None and "other_bytes=0" in mem["predicted_by"], mem
    assert rep.provenance["measured.vs_predicted.step_s.predicted"] == "modeled"
    # Energy: no RAPL here and the profile has no TDP, so the figure is missing and says why.
    assert "energy_j" in m["unavailable"] and "RAPL" in m["unavailable"]["energy_j"]
    assert "energy_j" not in m
    # The report survives a JSON round trip through the schema check.
    again = Report.from_dict(json.loads(rep.to_json()))
    assert again.sections["measured"]["runs"] == 3
    # The terminal answers first: the measured figures, each beside its prediction, on one screen; the rest with
    # --details (it printed 214 lines: the model's facts, every workload default and each latency statistic)
    import argparse
    from mlfootprint.report.render import render
    card = render(rep, "table", argparse.Namespace(width=100))
    full = render(rep, "table", argparse.Namespace(details=True, width=100))
    assert len(card.splitlines()) <= 25 < len(full.splitlines())
    step = m["vs_predicted"]["step_s"]
    latency = next(line for line in card.splitlines() if line.startswith("Latency (median)"))
    assert "measured" in latency and f"{100 * step['error_fraction']:+.1f}% vs measured" in card
    assert next(line for line in card.splitlines() if line.startswith("MFU")).split()[1] == f"{100 * m['mfu']:.1f}%"
    assert "Not measured: energy: " in card and "latency_p99_s" not in card and "latency_p99_s" in full


def test_bench_cnn_inference_and_train(profile):
    ref = f"{HERE}:small_cnn"
    rep = bench(ref, _wl(mode="inference"), inputs=["4x3x16x16"], repeats=4, warmup=1, progress=False)
    m = _check_measured(rep, "samples_per_s", 4)  # a CNN processes samples: 4 images per step
    assert m["token_unit"] == "samples" and m["samples_per_step"] == 4
    # 2 FLOPs per MAC × MACs per output × outputs × 4 images:
    # conv1 2·(3·3·3)·(8·16·16)·4 = 442,368; conv2 (after 2×2 pooling) 2·(8·3·3)·(16·8·8)·4 = 589,824;
    # head 2·16·10·4 = 1,280
    assert m["model_flops_per_step"] == 442_368 + 589_824 + 1_280
    assert m["mfu"] == pytest.approx(m["model_flops_per_step"] / (m["latency_median_s"] * PEAK_FP32))
    for fig in ("step_s", "samples_per_s", "mfu", "peak_bytes"):
        _check_comparison(m, fig)

    rep = bench(ref, _wl(mode="train", optimizer="sgd"), inputs=["4x3x16x16"], repeats=3, warmup=1, progress=False)
    m = _check_measured(rep, "samples_per_s", 4)
    assert m["mode"] == "train" and m["model_flops_per_step"] > 442_368 + 589_824 + 1_280  # + backward


def test_bench_generate_counts_generated_tokens():
    rep = bench(TINY_GPT2, _wl(mode="generate", batch=2, seq=8, gen_tokens=4), repeats=2, warmup=1, progress=False)
    m = rep.sections["measured"]
    assert m["token_unit"] == "generated tokens" and m["tokens_per_step"] == 2 * 4
    assert m["tokens_per_s"] == pytest.approx(8 / m["latency_median_s"])
    assert "mfu" in m["unavailable"] and "generate" in m["unavailable"]["mfu"]


def test_bench_stops_when_the_median_is_stable():
    # No --repeats: runs until the median's 95% CI is within the threshold (or the time limit), at least 5 runs.
    rep = bench(f"{HERE}:small_cnn", _wl(mode="inference"), inputs=["2x3x8x8"], warmup=1, threshold=0.5,
                max_time_s=5, progress=False)
    m = rep.sections["measured"]
    assert m["runs"] >= 5 or m["stopped_because"].startswith("time limit")
    if m["stopped_because"].startswith("stable"):
        assert m["latency_median_ci_fraction"] <= 0.5


# --------------------------------------------------------------------------- faults


def test_bench_oom_retries_with_half_the_batch():
    rep = bench(f"{HERE}:oom_above_2", _wl(mode="train", batch=8, optimizer="sgd"), inputs=["8x16"], repeats=2,
                warmup=1, progress=False)
    m = rep.sections["measured"]
    # 8 fails, 4 fails, 2 runs: the largest batch that ran among those tried.
    assert m["oom"]["requested_batch"] == 8
    assert m["oom"]["failed_batches"] == "8, 4"
    assert m["oom"]["largest_batch_that_ran"] == 2 and m["batch"] == 2
    assert "out of memory" in m["oom"]["error"].lower()
    assert m["samples_per_s"] == pytest.approx(2 / m["latency_median_s"])
    assert any("out of memory" in a for a in rep.assumptions)


def test_bench_oom_even_at_batch_1_is_a_clear_error():
    with pytest.raises(UserError, match="out of memory .* even at batch 1"):
        bench(f"{HERE}:oom_always", _wl(mode="inference", batch=2), inputs=["2x16"], repeats=1, warmup=0,
              progress=False)


def test_is_oom_recognises_the_three_forms():
    assert is_oom(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_oom(RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate memory: out of memory"))
    assert is_oom(MemoryError())
    assert not is_oom(RuntimeError("shape mismatch"))


class _FailingMeter(EnergyMeter):
    """Reads 2 J per read, then fails on the third read (a meter breaking mid-run)."""

    name = "flaky"
    provenance = "measured"
    method = "test counter"

    def __init__(self) -> None:
        self.reads = 0

    def start(self) -> None:
        self.reads = 0

    def read(self) -> EnergyReading:
        self.reads += 1
        if self.reads >= 3:
            raise OSError("counter vanished")
        return EnergyReading(2.0 * self.reads, {"pkg": 2.0 * self.reads}, 0.1 * self.reads, "measured", self.method)

    def stop(self) -> EnergyReading:
        return self.read()


def test_bench_energy_meter_that_fails_keeps_the_run_and_says_so(caplog):
    # bench polls the meter after each timed run: reads 1 and 2 work (2 J, 4 J), read 3 raises.
    with caplog.at_level("WARNING", logger="mlfootprint.energy"):
        rep = bench(f"{HERE}:small_cnn", _wl(mode="inference"), inputs=["2x3x8x8"], repeats=4, warmup=0,
                    progress=False, meter_factory=lambda: SafeMeter(_FailingMeter()))
    m = rep.sections["measured"]
    assert m["runs"] == 4  # the run went on
    assert "energy_j" not in m and "failed" in m["unavailable"]["energy_j"]
    assert m["partial_energy_j"] == 4.0  # the last good reading is kept
    assert any("counter vanished" in n for n in m["energy_notes"])
    assert sum("counter vanished" in r.getMessage() for r in caplog.records) == 1  # logged once


# --------------------------------------------------------------------------- the command line


def run_cli(*args: str):
    from conftest import run_cli as run  # imported here: the CLI imports this file to load its models

    return run(*args)


def test_cli_bench_json(tmp_path):
    out = tmp_path / "b.json"
    r = run_cli("bench", f"{HERE}:small_cnn", "--input", "2x3x8x8", "--repeats", "2", "--warmup", "1",
                "--no-progress", "--format", "json", "-o", str(out))
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert data["verb"] == "bench" and data["measured"]["runs"] == 2
    assert data["provenance"]["measured.latency_median_s"] == "measured"
    # the batch measured is the --input shapes' 2, as the workload and the samples per step say (it read 1)
    assert data["workload"]["batch"] == data["measured"]["batch"] == data["measured"]["samples_per_step"] == 2


@pytest.mark.parametrize("args, message", [
    (["--repeats", "0"], "--repeats must be a whole number from 1 to 100,000"),
    (["--dp", "2"], "bench runs on one device"),
    (["--device", "cuda"], "no CUDA device"),
    (["--threshold", "2"], "--threshold must be a fraction"),
    (["--quant", "int8"], "quantized"),
    # a CPU run is not a measurement of a GPU's prediction (it printed "1 × a100-80gb" and errors of -92%)
    (["--hardware", "a100-80gb"], "bench runs on this machine's cpu, but --hardware a100-80gb is a gpu"),
])
def test_cli_bench_bad_input_is_one_line_exit_2(args, message):
    if args[0] == "--device" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = run_cli("bench", f"{HERE}:small_cnn", "--input", "2x3x8x8", *args)
    assert r.returncode == 2
    assert r.stderr.startswith("mlfootprint: error:") and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------- statistics and memory


def test_percentiles_interpolate_linearly():
    xs = [5.0, 1.0, 3.0, 2.0, 4.0]  # sorted 1..5; position (n-1)·q
    assert stats.percentile(xs, 0.5) == 3.0
    assert stats.percentile(xs, 0.9) == pytest.approx(4.6)  # 4 + 0.6·(5-4)
    assert stats.percentile(xs, 0.99) == pytest.approx(4.96)


def test_median_ci_uses_order_statistics():
    xs = [float(i) for i in range(1, 101)]
    # n = 100: ranks floor((100 - 1.96·10)/2) = 40 and ceil(1 + (100 + 19.6)/2) = 61
    assert stats.median_ci(xs) == (40.0, 61.0)
    assert stats.median_ci_fraction(xs) == pytest.approx((61 - 40) / (2 * 50.5))
    # tiny samples: the interval is the whole range
    assert stats.median_ci([1.0, 2.0, 10.0]) == (1.0, 10.0)





class Broken(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.t())  # wrong shape for any batch but 16


def broken() -> torch.nn.Module:
    return Broken()


def test_a_model_that_fails_to_run_is_a_one_line_error():
    with pytest.raises(UserError, match=r"running 'test_bench:broken' failed \(RuntimeError: .*check that the model runs"):
        bench(f"{HERE}:broken", _wl(mode="inference"), inputs=["4x16"], repeats=1, warmup=0, progress=False)


def test_the_prediction_bench_compares_with_is_for_the_eager_kernels_it_runs() -> None:
    # bench runs the model as given, eagerly; a GPU's default stack is a fused one (Megatron-LM / NeMo), which keeps
    # fewer elementwise activations. Measured on an H200 (benchmarks/results/h200-2026-12-04): GPT-2 training at
    # batch 16 × 1,024 peaked at 24.56 GiB; the eager prediction is 24.55 GiB, the fused one about 5 GiB lower.
    from mlfootprint.analysis.memory import estimate_memory
    from mlfootprint.hardware.catalog import get_device
    from mlfootprint.measure.reference import predictions
    from mlfootprint.verbs.common import traced

    wl = Workload(mode="train", precision="bf16-mixed", batch=2, seq=64, hardware="h200")
    spec, w, tr = traced(str(Path(__file__).parent / "data" / "configs" / "tiny-gpt2"), wl)
    got = predictions(spec, w, tr, get_device("h200"), "given")
    eager = estimate_memory(spec, w.with_changes(fusion="none"), tr, other_bytes=0).peak_bytes
    fused = estimate_memory(spec, w.with_changes(fusion="fused"), tr, other_bytes=0).peak_bytes
    assert got["peak_bytes"][0] == eager != fused
    assert "eager kernels (--fusion none, as measured)" in got["peak_bytes"][1]
    assert "eager kernels" in got["step_s"][1]
    # a stack the user names is kept
    named = predictions(spec, w.with_changes(fusion="fused"), tr, get_device("h200"), "given")
    assert named["peak_bytes"][0] == fused and "eager" not in named["peak_bytes"][1]


def test_the_median_interval_states_its_own_coverage():
    # the interval between order statistics j and k covers the median with probability sum C(n, i)/2^n, j <= i < k:
    # at 3 runs min..max, 1 - 2/8 = 75% (it was labelled 95%); at 5 runs also min..max, 1 - 2/32 = 93.75%
    assert stats.median_ci_level(3) == pytest.approx(0.75)
    assert stats.median_ci_level(5) == pytest.approx(0.9375)
    assert stats.median_ci([3.0, 1.0, 2.0]) == (1.0, 3.0)
    assert all(stats.median_ci_level(n) >= 0.95 for n in range(6, 200))
    assert stats.summarize([1.0, 2.0, 3.0])["latency_median_ci_level"] == pytest.approx(0.75)
