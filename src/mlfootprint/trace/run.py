"""Trace one step of a workload: forward, and for training the real backward and optimizer step.

Everything runs under FakeTensorMode: a 405B-parameter model is traced without allocating its weights. The
model is built inside the fake mode from its source; a user's own nn.Module is deep-copied into fake tensors,
never moved or mutated. The result is a :class:`~.records.Trace`, the one source every analysis reads.
"""
from __future__ import annotations

import contextlib
import gc
import os
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.utils.checkpoint as checkpoint
from torch._subclasses.fake_tensor import FakeTensorMode

from ..core.errors import UserError
from ..core.progress import phase
from ..core.state import isolated_global_state
from ..models.build import build
from ..models.spec import BuiltModel, ModelSpec
from ..models.unfused_attention import NAME as UNFUSED_ATTENTION
from ..workload import Workload
from .hooks import UserHook, failing_hook, user_hooks, user_hooks_off as _user_hooks_off
from .mode import RecordingMode
from .optim import MasterWeights, make_optimizer, zo_sgd_perturb
from . import dedup as _dedup
from .kernels import CudaAutocast, CudaKernels, cuda_optimizer_foreach, kernel_summary
from .target import Target, target_of
from .records import (BACKWARD, FORWARD, OPTIMIZER, RECOMPUTE, BlockSpan, MemoryFacts, ModuleNode, MoEFacts,
                      ParamFact, SavedTensor, Trace)
from .transforms import prepare_model
import sys


def trace(spec: ModelSpec, wl: Workload, fake: bool = True, checkpoint_early_stop: bool = True,
          dedup: bool = True) -> Trace:
    """Trace one step of ``wl`` (its batch is the traced batch) of the model ``spec`` names.

    ``checkpoint_early_stop=False`` runs the whole recomputed forward of a checkpointed block. With early stop
    (PyTorch's default for non-reentrant checkpointing) the recomputed forward is interrupted by an exception,
    its module post-hooks do not run, and the trace files the backward operators that follow as recomputation
    (model FLOPs drop, HFU-only FLOPs grow); prediction keeps forward, backward and recompute apart this way,
    at the cost of recomputing the few operators after a block's last saved tensor.

    ``dedup`` (on by default): a deep stack of identical blocks built from a config is traced at four small
    depths and the full trace synthesized from them, exactly (``dedup.py``); off, or where that is not exact,
    every block is traced (also when the environment sets ``MLFOOTPRINT_TRACE_DEDUP=0``).
    """
    start = time.perf_counter()
    dedup = dedup and os.environ.get("MLFOOTPRINT_TRACE_DEDUP", "1") != "0"
    with _collector_paused() if fake else contextlib.nullcontext():
        result = _trace_deduplicated(spec, wl, checkpoint_early_stop) if fake and dedup else None
        if result is None:
            result, _ = _trace_once(spec, wl, fake, checkpoint_early_stop)
    result.trace_s = time.perf_counter() - start
    return result


def warm_up(spec: ModelSpec, wl: Workload) -> None:
    """Import what a fake trace of ``spec`` imports (the model's code, FakeTensorMode's ``torch._dynamo``: over a
    second together) by building a shallow copy of the model on the meta device, so that a worker forked after it
    starts tracing at once. What fails here is left for the trace to say."""
    plan = _dedup.plan_for(spec, wl)
    shallow = _dedup.variant(spec, plan, plan.base) if plan is not None else spec
    with contextlib.suppress(Exception), isolated_global_state(), _quiet_torch_logs():
        FakeTensorMode(allow_non_fake_inputs=True)
        with torch.device("meta"):
            build(shallow, wl)


