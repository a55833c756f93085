"""Causal fused attention is timed on the half of the square its kernel computes (issue 12).

FlashAttention-2 (Dao 2023, arXiv:2307.08691, §3.1.1) skips the score tiles above the diagonal when told is_causal,
and its TFLOP/s figures (§4.1), the attention factor's source, count that half. FLOPs, MFU and HFU keep the full
square (DESIGN.md, the PaLM convention).
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from mlfootprint.analysis.predict.attention_rate import attention_rate, training_rate
from mlfootprint.analysis.predict.efficiency import efficiency_for
from mlfootprint.analysis.predict.roofline import CAUSAL_TILE_SHARE, build_profile, compute_share
from mlfootprint.hardware.catalog import get_device
from mlfootprint.trace.records import OpRecord

# One attention call: B·H = 32, L = S = 1024, E = Ev = 128: products 2·32·1024²·128·2 = 17,179,869,184 FLOPs.
SCORES = 32 * 1024 * 1024
PRODUCTS = 2 * SCORES * 128 * 2
SOFTMAX = 5 * SCORES
QKV_BYTES = 4 * 32 * 1024 * 128 * 2  # q, k, v, out in bf16: far below the compute time at these FLOPs


def _attention(op: str, causal: bool, index: int = 0) -> OpRecord:
    return OpRecord(index=index, op=op, module="layers.0.attn", phase="forward", model_flops=PRODUCTS,
                    other_flops=SOFTMAX, attention_flops=PRODUCTS, causal=causal, recompute_flops=0,
                    bytes_read=3 * QKV_BYTES // 4, bytes_written=QKV_BYTES // 4, alloc_bytes=0, supported=True,
                    out_dtype="torch.bfloat16")


def _attention_seconds(record: OpRecord, device_id: str = "a100-80gb") -> tuple[float, object]:
    dev = get_device(device_id)
    eff = efficiency_for(dev, None)
    trace = SimpleNamespace(records=[record])
    profile = build_profile(trace, dev, eff, "bf16-mixed", fusion="none")
    return profile.phases["forward"].by_class["attention"], profile


def _expected(share: float, device_id: str = "a100-80gb") -> float:
    dev = get_device(device_id)
    eff = efficiency_for(dev, None)
    # products at the bf16 peak × the attention factor, the softmax at the fp32 peak × the vector factor
    return share * (PRODUCTS / (dev.peak_flops["bf16"] * eff["attention"])
                    + SOFTMAX / (dev.peak_flops["fp32"] * eff["vector"]))


def test_a_causal_flash_kernel_is_timed_on_half_the_square():
    t, profile = _attention_seconds(_attention("aten._scaled_dot_product_flash_attention.default", causal=True))
    # A100: 312e12 × 0.6 = 187.2 TFLOP/s; 17.18 GFLOP / 2 / 187.2e12 = 45.9 µs (+ softmax 5·33.5M / 2 / 9.75 TFLOP/s)
    assert t == pytest.approx(_expected(0.5), rel=1e-12)
    assert t == pytest.approx(PRODUCTS / 2 / 187.2e12 + SOFTMAX / 2 / (19.5e12 * 0.5), rel=1e-12)
    assert any("causal fused attention (1 kernel calls) timed on 0.5" in f for f in profile.fallbacks)


@pytest.mark.parametrize("op, causal", [
    ("aten._scaled_dot_product_flash_attention.default", False),  # not causal: the whole square
    ("aten.bmm.default", True),  # unfused products compute the whole square, then mask it
])
def test_other_attention_is_timed_on_the_whole_square(op, causal):
    t, profile = _attention_seconds(_attention(op, causal=causal))
    assert t == pytest.approx(_expected(1.0), rel=1e-12)
    assert not any("causal fused attention" in f for f in profile.fallbacks)


def test_a_fused_backward_is_timed_with_its_recomputed_scores():
    """The flash backward recomputes Q·Kᵀ (2·B·H·L·S·E, hardware FLOPs): with the backward's 2 × the forward
    products that is FlashAttention's 2.5 × forward (Dao 2023, §4.1), all of it run by the kernel."""
    r = _attention("aten._scaled_dot_product_flash_attention_backward.default", causal=True)
    r.phase, r.model_flops, r.attention_flops = "backward", 2 * PRODUCTS, 2 * PRODUCTS
    r.other_flops, r.recompute_flops = 4 * SCORES, 2 * SCORES * 128
    dev = get_device("a100-80gb")
    eff = efficiency_for(dev, None)
    profile = build_profile(SimpleNamespace(records=[r]), dev, eff, "bf16-mixed", fusion="none")
    products = 2 * PRODUCTS + 2 * SCORES * 128  # = 2.5 × the forward's products
    assert products == 2.5 * PRODUCTS
    expected = 0.5 * (products / (312e12 * 0.6) + 4 * SCORES / (19.5e12 * 0.5))
    assert profile.phases["backward"].by_class["attention"] == pytest.approx(expected, rel=1e-12)


