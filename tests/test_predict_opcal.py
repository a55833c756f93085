"""Per-op-class calibration curves: interpolation, operator kinds, and their use by the roofline."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest

from mlfootprint.core.errors import UserError
from mlfootprint.hardware.catalog import get_device
from mlfootprint.analysis.predict import opcurves
from mlfootprint.measure import opcal
from mlfootprint.analysis.predict.efficiency import efficiency_for
from mlfootprint.analysis.predict.roofline import build_profile
from mlfootprint.trace.records import OpRecord


def rec(op, phase="forward", model=0, other=0, attention=0, read=0, written=0, dtype="float32", module="h.0"):
    return OpRecord(index=0, op=op, module=module, phase=phase, model_flops=model, other_flops=other,
                    attention_flops=attention, causal=None, recompute_flops=0, bytes_read=read, bytes_written=written,
                    alloc_bytes=0, supported=True, out_dtype=dtype)


class FakeTrace:
    def __init__(self, records, phases=("forward", "backward", "optimizer")):
        self.records = records
        self.phases_run = list(phases)


def this_device():
    a100 = get_device("a100-80gb")
    return replace(a100, id="this", per_op_overhead_s=0.0,
                   sources={k: dict(v, provenance="measured") for k, v in a100.sources.items()})


CURVES = {
    "matmul": [[1.0, 1e9], [100.0, 1e11]],  # FLOP/s against FLOPs per byte
    "batch_norm": [[1e6, 1e9]],  # bytes/s
    "batch_norm_eval": [[1e6, 1e10]],
    "memory": [[1e3, 1e9], [1e6, 1e10]],
    "transcendental": [[1e3, 1e8]],  # elements/s
}


def test_curve_is_log_log_and_flat_outside():
    c = opcurves.Curve([[1.0, 10.0], [100.0, 1000.0]])
    assert c(10.0) == pytest.approx(100.0)  # halfway in log x → halfway in log rate
    assert c(0.01) == pytest.approx(10.0) and c(1e6) == pytest.approx(1000.0)


def test_kernel_kinds():
    k = opcurves.kernel_kind
    assert k("aten.mm.default", 1, 0) == "matmul"
    assert k("aten.convolution.default", 1, 0) == "conv"
    assert k("aten.convolution_backward.default", 1, 0) == "conv_backward"
    assert k("aten._scaled_dot_product_flash_attention_for_cpu.default", 1, 1) == "attention"
    assert k("aten.native_batch_norm.default", 0, 0) == "batch_norm"
    assert k("aten.native_batch_norm.default", 0, 0, training=False) == "batch_norm_eval"
    assert k("aten.native_batch_norm_backward.default", 0, 0) == "batch_norm_backward"
    assert k("aten.max_pool2d_with_indices_backward.default", 0, 0) == "pool_backward"
    assert k("aten.tanh.default", 0, 0) == "transcendental"
    assert k("aten.tanh_backward.default", 0, 0) is None  # multiplies by the saved output
    assert k("aten.add.Tensor", 0, 0) is None


def test_roofline_uses_the_curves_for_fp32_ops():
    dev = this_device()
    eff = efficiency_for(dev, {})
    eff.curves = CURVES
    records = [
        rec("aten.mm.default", model=10**9, read=10**7 - 10**6, written=10**6),  # 100 FLOP/B → 1e11 FLOP/s
        rec("aten.mm.default", model=10**9, read=10**6, written=10**6, dtype="bfloat16"),  # not calibrated: peak × 1
        rec("aten.native_batch_norm.default", other=10, read=5 * 10**5, written=5 * 10**5),  # 1e6 B at 1e9 B/s
        rec("aten.tanh.default", other=10**6, read=4 * 10**6, written=4 * 10**6),
        rec("aten.add.Tensor", other=10, read=10**4, written=0, phase="backward"),
    ]
    p = build_profile(FakeTrace(records), dev, eff, "bf16-mixed")
    fwd = p.phases["forward"]
    mm = 10**9 / 1e11
    mm_bf16 = max(10**9 / 312e12, 2e6 / 1e10)  # not calibrated in bf16: the peak (factor 1); bytes by the memory curve
    bn = 1e6 / 1e9
    tanh = max(10**6 / 1e8, 8e6 / 1e10)
    assert fwd.time_s == pytest.approx(mm + mm_bf16 + bn + tanh)
    assert p.phases["backward"].time_s == pytest.approx(1e4 / 10 ** (9 + 1 / 3))  # log-log between 1e3 and 1e6
    # an inference trace rates batch norm with running statistics by its own curve
    q = build_profile(FakeTrace(records[2:3], phases=("forward",)), dev, eff, "fp32")
    assert q.phases["forward"].time_s == pytest.approx(1e6 / 1e10)


def test_save_load_and_use(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("MLFOOTPRINT_PREDICT_PATH", raising=False)
    path = opcal.save(CURVES, note="test")
    assert path == tmp_path / "mlfootprint" / "predict" / "this-ops.toml"
    loaded = opcurves.load()
    assert loaded["matmul"] == [[1.0, 1e9], [100.0, 1e11]]
    eff = efficiency_for(this_device())
    assert eff.curves == loaded
    assert any("per-op-class rates measured" in line for line in eff.describe())
    assert efficiency_for(get_device("a100-80gb")).curves is None  # catalog devices never use them
    path.write_text("schema = 'mlfootprint.efficiency/1'\n")  # not ours any more
    with pytest.raises(UserError, match="refusing to overwrite"):
        opcal.save(CURVES)
    assert math.isfinite(opcurves.Curve(loaded["memory"])(5e4))
