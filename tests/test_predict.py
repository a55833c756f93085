"""`predict` and the `time` section on traced models: consistency, monotonicity, serving, bad input."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mlfootprint.api import analyze
from mlfootprint.analysis.count.flops import flop_summary
from mlfootprint.analysis.count.params import parameter_stats
from mlfootprint.analysis.predict.prediction import devices_for_deadline, inference_latency, predict_step, time_to_train
from mlfootprint.core.units import parse_duration
from tests.helpers import traced_for_prediction as trace_for_prediction
from mlfootprint.workload import Workload

CONFIGS = Path(__file__).parent / "data" / "configs"
TINY_GPT2 = str(CONFIGS / "tiny-gpt2" / "config.json")


def cli(*args: str) -> subprocess.CompletedProcess:
    from conftest import run_cli

    return run_cli(*args)


def one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and "warn" not in ln.lower()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("mlfootprint: error: ")
    return lines[0]


def trace(model: str, **kw):
    spec, wl, tr = trace_for_prediction(model, Workload(**kw))
    return spec, wl, tr, vars(parameter_stats(tr))


@pytest.fixture(scope="module")
def gpt2_train():
    return trace("gpt2", batch=16, seq=1024, mode="train", precision="bf16-mixed")


# --------------------------------------------------------------------------- one step


def test_step_is_consistent(gpt2_train):
    spec, wl, tr, _ = gpt2_train
    p = predict_step(spec, wl, tr, "a100-80gb")
    assert p.provenance == "modeled"
    assert sum(p.breakdown.values()) == pytest.approx(p.step_s)
    assert p.model_flops == flop_summary(tr).model
    assert p.mfu == pytest.approx(p.model_flops / (p.step_s * 1 * 312e12))  # a100 dense bf16 peak
    assert p.tokens_per_s == pytest.approx(16 * 1024 / p.step_s)
    assert p.samples_per_s == pytest.approx(16 / p.step_s)
    assert 0 < p.mfu < 0.859  # never above the A100 large-GEMM ceiling (analysis/predict/data/gemm.toml)
    assert p.hfu == pytest.approx(p.mfu)  # no recomputation
    assert any("16-bit GEMMs rated by size" in a for a in p.assumptions)


def test_monotone_in_batch_seq_and_devices(gpt2_train):
    spec, wl, tr, _ = gpt2_train
    steps = []
    for kw in (dict(batch=4, seq=256), dict(batch=8, seq=256), dict(batch=8, seq=512)):
        s, w, t, _ = trace("gpt2", mode="train", precision="bf16-mixed", **kw)
        steps.append(predict_step(s, w, t, "a100-80gb").step_s)
    assert steps[0] < steps[1] < steps[2]
    by_devices = []
    for n in (1, 2, 4, 8, 16):
        w = Workload(batch=16, seq=1024, mode="train", precision="bf16-mixed", devices=n)
        by_devices.append(predict_step(spec, w, tr, "a100-80gb"))
    inside = by_devices[:4]  # up to one node of 8: NVLink
    assert [p.step_s for p in inside] == sorted((p.step_s for p in inside), reverse=True)
    assert [p.tokens_per_s for p in inside] == sorted(p.tokens_per_s for p in inside)
    # 16 devices span two nodes: the gradient all-reduce (2·15/16 of the gradients against 2·7/8 at 8) crosses
    # the nodes on their 8 × 25 GB/s links, 200 GB/s against NVLink's 300 GB/s: 15/14 × 3/2 = 1.61 × the time
    # of the bytes (the latency of 30 ring steps at 20 µs, against 14 at 10 µs, comes on top)
    ratio = by_devices[4].communication["dp_s"] / by_devices[3].communication["dp_s"]
    assert 15 / 14 * 3 / 2 < ratio < 2.5


def test_given_utilization_replaces_the_roofline(gpt2_train):
    spec, wl, tr, _ = gpt2_train
    p = predict_step(spec, wl, tr, "a100-80gb", mfu=0.5)
    assert p.step_s == pytest.approx(p.model_flops / (312e12 * 0.5))
    assert p.mfu == pytest.approx(0.5)
    q = predict_step(spec, wl, tr, "a100-80gb", flops_per_device=100e12)
    assert q.step_s == pytest.approx(q.hardware_flops / 100e12)


def test_time_to_train_and_deadline(gpt2_train):
    spec, wl, tr, _ = gpt2_train
    p = predict_step(spec, wl, tr, "a100-80gb")
    t = time_to_train(p, 1e9, params=124_439_808)
    assert t.steps == pytest.approx(1e9 / (16 * 1024))
    assert t.seconds == pytest.approx(t.steps * p.step_s)
    assert t.device_hours == pytest.approx(t.seconds / 3600)
    assert t.flops_6nd == pytest.approx(6 * 124_439_808 * 1e9)
    d = devices_for_deadline(p, 1e12, parse_duration("90d"), mfu=0.4)
    exact = p.model_flops / (16 * 1024) * 1e12 / (90 * 86400 * 312e12 * 0.4)
    assert d.exact == pytest.approx(exact)
    assert d.devices == -(-exact // 1)
    assert parse_duration("36h") == 36 * 3600 and parse_duration("2w") == 14 * 86400


def test_inference_prefill_and_decode():
    spec, wl, tr, params = trace("gpt2", batch=1, seq=1024, mode="inference", precision="bf16")
    s = inference_latency(spec, wl, tr, "a100-80gb")
    # decode at batch 1, context 1024: every weight once (tied embedding = the LM head; bf16 = 2 bytes)
    # plus the KV cache 2·layers·kv_heads·head_dim·2 bytes per position, at 0.8 × 2.039 TB/s,
    # plus one forward's per-op overhead (5 µs per op); the FLOPs take ~1 µs. The overhead (217 ops: 1.09 ms) is
    # six times the memory time (0.18 ms), so the token waits on the operators' launches: the bound says so (it once
    # said "memory bandwidth" whenever memory beat compute).
    weights = params["total"] * 2
    kv = 1024 * 2 * 12 * 12 * 64 * 2
    fwd_ops = sum(1 for r in tr.records if r.phase == "forward")
    assert 5e-6 * fwd_ops > (weights + kv) / (2.039e12 * 0.8)
    assert s.decode.bound == "per-op overhead"
    assert s.decode.token_s == pytest.approx((weights + kv) / (2.039e12 * 0.8) + 5e-6 * fwd_ops, rel=1e-6)
    assert s.decode.tokens_per_s == pytest.approx(1 / s.decode.token_s)
    assert s.prefill_s > s.decode.token_s
    wide = inference_latency(spec, wl, tr, "a100-80gb", batch=32)
    assert wide.decode.token_s > s.decode.token_s  # more KV cache to read
    assert wide.decode.tokens_per_s > 10 * s.decode.tokens_per_s  # weights shared across the batch
    gen = inference_latency(spec, wl, tr, "a100-80gb", new_tokens=16)
    assert gen.generate.total_s > s.prefill_s + 16 * s.decode.token_s  # the context grows


# --------------------------------------------------------------------------- the time section


def test_time_section_only_with_hardware():
    # without a device (only its memory size) there is no time, never a zero one
    rep = analyze(TINY_GPT2, Workload(batch=2, seq=32, mode="train", device_memory=8 * 10**9))
    assert "time" not in rep.sections and "footprint" not in rep.sections
    # with neither, analyze assumes its default device, for the API as for the command line
    rep = analyze(TINY_GPT2, Workload(batch=2, seq=32, mode="train"))
    assert rep.sections["time"]["hardware"] == "a100-80gb" and rep.provenance["workload.hardware"] == "assumed"
    rep = analyze(TINY_GPT2, Workload(batch=2, seq=32, mode="train", hardware="h100-sxm", tokens=1e6))
    t = rep.sections["time"]
    for key in ("step_s", "tokens_per_s", "samples_per_s", "mfu", "hfu", "train_s", "device_hours", "train_flops"):
        assert t[key] > 0
        assert rep.provenance[f"time.{key}"] in ("modeled", "counted")
    assert any(a.startswith("16-bit GEMMs rated by size") for a in rep.assumptions)
    inf = analyze(TINY_GPT2, Workload(batch=2, seq=32, mode="generate", gen_tokens=8, hardware="h100-sxm")).sections["time"]
    assert inf["decode_token_s"] > 0 and inf["generate_s"] > inf["prefill_s"]


# --------------------------------------------------------------------------- bad input


def test_unknown_hardware_suggests_the_closest():
    line = one_line_error(cli("predict", "gpt2", "--hardware", "a100-80g"))
    assert "unknown hardware 'a100-80g'" in line and "a100-80gb" in line


def test_dtype_without_a_peak():
    line = one_line_error(cli("predict", "gpt2", "--hardware", "tpu-v4", "--precision", "fp32"))
    assert "fp32" in line and "tpu-v4" in line


def test_devices_not_divisible_by_tp_pp():
    line = one_line_error(cli("predict", "gpt2", "--hardware", "a100-80gb", "--devices", "10", "--tp", "4"))
    assert "--devices 10 is not divisible by --tp 4" in line


@pytest.mark.parametrize("args, expected", [
    (["predict", "gpt2", "--hardware", "h100-sxm", "--tokens", "1e9", "--deadline", "soon"], "--deadline"),
    (["predict", "gpt2", "--hardware", "h100-sxm", "--deadline", "90d"], "needs --tokens"),
    (["predict", "gpt2", "--hardware", "h100-sxm", "--efficiency", "fast=1"], "unknown efficiency factor 'fast'"),
    (["predict", "gpt2", "--hardware", "h100-sxm", "--zeropp"], "--zero 3"),
    (["predict", "gpt2", "--hardware", "h100-sxm", "--mfu", "45"], "--mfu is a fraction"),
    (["predict", "gpt2", "--hardware", "h100-sxm", "--devices", "4", "--dp", "2"], "--dp 2"),
    (["predict", "gpt2", "--hardware", "h100-sxm", "--devices", "4", "--dp", "4", "--batch", "6"], "not divisible by the 4"),
])
def test_other_bad_input(args, expected, capsys):
    from mlfootprint.cli import main

    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mlfootprint: error: ") and expected in err[0], err


def test_default_batch_is_one_sample_per_replica():
    # no --batch with 8 data-parallel devices: each replica takes one sample (the memory model's reading),
    # so one step covers 8 traced batches of one sequence
    spec, wl, tr, _ = trace(TINY_GPT2, seq=32, mode="train", devices=8)
    assert wl.dp == 8 and "batch" not in wl.given
    p = predict_step(spec, wl, tr, "a100-80gb")
    assert p.samples_per_step == 8 and p.tokens_per_step == 8 * 32
    assert p.model_flops == pytest.approx(8 * flop_summary(tr).model)
    assert p.assumptions[0].startswith("no --batch")


def test_predict_without_hardware_assumes_a_device_and_says_so_first():
    from mlfootprint.api import Workload, predict

    rep = predict("gpt2", Workload(seq=128, batch=4))
    assert rep.sections["workload"]["hardware"] == "a100-80gb"
    assert "hardware" in rep.sections["workload"]["defaults"]
    assert any("a100-80gb" in a for a in rep.key_assumptions), rep.key_assumptions
