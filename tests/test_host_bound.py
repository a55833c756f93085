"""The eager host-dispatch model (analysis/predict/host.py): per-family costs, and a step that waits on the host.

Costs are data (analysis/predict/data/host_dispatch.toml, measured by benchmarks/host_op_cost.py on the H200's
host). The step rule is max(host, device + per-op gaps): checked on a synthetic profile, where both sides are
hand-derived, and on real traces (a tiny GPT-2 is host-bound on an H100 in eager, a 124M one at batch 8 × 1,024
is not, and a fused stack leaves the host to the per-op overhead).
"""
from __future__ import annotations

import pytest

import mlfootprint as mf
from mlfootprint.analysis.predict import host
from mlfootprint.analysis.predict.efficiency import efficiency_for
from mlfootprint.analysis.predict.roofline import PhaseProfile, Profile
from mlfootprint.analysis.predict.step import ModelShape, step_time
from mlfootprint.hardware.catalog import get_device
from mlfootprint.trace.records import ModuleNode, OpRecord
from mlfootprint.workload import Layout

from conftest import ROOT

TINY = str(ROOT / "tests" / "data" / "configs" / "tiny-gpt2")
H100 = get_device("h100-sxm")
US = 1e-6


def test_family_costs_are_the_measured_rows():
    """Each family's cost is its host_op_cost.py row (host_dispatch.toml cites them): x + y 9.02 µs, add_ 10.44,
    x * 0.5 10.30 (elementwise: their mean, 9.92); mm 21.93; a backward operator 26.84."""
    rec = lambda op, phase="forward": OpRecord(0, op, "m", phase, 0, 0, 0, None, 0, 0, 0, 0, True)  # noqa: E731
    assert host.host_seconds(rec("aten.add.Tensor"), False) == pytest.approx((9.02 + 10.44 + 10.30) / 3 * US, rel=1e-3)
    assert host.host_seconds(rec("aten.mm.default"), False) == pytest.approx(21.93 * US)
    assert host.host_seconds(rec("aten.addmm.default"), False) == pytest.approx(21.93 * US)
    assert host.host_seconds(rec("aten._scaled_dot_product_flash_attention.default"), False) == pytest.approx(22.02 * US)
    assert host.host_seconds(rec("aten.native_layer_norm.default"), False) == pytest.approx(17.42 * US)
    assert host.host_seconds(rec("aten.cudnn_batch_norm.default"), False) == pytest.approx(30.0 * US)
    assert host.host_seconds(rec("aten.convolution.default"), False) == pytest.approx(21.34 * US)
    # a cast is an elementwise copy, except under autocast ((90.72 − 32.84) / 3 µs)
    assert host.host_seconds(rec("aten._to_copy.default"), False) == pytest.approx(9.92 * US, rel=1e-3)
    assert host.host_seconds(rec("aten._to_copy.default"), True) == pytest.approx(19.29 * US)
    assert host.host_seconds(rec("aten.mm.default", "backward"), False) == pytest.approx(26.84 * US)
    assert host.host_seconds(rec("aten._foreach_add_.List", "optimizer"), False) == 0.0  # counted per parameter
    assert host.optimizer_seconds(10) == pytest.approx(174.5 * US)


def test_module_calls_count_each_entered_module_once_and_skip_containers():
    """model (root) → layers (a ModuleList, never called) → 0, 1 → mlp: a forward with operators in layers.0,
    layers.0.mlp and layers.1 enters root, layers.0, layers.0.mlp and layers.1: 4 calls."""
    leaf = lambda path, kind: ModuleNode(path.rpartition(".")[2], path, kind, 0, 0)  # noqa: E731
    layer0 = leaf("layers.0", "Block")
    layer0.children.append(leaf("layers.0.mlp", "MLP"))
    layers = leaf("layers", "ModuleList")
    layers.children += [layer0, leaf("layers.1", "Block")]
    tree = ModuleNode("", "", "Model", 0, 0, [layers])
    rec = lambda module, phase="forward": OpRecord(0, "aten.add.Tensor", module, phase, 0, 0, 0, None, 0, 0, 0, 0, True)  # noqa: E731
    records = [rec("layers.0"), rec("layers.0.mlp"), rec("layers.0.mlp"), rec("layers.1"), rec("layers.1", "backward")]
    assert host.module_calls(records, "forward", tree) == 4
    assert host.module_calls(records, "forward", tree, within=lambda p: p.startswith("layers.")) == 3
    assert host.module_calls(records, "recompute", tree) == 0


