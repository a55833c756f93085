"""The backward's tensor-parallel collectives under the column-parallel linears' own GEMMs (Megatron-LM's async
all-reduce since 2021-09, Megatron-Core, Transformer Engine; ``tp_backward="overlap"``, the default ``auto`` on the
fused stack), or exposed (PyTorch tensor parallelism, Megatron-LM before it: ``"exposed"``, ``auto`` on PyTorch's
eager or compiled stack), against hand-derived seconds.

The synthetic profile and links are those of tests/test_predict_step.py: forward 1 s and backward 2 s for the whole
traced batch of 64, a100-80gb links (300 GB/s inside a node), network efficiency 1, no collective latency. The
layout is dp 4 × tp 2 with micro-batch 16: one micro-batch per step, 8 devices, so each device runs 1/8 of the
traced work. One all-reduce of a micro-batch's activations (16 × 2048 × 1024 bf16 over 2 ranks) takes ONE seconds;
each group (the fused QKV, the first MLP linear) has T = 4 layers × ONE of backward collectives in a step.
"""
from __future__ import annotations

import json

import pytest

import mlfootprint as mf
from mlfootprint.analysis.predict.efficiency import efficiency_for
from mlfootprint.analysis.predict.fusion import FusionSummary
from mlfootprint.analysis.predict.roofline import PhaseProfile, build_profile
from mlfootprint.analysis.predict.step import ModelShape, step_time
from mlfootprint.core.errors import UserError
from mlfootprint.hardware.catalog import get_device
from mlfootprint.trace.cache import trace
from mlfootprint.models.source import resolve
from mlfootprint.workload import Layout, Workload

from conftest import ROOT, run_cli
from test_predict_step import EXACT, profile

A100 = get_device("a100-80gb")
INTRA = 300e9
ONE = 2 * (1 / 2) * 16 * 2048 * 1024 * 2 / INTRA  # a ring all-reduce over 2 ranks moves 2(n-1)/n of the bytes
T = 4 * ONE
SHAPE = ModelShape(batch=64, tokens_per_sample=2048, layers=4, hidden=1024, act_bytes=2, grad_bytes=4e9,
                   weight_bytes=2e9, param_bytes=4e9, training=True, reduce_bytes=2e9, weight_elem_bytes=2.0,
                   reduce_elem_bytes=2.0)
TINY = str(ROOT / "tests" / "data" / "configs" / "tiny-gpt2")


def run(columns: dict[str, float], stack: str = "fused", **layout):
    """The step with the column-parallel linears' backward GEMMs taking ``columns`` seconds per device (by group),
    timed as the ``stack`` fusion mode's."""
    prof = profile()
    prof.fusion = FusionSummary(stack, "test")
    # dgrad and wgrad each half of a group's time; 1/8 of the traced work on each device
    prof.column_backward = {f"{g}/{kind}": PhaseProfile(compute_s=8 * t / 2)
                            for g, t in columns.items() for kind in ("dgrad", "wgrad")}
    return step_time(prof, SHAPE, Layout(dp=4, tp=2, micro_batch=16, **layout), A100, efficiency_for(A100, EXACT))


def test_long_gemms_hide_the_backward_all_reduces_and_the_forward_ones_stay_exposed():
    long = {"attention": 0.1, "mlp": 0.2}  # far longer than T (0.9 ms)
    on = run(long)
    assert on.communication["tp_s"] == pytest.approx(16 * ONE)  # 2 forward + 2 backward per layer, 4 layers
    assert on.communication["tp_exposed_s"] == pytest.approx(8 * ONE)  # the forward's 2 per layer
    off = run(long, tp_backward="exposed")
    assert off.communication["tp_exposed_s"] == pytest.approx(16 * ONE)
    assert off.step_s - on.step_s == pytest.approx(8 * ONE)
    assert any("backward tensor-parallel overlap" in n for n in on.notes)
    assert not any("backward tensor-parallel overlap" in n for n in off.notes)