def test_compute_share_names_each_kernel():
    assert CAUSAL_TILE_SHARE == 0.5
    for op in ("aten._scaled_dot_product_flash_attention_backward.default",
               "aten._scaled_dot_product_efficient_attention.default",
               "aten._scaled_dot_product_cudnn_attention.default",
               "aten._scaled_dot_product_flash_attention_for_cpu.default", "aten._flash_attention_forward.default"):
        assert compute_share(_attention(op, causal=True)) == 0.5, op
    assert compute_share(_attention("aten.mm.default", causal=None)) == 1.0


def test_a_real_causal_lm_on_a_gpu_halves_its_attention_time_not_its_flops():
    """A traced Llama step on the H100 target: every attention call is a causal flash kernel; the attention time is
    half the whole square's at the attention rate, while model and hardware FLOPs keep the full square."""
    from mlfootprint.analysis.predict.prediction import predict_step
    from mlfootprint.workload import Workload
    from tests.helpers import traced_for_prediction

    wl = Workload(mode="train", batch=1, seq=2048, hardware="h100-sxm", precision="bf16-mixed")
    spec, wl, tr = traced_for_prediction("llama-2-7b", wl)
    flash = [r for r in tr.records if r.attention_flops]
    assert len(flash) == 64 and all(r.causal and "flash" in r.op for r in flash)  # 32 layers, forward and backward
    # each call's query and key lengths and head dimension (4,096 / 32 heads), which its rate is read at
    assert all(r.hint == ("attention", 2048, 2048, 128) for r in flash)
    p = predict_step(spec, wl, tr, "h100-sxm")
    model = sum(r.model_flops for r in tr.records if r.phase in ("forward", "backward"))
    recompute = sum(r.recompute_flops for r in flash)  # the flash backward's Q·Kᵀ again
    assert p.model_flops == pytest.approx(model, rel=1e-12)
    assert p.hardware_flops == pytest.approx(model + recompute, rel=1e-12)
    assert any("causal fused attention (64 kernel calls)" in a for a in p.assumptions)

    dev = get_device("h100-sxm")
    eff = efficiency_for(dev, None)
    profile = build_profile(tr, dev, eff, "bf16-mixed")
    bandwidth = dev.memory_bandwidth_bytes_per_s * eff["memory_bandwidth"]

    # H100: cuDNN's measured rate at the calls' 2,048 keys (FlashAttention-3's point: forward 484, backward 465
    # TFLOP/s), not the flat factor
    share_of_peak = attention_rate(dev).share_at(2048, 128)
    assert share_of_peak == pytest.approx(training_rate(484e12, 465e12) / 989.4e12, rel=1e-12)

    def seconds(r, share: float) -> float:  # the roofline of one call: max(compute, memory)
        compute = (r.model_flops / (dev.peak_flops["bf16"] * share_of_peak)
                   + r.other_flops / (dev.peak_flops["fp32"] * eff["vector"]))
        return max(share * compute, (r.bytes_read + r.bytes_written) / bandwidth)

    fwd = [r for r in flash if r.phase == "forward"]
    halved = sum(seconds(r, 0.5) for r in fwd)
    assert profile.phases["forward"].by_class["attention"] == pytest.approx(halved, rel=1e-9)
    assert halved < 0.6 * sum(seconds(r, 1.0) for r in fwd)  # compute-bound at 2,048 tokens: the halving shows