def _profile(device_s: float, host_s: tuple[float, float, float]) -> Profile:
    fwd_host, bwd_host, opt_host = host_s
    return Profile(
        phases={"forward": PhaseProfile(compute_s=device_s / 3, ops=100, host_s=fwd_host),
                "backward": PhaseProfile(compute_s=2 * device_s / 3, ops=200, host_s=bwd_host),
                "optimizer": PhaseProfile(ops=0, host_s=opt_host)},
        block_forward=PhaseProfile(), attention_forward=PhaseProfile(), fused_recompute_flops=0,
        per_op_overhead_s=5 * US, peak_flops=989e12, peak_dtype="bf16",
        rates={"matmul": 1, "attention": 1, "conv": 1, "vector": 1, "memory": 1e30}, fallbacks=[],
        overhead_source="test", host_modelled=True)


SHAPE = ModelShape(batch=4, tokens_per_sample=64, layers=2, hidden=64, act_bytes=2, grad_bytes=0, weight_bytes=0,
                   param_bytes=0, training=True)


def test_a_step_waits_on_the_host_only_when_the_host_is_slower():
    """Device: 1 ms of kernels + 300 operators × 5 µs of gaps per micro-batch. Host: 3 ms forward, 6 ms backward per
    micro-batch, 1 ms optimizer per step. One micro-batch: host 10 ms > device 2.5 ms → the step is the host's
    10 ms, the wait split by host time. Two micro-batches (8 ms of kernels in the step, 2 × 1.5 ms of gaps): the
    host dispatches each micro-batch, 2 × 9 + 1 = 19 ms > 11 ms → 19 ms. A 40 ms device step hides the host."""
    eff = efficiency_for(H100)
    st = step_time(_profile(1e-3, (3e-3, 6e-3, 1e-3)), SHAPE, Layout(micro_batch=4), H100, eff)
    assert st.step_s == pytest.approx(10e-3)
    assert st.breakdown["overhead_s"] == pytest.approx(10e-3 - 1e-3)
    assert st.phases["forward_s"] == pytest.approx(1e-3 / 3 + 100 * 5 * US + 7.5e-3 * 0.3)
    assert st.phases["optimizer_s"] == pytest.approx(7.5e-3 * 0.1)
    st = step_time(_profile(8e-3, (3e-3, 6e-3, 1e-3)), SHAPE, Layout(micro_batch=2), H100, eff)
    assert st.step_s == pytest.approx(19e-3)
    st = step_time(_profile(40e-3, (3e-3, 6e-3, 1e-3)), SHAPE, Layout(micro_batch=4), H100, eff)
    assert st.step_s == pytest.approx(40e-3 + 300 * 5 * US)
    assert st.breakdown["overhead_s"] == pytest.approx(300 * 5 * US)


def _step(model: str, batch: int, seq: int, fusion: str) -> dict:
    rep = mf.predict(model, mf.Workload(mode="train", batch=batch, seq=seq, hardware="h100-sxm",
                                        precision="bf16-mixed", fusion=fusion))
    return rep.sections["time"]


def test_a_tiny_eager_model_is_host_bound_and_a_large_one_is_not():
    """tiny-gpt2 at batch 1 × 16 tokens: its kernels take microseconds, so in eager the step is the host's time,
    far above the device's compute + memory; with the fused stack (host left to the per-op overhead) it is the
    device's plus 5 µs per kernel. GPT-2 small at batch 8 × 1,024 is device-bound: no wait."""
    eager = _step(TINY, 1, 16, "none")
    device = eager["breakdown"]["compute_s"] + eager["breakdown"]["memory_s"]
    assert eager["step_s"] > 10 * device
    assert eager["bottleneck"] == "host dispatch (eager)"
    fused = _step(TINY, 1, 16, "fused")
    assert fused["step_s"] < eager["step_s"]
    big = _step("gpt2", 8, 1024, "none")
    ops_gap = big["breakdown"]["overhead_s"]
    assert ops_gap < 0.1 * big["step_s"]  # only the per-op gaps: the host keeps ahead


