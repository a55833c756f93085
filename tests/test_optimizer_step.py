"""The optimizer step's traffic: in-place foreach operators record what they write; a predicted step is a steady
state (the first step's creation of the optimizer state is not timed); fused stacks run an elementwise optimizer as
one fused multi-tensor kernel and copy fp32 masters into 16-bit weights (analysis/predict/fusion.py,
data/fusion.toml [optimizer]). Every figure is by hand from the parameter count."""
from __future__ import annotations

import pytest
import torch

from mlfootprint.analysis.predict.fusion import OptimizerKernels, fuse, optimizer_kernels
from mlfootprint.analysis.predict.prediction import predict_step
from mlfootprint.models import resolve
from mlfootprint.trace.mode import RecordingMode
from mlfootprint.trace.run import trace
from mlfootprint.workload import Workload



def test_an_in_place_foreach_operator_records_what_it_writes():
    a, b = torch.zeros(10, 20), torch.zeros(5)  # 200 + 5 fp32 elements = 820 bytes
    m, g = [torch.zeros(10, 20), torch.zeros(5)], [torch.ones(10, 20), torch.ones(5)]
    with RecordingMode() as rec:
        torch._foreach_mul_([a, b], 0.9)  # reads and writes both tensors
        torch._foreach_lerp_(m, g, 0.1)  # reads m and g, writes m
    mul, lerp = rec.records
    assert (mul.bytes_read, mul.bytes_written) == (820, 820)
    assert (lerp.bytes_read, lerp.bytes_written) == (2 * 820, 820)


class _Rec:
    def __init__(self, op: str, phase: str, other: int, read: int, written: int, alloc: int = 0) -> None:
        self.index, self.op, self.module, self.phase = 0, op, "", phase
        self.model_flops, self.other_flops, self.attention_flops, self.recompute_flops = 0, other, 0, 0
        self.bytes_read, self.bytes_written, self.alloc_bytes, self.out_dtype = read, written, alloc, "float32"
        self.causal, self.window_share = None, 0.0


def test_the_step_is_a_steady_state_and_a_fused_stack_runs_one_optimizer_kernel():
    records = [_Rec("aten.mul.Tensor", "backward", 10, 100, 100),
               _Rec("aten.zeros_like.default", "optimizer", 0, 0, 400, alloc=400),  # Adam's moment, first step only
               _Rec("aten._foreach_mul_.Scalar", "optimizer", 100, 400, 400),
               _Rec("aten._to_copy.default", "optimizer", 0, 400, 200),  # a cast stays its own kernel
               _Rec("aten._foreach_addcdiv_.ScalarList", "optimizer", 300, 1200, 400)]
    # every stack: the state's creation is gone, the rest as traced
    kernels, _ = fuse(records, "none")
    assert [k.op for k in kernels] == [r.op for r in records if r.op != "aten.zeros_like.default"]
    opt = OptimizerKernels("adamw", step_read=700, step_written=500, copy_read=400, copy_written=200,
                           copy_dtype="bfloat16")
    kernels, _ = fuse(records, "fused", optimizer=opt)
    step = kernels[1]
    assert step.op == "fused[adamw step]" and step.ops == 2 and step.other_flops == 100 + 300
    assert (step.bytes_read, step.bytes_written) == (700, 500)
    assert kernels[2].op == "aten._to_copy.default"
    copy = kernels[3]
    assert (copy.bytes_read, copy.bytes_written, copy.phase, len(kernels)) == (400, 200, "optimizer", 4)


@pytest.fixture(scope="module")
def gpt2_16bit():
    spec = resolve("gpt2")
    wl = Workload(batch=1, seq=32, mode="train", precision="bf16-mixed", hardware="a100-80gb",
                  mixed_weights="16-bit", optimizer="adamw")
    return spec, wl, trace(spec, wl, checkpoint_early_stop=False)


def test_the_fused_adamw_kernel_and_the_master_copy_by_hand(gpt2_16bit):
    _, wl, tr = gpt2_16bit
    n = sum(p.numel for p in tr.params if p.trainable)
    assert n == 124_439_808  # GPT-2 small, the tied embedding once
    # AdamW's state on the device: exp_avg and exp_avg_sq in fp32, 8 B per parameter (its step counters are host
    # tensors, capturable=False)
    assert tr.optimizer_state_bytes == 8 * n
    ok = optimizer_kernels(tr, "fused")
    # reads the fp32 master (4), its fp32 gradient (4) and the state (8); writes the master (4) and the state (8)
    assert ok.step_read == 16 * n and ok.step_written == 12 * n
    # then each master (4 B) is copied into its bf16 weight (2 B)
    assert (ok.copy_read, ok.copy_written, ok.copy_dtype) == (4 * n, 2 * n, "bfloat16")
    # an eager stack keeps the traced foreach kernels, and still copies the masters
    eager = optimizer_kernels(tr, "none")
    assert eager.step_read is None and eager.copy_read == 4 * n
    # a compiled stack steps with the same fused kernel
    assert optimizer_kernels(tr, "compiled").step_read == ok.step_read


def test_the_optimizer_phase_time_is_the_fused_kernels_bytes_over_the_bandwidth(gpt2_16bit):
    spec, wl, tr = gpt2_16bit
    n = sum(p.numel for p in tr.params if p.trainable)
    fused = predict_step(spec, wl, tr, "a100-80gb")
    # A100 80GB: 2.039e12 B/s × the memory-bandwidth factor 0.8; one device; 2 kernels at 5 µs of launch overhead
    bw = 2.039e12 * 0.8
    nbytes = 16 * n + 12 * n + (4 * n + 2 * n)
    assert fused.phases["optimizer_s"] == pytest.approx(nbytes / bw + 2 * 5e-6, rel=1e-6)
    assert any(a.startswith("optimizer step (steady state") and "one fused multi-tensor kernel" in a
               for a in fused.assumptions)
    eager = predict_step(spec, Workload(**{**wl.__dict__, "fusion": "none"}), tr, "a100-80gb")
    assert eager.phases["optimizer_s"] > 2 * fused.phases["optimizer_s"]
