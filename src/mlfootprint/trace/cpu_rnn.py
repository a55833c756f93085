"""The oneDNN LSTM workspace: what a CPU `nn.LSTM` keeps for backward that the fake kernel does not allocate.

On the CPU, `nn.LSTM` runs each layer and direction through `aten.mkldnn_rnn_layer`, whose fourth output
is a uint8 workspace that autograd saves for `mkldnn_rnn_layer_backward`. PyTorch's meta kernel returns it
empty, so a fake trace would miss it (a 2-layer LSTM training step was predicted 56% below its measured
peak). Its size is oneDNN's `workspace_desc().get_size()` for one layer and one direction of a
forward-training primitive (n_layer = n_dir = 1).

Source: oneDNN `src/cpu/rnn/rnn_utils.hpp` (`init_conf`, `set_conf`) and `src/cpu/rnn/rnn_utils.cpp`
(`get_good_ld`, `set_offsets`), as bundled with PyTorch 2.13 (oneDNN v3.12). Checked byte-exact against the
real kernel's workspace on this machine for 41 LSTM shapes in fp32 and 12 in bf16
(tests/test_cpu_rnn_workspace.py re-checks a sample on real tensors). The regions, each starting on a
page boundary, and the total rounded to a page:

  gates               T·B·ld(4H)            elements of the data type
  h (ws_ht)           T·B·ld(H)             data type
  states (h)          2·(T+1)·B·ld(max(I,H)) data type       (n_layer + 1 = 2 rows of states)
  c states            2·(T+1)·B·H           data type
  diff states layer   2·(T+1)·B·ld(max(I,H)) fp32
  diff states iter    2·(T+1)·B·ld(max(I,H)) fp32
  diff c states       2·(T+1)·B·H           fp32

with ld(d) = d rounded up to 64 bytes, plus 64 bytes more when the result is a multiple of 256 elements
(oneDNN's "good leading dimension", against 4K aliasing). GRU and vanilla RNN do not take this path on
the CPU in PyTorch 2.13 (they decompose into addmm and pointwise ops, which the trace already sees).
"""
from __future__ import annotations

from typing import Any

import torch

PAGE_BYTES = 4096  # oneDNN aligns each workspace region to a page (set_offsets)
LD_ALIGN_BYTES = 64  # leading dimensions are padded to 64 bytes (get_good_ld)
FP32_BYTES = 4  # gradient accumulators (gemm_acc_t) are fp32 for fp32 and bf16 alike
LSTM_MODE = 2  # ATen's rnn mode code for LSTM


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def _good_ld(dim: int, elem_bytes: int) -> int:
    step = LD_ALIGN_BYTES // elem_bytes
    ld = _round_up(dim, step)
    return ld + step if ld % 256 == 0 else ld


def lstm_workspace_bytes(input_size: int, hidden: int, steps: int, batch: int, elem_bytes: int = 4) -> int:
    """Bytes of oneDNN's training workspace for one LSTM layer and direction (see the module docstring)."""
    rows = 2 * (steps + 1) * batch
    states_ld = _good_ld(max(input_size, hidden), elem_bytes)
    diff_ld = _good_ld(max(input_size, hidden), FP32_BYTES)
    regions = [
        steps * batch * _good_ld(4 * hidden, elem_bytes) * elem_bytes,
        steps * batch * _good_ld(hidden, elem_bytes) * elem_bytes,
        rows * states_ld * elem_bytes,
        rows * hidden * elem_bytes,
        rows * diff_ld * FP32_BYTES,
        rows * diff_ld * FP32_BYTES,
        rows * hidden * FP32_BYTES,
    ]
    offset = 0
    for size in regions:
        offset = _round_up(offset, PAGE_BYTES) + size
    return _round_up(offset, PAGE_BYTES)


def mkldnn_rnn_layer_with_workspace(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run `aten.mkldnn_rnn_layer`; on fake tensors, give it the workspace the real kernel allocates."""
    from torch._subclasses.fake_tensor import FakeTensor

    out = func(*args, **kwargs)
    x = args[0]
    mode, hidden, batch_first, train = int(args[9]), int(args[10]), bool(args[14]), bool(args[15])
    if not isinstance(x, FakeTensor) or not train or mode != LSTM_MODE or x.dim() != 3:
        return out
    steps, batch = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    nbytes = lstm_workspace_bytes(int(x.shape[2]), hidden, int(steps), int(batch), x.element_size())
    workspace = x.new_empty((nbytes,), dtype=torch.uint8)
    return (out[0], out[1], out[2], workspace)


# -- kernel scratch: allocated and freed inside one call ------------------------------------------------
# Besides the workspace, the oneDNN LSTM primitive takes a scratchpad while it runs: the gate pre-activations
# of all steps (scratch_gates: T·B·ld(4H), fp32, since the layer GEMM is merged over time) and the weights
# reordered into its own layout (ldigo, leading dimension ld(4H)); backward also keeps the weight gradients in
# that layout before reordering them out. These two rules name those parts (same source as above); measured on
# this machine with the profiler's allocator events inside one call (I=64, H=128, T=64, B=16, fp32): forward
# 2,591,288 bytes above its outputs (rule: 2,568,192, −0.9%), backward 3,131,960 (rule: 2,973,696, −5.1%): the
# rest are small oneDNN buffers (per-step h scratch, bias copies) not modelled.

def lstm_forward_scratch_bytes(input_size: int, hidden: int, steps: int, batch: int, elem_bytes: int = 4) -> int:
    gates_ld = _good_ld(4 * hidden, FP32_BYTES)
    return steps * batch * gates_ld * FP32_BYTES + (input_size + hidden) * _good_ld(4 * hidden, elem_bytes) * elem_bytes


def lstm_backward_scratch_bytes(input_size: int, hidden: int, steps: int, batch: int, elem_bytes: int = 4) -> int:
    gates_ld = _good_ld(4 * hidden, FP32_BYTES)
    return steps * batch * gates_ld * FP32_BYTES + 2 * (input_size + hidden) * gates_ld * FP32_BYTES


def mkldnn_rnn_scratch_bytes(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any = None) -> int:
    """Scratch bytes one `mkldnn_rnn_layer` (forward or backward) call holds while it runs (LSTM only)."""
    backward = func.overloadpacket.__name__.endswith("_backward")
    x, w_ih = args[0], args[1]
    mode = int(args[14] if backward else args[9])
    batch_first = bool(args[21] if backward else args[14])
    if mode != LSTM_MODE or x.dim() != 3:
        return 0
    hidden = int(w_ih.shape[0]) // 4
    steps, batch = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    rule = lstm_backward_scratch_bytes if backward else lstm_forward_scratch_bytes
    return rule(int(x.shape[2]), hidden, int(steps), int(batch), x.element_size())