def test_the_h100_class_rate_is_cudnns_measured_training_rate():
    """FlashAttention-3 (arXiv:2407.08608) Figs. 5-6, cuDNN on an H100 SXM5, head dim 128: forward (causal) and
    backward at 4k tokens 518 and 499 TFLOP/s; a training step's rate with the backward at 2.5 × the forward's
    FLOPs is 3.5 / (1/518 + 2.5/499) = 504.3 TFLOP/s, the median of the 2k/4k/8k points (470.3, 504.3, 521.1)."""
    assert training_rate(518e12, 499e12) == pytest.approx(3.5 / (1 / 518e12 + 2.5 / 499e12), rel=1e-12)
    assert training_rate(518e12, 499e12) == pytest.approx(504.27e12, rel=1e-4)
    rate = attention_rate(get_device("h100-sxm"))
    assert rate.share == pytest.approx(504.27e12 / 989.4e12, rel=1e-4)  # 0.5097
    assert attention_rate(get_device("h200")).share == rate.share
    assert attention_rate(get_device("a100-80gb")) is None  # the flat factor (FlashAttention-2's A100 range)


def test_attention_flash2_times_sdpa_at_its_measured_h100_class_rate():
    """PyTorch's SDPA flash backend (its FlashAttention-2) measured on an H200 at its power cap
    (benchmarks/results/h200-2026-12-04/attention_sweep.json), causal, head dim 128, forward and backward at
    2k/4k/8k tokens 278/202, 292/247 and 302/280 TFLOP/s; training rates 3.5 / (1/f + 2.5/b) = 219.1, 258.4 and
    286.0 TFLOP/s, median 258.4: 0.261 of the 989.4 peak, where cuDNN's (FlashAttention-3's figures) is 0.510.
    PyTorch's SDPA has put it before cuDNN attention on Hopper in some releases (pytorch/pytorch#138522)."""
    h100 = get_device("h100-sxm")
    flash2 = attention_rate(h100, "flash2")
    assert training_rate(292e12, 247e12) == pytest.approx(258.377e12, rel=1e-5)
    assert flash2.share == pytest.approx(258.377e12 / 989.4e12, rel=1e-5)  # 0.2611
    assert "FlashAttention-2" in flash2.how and "cuDNN" in attention_rate(h100).how
    assert attention_rate(h100, None).share == pytest.approx(504.27e12 / 989.4e12, rel=1e-4)
    assert attention_rate(h100, "sdpa").share == attention_rate(h100, None).share  # no [h100-sdpa]: the default
    assert attention_rate(get_device("a100-80gb"), "flash2") is None  # the flat factor, as for sdpa

    # one traced call: the same records, the attention kernel's compute at the lower rate
    r = _attention("aten._scaled_dot_product_flash_attention.default", causal=False)
    eff = efficiency_for(h100, None)
    times = {}
    for attention in ("sdpa", "flash2"):
        trace = SimpleNamespace(records=[r], workload=SimpleNamespace(attention=attention))
        p = build_profile(trace, h100, eff, "bf16-mixed", fusion="none")
        times[attention] = p.phases["forward"].by_class["attention"]
        assert p.attention.share == attention_rate(h100, "flash2" if attention == "flash2" else None).share
    softmax = SOFTMAX / (66.9e12 * 0.5)
    assert times["flash2"] - softmax == pytest.approx((times["sdpa"] - softmax) * 0.50967 / 0.26114, rel=1e-3)


def test_attention_flash2_is_traced_as_sdpa():
    # the option changes the timing only: a Hugging Face model is built with attn_implementation="sdpa"
    import mlfootprint as mf
    from mlfootprint.models import resolve
    from mlfootprint.trace.run import trace as run_trace

    tiny = resolve("tests/data/configs/tiny-llama")
    ops = {}
    for attention in ("sdpa", "flash2"):
        wl = mf.Workload(mode="train", seq=64, batch=2, precision="bf16-mixed", hardware="h100-sxm", attention=attention)
        ops[attention] = [(r.op, r.module, r.model_flops) for r in run_trace(tiny, wl).records]
    assert ops["flash2"] == ops["sdpa"] and any("flash_attention" in op for op, _, _ in ops["sdpa"])


