"""The recording dispatch mode: one pass over fake tensors, every ATen op recorded.

Runs under PyTorch's FakeTensorMode (no real memory) or on real tensors (the
same records; used to check predictions against reality).

Module attribution: in forward, a stack kept by global module forward hooks
gives the innermost running module. Each forward op's autograd node is tagged
with that module through its sequence number (the autograd counter at dispatch,
minus one, is the sequence number of the node just created for the op); in
backward, the node the engine is executing (``torch._C._current_autograd_node``)
names the module. This is exact for siblings sharing an input (q/k/v
projections) and for identity modules, where grad-hook tracking is not.
Storages are followed with weak references: an allocation when an op returns
a storage not seen before, a free when the storage is garbage collected.
"""
from __future__ import annotations

import contextlib
import weakref
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ..formulas import classify, cost_of
from ..formulas.movement import movement_bytes_read
from .cpu_rnn import mkldnn_rnn_layer_with_workspace, mkldnn_rnn_scratch_bytes
from .gpu_rnn import cudnn_rnn_with_reserve
from .fused_scratch import encoder_layer_scratch_bytes, native_mha_scratch_bytes
from .records import FORWARD, RECOMPUTE, MemoryEvent, OpRecord, SavedTensor, fused_attention_op

_SKIP_NAMESPACES = {"prim", "prims"}
_ATTN_CANDIDATES = {"bmm", "baddbmm"}


def _grouped_mm_any_dtype(func, args, kwargs):
    """aten._grouped_mm's meta kernel accepts only bf16, its CPU kernel any float: on fake tensors,
    run the shape logic in bf16 and return the caller's dtype (same shapes, same FLOPs)."""
    a, b = args[0], args[1]
    if a.dtype == torch.bfloat16 or not isinstance(a, FakeTensor):
        return func(*args, **kwargs)
    rest = tuple(x.to(torch.bfloat16) if isinstance(x, torch.Tensor) and x.dtype.is_floating_point else x for x in args[2:])
    out = func(a.to(torch.bfloat16), b.to(torch.bfloat16), *rest, **kwargs)
    return out.to(a.dtype)


def _padding_mask_not_packable(func, args, kwargs):
    """nn.TransformerEncoder (eval, enable_nested_tensor) packs a padded batch into a nested tensor when its padding
    mask is left-aligned — a question about the mask's values, which fake tensors do not have (the nested path then
    fails on them). On fake tensors the answer is no: the layers run on the padded batch with the mask, the count
    of a padded batch (an upper bound on the packed run, which skips the padding)."""
    if any(isinstance(a, FakeTensor) for a in args):
        return False
    return func(*args, **kwargs)


# Operators whose fake-tensor behaviour differs from their real kernels': a stricter meta kernel, an output the
# meta kernel leaves empty, a question about values that fake tensors do not have.
_FAKE_SHIMS = {torch.ops.aten._grouped_mm.default: _grouped_mm_any_dtype,
               # the CPU LSTM kernel's workspace, which its meta kernel leaves empty
               torch.ops.aten.mkldnn_rnn_layer.default: mkldnn_rnn_layer_with_workspace,
               # cuDNN's RNN (only a GPU target's trace runs it), whose meta kernel leaves the reserve empty
               torch.ops.aten._cudnn_rnn.default: cudnn_rnn_with_reserve,
               torch.ops.aten._nested_tensor_from_mask_left_aligned.default: _padding_mask_not_packable}
# Kernel scratch: bytes an operator allocates and frees inside one call (booked as a transient at the op).
_SCRATCH = {torch.ops.aten.mkldnn_rnn_layer.default: mkldnn_rnn_scratch_bytes,
            torch.ops.aten.mkldnn_rnn_layer_backward.default: mkldnn_rnn_scratch_bytes,
            torch.ops.aten._native_multi_head_attention.default: native_mha_scratch_bytes,
            torch.ops.aten._transformer_encoder_layer_fwd.default: encoder_layer_scratch_bytes}