@contextlib.contextmanager
def _collector_paused() -> Any:
    """Python's cyclic garbage collector off for a fake trace: its hundreds of thousands of short-lived objects (fake
    tensors, records) set off full collections, each walking every object torch and transformers hold (a fifth of
    a deep model's trace). A fake trace holds no real memory, and the step's storages are freed by reference
    counts, which the collector does not change; what the trace leaves in cycles is collected after it."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def _trace_once(spec: ModelSpec, wl: Workload, fake: bool, checkpoint_early_stop: bool) -> tuple[Trace, dict[str, int]]:
    """One full trace, and the counts of the target's kernel choices (for the deduplicated trace's note)."""
    fake_mode: Any = FakeTensorMode(allow_non_fake_inputs=True) if fake else contextlib.nullcontext()
    target = _target(wl, fake)
    # The trace is ours whatever the caller's grad mode (a training step needs autograd even under the caller's
    # no_grad or inference_mode) and leaves the process's global settings as it found them.
    with phase(f"tracing {spec.name} (batch {wl.batch}, {wl.mode})"), isolated_global_state(), _quiet_torch_logs(), \
            torch.inference_mode(False), torch.enable_grad():
        with fake_mode:
            step = _prepare(spec, wl, target)
        with contextlib.nullcontext() if checkpoint_early_stop else checkpoint.set_checkpoint_early_stop(False), \
                _user_hooks_off(step.user_hooks, off=not wl.user_hooks):
            recorded = _run_step(step, wl, fake_mode, fake, target)
        result = _assemble(step, wl, recorded)
    return result, dict(recorded.kernel_used)


def _target(wl: Workload, fake: bool) -> Target:
    target = target_of(wl)
    if target.gpu and not fake:
        # real CPU tensors cannot run CUDA's fused kernels: a real trace is the CPU's own
        target = Target("cpu", target.device, "a trace on real tensors runs this machine's CPU kernels")
    return target


def _trace_deduplicated(spec: ModelSpec, wl: Workload, checkpoint_early_stop: bool) -> Trace | None:
    """The trace synthesized from four shallow ones (``dedup.py``), or None where it would not be exact."""
    plan = _dedup.plan_for(spec, wl)
    if plan is None:
        return None
    traces: list[Trace] = []
    used: list[dict[str, int]] = []
    try:
        for depth in plan.depths():
            tr, kernel_used = _trace_once(_dedup.variant(spec, plan, depth), wl, True, checkpoint_early_stop)
            traces.append(tr)
            used.append(kernel_used)
    except UserError:
        return None  # the full trace says what is wrong, in the full model's terms
    copies = (plan.depth - plan.base) // plan.period
    kernel_used: dict[str, int] = {}
    for name in set().union(*used):
        a, b, c, d = (u.get(name, 0) for u in used)
        if not b - a == c - b == d - c:
            return None
        kernel_used[name] = a + (b - a) * copies
    try:
        return _dedup.synthesize(plan, traces, lambda: _full_facts(spec, wl, kernel_used))
    except _dedup.NotRepeating:
        return None


def _full_facts(spec: ModelSpec, wl: Workload, kernel_used: dict[str, int]) -> dict[str, Any]:
    """What a deduplicated trace takes from the full model, built (not run): shapes, dtypes and identities only,
    so on the meta device, which builds a deep stack several times faster than fake tensors; a model whose
    construction reads values (a schedule's ``.tolist()``) is built on fake tensors instead."""
    try:
        return _built_facts(spec, wl, kernel_used, torch.device("meta"))
    except Exception:  # noqa: BLE001 - the fake build below raises what is really wrong
        return _built_facts(spec, wl, kernel_used, FakeTensorMode(allow_non_fake_inputs=True))


def _built_facts(spec: ModelSpec, wl: Workload, kernel_used: dict[str, int], where: Any) -> dict[str, Any]:
    target = _target(wl, True)
    with isolated_global_state(), _quiet_torch_logs(), torch.inference_mode(False), torch.enable_grad(), where:
        step = _prepare(spec, wl, target)
    # The facts are read outside the build's context: under torch.device("meta") every tensor method (numel on
    # each parameter of a 126-layer stack) goes through the device mode's Python __torch_function__.
    model, built = step.model, step.built
    unique = list(model.parameters())
    tensors_in = [t for t in list(step.args) + list(step.kwargs.values()) if isinstance(t, torch.Tensor)]
    notes = _kernel_notes(wl, target, model, kernel_used)
    return {
        "module_tree": module_tree(model), "params": _param_facts(model, built),
        "param_bytes": sum(p.numel() * p.element_size() for p in unique),
        "buffer_bytes": sum(b.numel() * b.element_size() for b in model.buffers()),
        "input_bytes": sum(t.numel() * t.element_size() for t in tensors_in),
        "inputs": [(tuple(t.shape), str(t.dtype).replace("torch.", "")) for t in tensors_in],
        "batch": int(tensors_in[0].shape[0]) if tensors_in and tensors_in[0].dim() > 0 else wl.batch,
        "output_embedding": _output_embedding(model), "tokens": built.tokens, "token_unit": built.token_unit,
        "causal": built.causal, "moe": MoEFacts(built.moe.experts, built.moe.top_k) if built.moe is not None else None,
        "assumptions": built.assumptions + step.notes + notes,
    }


# ------------------------------------------------------------------------------------------ the named steps


@dataclass
class _Step:
    """The model, its inputs and optimizer, ready to run one step."""

    built: BuiltModel
    model: torch.nn.Module
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    params: list[torch.nn.Parameter]  # trainable
    optimizer: torch.optim.Optimizer | MasterWeights | None
    notes: list[str] = field(default_factory=list)
    user_hooks: list[UserHook] = field(default_factory=list)  # on the model as its source built it


def _innermost(exc: BaseException) -> str:
    """The reason a model failed to build, without the wrappers' class names: transformers' config validators wrap a
    ValueError in their own error ("Class validation error for validator ...: ValueError: <the reason>")."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text.split(" Exception raised from ", 1)[0]  # PyTorch's C++ context: its source line and stack frames
    for marker in ("ValueError: ", "TypeError: ", "AssertionError: "):
        if marker in text:
            text = text.rsplit(marker, 1)[1]
    text = text.rstrip(". ")
    return text if len(text) <= 300 else text[:297] + "..."


def _prepare(spec: ModelSpec, wl: Workload, target: Target) -> _Step:
    """Build the model (inside the fake mode), apply LoRA/recomputation, make inputs and the optimizer."""
    try:
        built = build(spec, wl)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"cannot build {spec.name!r}: {_innermost(exc)}; fix the value it names in the model's "
                        "config or arguments") from None
    model = built.module
    # The hooks of a user's model (module:callable or nn.Module) are part of it; those mlfootprint adds are not.
    hooks = user_hooks(model) if spec.source == "factory" else []
    notes = prepare_model(model, wl)
    args, kwargs = built.make_inputs()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = None
    if wl.training and not params:
        raise UserError(f"--mode train needs trainable parameters, and {spec.name!r} has none (no parameters, or all "
                        "frozen with requires_grad=False); trace it with --mode inference, or unfreeze some")
    if wl.training:
        optimizer, opt_notes = make_optimizer(wl, params, foreach=target.gpu and cuda_optimizer_foreach())
        notes.extend(opt_notes)
    if hooks and not wl.user_hooks:
        notes.append(f"the model's own hooks were not run (--no-user-hooks): {len(hooks)} hook(s), e.g. "
                     f"{hooks[0].label}; what they compute or change is not in these figures")
    return _Step(built, model, args, kwargs, params, optimizer, notes, hooks)


def _pack_index(rec: _PhaseAwareRecording) -> int:
    """The op index a saved tensor is filed at: the operator it was saved for. Autograd saves an operator's
    outputs after the operator ran (the last record) and its inputs before (the next record); an input saved
    when a new module has been entered (a checkpointed block saving its inputs, a norm saving the residual
    stream) is filed at the next record, so that it belongs to the module that saved it, not to the end of the
    block before (a repeated block's copies then save alike: ``dedup.py``). Either index names the same
    instance of the storage, which the saved tensor keeps alive in between."""
    last = len(rec.records) - 1
    if last >= 0 and rec._module() != rec.records[last].module:
        return last + 1
    return last


@dataclass
class _Recorded:
    rec: _PhaseAwareRecording
    tree: ModuleNode
    saved: dict[int, int]
    saved_meta: list[SavedTensor]
    blocks: list[BlockSpan]
    phases: list[str]
    events: list[Any]
    kernels: str = "cpu"
    kernel_notes: list[str] = field(default_factory=list)
    kernel_used: dict[str, int] = field(default_factory=dict)  # how often each target kernel was chosen


def _run_step(step: _Step, wl: Workload, fake_mode: Any, fake: bool, target: Target) -> _Recorded:
    """Run forward (+ backward + optimizer step) under the recording mode, with saved-tensor hooks."""
    model = step.model
    tree = module_tree(model)
    param_storages = {p.untyped_storage()._cdata for p in model.parameters()}
    if isinstance(step.optimizer, MasterWeights):  # fp32 master weights: made with the model, as persistent
        param_storages |= step.optimizer.storages()
    buffer_storages = {b.untyped_storage()._cdata for b in model.buffers()}
    depth = _ForwardDepth()
    rec = _PhaseAwareRecording(depth, param_storages=param_storages | buffer_storages)
    rec.cpu_kernels = not target.gpu
    saved: dict[int, int] = {}
    saved_meta: list[SavedTensor] = []
    blocks = _BlockSpans(model, rec)

    def pack(t: torch.Tensor) -> torch.Tensor:
        try:
            st = t.untyped_storage()
        except (RuntimeError, NotImplementedError):
            return t
        key = st._cdata
        if key not in rec.param_storages:
            saved[key] = st.nbytes()
            # which instance of the storage (the op index at pack time), its shape and dtype
            saved_meta.append(SavedTensor(key, _pack_index(rec), st.nbytes(), tuple(t.shape),
                                          str(t.dtype).replace("torch.", "")))
        return t

    compute = getattr(torch, wl.precision_info.compute_dtype)
    # Mixed precision: CPU autocast for the CPU target; for a GPU target, CUDA's autocast lists applied on the CPU's
    # autocast key (CudaAutocast), registered for the whole step (a checkpointed forward recomputes under autocast).
    # With 16-bit working weights (--mixed-weights 16-bit) there is no autocast: the model runs in its compute dtype.
    cuda_autocast = CudaAutocast(compute) if (wl.autocast and target.gpu) else None
    if cuda_autocast is not None:
        autocast: Any = cuda_autocast.forward()
    else:
        autocast = torch.autocast(device_type="cpu", dtype=compute) if wl.autocast else contextlib.nullcontext()
    phases: list[str] = []
    kernels = CudaKernels(fp8=wl.precision == "fp8-mixed") if target.gpu else None
    try:
        with fake_mode, rec.attributing(model), depth, blocks, _hf_masks_as_on_real_tensors(fake, rec, model), \
                cuda_autocast or contextlib.nullcontext():
            with rec, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), kernels or contextlib.nullcontext():
                output, loss = _forward_backward_step(step, wl, rec, autocast, phases)
    except UserError:
        raise
    except Exception as exc:
        hook = failing_hook(exc, step.user_hooks)
        if hook is not None:
            msg = (str(exc).splitlines() or [""])[0][:200]
            raise UserError(f"cannot trace the model: its {hook.label} failed on fake tensors "
                            f"({type(exc).__name__}: {msg}); the model's own hooks run by default, as part of its "
                            "computation (e.g. a pruning mask); if this one only logs or checks values, trace "
                            "without the model's hooks: --no-user-hooks") from None
        raise UserError(_trace_failure(exc, rec)) from None
    events = list(rec.events)  # what happened in the step; frees after it (the model's teardown) are not part of it
    del output, loss
    used = dict(kernels.used) if kernels is not None else {}
    return _Recorded(rec, tree, saved, saved_meta, blocks.spans, phases, events, target.kernels,
                     _kernel_notes(wl, target, model, used), used)


def _kernel_notes(wl: Workload, target: Target, model: torch.nn.Module, kernel_used: dict[str, int]) -> list[str]:
    """What the trace states about the kernels it emulated (one source for full and deduplicated traces)."""
    notes = [f"kernels: {target.reason}"]
    if target.gpu and wl.training and any(isinstance(m, torch.nn.RNNBase) for m in model.modules()):
        notes.append("recurrent layers on a GPU target run as cuDNN's one call over all layers and steps "
                     "(aten._cudnn_rnn), keeping cuDNN's reserve space for backward: e·T·B·D·H·(k·L + L − 1) + 256 "
                     "bytes, k = 5 for LSTM, 6 for GRU, 1 for RNN, as measured on an H200 (cuDNN 9.19; "
                     "trace/data/kernels.toml [cudnn_rnn]); cuDNN's workspace inside each call (tens of MB, chosen "
                     "with the algorithm) is not modelled, so the peak is a lower bound; packed sequences and LSTM "
                     "projections keep the CPU's code and no reserve")
    if wl.weights_16bit:
        notes.append(f"mixed precision with 16-bit working weights (--mixed-weights 16-bit, or auto under ZeRO-3 or a model split over devices; as "
                     f"Megatron-LM, NeMo, DeepSpeed and FSDP's param_dtype run it): weights, activations and gradients traced in "
                     f"{wl.precision_info.compute_dtype}, no autocast; the optimizer steps fp32 master copies of the "
                     "weights (each gradient copied into an fp32 buffer, the updated master copied back; in-place "
                     "copies, whose traffic the trace does not record); the memory model sizes the gradients as the "
                     "layout keeps them (Megatron-LM's fp32 main gradients under bf16 with the model split)")
    if wl.autocast and target.gpu:  # CudaAutocast ran (_run_step)
        notes.append(f"mixed precision follows CUDA autocast's operator lists (PyTorch autocast_mode.h): matmuls, "
                     f"convolutions and attention in {wl.precision_info.compute_dtype}; softmax, log_softmax, norms, "
                     "exp/log/pow, the losses, sum and cumsum in fp32")
    if target.gpu and kernel_summary(kernel_used):
        notes.append(f"kernels emulated for the {target.device or 'GPU'} target: {kernel_summary(kernel_used)}")
    return notes


def _forward_backward_step(step: _Step, wl: Workload, rec: RecordingMode, autocast: Any,
                           phases: list[str]) -> tuple[Any, Any]:
    """The step itself. Returns the output and loss, which the caller keeps alive until the step's memory
    events are taken (a real loop holds them until the next step)."""
    model, args, kwargs, params = step.model, step.args, step.kwargs, step.params
    zo = wl.training and wl.optimizer == "zo-sgd"
    grad_ctx = torch.no_grad() if (not wl.training or zo) else torch.enable_grad()
    output = loss = None
    rec.phase = FORWARD
    with autocast, grad_ctx:
        if zo:
            # MeZO step: two forward passes at θ+εz and θ−εz, then the update (all without autograd).
            rec.phase = OPTIMIZER
            zo_sgd_perturb(params, 1e-3)
            rec.phase = FORWARD
            step.built.loss(model(*args, **kwargs))
            rec.phase = OPTIMIZER
            zo_sgd_perturb(params, -2e-3)
            rec.phase = FORWARD
            output = model(*args, **kwargs)
            loss = step.built.loss(output)
        else:
            output = model(*args, **kwargs)
            if wl.training:
                loss = step.built.loss(output)
    phases.append(FORWARD)
    if wl.training and not zo:
        rec.phase = BACKWARD
        loss.backward()
        phases.append(BACKWARD)
    if wl.training:
        rec.phase = OPTIMIZER
        if zo:
            zo_sgd_perturb(params, 1e-3)  # restore θ
            zo_sgd_perturb(params, -1e-3)  # θ ← θ − lr·g·z (same shape of work)
        else:
            step.optimizer.step()
        phases.append(OPTIMIZER)
    return output, loss


def _assemble(step: _Step, wl: Workload, r: _Recorded) -> Trace:
    """The Trace: op records, memory events and the typed facts the analyses need."""
    model, built, args, kwargs = step.model, step.built, step.args, step.kwargs
    unique = list(model.parameters())  # parameters() yields a shared (tied) parameter once
    tensors_in = [t for t in list(args) + list(kwargs.values()) if isinstance(t, torch.Tensor)]
    state_bytes = 0
    state_storages: list[int] = []
    if step.optimizer is not None:
        for state in step.optimizer.state.values():
            for v in state.values():
                if isinstance(v, torch.Tensor) and v.dim() > 0:
                    state_bytes += v.numel() * v.element_size()
                    state_storages.append(v.untyped_storage()._cdata)
    memory = MemoryFacts(
        saved=r.saved_meta, reads=list(r.rec.reads), param_casts=r.rec.param_casts, blocks=r.blocks,
        grad_storages=[p.grad.untyped_storage()._cdata for p in unique if p.grad is not None],
        state_storages=state_storages, output_embedding=_output_embedding(model),
        inputs=[(tuple(t.shape), str(t.dtype).replace("torch.", "")) for t in tensors_in],
        batch=int(tensors_in[0].shape[0]) if tensors_in and tensors_in[0].dim() > 0 else wl.batch,
    )
    moe = MoEFacts(built.moe.experts, built.moe.top_k) if built.moe is not None else None
    return Trace(
        workload=wl, records=r.rec.records, events=r.events, saved_bytes=r.saved, module_tree=r.tree,
        params=_param_facts(model, built), unsupported=dict(r.rec.unsupported),
        param_bytes=sum(p.numel() * p.element_size() for p in unique),
        buffer_bytes=sum(b.numel() * b.element_size() for b in model.buffers()),
        input_bytes=sum(t.numel() * t.element_size() for t in tensors_in),
        grad_bytes=sum(p.grad.numel() * p.grad.element_size() for p in unique if p.grad is not None),
        optimizer_state_bytes=state_bytes, phases_run=r.phases, tokens=built.tokens, token_unit=built.token_unit,
        causal=built.causal, moe=moe, memory=memory, assumptions=built.assumptions + step.notes + r.kernel_notes,
        kernels=r.kernels,
    )


def _param_facts(model: torch.nn.Module, built: BuiltModel) -> list[ParamFact]:
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    is_expert = built.moe.is_expert_param if built.moe is not None else (lambda name: False)
    return [ParamFact(name, tuple(p.shape), str(p.dtype).replace("torch.", ""), bool(p.requires_grad),
                      id(p) in embedding_ids, bool(is_expert(name)))
            for name, p in model.named_parameters()]


def _output_embedding(model: torch.nn.Module) -> str:
    get_out = getattr(model, "get_output_embeddings", None)
    if not callable(get_out):
        return ""
    try:
        head = get_out()
    except Exception:  # noqa: BLE001 - a model without output embeddings
        return ""
    if head is None:
        return ""
    return next((n for n, m in model.named_modules() if m is head), "")


def module_tree(model: torch.nn.Module) -> ModuleNode:
    """The module hierarchy with parameter counts; a shared parameter counts once, where first seen."""
    seen: set[int] = set()

    def node(name: str, path: str, m: torch.nn.Module, memo: set[int]) -> ModuleNode:
        own = 0
        own_trainable = 0
        for p in m.parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            own += p.numel()
            if p.requires_grad:
                own_trainable += p.numel()
        n = ModuleNode(name=name, path=path, type=type(m).__name__, params=own, trainable=own_trainable)
        for child_name, child in m.named_children():
            if id(child) in memo:
                continue
            memo.add(id(child))
            c = node(child_name, f"{path}.{child_name}" if path else child_name, child, memo)
            n.children.append(c)
            n.params += c.params
            n.trainable += c.trainable
        return n

    return node("", "", model, {id(model)})


# ------------------------------------------------------------------------------------------ helpers


class _ForwardDepth:
    """Counts nested module forwards: a forward inside backward is activation recomputation."""

    def __init__(self) -> None:
        self.depth = 0

    def __enter__(self):
        self._pre = torch.nn.modules.module.register_module_forward_pre_hook(self._enter)
        # always_call: a checkpointed block whose recomputation stops early (torch.utils.checkpoint's early stop
        # raises out of the forward) must still leave the count balanced.
        self._post = torch.nn.modules.module.register_module_forward_hook(self._exit, always_call=True)
        return self

    def _enter(self, *_: Any) -> None:
        self.depth += 1

    def _exit(self, *_: Any) -> None:
        self.depth -= 1

    def __exit__(self, *exc: Any) -> None:
        self._pre.remove()
        self._post.remove()


_CAST_OPS = {torch.ops.aten._to_copy.default, torch.ops.aten.clone.default}


class _PhaseAwareRecording(RecordingMode):
    def __init__(self, depth: _ForwardDepth, **kw: Any) -> None:
        super().__init__(**kw)
        self._depth = depth
        self.param_casts: list[tuple[int, int]] = []  # (op index, storage) of parameter dtype copies

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in _SAME_KIND_OPS:
            _check_operand_kinds(func, args, self)
        if self.phase == BACKWARD and self._depth.depth > 0:
            self.phase = RECOMPUTE
            try:
                out = super().__torch_dispatch__(func, types, args, kwargs)
            finally:
                self.phase = BACKWARD
        else:
            out = super().__torch_dispatch__(func, types, args, kwargs)
        if func in _CAST_OPS:
            self._note_param_cast(args, out)
        return out

    def _note_param_cast(self, args: Any, out: Any) -> None:
        # memory: a dtype copy of a parameter (autocast's weight cache, a dequantized weight) is batch-independent.
        src = args[0] if args else None
        if not isinstance(src, torch.Tensor) or not isinstance(out, torch.Tensor):
            return
        try:
            if src.untyped_storage()._cdata in self.param_storages:
                self.param_casts.append((len(self.records) - 1, out.untyped_storage()._cdata))
        except (RuntimeError, NotImplementedError):
            pass


# Matrix-class kernels refuse an integer operand next to a floating one on real tensors ("expected m1 and m2 to have
# the same dtype"); their fake-tensor (meta) implementations do not check, so the trace checks as the kernel would.
_SAME_KIND_OPS = frozenset(getattr(torch.ops.aten, name).default
                            for name in ("mm", "addmm", "bmm", "baddbmm", "addbmm", "mv", "addmv", "dot", "convolution"))


def _check_operand_kinds(func: Any, args: Any, rec: RecordingMode) -> None:
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    floating = [t.dtype for t in tensors if t.dtype.is_floating_point or t.dtype.is_complex]
    integral = [t.dtype for t in tensors if not (t.dtype.is_floating_point or t.dtype.is_complex)]
    if floating and integral:
        where = rec._module() if hasattr(rec, "_module") else ""
        loc = f" in module '{where}'" if where else ""
        name = str(getattr(func, "__name__", func)).split(".")[0]
        raise UserError(f"cannot trace the model: {name}{loc} meets an integer tensor "
                        f"({str(integral[0]).replace('torch.', '')}) and a floating one "
                        f"({str(floating[0]).replace('torch.', '')}), which PyTorch refuses on real tensors; give that "
                        "input a floating dtype (e.g. --input 2x8:float32) or cast it in the model")


@contextlib.contextmanager
def _quiet_torch_logs() -> Any:
    """While tracing, torch's own loggers stay silent: a failure on fake tensors is logged by torch with its
    traceback (40 lines of 'failed while attempting to run meta') before the trace turns it into one clear line.
    Each logger's ``disabled`` flag is put back as it was."""
    import logging

    names = ["torch"] + [n for n in list(logging.root.manager.loggerDict) if n.startswith("torch.")]
    loggers = [logging.getLogger(n) for n in names]
    before = [lg.disabled for lg in loggers]
    for lg in loggers:
        lg.disabled = True
    try:
        yield
    finally:
        for lg, was in zip(loggers, before):
            lg.disabled = was


def _trace_failure(exc: Exception, rec: RecordingMode) -> str:
    where = rec.records[-1].module if rec.records else ""
    last = rec.records[-1].op if rec.records else "the first operator"
    kind = type(exc).__name__
    msg = str(exc).splitlines()[0] if str(exc) else ""
    hint = ("the model reads tensor values (data-dependent control flow), which a fake-tensor trace cannot do; "
            "make the branch depend on shapes, or trace the model's inference path with --mode inference"
            if "DataDependent" in kind or "item()" in msg or "data-dependent" in msg.lower() else
            "CUDA's autocast refuses this operator on a GPU target, as a real GPU run would; use "
            "binary_cross_entropy_with_logits (BCEWithLogitsLoss), or a precision without autocast (--precision bf16)"
            if "unsafe to autocast" in msg else
            "an operator without a fake-tensor implementation, or a model that cannot run these inputs")
    loc = f" in module '{where}'" if where else ""
    return f"cannot trace the model: {kind} after {last}{loc}: {msg[:200]} — {hint}"


class _BlockSpans:
    """Where each repeated block (a child of an nn.ModuleList) starts and ends in the forward op stream,
    and the bytes of its input (what full recomputation keeps)."""

    def __init__(self, model: torch.nn.Module, rec: RecordingMode) -> None:
        self.spans: list[BlockSpan] = []
        self._model = model
        self._rec = rec
        self._handles: list[Any] = []
        self._open: dict[int, tuple[str, int, int, str]] = {}

    def __enter__(self):
        for name, m in self._model.named_modules():
            if isinstance(m, torch.nn.ModuleList) and len(m) > 1:
                for child_name, child in m.named_children():
                    path = f"{name}.{child_name}" if name else child_name
                    self._handles.append(child.register_forward_pre_hook(self._pre(path), with_kwargs=True))
                    self._handles.append(child.register_forward_hook(self._post()))
        return self

    def _pre(self, path: str):
        def hook(module, args, kwargs):
            first = next((a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor)), None)
            nbytes = first.numel() * first.element_size() if first is not None else 0
            self._open[id(module)] = (path, len(self._rec.records), nbytes, self._rec.phase)
        return hook

    def _post(self):
        def hook(module, args, output):
            opened = self._open.pop(id(module), None)
            if opened is None or opened[3] != FORWARD:
                return
            path, start, nbytes, _ = opened
            keys = []
            for t in (output if isinstance(output, (tuple, list)) else (output,)):
                if isinstance(t, torch.Tensor):
                    try:
                        keys.append(t.untyped_storage()._cdata)
                    except (RuntimeError, NotImplementedError):
                        pass
            self.spans.append(BlockSpan(path, start, len(self._rec.records), nbytes, keys))
        return hook

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()


@contextlib.contextmanager
def _hf_masks_as_on_real_tensors(fake: bool, rec: RecordingMode, model: Any):
    """Make Hugging Face's SDPA mask logic take the path it takes on real tensors.

    The traced inputs are one unpadded, unpacked sequence per row. On real tensors transformers proves that
    from the values (no padding, contiguous position ids) and calls SDPA with ``is_causal`` (or no mask) and
    grouped-query attention in the kernel. On fake tensors it cannot read values, so it materializes a
    batch×1×T×T mask, converts it to a float mask in every layer (saved for backward) and copies keys and
    values to all query heads: for Llama-3.1-405B at 8k tokens that is ~17 GB of masks and ~63 GB of
    key/value copies that a real run never allocates. During the trace the "sdpa" mask function is
    (and that of ``--attention unfused``, the same function) replaced (through transformers' public
    AttentionMaskInterface registry, restored afterwards) by one
    that returns no mask exactly where the real-tensor logic would, and delegates otherwise (padding,
    sliding windows). A causal sliding-window mask it delegates for is registered with the recording mode
    (``rec.windows``), which marks the attention kernels reading it (trace/mode.py).
    """
    masking = sys.modules.get("transformers.masking_utils")
    if not fake or masking is None:
        yield
        return
    registry = masking.ALL_MASK_ATTENTION_FUNCTIONS
    # transformers passes local_size for sliding windows and for chunked attention (Llama 4's attention_chunk_size),
    # which is not a window: a model with chunks records none
    chunked = getattr(getattr(model, "config", None), "attention_chunk_size", None) is not None
    windows = None if chunked else rec.windows
    # SDPA's, and --attention unfused's, which builds its masks with SDPA's function (models/unfused_attention.py)
    originals = {name: registry[name] for name in ("sdpa", UNFUSED_ATTENTION) if name in registry}

    def as_real(original: Any) -> Any:
        def sdpa_mask_as_real(*args: Any, **kwargs: Any) -> Any:
            attention_mask = kwargs.get("attention_mask")
            local_size = kwargs.get("local_size")
            q_length = kwargs.get("q_length")
            kv_length = kwargs.get("kv_length")
            if (not args and attention_mask is None and q_length is not None and kv_length is not None
                    and (local_size is None or kv_length <= local_size) and (q_length == kv_length or q_length == 1)):
                return None
            mask = original(*args, **kwargs)
            if (windows is not None and local_size and isinstance(mask, torch.Tensor)
                    and mask.dtype == torch.bool):
                # a causal sliding-window mask: what reads it is windowed attention (trace/mode.py)
                windows[mask.untyped_storage()._cdata] = int(local_size)
            return mask
        return sdpa_mask_as_real

    for name, original in originals.items():
        registry.register(name, as_real(original))
    try:
        yield
    finally:
        for name, original in originals.items():
            registry.register(name, original)
