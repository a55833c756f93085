"""Inference peaks of PyTorch's fused transformer fast paths against real CPU runs (profiler allocator events).

The fused ops' intermediates live only inside one call (mlfootprint.trace.fused_scratch). Figures on the
reference machine (predicted / measured bytes; before the scratch was modelled), batch 8, length 128, width 256,
8 heads:
  nn.MultiheadAttention, need_weights=False:     9,441,280 / 9,441,280    (3,149,824: −67%)
  nn.MultiheadAttention, need_weights=True:     11,538,432 / 11,538,432   (3,674,112: −68%)
  1-layer nn.TransformerEncoder (F = 1024):     11,547,648 / 11,547,648   (5,256,192: −54%)
A 2-layer encoder is predicted +13% (17,852,416 / 15,755,264): the trace's per-block hooks turn the layer's own
fast path off, so it runs MultiheadAttention's fast path and an unfused feed-forward block instead.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mlfootprint.measure.memory import measure_peak
from mlfootprint.workload import Workload

from test_memory_reality import check, factory_spec, predicted_peak


class SelfAttention(nn.Module):
    def __init__(self, need_weights: bool) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(256, 8, batch_first=True)
        self.need_weights = need_weights

    def forward(self, x: torch.Tensor):
        return self.mha(x, x, x, need_weights=self.need_weights)


def _encoder() -> nn.Module:
    return nn.TransformerEncoder(nn.TransformerEncoderLayer(256, 8, 1024, batch_first=True), 1,
                                 enable_nested_tensor=False)


def _inputs():
    return (torch.randn(8, 128, 256),)


def _measured_inference_peak(make) -> int:
    def setup():
        torch.manual_seed(0)
        return make().eval(), _inputs()

    def step(state) -> None:
        model, inputs = state
        with torch.no_grad():
            out = model(*inputs)
        del out

    return measure_peak(setup, step).peak_bytes


@pytest.mark.parametrize("name,make", [("mha", lambda: SelfAttention(False)), ("mha_weights", lambda: SelfAttention(True)),
                                       ("encoder1", _encoder)])
def test_fused_fast_path_inference_peak(name, make):
    predicted = predicted_peak(factory_spec(name, make, _inputs), Workload(mode="inference"))
    check(predicted, _measured_inference_peak(make))
