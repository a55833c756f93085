"""The CPU LSTM's oneDNN workspace: the size rule against the real kernel, and a training step's peak.

Figures on the reference machine (predicted / measured peak bytes), a 2-layer nn.LSTM(64→128), batch 16,
sequence 64, AdamW (test_two_layer_lstm_training_step):
  no workspace modelled (before):          6,387,720 / 25,299,552  −74.8%
  workspace only:                         22,784,008 / 25,299,552   −9.9%
  workspace + in-call scratch (now):      26,028,040 / 25,299,552   +2.9%
The workspace of one layer here is 8,011,776 bytes, 15.3× the layer's output (524,288).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mlfootprint.trace.cpu_rnn import lstm_workspace_bytes
from mlfootprint.workload import Workload

from test_memory_reality import check, factory_spec, measured_train_peak, predicted_peak


def _real_workspace(i: int, h: int, t: int, b: int, dtype: torch.dtype) -> int:
    x = torch.randn(t, b, i, dtype=dtype)
    w_ih, w_hh = torch.randn(4 * h, i, dtype=dtype), torch.randn(4 * h, h, dtype=dtype)
    b_ih, b_hh = torch.randn(4 * h, dtype=dtype), torch.randn(4 * h, dtype=dtype)
    hx, cx = torch.zeros(b, h, dtype=dtype), torch.zeros(b, h, dtype=dtype)
    out = torch.ops.aten.mkldnn_rnn_layer(x, w_ih, w_hh, b_ih, b_hh, hx, cx, False, [], 2, h, 1, True, False,
                                          False, True)
    return out[3].numel()


def test_rule_by_hand():
    # I=H=128, T=50, B=8, fp32: gates ld(512)=528 (512 is a multiple of 256) → 50·8·528·4 = 844,800 (206.25 pages);
    # h 50·8·128·4 = 204,800; five state regions of 2·51·8·128·4 = 417,792 each; each region page-aligned:
    # 207 + 50 + 5·102 = 767 pages = 3,141,632 bytes (the real kernel's figure below).
    assert lstm_workspace_bytes(128, 128, 50, 8) == 767 * 4096 == 3_141_632


@pytest.mark.parametrize("shape", [(128, 128, 50, 8), (16, 32, 5, 2), (256, 128, 50, 8), (198, 216, 3, 9),
                                   (8, 48, 26, 1), (60, 113, 24, 6)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rule_equals_the_real_kernel(shape, dtype):
    if dtype == torch.bfloat16 and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        # oneDNN runs bf16 only on CPUs with AVX512-BF16/AMX or AVX-NE-CONVERT; elsewhere the kernel refuses to build
        pytest.skip("this CPU has no oneDNN bf16 support: no real bf16 LSTM kernel to compare the rule with")
    i, h, t, b = shape
    assert lstm_workspace_bytes(i, h, t, b, torch.tensor([], dtype=dtype).element_size()) == \
        _real_workspace(i, h, t, b, dtype)


class TwoLayerLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(64, 128, num_layers=2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x)[0]


def _inputs():
    return (torch.randn(16, 64, 64),)


def test_two_layer_lstm_training_step():
    predicted = predicted_peak(factory_spec("lstm2", TwoLayerLSTM, _inputs), Workload(mode="train"))
    measured = measured_train_peak(TwoLayerLSTM, _inputs)
    check(predicted, measured)


@pytest.mark.parametrize("options", [dict(num_layers=2, bidirectional=True), dict(num_layers=1, batch_first=True)])
def test_fake_trace_allocates_what_the_real_kernel_does(options):
    # each mkldnn_rnn_layer call (a layer and direction) creates output, hy, cy and the workspace: the fake trace's
    # allocations equal the real kernel's, call by call
    from mlfootprint.trace.run import trace
    from mlfootprint.verbs.common import resolve_model

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(12, 20, **options)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lstm(x)[0]

    x = torch.randn(5, 3, 12)
    allocs = []
    for fake in (True, False):
        tr = trace(resolve_model(Net(), [x]), Workload(mode="train"), fake=fake)
        allocs.append([r.alloc_bytes for r in tr.records if r.op == "aten.mkldnn_rnn_layer.default"])
    assert allocs[0] == allocs[1]
    assert len(allocs[0]) == (4 if options.get("bidirectional") else 1)