def test_the_class_rate_times_fused_attention_unless_the_factor_is_given():
    r = _attention("aten._scaled_dot_product_flash_attention.default", causal=False)
    t, profile = _attention_seconds(r, "h100-sxm")
    share = attention_rate(get_device("h100-sxm")).share
    assert t == pytest.approx(PRODUCTS / (989.4e12 * share) + SOFTMAX / (66.9e12 * 0.5), rel=1e-3)
    assert profile.attention is not None
    assert any("rated by its class" in f for f in profile.fallbacks)
    dev = get_device("h100-sxm")
    given = efficiency_for(dev, "attention=0.7")
    p = build_profile(SimpleNamespace(records=[r]), dev, given, "bf16-mixed", fusion="none")
    assert p.phases["forward"].by_class["attention"] == pytest.approx(
        PRODUCTS / (dev.peak_flops["bf16"] * 0.7) + SOFTMAX / (dev.peak_flops["fp32"] * 0.5), rel=1e-12)
    assert p.attention is None
    # an unfused attention product on the H100 keeps the flat factor
    t, _ = _attention_seconds(_attention("aten.bmm.default", causal=True), "h100-sxm")
    assert t == pytest.approx(_expected(1.0, "h100-sxm"), rel=1e-12)


def test_an_attention_call_is_rated_at_its_key_length_and_head_dimension():
    h100 = get_device("h100-sxm")
    cudnn = attention_rate(h100)
    # head dimension 128, FlashAttention-3's cuDNN points: 2,048 keys (484, 465) and 8,192 (529, 518) TFLOP/s;
    # halfway in log2 between them (4,096 is the middle point: 518, 499); flat beyond the ends
    assert cudnn.share_at(2048, 128) == pytest.approx(training_rate(484e12, 465e12) / 989.4e12)
    assert cudnn.share_at(8192, 128) == pytest.approx(training_rate(529e12, 518e12) / 989.4e12)
    assert cudnn.share_at(131072, 128) == cudnn.share_at(8192, 128)
    assert cudnn.share_at(1024, 128) == cudnn.share_at(2048, 128)
    mid = (training_rate(484e12, 465e12) + training_rate(518e12, 499e12)) / 2 / 989.4e12
    assert cudnn.share_at(round(2048 * 2**0.5), 128) == pytest.approx(mid, rel=1e-4)
    # head dimension 64 (GPT-2): the [h100-d64] points measured on an H200, 1,024 keys at forward 330, backward
    # 209 TFLOP/s: under half the head-dimension-128 rate
    assert cudnn.share_at(1024, 64) == pytest.approx(training_rate(330e12, 209e12) / 989.4e12)
    assert cudnn.share_at(1024, 64) < 0.5 * cudnn.share_at(1024, 128)
    assert cudnn.share_at(1024, 80) == cudnn.share_at(1024, 64) and cudnn.share_at(1024, 96) == cudnn.share_at(1024, 128)
    flash = attention_rate(h100, "flash2")
    assert flash.share_at(1024, 64) == pytest.approx(training_rate(216e12, 137e12) / 989.4e12)
    # one call: the roofline reads the share at the key length and head dimension of the formula's hint
    import dataclasses

    r = _attention("aten._scaled_dot_product_flash_attention.default", causal=False)
    gpt2_like = dataclasses.replace(r, hint=("attention", 1024, 1024, 64))
    eff = efficiency_for(h100, None)
    softmax = SOFTMAX / (66.9e12 * 0.5)
    times = {}
    for name, rec in (("median", r), ("gpt2", gpt2_like)):
        trace = SimpleNamespace(records=[rec], workload=SimpleNamespace(attention=None))
        times[name] = build_profile(trace, h100, eff, "bf16-mixed", fusion="none").phases["forward"].by_class["attention"]
    assert times["gpt2"] - softmax == pytest.approx((times["median"] - softmax) * cudnn.share / cudnn.share_at(1024, 64),
                                                    rel=1e-9)
