"""cuDNN's LSTM reserve space on a GPU target: what a CUDA `nn.LSTM` keeps for backward.

The trace runs an LSTM as the CPU does, one `aten.mkldnn_rnn_layer` call per layer and direction (the stand-in
for cuDNN's `_cudnn_rnn`, kernels.toml [autocast] cuda_rnn_stand_ins). On CUDA, cuDNN keeps a reserve tensor for
backward whose size cuDNN reports at run time only; measured on an H200 (kernels.toml [cudnn_rnn]) it is
k·T·B·H elements per layer and direction (k = 5 for an LSTM) plus each layer's output but the last, which the
stand-in already keeps as the next layer's input. So on a GPU target the stand-in's fourth output, oneDNN's
workspace on the CPU, is cuDNN's reserve share instead.
"""
from __future__ import annotations

from typing import Any

import torch

from .constants import KERNELS as CONSTANTS
from .cpu_rnn import LSTM_MODE


def lstm_reserve_bytes(hidden: int, steps: int, batch: int, elem_bytes: int) -> int:
    """Bytes of cuDNN's reserve space for one LSTM layer and direction, its own share (see the module docstring)."""
    return int(CONSTANTS.value("cudnn_rnn", "lstm_reserve_units")) * steps * batch * hidden * elem_bytes


def cudnn_lstm_layer_with_reserve(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run `aten.mkldnn_rnn_layer`; on fake tensors in training, give it cuDNN's reserve as its fourth output."""
    from torch._subclasses.fake_tensor import FakeTensor

    out = func(*args, **kwargs)
    x = args[0]
    mode, hidden, batch_first, train = int(args[9]), int(args[10]), bool(args[14]), bool(args[15])
    if not isinstance(x, FakeTensor) or not train or mode != LSTM_MODE or x.dim() != 3:
        return out
    steps, batch = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    reserve = x.new_empty((lstm_reserve_bytes(hidden, int(steps), int(batch), x.element_size()),), dtype=torch.uint8)
    return (out[0], out[1], out[2], reserve)