def test_decode_tokens_wait_on_the_host_until_the_context_makes_them_slower():
    """A decode step of 1 ms + 0.1 ms per token of context (memory-bound), the host's dispatch 2 ms per token:
    contexts 5–9 take the host's 2 ms (5 × 2 = 10 ms), 10–14 their own 1 + 0.1·c (5 + 0.1 × 60 = 11 ms): 21 ms."""
    from mlfootprint.analysis.predict.inference import DecodeLine

    line = DecodeLine(memory_0=1e-3, memory_1=1e-4, compute_0=0.0, compute_1=0.0, fixed_s=0.0, pp=1, p2p_s=0.0,
                      bytes_0=0.0, bytes_1=0.0, flops_0=0.0, flops_1=0.0, overhead_s=0.0, tp_s=0.0, host_s=2e-3)
    assert line.step(7).token_s == pytest.approx(2e-3) and line.step(7).host_wait_s == pytest.approx(0.3e-3)
    assert line.step(12).token_s == pytest.approx(2.2e-3) and line.step(12).host_wait_s == 0.0
    assert line.total_s(5, 10) == pytest.approx(21e-3)
    assert line.total_s(5, 10) == pytest.approx(sum(line.step(c).token_s for c in range(5, 15)))
    assert line.total_s(20, 3) == pytest.approx(sum(1e-3 + 1e-4 * c for c in (20, 21, 22)))  # none waits


def test_generate_on_an_eager_gpu_is_host_bound_for_a_tiny_model():
    """tiny-llama decoding one sequence: each token's forward is dispatched op by op, so a token takes the host's
    time for the traced forward (the decode step's own device time is microseconds), and the report says so."""
    rep = mf.predict(TINY.replace("tiny-gpt2", "tiny-llama"),
                     mf.Workload(mode="generate", batch=1, seq=16, gen_tokens=32, hardware="h100-sxm",
                                 precision="bf16-mixed", fusion="none"))
    t = rep.sections["time"]
    assert t["decode_bound"] == "host dispatch (eager)"
    # the prefill (the traced forward, host-bound too: the same dispatch) and 32 tokens at the host's time
    assert t["prefill_s"] == pytest.approx(t["decode_token_s"], rel=1e-9)
    assert t["generate_s"] == pytest.approx(t["prefill_s"] + 32 * t["decode_token_s"], rel=1e-9)


def test_a_host_calibrated_here_scales_the_reference_costs():
    """`hardware calibrate` measures a per-op time (an in-place add on a 1-element tensor) the same way as on the
    reference host (7.398 µs there): a GPU profile calibrated at 3.699 µs dispatches everything twice as fast."""
    import dataclasses

    from mlfootprint.analysis.predict.efficiency import Efficiency
    from mlfootprint.analysis.predict.roofline import build_profile
    from mlfootprint.models.source import resolve
    from mlfootprint.trace.run import trace

    assert host.host_scale(None) == 1.0
    assert host.host_scale(3.699e-6) == pytest.approx(0.5)
    wl = mf.Workload(mode="train", batch=1, seq=16, hardware="h100-sxm", precision="bf16-mixed")
    tr = trace(resolve(TINY), wl)
    reference = build_profile(tr, H100, efficiency_for(H100), wl.precision, fusion="none")
    here = dataclasses.replace(H100, per_op_overhead_s=3.699e-6)
    measured = Efficiency(dict(efficiency_for(here).factors), measured_device=True)
    calibrated = build_profile(tr, here, measured, wl.precision, fusion="none")
    assert reference.host_scale == 1.0 and calibrated.host_scale == pytest.approx(0.5)
    for name in ("forward", "backward", "optimizer"):
        assert calibrated.phases[name].host_s == pytest.approx(0.5 * reference.phases[name].host_s)
        assert reference.phases[name].host_s > 0