def test_sequence_parallelism_gathers_the_input_again_and_hides_it_under_the_input_gradient():
    """Megatron's sequence parallelism: forward 2 all-gathers + 2 reduce-scatters per layer (2 ONE), backward the
    row-parallel linears' output-gradient all-gathers (1 ONE, exposed), the column-parallel ones' reduce-scatters
    (1 ONE, under wgrad) and the re-gathers of their inputs (1 ONE, under dgrad): 5 ONE a layer, 3 exposed."""
    long = {"attention": 0.1, "mlp": 0.2}
    on = run(long, sequence_parallel=True)
    assert on.communication["tp_s"] == pytest.approx(20 * ONE)
    assert on.communication["tp_exposed_s"] == pytest.approx(12 * ONE)
    assert any("gathers it again" in n for n in on.notes)
    # PyTorch's tensor parallelism keeps the gathered input: 4 ONE a layer, all exposed
    off = run(long, sequence_parallel=True, tp_backward="exposed")
    assert off.communication["tp_s"] == off.communication["tp_exposed_s"] == pytest.approx(16 * ONE)


def test_short_gemms_hide_what_they_can_per_group():
    # per device: the QKV's backward GEMMs 0.4 T (dgrad and wgrad 0.2 T each), the MLP's 10 T
    short = {"attention": 0.4 * T, "mlp": 10 * T}
    # the input-gradient all-reduce under wgrad: min(T, 0.2 T) + min(T, 5 T) = 1.2 T hidden
    assert run(short).communication["tp_exposed_s"] == pytest.approx(16 * ONE - 1.2 * T)
    # sequence parallelism: the re-gather (T/2) under dgrad and the reduce-scatter (T/2) under wgrad, per group
    # min(T/2, 0.2 T) × 2 + min(T/2, 5 T) × 2 = 1.4 T hidden of 20 ONE
    assert run(short, sequence_parallel=True).communication["tp_exposed_s"] == pytest.approx(20 * ONE - 1.4 * T)


def test_linears_not_told_apart_share_their_gemms_and_unnamed_ones_hide_nothing():
    # one group found: both collectives (2 T) under all the column GEMMs (T): wgrad T/2 hidden, or under SP T
    assert run({"mlp": T}).communication["tp_exposed_s"] == pytest.approx(16 * ONE - 0.5 * T)
    assert run({"mlp": T}, sequence_parallel=True).communication["tp_exposed_s"] == pytest.approx(20 * ONE - T)
    none = run({})
    assert none.communication["tp_exposed_s"] == pytest.approx(16 * ONE)
    assert any("no column-parallel linear found" in n for n in none.notes)


def test_auto_takes_the_target_stacks_way():
    long = {"attention": 0.1, "mlp": 0.2}
    assert Layout(tp=2).tp_backward == "auto" and Workload().tp_backward == "auto"
    fused = run(long)  # Megatron / Transformer Engine: under the GEMMs
    assert fused.tp_backward == "overlap" and fused.communication["tp_exposed_s"] == pytest.approx(8 * ONE)
    for stack in ("none", "compiled"):  # PyTorch's tensor parallelism: after each linear's backward
        torch_tp = run(long, stack, sequence_parallel=True)
        assert torch_tp.tp_backward == "exposed", stack
        assert torch_tp.communication["tp_s"] == torch_tp.communication["tp_exposed_s"] == pytest.approx(16 * ONE)
        assert any("on PyTorch's eager or compiled stack" in n for n in torch_tp.notes)
    # a value given wins over the stack's
    assert run(long, "none", tp_backward="overlap").communication["tp_exposed_s"] == pytest.approx(8 * ONE)
    assert run(long, "fused", tp_backward="exposed").communication["tp_exposed_s"] == pytest.approx(16 * ONE)


def test_tp_comm_overlap_and_inference_are_unchanged():
    long = {"attention": 0.1, "mlp": 0.2}
    # userbuffers hide every collective up to the compute, with or without the backward overlap
    assert run(long, tp_comm_overlap=True).communication["tp_exposed_s"] == 0.0
    serve = step_time(profile(), ModelShape(**{**SHAPE.__dict__, "training": False}),
                      Layout(dp=4, tp=2, micro_batch=16), A100, efficiency_for(A100, EXACT))
    assert serve.communication["tp_exposed_s"] == pytest.approx(8 * ONE)  # 2 a layer, the forward's


