"""Batch norm and 16-bit convolutions on a Hopper GPU take the time of the kernels as measured, not a roofline's.

Measured on an H200 (benchmarks/results/h200-2026-12-04/gpu_norm_conv_sweep.json): under bf16 autocast in NCHW
a training-mode batch norm moves its bytes at 0.3-1.2 TB/s of the GPU's 4.8 (each channel is reduced in its own
thread blocks); a ResNet-18-like step spent 25 ms of its 45 there (gpu_kernel_profile.json). cuDNN's 16-bit
convolutions reach 0.02-0.6 of the peak by shape, NCHW ones 1.0-1.7x slower than channels_last.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from mlfootprint.analysis.predict.efficiency import efficiency_for
from mlfootprint.analysis.predict.kernel_rates import batch_norm_seconds, conv_seconds, nearest_point
from mlfootprint.analysis.predict.roofline import build_profile
from mlfootprint.formulas.conv import conv_hint
from mlfootprint.formulas.elementwise import batch_norm_hint
from mlfootprint.hardware.catalog import get_device
from mlfootprint.models.spec import ModelSpec
from mlfootprint.trace.run import trace
from mlfootprint.workload import Workload

aten = torch.ops.aten
H200 = get_device("h200")
SWEEP = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "h200-2026-12-04" / "gpu_norm_conv_sweep.json"


def test_the_hint_names_layout_channels_elements_per_channel_bytes_and_dtype():
    x = torch.empty(2, 4, 3, 3, dtype=torch.bfloat16)
    # 2 × 4 × 3 × 3 elements of 2 bytes: 4 channels of 18 elements, 144 bytes
    assert batch_norm_hint(aten.native_batch_norm.default, x) == ("batch_norm", "nchw", 4, 18, 144, "bfloat16")
    cl = x.to(memory_format=torch.channels_last)
    assert batch_norm_hint(aten.native_batch_norm.default, cl)[:2] == ("batch_norm", "channels_last")
    assert batch_norm_hint(aten.native_layer_norm.default, x) == ()  # only batch norms have a kernel table


def test_a_measured_call_takes_its_measured_time_and_others_their_nearest_neighbours():
    rows = json.loads(SWEEP.read_text())["batch_norm"]
    (row,) = [r for r in rows if (r["n"], r["c"], r["hw"], r["layout"], r["dtype"]) == (256, 64, 56, "nchw", "bfloat16")]
    hint = ("batch_norm", "nchw", 64, 256 * 56 * 56, row["bytes_input"], "bfloat16")
    # the table holds input bytes per second rounded to 0.1 GB/s: the measured forward and backward times back
    assert batch_norm_seconds(H200, hint, backward=False) == pytest.approx(row["forward_s"], rel=2e-3)
    assert batch_norm_seconds(H200, hint, backward=True) == pytest.approx(row["train_s"] - row["forward_s"], rel=2e-3)
    # 7 × 6,000 bytes at 64 channels of 400,000 elements: the same point (nearest in log2 channels + log2 elements)
    near = nearest_point(H200, ("batch_norm", "nchw", 64, 400_000, 42_000, "bfloat16"))
    assert near.sizes in ((64, 802816), (64, 200704))
    # fp16 takes bf16's kernels; a float64 batch norm, an A100 and a CPU have no table
    assert nearest_point(H200, hint[:5] + ("float16",)) == nearest_point(H200, hint)
    assert batch_norm_seconds(H200, hint[:5] + ("float64",), False) is None
    assert batch_norm_seconds(get_device("a100-80gb"), hint, False) is None


class _ConvBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean()


def test_the_eager_stack_times_batch_norm_by_the_table_and_fused_stacks_by_the_roofline():
    spec = ModelSpec(name="convbn", source="factory", origin="tests.test_gpu_kernel_rates:_ConvBN", factory=_ConvBN,
                     inputs_factory=lambda: (torch.randn(8, 3, 56, 56),))
    wl = Workload(mode="train", batch=8, precision="bf16-mixed", hardware="h200")
    tr = trace(spec, wl, checkpoint_early_stop=False)
    (fwd,) = [r for r in tr.records if r.op.startswith("aten.native_batch_norm.")]
    (bwd,) = [r for r in tr.records if r.op.startswith("aten.native_batch_norm_backward")]
    # 8 × 64 × 56 × 56 bf16 elements under autocast: 64 channels of 25,088, 3,211,264 bytes
    assert fwd.hint == bwd.hint == ("batch_norm", "nchw", 64, 25088, 3211264, "bfloat16")
    eff = efficiency_for(H200, None)
    eager = build_profile(tr, H200, eff, "bf16-mixed", fusion="none")
    fused = build_profile(tr, H200, eff, "bf16-mixed", fusion="fused")
    assert any(f.startswith("batch norm (2 kernel calls)") for f in eager.fallbacks)
    assert not any(f.startswith("batch norm (") for f in fused.fallbacks)
    t_fwd, t_bwd = batch_norm_seconds(H200, fwd.hint, False), batch_norm_seconds(H200, bwd.hint, True)
    # at this size a batch-norm call takes longer than its bytes at the bandwidth (a roofline's time)
    assert t_fwd > (fwd.bytes_read + fwd.bytes_written) / (H200.memory_bandwidth_bytes_per_s * eff["memory_bandwidth"])
    assert eager.phase("forward").time_s >= t_fwd and eager.phase("backward").time_s >= t_bwd
    assert eager.phase("forward").time_s > fused.phase("forward").time_s


def test_a_16_bit_convolution_takes_its_measured_rate_by_layout():
    rows = json.loads(SWEEP.read_text())["conv2d"]
    x = torch.empty(256, 64, 56, 56, dtype=torch.bfloat16)
    w = torch.empty(64, 64, 3, 3, dtype=torch.bfloat16)
    hint = conv_hint(x, w, False, 1)
    assert hint == ("conv", "nchw", 64, 64, 3, 3136, "bfloat16")
    # 2 · 256 · 56² · 64 · 64 · 3² FLOPs (stride 1, padding 1): the measured call's forward and backward times
    flops = 2 * 256 * 56 * 56 * 64 * 64 * 9
    for layout in ("nchw", "channels_last"):
        (row,) = [r for r in rows if (r["cin"], r["cout"], r["hw"], r["k"], r["layout"]) == (64, 64, 56, 3, layout)]
        assert conv_seconds(H200, hint, flops, False, layout=layout) == pytest.approx(row["forward_s"], rel=2e-3)
        assert conv_seconds(H200, hint, 2 * flops, True, layout=layout) == pytest.approx(
            row["train_s"] - row["forward_s"], rel=2e-3)
    # NCHW pays cuDNN's layout transposes: slower than channels_last at this shape
    assert conv_seconds(H200, hint, flops, False) > conv_seconds(H200, hint, flops, False, layout="channels_last")
    # grouped, transposed and fp32 convolutions, and other devices, keep the flat factor
    assert conv_hint(x, w, False, 2) == () and conv_hint(x, w, True, 1) == ()
    assert conv_seconds(H200, hint[:6] + ("float32",), flops, False) is None
    assert conv_seconds(get_device("a100-80gb"), hint, flops, False) is None


def test_convolutions_in_a_traced_step_use_the_table_on_every_gpu_stack():
    spec = ModelSpec(name="convbn", source="factory", origin="tests.test_gpu_kernel_rates:_ConvBN", factory=_ConvBN,
                     inputs_factory=lambda: (torch.randn(8, 3, 56, 56),))
    tr = trace(spec, Workload(mode="train", batch=8, precision="bf16-mixed", hardware="h200"),
               checkpoint_early_stop=False)
    (conv,) = [r for r in tr.records if r.op.startswith("aten.convolution.")]
    assert conv.hint == ("conv", "nchw", 3, 64, 3, 3136, "bfloat16")
    eff = efficiency_for(H200, None)
    for fusion in ("none", "fused", "compiled"):
        prof = build_profile(tr, H200, eff, "bf16-mixed", fusion=fusion)
        assert any(f.startswith("16-bit 2-d convolutions (2 kernel calls)") for f in prof.fallbacks), fusion
    # a flat `conv` factor given by the user replaces the table
    given = efficiency_for(H200, {"conv": 0.5})
    assert not any(f.startswith("16-bit 2-d conv") for f in build_profile(tr, H200, given, "bf16-mixed").fallbacks)
