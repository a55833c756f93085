"""Bytes read by zero-FLOP operators (formulas/movement.py movement_bytes_read): a copy, cast or gather reads what it
writes, in its source's dtype; creation reads nothing. Every figure is by hand from the shapes."""
from __future__ import annotations

import torch

from mlfootprint.formulas.movement import movement_bytes_read
from mlfootprint.trace.mode import RecordingMode

aten = torch.ops.aten


def _read(func, *args):
    out = func(*args)
    flat_in = [a for a in args if isinstance(a, torch.Tensor)] + [t for a in args if isinstance(a, (list, tuple))
                                                                   for t in a if isinstance(t, torch.Tensor)]
    return movement_bytes_read(func, flat_in, [out] if isinstance(out, torch.Tensor) else list(out))


def test_a_cast_reads_its_source_dtype():
    x = torch.zeros(10, 20)  # 200 fp32 elements
    # fp32 → bf16: reads 200 × 4 = 800 bytes (and writes 200 × 2 = 400)
    assert movement_bytes_read(aten._to_copy.default, [x], [x.to(torch.bfloat16)]) == 800
    # bf16 → fp32: reads 200 × 2 = 400 bytes
    y = x.to(torch.bfloat16)
    assert movement_bytes_read(aten._to_copy.default, [y], [y.float()]) == 400
    assert _read(aten.clone.default, x) == 800


def test_a_gather_reads_the_rows_it_writes_not_the_table():
    table = torch.zeros(100, 8)  # 3,200 bytes
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    # 6 rows × 8 × 4 bytes = 192, not the whole table
    assert _read(aten.embedding.default, table, ids) == 192
    assert _read(aten.index_select.default, table, 0, torch.tensor([0, 7])) == 2 * 8 * 4


def test_a_concatenation_reads_its_inputs():
    a, b = torch.zeros(2, 3), torch.zeros(4, 3)
    assert _read(aten.cat.default, [a, b]) == (6 + 12) * 4


def test_slicing_backward_reads_the_gradient_it_places():
    grad = torch.zeros(2, 3)  # 24 bytes, placed in a zero 4×3 tensor (48 bytes written)
    assert _read(aten.slice_backward.default, grad, [4, 3], 0, 1, 3, 1) == 24


def test_creation_reads_nothing():
    x = torch.zeros(10, 20)
    assert _read(aten.zeros_like.default, x) == 0
    assert _read(aten.empty_like.default, x) == 0


def test_the_trace_records_a_casts_reads():
    # under RecordingMode a bf16 cast of a 64×32 fp32 tensor is one _to_copy: reads 8,192 bytes, writes 4,096
    x = torch.randn(64, 32)
    rec = RecordingMode()
    with rec:
        x.to(torch.bfloat16)
    [cast] = [r for r in rec.records if r.op == "aten._to_copy.default"]
    assert (cast.bytes_read, cast.bytes_written) == (8192, 4096)
