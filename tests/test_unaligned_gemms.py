"""16-bit GEMMs whose leading dimensions are not multiples of 8 elements run cuBLAS's unaligned kernels.

Measured on an H200 (benchmarks/results/h200-2026-12-04/gemm_sweep_unaligned.json): an output layer of 50,257
(GPT-2's vocabulary) runs its forward GEMM at 0.10 of the peak and its two backward GEMMs at 0.14-0.15, where an
aligned GEMM of that size sustains 0.70. A profile of GPT-2's real training step (gpu_kernel_profile.json) put
30.6 ms of a 111 ms step in those three GEMMs.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mlfootprint.analysis.predict.efficiency import efficiency_for
from mlfootprint.analysis.predict.gemm import gemm_curve, unaligned_gemm_curve
from mlfootprint.analysis.predict.roofline import build_profile
from mlfootprint.formulas.matmul import misaligned
from mlfootprint.hardware.catalog import get_device
from mlfootprint.models import resolve
from mlfootprint.trace.run import trace
from mlfootprint.workload import Workload

H100 = get_device("h100-sxm")
BF16 = torch.bfloat16


def test_misaligned_reads_the_leading_dimension_of_every_16_bit_matrix():
    x = torch.empty(4, 24, dtype=BF16)
    # an output of width 1001: its leading dimension (row stride) is 1001, not a multiple of 8
    assert misaligned(x, torch.empty(24, 1001, dtype=BF16), torch.empty(4, 1001, dtype=BF16))
    assert not misaligned(x, torch.empty(24, 1008, dtype=BF16), torch.empty(4, 1008, dtype=BF16))
    # F.linear's Wᵀ: a transposed view of W (1001 × 24) has leading dimension 24 (aligned); its result is not
    w = torch.empty(1001, 24, dtype=BF16)
    assert not misaligned(x, w.t()) and misaligned(x, w.t(), torch.empty(4, 1001, dtype=BF16))
    # the weight gradient of that layer: grad_outᵀ, a transposed view of a (4 × 1001) matrix
    assert misaligned(torch.empty(4, 1001, dtype=BF16).t(), x)
    # an odd row count alone changes no leading dimension (tokens = 5)
    assert not misaligned(torch.empty(5, 24, dtype=BF16), torch.empty(24, 16, dtype=BF16),
                          torch.empty(5, 16, dtype=BF16))
    # batched: the last two dimensions; fp32 (no unaligned table) is never flagged
    assert misaligned(torch.empty(2, 4, 24, dtype=BF16), torch.empty(2, 24, 13, dtype=BF16))
    assert not misaligned(torch.empty(4, 24), torch.empty(24, 1001), torch.empty(4, 1001))


def test_unaligned_curves_are_the_measured_points_capped_by_the_aligned_curve():
    fwd, bwd = unaligned_gemm_curve(H100, "bf16", "forward"), unaligned_gemm_curve(H100, "bf16", "backward")
    # gemm.toml [h100] unaligned_points: 16384 × 50257 × 768 forward at 95.55 TFLOP/s (the only point of its
    # FLOP count); its input gradient 16384 × 768 × 50257 at 140.33 and weight gradient 50257 × 768 × 16384 at
    # 150.65 have the same count: their median
    f = 2 * 16384 * 50257 * 768
    assert fwd(f) == pytest.approx(95.55 / 989.4)
    assert bwd(f) == pytest.approx((140.33 + 150.65) / 2 / 989.4)
    aligned = gemm_curve(H100, "bf16")
    assert fwd(f) < 0.15 < 0.65 < aligned(f)
    # a recomputed forward (activation checkpointing) runs the forward's kernel
    assert unaligned_gemm_curve(H100, "bf16", "recompute")(f) == fwd(f)
    # tiny GEMMs: the aligned curve is the lower one (no unaligned point that small)
    assert fwd(2**25) == pytest.approx(aligned(2**25))
    # only the class's own GPUs: the A100 (a curve borrowed from the H100's shape) and non-GPUs get none
    assert unaligned_gemm_curve(get_device("a100-80gb"), "bf16", "forward") is None
    assert unaligned_gemm_curve(H100, "fp32", "forward") is None


@pytest.fixture(scope="module")
def odd_vocab_trace(tmp_path_factory):
    """The tiny GPT-2 of the test configs with an output layer of 257 (odd) and of 256, traced for an H100."""
    base = json.loads((Path(__file__).parent / "data" / "configs" / "tiny-gpt2" / "config.json").read_text())
    folder = tmp_path_factory.mktemp("odd-vocab")
    out = {}
    for vocab in (257, 256):
        d = folder / f"v{vocab}"
        d.mkdir()
        (d / "config.json").write_text(json.dumps({**base, "vocab_size": vocab}))
        wl = Workload(batch=2, seq=16, mode="train", precision="bf16-mixed", hardware="h100-sxm")
        out[vocab] = trace(resolve(str(d)), wl, checkpoint_early_stop=False)
    return out


def test_the_trace_flags_the_output_layers_gemms_of_an_odd_vocabulary_only(odd_vocab_trace):
    odd = [r for r in odd_vocab_trace[257].records if r.unaligned]
    # the tied output layer of 257: its forward product and the two backward products, nothing else
    assert sorted(r.phase for r in odd) == ["backward", "backward", "forward"]
    assert all(r.module == "lm_head" and r.model_flops == 2 * 32 * 64 * 257 for r in odd)
    assert not any(r.unaligned for r in odd_vocab_trace[256].records)


def test_eager_kernels_pay_for_unaligned_gemms_and_padded_stacks_do_not(odd_vocab_trace):
    tr = odd_vocab_trace[257]
    eff = efficiency_for(H100, None)
    f = 2 * 32 * 64 * 257  # the output layer's GEMM as traced (batch 2 × seq 16 tokens, hidden 64, vocabulary 257)
    scale = 2.0**20  # read at 2^20 × its traced size (what a layout's micro-batch does): 2^40 FLOPs per call
    fwd, bwd = unaligned_gemm_curve(H100, "bf16", "forward"), unaligned_gemm_curve(H100, "bf16", "backward")
    peak = H100.peak_flops["bf16"]

    def unaligned_bins(fusion: str) -> dict[str, list]:
        prof = build_profile(tr, H100, eff, "bf16-mixed", fusion=fusion)
        return {phase: [b for key, b in bins.items() if key[1]] for phase, bins in prof.gemm_bins.items()}

    eager = unaligned_bins("none")
    # eager kernels: the forward GEMM, and the two backward GEMMs (one bin: same size and intensity)
    (b_fwd,) = eager["forward"]
    (b_bwd,) = eager["backward"]
    assert (b_fwd.calls, b_fwd.model_flops, b_bwd.calls, b_bwd.model_flops) == (1, f, 2, 2 * f)
    assert b_fwd.times(None, scale)[0] == pytest.approx(f / (peak * fwd(f * scale)))  # 0.099 of the peak
    assert b_bwd.times(None, scale)[0] == pytest.approx(2 * f / (peak * bwd(f * scale)))
    assert fwd(f * scale) < bwd(f * scale) < 0.2 < 0.6 < gemm_curve(H100, "bf16")(f * scale)
    # Megatron-style fused and Inductor's compiled stacks pad their matrices: every GEMM rated as aligned
    for fusion in ("fused", "compiled"):
        assert not any(unaligned_bins(fusion).values())
    # a GPU of a class with no unaligned table (the A100's curve is borrowed from the H100's shape): aligned
    a100 = get_device("a100-80gb")
    prof = build_profile(tr, a100, efficiency_for(a100, None), "bf16-mixed", fusion="none")
    assert not any(key[1] for bins in prof.gemm_bins.values() for key in bins)