# oneDNN's, which a GPU target does not run: its recurrent layers run cuDNN, whose reserve space (measured,
# gpu_rnn.py) the _cudnn_rnn shim books instead; cuDNN's in-call workspace is not modelled (stated in the report).
_CPU_KERNEL_ONLY = frozenset({torch.ops.aten.mkldnn_rnn_layer.default, torch.ops.aten.mkldnn_rnn_layer_backward.default})


def _is_state_space_mixer(module: torch.nn.Module) -> bool:
    """A Mamba-family mixer (Mamba, Mamba2, Jamba, Falcon-Mamba, Bamba, Zamba, …): it owns ``A_log``, the S4/S6
    parametrization of the state matrix (A = −exp(A_log)); its products of two activations are the scan."""
    return isinstance(module._parameters.get("A_log"), torch.Tensor)


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _mutated_bytes(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """Bytes of the arguments ``func`` writes in place (its schema marks them ``(a!)``): what an operator that
    returns nothing, as the in-place foreach operators of torch.optim, writes."""
    total = 0
    for i, arg in enumerate(func._schema.arguments):
        info = arg.alias_info
        if info is None or not info.is_write:
            continue
        value = args[i] if i < len(args) else kwargs.get(arg.name)
        flat, _ = tree_flatten(value)
        total += sum(_nbytes(t) for t in flat if isinstance(t, torch.Tensor))
    return total


_READ_PHASES = (FORWARD, RECOMPUTE)  # the phases whose reads MemoryFacts.reads keeps


def _storage(t: Any) -> Any:
    """The untyped storage of a tensor; None for anything else and for tensor subclasses without storage."""
    if not isinstance(t, torch.Tensor):
        return None
    try:
        return t.untyped_storage()
    except (RuntimeError, NotImplementedError):
        return None


class RecordingMode(TorchDispatchMode):
    """Records an :class:`OpRecord` per operator and a memory event per storage alloc/free."""

    def __init__(self, param_storages: set[int] | None = None) -> None:
        super().__init__()
        self.records: list[OpRecord] = []
        self.events: list[MemoryEvent] = []
        self.reads: list[SavedTensor] = []  # forward reads of the step's own storages (MemoryFacts.reads)
        self.unsupported: Counter[str] = Counter()
        self.phase = FORWARD
        self._how: dict[Any, str] = {}
        self._live: dict[int, int] = {}  # storage key → bytes, storages created during the trace
        self.param_storages = param_storages or set()
        self.cpu_kernels = True  # False for a GPU target: the CPU-only kernels' hidden memory is not booked
        self.stack: list[str] = []  # module paths of the running forwards, innermost last
        self._node_module: dict[int, str] = {}  # autograd sequence number → module path
        self._param_module: dict[int, str] = {}  # id(parameter) → owning module (gradient accumulation)
        self._scan_paths: set[str] = set()  # state-space mixers: their activation products are scans
        # storages holding a causal sliding-window mask (and what is computed from it, e.g. SDPA's float bias), with
        # the window: registered where transformers builds the mask (trace/run.py), dropped when the storage is freed
        self.windows: dict[int, int] = {}

    # -- storage tracking -------------------------------------------------
    def _track_outputs(self, flat_out: list[Any], index: int) -> int:
        created = 0
        for t in flat_out:
            st = _storage(t)
            if st is None:
                continue
            key = st._cdata
            if key in self._live or key in self.param_storages:
                continue
            nbytes = st.nbytes()
            self._live[key] = nbytes
            created += nbytes
            self.events.append(MemoryEvent(index, nbytes, self.phase, key))
            weakref.finalize(st, self._on_free, key, nbytes)
        return created

    def _track_reads(self, flat_in: list[Any], index: int) -> None:
        seen: set[int] = set()
        for t in flat_in:
            st = _storage(t)
            if st is None:
                continue
            key = st._cdata
            if key in self._live and key not in seen:
                seen.add(key)
                shape = () if t.is_nested else tuple(t.shape)  # a nested tensor has no sizes
                self.reads.append(SavedTensor(key, index, st.nbytes(), shape, str(t.dtype).replace("torch.", "")))

    def _transient(self, index: int, nbytes: int) -> None:
        """Book `nbytes` live only during op `index` (an allocation and its free, under a key of its own)."""
        if nbytes > 0:
            key = -(len(self.events) + 1)  # storage keys are addresses (positive): no clash
            self.events.append(MemoryEvent(index, nbytes, self.phase, key))
            self.events.append(MemoryEvent(index, -nbytes, self.phase, key))

    def _on_free(self, key: int, nbytes: int) -> None:
        self.windows.pop(key, None)
        if self._live.pop(key, None) is not None:
            self.events.append(MemoryEvent(len(self.records) - 1, -nbytes, self.phase, key))

    # -- module attribution -----------------------------------------------
    @contextlib.contextmanager
    def attributing(self, model: torch.nn.Module) -> Iterator[None]:
        """Follow `model`'s modules while tracing (global forward hooks; removed on exit)."""
        names: dict[int, str] = {}
        for path, m in model.named_modules(remove_duplicate=False):
            names.setdefault(id(m), path)
            if _is_state_space_mixer(m):
                self._scan_paths.add(path)
            for p in m.parameters(recurse=False):
                self._param_module.setdefault(id(p), path)
        stack = self.stack

        def enter(mod: torch.nn.Module, _inputs: Any) -> None:
            stack.append(names.get(id(mod), stack[-1] if stack else ""))

        def leave(mod: torch.nn.Module, _inputs: Any, _output: Any) -> None:
            if stack:
                stack.pop()

        pre = torch.nn.modules.module.register_module_forward_pre_hook(enter)
        post = torch.nn.modules.module.register_module_forward_hook(leave, always_call=True)
        try:
            yield
        finally:
            pre.remove()
            post.remove()
            stack.clear()

    def _in_scan(self, module: str) -> bool:
        return any(module == p or module.startswith(p + ".") for p in self._scan_paths)

    def _module(self) -> str:
        if self.stack:
            return self.stack[-1]  # forward, or a forward recomputed inside backward
        if torch._C._current_graph_task_id() != -1:  # backward: the module whose forward made this node
            node = torch._C._current_autograd_node()
            if node is not None:
                found = self._node_module.get(node._sequence_nr())
                if found is not None:
                    return found
                var = getattr(node, "variable", None)  # AccumulateGrad: the parameter's module
                if var is not None:
                    return self._param_module.get(id(var), "")
        return ""

    # -- the dispatch hook ------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        shim = _FAKE_SHIMS.get(func) if (self.cpu_kernels or func not in _CPU_KERNEL_ONLY) else None
        out = shim(func, args, kwargs) if shim is not None else func(*args, **kwargs)
        if func.namespace in _SKIP_NAMESPACES:
            return out
        how = self._how.get(func)
        if how is None:
            how = classify(func)
            self._how[func] = how
        module = self._module()
        if self.stack:
            # tag the autograd node this op just created (if any; setdefault keeps the creator's module). With grad
            # off too: a custom autograd Function's node takes its sequence number before its forward runs, under
            # no_grad, so its forward's first op tags it (an FP8 linear's backward GEMMs are then the linear's)
            self._node_module.setdefault(torch._C._autograd._get_sequence_nr() - 1, module)
        index = len(self.records)
        flat_out, _ = tree_flatten(out)
        created = self._track_outputs(flat_out, index)
        scratch = _SCRATCH.get(func) if (self.cpu_kernels or func not in _CPU_KERNEL_ONLY) else None
        if scratch is not None:
            self._transient(index, scratch(func, args, kwargs, out))
        if how == "zero" and not created:
            # pure views / metadata: no FLOPs, no traffic; keep the record list lean.
            return out
        cost = cost_of(func, args, kwargs, out, how)
        supported = cost is not None
        if not supported:
            self.unsupported[str(func.overloadpacket.__name__)] += 1
        flat_in, _ = tree_flatten((args, kwargs))
        bytes_read = 0
        param_operand = False
        if how == "zero":  # a copy, cast or gather reads what it writes; creation reads nothing (no FLOPs either)
            bytes_read = movement_bytes_read(func, flat_in, flat_out)
        else:
            for t in flat_in:
                if isinstance(t, torch.Tensor):
                    bytes_read += _nbytes(t)
                    if not param_operand and self.param_storages:
                        try:
                            param_operand = t.untyped_storage()._cdata in self.param_storages
                        except (RuntimeError, NotImplementedError):
                            pass
        if self.phase in _READ_PHASES:
            self._track_reads(flat_in, index)
        bytes_written = sum(_nbytes(t) for t in flat_out if isinstance(t, torch.Tensor))
        if not bytes_written and func._schema.is_mutable:
            bytes_written = _mutated_bytes(func, args, kwargs)  # in place, returning nothing (_foreach_mul_)
        model = cost.model if cost else 0
        attention = cost.attention if cost else 0
        window_share = self._window_share(func, flat_in, flat_out, model) if self.windows else 0.0
        scan = cost.scan if cost else 0
        if model and not attention and not scan and not param_operand and func.overloadpacket.__name__ in _ATTN_CANDIDATES:
            # a batched product of two activations: a state-space scan's inside a mixer, else eager attention's
            if self._in_scan(module):
                scan = model
            else:
                attention = model
        dtype = ""
        for t in flat_out:
            if isinstance(t, torch.Tensor):
                dtype = str(t.dtype).replace("torch.", "")
                break
        self.records.append(OpRecord(
            index=index,
            op=f"{func.namespace}.{func.overloadpacket.__name__}.{func._overloadname}",
            module=module,
            phase=self.phase,
            model_flops=model,
            other_flops=cost.other if cost else 0,
            attention_flops=attention,
            causal=cost.causal if cost else None,
            recompute_flops=cost.recompute if cost else 0,
            bytes_read=bytes_read,
            bytes_written=bytes_written,
            alloc_bytes=created,
            supported=supported,
            out_dtype=dtype,
            scan_flops=scan,
            upper_bound=bool(cost and cost.upper_bound),
            window_share=window_share,
            unaligned=bool(cost and cost.unaligned),
            hint=cost.hint if cost else (),
        ))
        return out

    def _window_share(self, func: Any, flat_in: list[Any], flat_out: list[Any], model: int) -> float:
        """A fused attention kernel reading a causal sliding-window mask (or the float bias SDPA makes of it) gets
        the share of its square inside the window. Elementwise ops on the mask pass the window to outputs of the
        mask's T×T shape (the boolean mask becomes SDPA's bias; eager attention adds it to the scores); a matrix
        op passes nothing on, so nothing downstream of the attention is taken for a mask."""
        mask, window = None, 0
        for t in flat_in:
            if isinstance(t, torch.Tensor) and t.dim() >= 2:
                try:
                    window = self.windows.get(t.untyped_storage()._cdata, 0)
                except (RuntimeError, NotImplementedError):
                    continue
                if window:
                    mask = t
                    break
        if mask is None:
            return 0.0
        if model:
            fused = fused_attention_op(func.overloadpacket.__name__)
            return sliding_window_share(int(mask.shape[-2]), int(mask.shape[-1]), window) if fused else 0.0
        for o in flat_out:
            if isinstance(o, torch.Tensor) and o.dim() >= 2 and tuple(o.shape[-2:]) == tuple(mask.shape[-2:]):
                try:
                    self.windows[o.untyped_storage()._cdata] = window
                except (RuntimeError, NotImplementedError):
                    pass
        return 0.0


def sliding_window_share(queries: int, keys: int, window: int) -> float:
    """Share of the queries × keys score square a causal sliding window of ``window`` keys keeps (query i sees keys
    i−window+1 … i, transformers' sliding_window_overlay): Σ min(i+1, w) over the T queries, over T². Only a square
    (queries = keys, a training or prefill step) is described; 0 otherwise."""
    if queries != keys or queries <= 0 or window <= 0:
        return 0.0
    t, w = queries, min(window, queries)
    return (w * t - w * (w - 1) / 2) / (t * t)
