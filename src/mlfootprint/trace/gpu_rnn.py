"""cuDNN's recurrent layers on a GPU target: `aten._cudnn_rnn` on fake CPU tensors, with its reserve space.

CUDA runs `nn.LSTM`, `nn.GRU` and `nn.RNN` as one cuDNN call over all layers and steps (`aten._cudnn_rnn`), and
keeps a reserve tensor for backward whose size cuDNN reports at run time only. A GPU target's trace runs the same
operator (``kernels.CudaKernels`` reroutes ``torch._VF.lstm/gru/rnn_*`` to it): PyTorch's meta kernel gives the
outputs and an empty reserve, the shim here the measured reserve (kernels.toml [cudnn_rnn]:
e·T·B·D·H·(k·L + L − 1) + 256 bytes), and a meta kernel registered here gives the backward's gradients, which
PyTorch has no meta kernel for. Layers the reroute leaves to the CPU's code (packed sequences, LSTM projections)
keep no reserve.
"""
from __future__ import annotations

import threading
from typing import Any

import torch

from .constants import KERNELS as CONSTANTS
from .cpu_rnn import LSTM_MODE

# ATen's rnn mode codes: RNN_RELU = 0, RNN_TANH = 1, LSTM = 2, GRU = 3
_UNITS_KEY = {0: "reserve_units_rnn", 1: "reserve_units_rnn", LSTM_MODE: "reserve_units_lstm", 3: "reserve_units_gru"}


def reserve_units(mode: int) -> int:
    """Elements of the reserve per step, sample and hidden unit of one layer and direction (k)."""
    return int(CONSTANTS.value("cudnn_rnn", _UNITS_KEY[mode]))


def cudnn_reserve_bytes(mode: int, layers: int, directions: int, steps: int, batch: int, hidden: int,
                        elem_bytes: int) -> int:
    """Bytes of cuDNN's reserve space for one `_cudnn_rnn` call (see the module docstring)."""
    k = reserve_units(mode)
    per_call = int(CONSTANTS.value("cudnn_rnn", "reserve_bytes_per_call"))
    return elem_bytes * steps * batch * directions * hidden * (k * layers + layers - 1) + per_call


def cudnn_rnn_with_reserve(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run `aten._cudnn_rnn`; on fake tensors in training, give it the reserve the real kernel keeps."""
    from torch._subclasses.fake_tensor import FakeTensor

    out = func(*args, **kwargs)
    x = args[0]
    mode, hidden, proj, layers = int(args[6]), int(args[7]), int(args[8]), int(args[9])
    batch_first, train, bidirectional, batch_sizes = bool(args[10]), bool(args[12]), bool(args[13]), args[14]
    if not isinstance(x, FakeTensor) or not train or proj or len(batch_sizes) or x.dim() != 3:
        return out
    steps, batch = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    nbytes = cudnn_reserve_bytes(mode, layers, 2 if bidirectional else 1, int(steps), int(batch), hidden,
                                 x.element_size())
    return (out[0], out[1], out[2], x.new_empty((nbytes,), dtype=torch.uint8), out[4])


# -- the backward's meta kernel ----------------------------------------------------------------------------------
def _cudnn_rnn_backward_meta(input, weight, weight_stride0, weight_buf, hx, cx, output, grad_output, grad_hy,
                             grad_cy, mode, hidden_size, proj_size, num_layers, batch_first, dropout, train,
                             bidirectional, batch_sizes, dropout_state, reserve, output_mask):
    # cuDNN's backward computes the input and state gradients together (they carry the recurrence the weight
    # gradients need), so all are allocated, as the real kernel does in training.
    dcx = cx.new_empty(cx.shape) if cx is not None else hx.new_empty((0,))
    return input.new_empty(input.shape), hx.new_empty(hx.shape), dcx, [w.new_empty(w.shape) for w in weight]


_META_LOCK = threading.Lock()
_META_LIBRARY: list[Any] = []  # the registration lives as long as the process: it only adds a meta kernel


def register_cudnn_rnn_backward_meta() -> None:
    """Give `aten._cudnn_rnn_backward` a meta kernel (PyTorch has none), once per process. It only adds what fake
    and meta tensors need: real CPU and CUDA tensors keep their own kernels."""
    with _META_LOCK:
        if _META_LIBRARY:
            return
        if torch._C._dispatch_has_kernel_for_dispatch_key("aten::_cudnn_rnn_backward", "Meta"):
            _META_LIBRARY.append(None)  # a later PyTorch has its own
            return
        library = torch.library.Library("aten", "IMPL")
        library.impl("_cudnn_rnn_backward", _cudnn_rnn_backward_meta, "Meta")
        _META_LIBRARY.append(library)
