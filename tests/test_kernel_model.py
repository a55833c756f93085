"""Kernel fusion and GEMM efficiency by size (issue 12, parts 4 and 6) against hand-derived values.

Fusion: the rule of analysis/predict/data/fusion.toml on synthetic records, then on the forward of one block of a
tiny GPT-2 (hidden 64, MLP 256, 2 × 16 tokens, bf16-mixed on an A100 target) counted by hand.
GEMM efficiency: lookups at the points of analysis/predict/data/gemm.toml and between them.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlfootprint.analysis.predict.efficiency import Efficiency, efficiency_for
from mlfootprint.analysis.predict.fusion import chain_bytes, fuse
from mlfootprint.analysis.predict.gemm import class_curve, device_class, fp8_gemm_curve, gemm_curve
from mlfootprint.analysis.predict.prediction import predict_step
from mlfootprint.analysis.predict.roofline import build_profile
from mlfootprint.analysis.predict.step import ModelShape, gemm_scale
from mlfootprint.cli import main
from mlfootprint.core.errors import UserError
from mlfootprint.hardware.catalog import get_device
from mlfootprint.models import resolve
from mlfootprint.trace.run import trace
from mlfootprint.workload import Layout, Workload

TINY_GPT2 = str(Path(__file__).parent / "data" / "configs" / "tiny-gpt2")
TINY_LLAMA = str(Path(__file__).parent / "data" / "configs" / "tiny-llama")
H100, A100 = get_device("h100-sxm"), get_device("a100-80gb")


@dataclass
class Rec:
    """The fields of an op record the fusion rule reads."""

    op: str
    phase: str
    other_flops: int
    bytes_read: int
    bytes_written: int
    model_flops: int = 0
    attention_flops: int = 0
    recompute_flops: int = 0
    module: str = "m"
    out_dtype: str = "torch.bfloat16"
    index: int = 0
    causal: bool | None = None


# ------------------------------------------------------------------------------------------ fusion, synthetic


def test_chain_reads_side_inputs_and_writes_only_its_last_output():
    # y = (x · s) + r over 1,000 bf16 elements (2,000 B each): mul reads x and s, add reads the product and r.
    mul = Rec("aten.mul.Tensor", "forward", 1000, bytes_read=4000, bytes_written=2000)
    add = Rec("aten.add.Tensor", "forward", 1000, bytes_read=4000, bytes_written=2000)
    # fused: read x, s (4,000) + r (4,000 - the product's 2,000 on chip) ; write y (2,000)
    assert chain_bytes([mul, add]) == (6000, 2000)
    kernels, s = fuse([mul, add], "fused")
    assert len(kernels) == 1 and kernels[0].other_flops == 2000 and kernels[0].ops == 2
    assert (s.ops, s.kernels, s.ops_fused_away, s.chains) == (2, 1, 1, 1)
    assert (s.bytes_before, s.bytes_after, s.bytes_fused_away) == (12000, 8000, 4000)


def test_an_op_that_cannot_read_its_predecessors_output_leaves_it_written():
    # a LayerNorm (reads 1,000 B, writes 1,000 B) then a weight cast that reads nothing the LayerNorm wrote
    # (0 B recorded, 400 B written): both outputs are written, nothing is saved
    ln = Rec("aten.native_layer_norm.default", "forward", 50, 1000, 1000)
    cast = Rec("aten._to_copy.default", "forward", 0, 0, 400)
    assert chain_bytes([ln, cast]) == (1000, 1400)
    _, s = fuse([ln, cast], "compiled")
    assert s.ops_fused_away == 1 and s.bytes_fused_away == 0


def test_matrix_ops_phases_and_casts_break_chains_as_each_stack_says():
    a = Rec("aten.gelu.default", "forward", 10, 100, 100)
    cast = Rec("aten._to_copy.default", "forward", 0, 100, 50)
    b = Rec("aten.mul.Tensor", "forward", 10, 50, 50)
    mm = Rec("aten.mm.default", "forward", 0, 300, 100, model_flops=1000)
    c = Rec("aten.add.Tensor", "forward", 10, 100, 100)
    d = Rec("aten.add.Tensor", "backward", 10, 100, 100)
    opt = [Rec("aten.mul_.Tensor", "optimizer", 10, 100, 100), Rec("aten.add_.Tensor", "optimizer", 10, 100, 100)]
    records = [a, cast, b, mm, c, d, *opt]
    # none: every op a kernel
    kernels, s = fuse(records, "none")
    assert kernels == records and s.ops_fused_away == 0
    # fused: the cast (no arithmetic) stays its own kernel and splits a | b; the matmul ends a chain; c and d are
    # in different phases; the optimizer step is left as traced
    kernels, s = fuse(records, "fused")
    assert len(kernels) == len(records) and s.ops_fused_away == 0 and s.ops == 6
    # compiled: a + cast + b is one kernel: reads a's 100 B, nothing more (cast and mul read only their
    # predecessor's output), writes b's 50 B
    kernels, s = fuse(records, "compiled")
    assert len(kernels) == len(records) - 2 and s.ops_fused_away == 2
    assert (kernels[0].bytes_read, kernels[0].bytes_written) == (100, 50)
    assert s.bytes_fused_away == (200 + 150 + 100) - 150


# ------------------------------------------------------------------------------------------ fusion, a tiny GPT-2


@pytest.fixture(scope="module")
def tiny_gpt2():
    spec = resolve(TINY_GPT2)
    wl = Workload(batch=2, seq=16, mode="train", precision="bf16-mixed", hardware="a100-80gb")
    return spec, wl, trace(spec, wl, checkpoint_early_stop=False)


def _block0_forward(tr):
    """The forward records of block 0 from its first LayerNorm to the last MLP projection (ln_1 … c_proj)."""
    recs = [r for r in tr.records if r.phase == "forward" and r.module.startswith("transformer.h.0")]
    end = max(i for i, r in enumerate(recs) if r.module == "transformer.h.0.mlp.c_proj" and r.model_flops)
    return recs[: end + 1]


def test_fused_bytes_of_one_gpt2_block_by_hand(tiny_gpt2):
    _, _, tr = tiny_gpt2
    recs = _block0_forward(tr)
    # T = 2 × 16 = 32 tokens, hidden 64, MLP 256; under bf16 autocast the residual stream is fp32 (4 B) and
    # the MLP activation bf16 (2 B): x_res = 32·64·4 = 8,192 B, attn out = 32·64·2 = 4,096 B,
    # LayerNorm reads x_res + weight and bias (2·64·4 = 512 B) = 8,704 B and writes y 8,192 B + mean, rstd 256 B,
    # h = 32·256·2 = 16,384 B.
    x_res, attn, ln_in, ln_out, h = 8192, 4096, 8704, 8448, 16384
    vec = [r for r in recs if not r.model_flops and r.other_flops]
    assert [r.op.split(".")[1] for r in vec] == ["native_layer_norm", "add", "native_layer_norm", "mul", "pow",
                                                 "mul", "add", "mul", "tanh", "add", "mul"]
    # Chain 1: residual add (reads x_res + attn out, writes x_res) then ln_2.
    eager_1 = (x_res + attn) + x_res + ln_in + ln_out
    fused_1 = (x_res + attn) + (ln_in - x_res) + ln_out  # ln_2 reads the sum on chip, its weight and bias from memory
    # Chain 2: gelu_new = 0.5·h·(1 + tanh(√(2/π)·(h + 0.044715·h³))) in 8 ops of h's size. CUDA autocast runs pow
    # in fp32 (the GPU target's lists), so the first multiply (0.5·h, bf16) stands alone and a cast to fp32 (a chain
    # break under "fused") feeds the last 7 ops, on h32 = 32·256·4 = 32,768 B: pow, mul, add (+ h, a bf16 side
    # input), mul, tanh, add, mul (× 0.5·h, bf16 side input).
    h32 = 2 * h
    eager_2 = (5 * h32 + 2 * (h32 + h)) + 7 * h32
    fused_2 = h32 + h + h + h32  # reads the cast output, then the two side inputs; writes the output
    kernels, s = fuse(recs, "fused")
    assert s.ops == len(recs)
    assert s.ops_fused_away == (2 - 1) + (7 - 1)
    assert s.bytes_fused_away == (eager_1 - fused_1) + (eager_2 - fused_2) == 16384 + 393216
    # compiled also takes the casts of the weights (bf16 copies) into the chains next to them
    _, c = fuse(recs, "compiled")
    assert c.ops_fused_away > s.ops_fused_away and c.bytes_fused_away >= s.bytes_fused_away


def test_fusion_moves_the_prediction_and_the_report_states_the_rule(tiny_gpt2, capsys):
    spec, wl, tr = tiny_gpt2
    p_none = predict_step(spec, Workload(**{**_fields(wl), "fusion": "none"}), tr, "a100-80gb")
    p_fused = predict_step(spec, wl, tr, "a100-80gb")  # the GPU default: fused
    assert p_fused.fusion.mode == "fused" and p_none.fusion.mode == "none"
    assert p_fused.breakdown["memory_s"] < p_none.breakdown["memory_s"]
    # one launch per kernel: the 40 operators fused away (2 blocks, forward and backward; the fp32 casts CUDA
    # autocast puts around gelu_new's pow break its chain) no longer pay the A100's 5 µs per-op overhead
    assert p_fused.fusion.ops_fused_away == 40
    # and the optimizer step's 9 foreach kernels of torch's AdamW (the step counters' add, weight decay's mul,
    # lerp, mul, addcmul, sqrt, div, add, addcdiv) are one fused AdamW kernel: 8 launches fewer
    # (the eager stack's wait on the host, which a fused stack leaves to the per-op overhead, aside: host.py)
    assert p_none.host_wait_s > 0 and p_fused.host_wait_s == 0
    assert p_none.breakdown["overhead_s"] - p_none.host_wait_s - p_fused.breakdown["overhead_s"] == \
        pytest.approx((40 + 8) * 5e-6)
    assert any(a.startswith("kernel fusion: fused (the default for a gpu") for a in p_fused.assumptions)
    # the command line: the option, the time section's counts and the assumption
    assert main(["predict", TINY_GPT2, "--mode", "train", "--batch", "2", "--seq", "16", "--hardware", "a100-80gb",
                 "--fusion", "compiled", "--format", "json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    t = rep["time"]
    assert t["fusion"] == "compiled" and rep["workload"]["fusion"] == "compiled"
    c = t["fusion_counts"]
    assert c["ops_fused_away"] == c["ops"] - c["kernels"] > 0
    assert c["traffic_fused_away_bytes"] == c["traffic_unfused_bytes"] - c["traffic_fused_bytes"] > 0
    assert any(a.startswith("kernel fusion: compiled (given with --fusion)") for a in rep["assumptions"])


def test_fusion_defaults_follow_the_target_stack():
    from mlfootprint.analysis.predict.fusion import default_fusion
    assert default_fusion(A100, measured=False)[0] == "fused"
    assert default_fusion(get_device("tpu-v4"), measured=False)[0] == "compiled"
    assert default_fusion(A100, measured=True)[0] == "none"  # a calibrated profile measured eager kernels
    with pytest.raises(UserError, match="fusion 'inductor'; choose one of: none, fused, compiled"):
        Workload(fusion="inductor")


def _fields(wl: Workload) -> dict:
    return {k: getattr(wl, k) for k in wl.given}


# ------------------------------------------------------------------------------------------ GEMM efficiency


def test_gemm_efficiency_at_the_data_points_and_between():
    c = gemm_curve(H100, "bf16")
    # The h100 table is the sweep measured on an H200 (benchmarks/results/h200-2026-12-04/gemm_sweep.json):
    # 256³ is the only shape with 2·256³ = 2^25 FLOPs, 11.51 TFLOP/s of the 989.4 TFLOP/s dense bf16 peak
    assert c(2 * 256**3) == pytest.approx(11.51 / 989.4)
    # 2^42 FLOPs: three shapes (8192·16384·16384 678.23, 16384·8192·16384 693.86, 16384·16384·8192 689.87): the median
    assert c(2**42) == pytest.approx(689.87 / 989.4)
    # halfway in log2(FLOPs) between 2^42 and the ceiling, 16384³ = 2^43 at 689.03: the mean of the two
    assert c(2**42.5) == pytest.approx((689.87 + 689.03) / 2 / 989.4)
    # flat beyond the ceiling and below the smallest point
    assert c(2 * 16384**3) == pytest.approx(689.03 / 989.4) and c(1e16) == pytest.approx(689.03 / 989.4)
    assert c(1e3) == pytest.approx(11.51 / 989.4)
    # fp16 runs at the same tensor-core rate; fp32 and non-GPUs keep the flat factor
    assert gemm_curve(H100, "fp16")(2**36) == c(2**36)
    assert gemm_curve(H100, "fp32") is None
    assert gemm_curve(get_device("tpu-v4"), "bf16") is None


def test_fp8_gemms_of_hopper_take_their_own_table_against_the_fp8_peak():
    c8 = gemm_curve(H100, "fp8")
    # fp8_points of the same sweep: 1024³ (the only shape of 2^31 FLOPs) at 406.48 TFLOP/s of the dense FP8 peak
    # of 1,978.9; 2^40 FLOPs: ten shapes, whose middle two are 1,222.95 and 1,242.58; the ceiling 16384³ at 1,222.27
    assert c8(2 * 1024**3) == pytest.approx(406.48 / 1978.9)
    assert c8(2**40) == pytest.approx((1222.95 + 1242.58) / 2 / 1978.9)
    assert c8(1e16) == pytest.approx(1222.27 / 1978.9)
    # large FP8 GEMMs sustain a smaller share of their peak than bf16 ones (the power cap binds harder)
    assert c8(2**40) < gemm_curve(H100, "bf16")(2**40)
    # a forward's FP8 GEMMs (fast accumulation, as Transformer Engine and torchao run them): fp8_fast_points,
    # 1024³ at 475.39 TFLOP/s; at 2^40 the middle two of ten, 1,299.96 and 1,332.16; the ceiling 16384³ at 1,322.92
    fwd8, bwd8 = fp8_gemm_curve(H100, "forward"), fp8_gemm_curve(H100, "backward")
    assert fwd8(2 * 1024**3) == pytest.approx(475.39 / 1978.9)
    assert fwd8(2**40) == pytest.approx((1299.96 + 1332.16) / 2 / 1978.9) and fwd8(1e16) == pytest.approx(1322.92 / 1978.9)
    assert fp8_gemm_curve(H100, "recompute")(2**40) == fwd8(2**40)
    assert bwd8(2**40) == c8(2**40)  # the backward's two GEMMs promote their accumulation: the table above
    assert fp8_gemm_curve(get_device("b200"), "forward") is None
    # only the class's members take it: the B200 (no FP8 table), the A100 (no FP8) and the MI300X (in the h100
    # class by its bf16 peak only) keep the flat factor
    for dev in ("b200", "a100-80gb", "mi300x"):
        assert gemm_curve(get_device(dev), "fp8") is None


def test_a_small_gemm_gets_a_lower_factor_than_a_large_one():
    for dev in (H100, A100):
        c = gemm_curve(dev, "bf16")
        sizes = [2 * n**3 for n in (256, 512, 1024, 2048, 4096, 8192)]
        values = [c(f) for f in sizes]
        # 8192³: the H100 table's 0.70 at sustained clocks; the A100's ceiling 85.9% × its calibrated level 0.803
        assert values == sorted(values) and values[0] < 0.02 < 0.65 < values[-1]


def test_a100_takes_its_ceiling_and_the_h100_shape_below_it_at_the_calibrated_level():
    a = gemm_curve(A100, "bf16")
    f = 2 * 6912 * 16384 * 2048
    calibrated = 0.803  # gemm.toml [a100] calibrated_scale, from the torchtitan-a100 calibration rows
    assert a(f) == pytest.approx(267.9 / 312 * calibrated)  # MAMF: 85.9% of 312 TFLOP/s, at the calibrated level
    assert a(1e16) == pytest.approx(267.9 / 312 * calibrated)  # flat beyond the ceiling
    h = class_curve("h100")
    scale = (267.9 / 312) / h(f)
    assert a(2**33) == pytest.approx(h(2**33) * scale * calibrated)
    assert "times 0.803" in a.how and "torchtitan-a100" in a.how
    # the H100 class has a measured sweep and no calibrated level
    assert "times" not in class_curve("h100").how and h(2 * 16384**3) == pytest.approx(689.03 / 989.4)


def test_b200_takes_openxlas_sm_100_table_and_its_mamf_ceiling():
    # OpenXLA's kDefaultMatmulPTable, key sm_100, b = 1, bf16: 256³ at 6.77 TFLOP/s and 4096³ at 1,416.87 TFLOP/s,
    # the only shapes of their FLOP counts; Bekman's MAMF for B200 SXM: 1,745.0 TFLOP/s at 1792·16128·3072
    c = gemm_curve(get_device("b200"), "bf16")
    assert device_class(get_device("b200"))[0] == "b200" and "sm_100" in c.how
    assert c(2 * 256**3) == pytest.approx(6.77 / 2250)
    assert c(2 * 4096**3) == pytest.approx(1416.87 / 2250)
    f = 2 * 1792 * 16128 * 3072
    assert c(f) == pytest.approx(1745.0 / 2250) and c(1e16) == pytest.approx(1745.0 / 2250)
    # between the largest table point and the ceiling: linear in log2(FLOPs)
    x0, x1 = math.log2(2 * 4096**3), math.log2(f)
    mid = 2 ** ((x0 + x1) / 2)
    assert c(mid) == pytest.approx((1416.87 + 1745.0) / 2 / 2250)
    assert gemm_curve(get_device("b200"), "fp8") is None  # FP8 GEMMs keep the flat factor


def test_devices_outside_a_class_take_the_nearest_by_peak():
    assert device_class(get_device("mi300x"))[0] == "h100"  # 1,307 TFLOP/s: nearer 989 than 2,250 on a log scale
    assert device_class(get_device("v100-32gb"))[0] == "a100"  # 125 TFLOP/s fp16
    assert device_class(get_device("tpu-v4"))[0] is None


def test_gemm_size_follows_the_layout(tiny_gpt2):
    shape = ModelShape(batch=16, tokens_per_sample=1024, layers=12, hidden=768, act_bytes=2, grad_bytes=1.0,
                       weight_bytes=1.0, param_bytes=1.0, traced_batch=16)
    # micro-batch 2 of the 16 traced samples, column/row split over tp = 2: each call has 2/16/2 of its FLOPs
    assert gemm_scale(shape, Layout(dp=8, tp=2, micro_batch=2)) == pytest.approx(1 / 16)
    spec, wl, tr = tiny_gpt2
    prof = build_profile(tr, A100, efficiency_for(A100), wl.precision)
    # the tiny model's calls (2^18-2^20 FLOPs) sit below the table; 2^10 and 2^6 times larger they are on it
    assert prof.gemm is not None and prof.gemm_efficiency(2**10) > prof.gemm_efficiency(2**6) > prof.gemm_efficiency(1)
    # smaller GEMMs: more compute time for the same FLOPs
    assert prof.phase("forward", 2**6).compute_s > prof.phase("forward", 2**10).compute_s


def test_a_given_matmul_factor_or_a_calibrated_profile_replaces_the_table(tiny_gpt2):
    spec, wl, tr = tiny_gpt2
    assert build_profile(tr, A100, efficiency_for(A100, "matmul=0.6"), wl.precision).gemm is None
    measured = Efficiency(dict(efficiency_for(A100).factors), measured_device=True)
    assert build_profile(tr, A100, measured, wl.precision).gemm is None
    # the flat factor then rates every matmul: the forward's compute is its GEMM FLOPs / (312 T × 0.6) + the rest
    prof = build_profile(tr, A100, efficiency_for(A100, "matmul=0.6"), wl.precision)
    assert prof.rates["matmul"] == pytest.approx(312e12 * 0.6)
    assert not math.isnan(prof.phase("forward").time_s)


def test_fp8_mixed_rates_the_linear_gemms_at_the_fp8_peak():
    from mlfootprint.analysis.predict.roofline import _build_profile

    # one compute-bound GEMM (2^40 FLOPs, 16 bytes) and one attention kernel, bf16 outputs as TE's fp8 GEMMs write
    gemm = Rec("aten.mm", "forward", 0, 8, 8, model_flops=2**40)
    attn = Rec("aten._scaled_dot_product_flash_attention", "forward", 0, 8, 8, model_flops=2**40,
               attention_flops=2**40)
    eff = efficiency_for(H100, "matmul=0.5,attention=0.5")
    assert H100.peak_flops["fp8"] == pytest.approx(1978.9e12) and H100.peak_flops["bf16"] == pytest.approx(989.4e12)
    fp8 = _build_profile([gemm, attn], H100, eff, "fp8-mixed").phase("forward").by_class
    bf16 = _build_profile([gemm, attn], H100, eff, "bf16-mixed").phase("forward").by_class
    assert fp8["matmul"] == pytest.approx(2**40 / (1978.9e12 * 0.5))  # the FP8 GEMM: half the bf16 time
    assert bf16["matmul"] == pytest.approx(2**40 / (989.4e12 * 0.5))
    assert fp8["attention"] == pytest.approx(bf16["attention"]) == pytest.approx(2**40 / (989.4e12 * 0.5))
    # a device without an fp8 peak is refused for fp8-mixed before any rating (one line, the fix named)
    with pytest.raises(UserError, match="fp8"):
        _build_profile([gemm], A100, efficiency_for(A100), "fp8-mixed")


def test_fp8_mixed_times_the_traced_fp8_casts_of_inputs_and_weights():
    # Transformer Engine's FP8 linear layers (trace/kernels.py _Fp8Linear) cast each linear layer's input and weight
    # to FP8 in the forward: read in 16 bits, written in 1 byte, 3 bytes per element, every micro-batch. On the tiny
    # Llama (hidden 64, 4 heads of 16, 2 KV heads, MLP 176, vocab 256, 2 layers), 4 × 64 tokens = 256 rows, 16-bit
    # weights: per layer the inputs of q, k, v, o, gate, up (256 × 64 each) and down (256 × 176), the weights q and
    # o (64 × 64), k and v (32 × 64), gate, up and down (176 × 64); then the head (input 256 × 64, weight 256 × 64).
    tiny = resolve(TINY_LLAMA)
    per_layer = 3 * (6 * 256 * 64 + 256 * 176) + 3 * (2 * 64 * 64 + 2 * 32 * 64 + 3 * 176 * 64)
    cast_bytes = 2 * per_layer + 3 * (256 * 64 + 256 * 64)
    assert cast_bytes == 1_234_944
    profiles = {}
    for precision in ("bf16-mixed", "fp8-mixed"):
        wl = Workload(mode="train", seq=64, batch=4, precision=precision, hardware="h100-sxm", mixed_weights="16-bit")
        tr = trace(tiny, wl)
        casts = [r for r in tr.records if r.out_dtype == "float8_e4m3fn"]
        assert len(casts) == (30 if precision == "fp8-mixed" else 0)  # 15 linear layers × (input, weight)
        assert sum(r.bytes_read + r.bytes_written for r in casts) == (cast_bytes if casts else 0)
        profiles[precision] = build_profile(tr, H100, efficiency_for(H100), precision)
    # each cast is its own kernel on the fused stack, timed at the memory bandwidth: the forward's data movement
    # grows by exactly their bytes / (3.35 TB/s × the memory_bandwidth factor)
    bw = H100.memory_bandwidth_bytes_per_s * efficiency_for(H100)["memory_bandwidth"]
    grown = profiles["fp8-mixed"].phase("forward").by_class["movement"] - \
        profiles["bf16-mixed"].phase("forward").by_class["movement"]
    assert grown == pytest.approx(cast_bytes / bw, rel=1e-9)
    assert any("The casts are timed as traced" in f for f in profiles["fp8-mixed"].fallbacks)


def test_grouped_expert_gemms_run_16_bit_on_a_fused_stack_and_as_traced_in_eager():
    from mlfootprint.analysis.predict.roofline import _build_profile

    # HF's MoE casts the expert input to the fp32 master weights' dtype (aten._grouped_mm has no autocast kernel)
    experts = Rec("aten._grouped_mm.default", "forward", 0, 8, 8, model_flops=2**40, out_dtype="torch.float32")
    eff = efficiency_for(H100, "matmul=0.5")
    fused = _build_profile([experts], H100, eff, "bf16-mixed", "fused")
    eager = _build_profile([experts], H100, eff, "bf16-mixed", "none")
    assert fused.phase("forward").by_class["matmul"] == pytest.approx(2**40 / (989.4e12 * 0.5))
    assert eager.phase("forward").by_class["matmul"] == pytest.approx(2**40 / (H100.peak_flops["fp32"] * 0.5))
    assert any("aten._grouped_mm" in f for f in fused.fallbacks) and not any("_grouped_mm" in f for f in eager.fallbacks)
    # full fp32 training keeps fp32 expert GEMMs whatever the stack
    fp32 = _build_profile([experts], H100, eff, "fp32", "fused")
    assert fp32.phase("forward").by_class["matmul"] == pytest.approx(2**40 / (H100.peak_flops["fp32"] * 0.5))


def test_fp8_forward_gemms_take_the_fast_accumulation_table_and_backward_ones_the_promoting_one(tiny_gpt2):
    _, _, tr = tiny_gpt2
    prof = build_profile(tr, H100, efficiency_for(H100, None), "fp8-mixed", fusion="fused")
    fast = [b for ph in ("forward",) for key, b in prof.gemm_bins[ph].items() if key[0] == "fp8"]
    slow = [b for key, b in prof.gemm_bins["backward"].items() if key[0] == "fp8"]
    assert fast and slow
    assert all("fast accumulation" in b.curve.how for b in fast)
    assert all("fast accumulation" not in b.curve.how and "FP8 table" in b.curve.how for b in slow)