def test_the_trace_gives_each_groups_backward_gemms():
    """tiny-gpt2 (hidden 64, 2 layers) at batch 2 × seq 32: 64 tokens. A linear's backward is two GEMMs of its
    forward's FLOPs, 2 · 64 · in · out each: c_attn (64 → 192) is the attention group, c_fc (64 → 256) the MLP's;
    c_proj (row-parallel) is neither."""
    wl = Workload(mode="train", batch=2, seq=32, precision="bf16-mixed", hardware="h100-sxm")
    dev = get_device("h100-sxm")
    for prec in ("bf16-mixed", "fp8-mixed"):  # an FP8 linear's backward GEMMs are the linear's too
        tr = trace(resolve(TINY), wl.with_changes(precision=prec))
        groups = build_profile(tr, dev, efficiency_for(dev), prec).column_backward_at(1.0)
        assert {g: p.model_flops for g, p in groups.items()} == {
            f"{g}/{kind}": 2 * (2 * 64 * 64 * out) for g, out in (("attention", 192), ("mlp", 256))
            for kind in ("dgrad", "wgrad")}, prec
        assert all(p.time_s > 0 for p in groups.values())
    # LoRA (rank 4 on c_attn, GPT-2's default target): a frozen linear has no weight-gradient GEMM; the adapters'
    # are all that is left, and c_fc, frozen without an adapter, has none
    tr = trace(resolve(TINY), wl.with_changes(lora_rank=4))
    groups = build_profile(tr, dev, efficiency_for(dev), "bf16-mixed").column_backward_at(1.0)
    assert {g: p.model_flops for g, p in groups.items()} == {
        "attention/wgrad": 2 * (2 * 64 * 64 * 4 + 2 * 64 * 4 * 192),  # lora_A (64 → 4), lora_B (4 → 192)
        # the base and both adapters; the first layer's input (the frozen embeddings') needs no gradient, so there
        # only lora_B, whose input is lora_A's output, computes one
        "attention/dgrad": (2 * 64 * 64 * 192 + 2 * 64 * 4 * 64 + 2 * 64 * 192 * 4) + 2 * 64 * 192 * 4,
        "mlp/dgrad": 2 * (2 * 64 * 64 * 256)}


def test_the_option_reaches_the_step_from_the_api_and_the_command_line(tmp_path):
    argv = ["predict", TINY, "--mode", "train", "--batch", "8", "--seq", "32", "--hardware", "a100-80gb",
            "--devices", "2", "--tp", "2", "--no-sequence-parallel", "--precision", "bf16-mixed", "--format", "json"]
    step = {}
    for how in ("overlap", "exposed"):
        out = tmp_path / f"{how}.json"
        proc = run_cli(*argv, "--tp-backward", how, "-o", str(out))
        assert proc.returncode == 0, proc.stderr
        rep = json.loads(out.read_text())
        assert rep["workload"]["tp_backward"] == how
        step[how] = rep["time"]["step_s"]
        api = mf.predict(TINY, Workload(mode="train", batch=8, seq=32, hardware="a100-80gb", devices=2, tp=2,
                                        precision="bf16-mixed", sequence_parallel=False, tp_backward=how))
        assert api.sections["time"]["step_s"] == pytest.approx(step[how], rel=1e-9)
    assert step["overlap"] < step["exposed"]
    assert Layout(tp=2, tp_backward="exposed").label().endswith("tp-backward=exposed")
    assert "tp-backward" not in Layout(tp=2).label() and "tp-backward" not in Layout(tp_backward="exposed").label()
    bad = run_cli(*argv, "--tp-backward", "async")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "tp-backward" in bad.stderr
    with pytest.raises(UserError, match="tp.backward"):
        Layout(tp=2, tp_backward="async")
