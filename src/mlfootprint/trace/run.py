"""Trace one step of a workload: forward, and for training the real backward and optimizer step.

Everything runs under FakeTensorMode: a 405B-parameter model is traced without
allocating its weights. The model is built inside the fake mode from its
source; a user's own nn.Module is deep-copied into fake tensors, never moved
or mutated.
"""
from __future__ import annotations

import contextlib
import copy
import time
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from ..core.errors import UserError
from ..models.spec import BuiltModel, ModelSpec
from ..workload import Workload
from .mode import RecordingMode
from .optim import make_optimizer, zo_sgd_perturb
from .records import BACKWARD, FORWARD, OPTIMIZER, ModuleNode, Trace

RECOMPUTE = "recompute"


def build(spec: ModelSpec, wl: Workload) -> BuiltModel:
    if spec.source == "factory":
        from ..models import factory

        return factory.build(spec, wl)
    from ..models import hf

    return hf.build(spec, wl)


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


def _apply_recompute(model: torch.nn.Module, wl: Workload, notes: list[str]) -> None:
    if wl.recompute == "none" or not wl.training:
        return
    if wl.recompute == "full":
        kwargs = {"use_reentrant": False}
        if getattr(model, "activation_checkpointing_enable", None) is not None:  # transformers >= 5
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        elif getattr(model, "gradient_checkpointing_enable", None) is not None:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        else:
            raise UserError("--recompute full needs a Hugging Face model (activation checkpointing); "
                            "for a custom model, checkpoint its blocks in your factory with torch.utils.checkpoint")
        notes.append("full recomputation: every transformer block's forward is re-run in backward (HF gradient checkpointing)")
    else:
        notes.append("selective recomputation (Korthikanti et al. 2022) recomputes attention's softmax/dropout; "
                     "with SDPA/flash attention those are not stored anyway, so the trace is unchanged")


def trace(spec: ModelSpec, wl: Workload, fake: bool = True) -> tuple[Trace, BuiltModel]:
    """Trace one step. Returns the trace and the built (fake) model."""
    start = time.perf_counter()
    fake_mode: Any = FakeTensorMode(allow_non_fake_inputs=True) if fake else contextlib.nullcontext()
    notes: list[str] = []
    with fake_mode:
        try:
            built = build(spec, wl)
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"cannot build {spec.name!r}: {type(exc).__name__}: {exc}") from None
        model = built.module
        _apply_lora(model, wl, notes)
        _apply_recompute(model, wl, notes)
        args, kwargs = built.make_inputs()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = None
        if wl.training:
            optimizer, opt_notes = make_optimizer(wl, params)
            notes.extend(opt_notes)
    tree = module_tree(model)
    param_storages = {p.untyped_storage()._cdata for p in model.parameters()}
    buffer_storages = {b.untyped_storage()._cdata for b in model.buffers()}
    param_bytes = sum(p.numel() * p.element_size() for p in _unique_params(model))
    buffer_bytes = sum(b.numel() * b.element_size() for b in model.buffers())
    input_bytes = sum(t.numel() * t.element_size() for t in list(args) + list(kwargs.values()) if isinstance(t, torch.Tensor))

    depth = _ForwardDepth()
    rec = _PhaseAwareRecording(depth, param_storages=param_storages | buffer_storages)
    saved: dict[int, int] = {}
    saved_meta: list[tuple[int, int, int, tuple[int, ...], str]] = []
    blocks = _BlockSpans(model, rec)

    def pack(t: torch.Tensor) -> torch.Tensor:
        try:
            st = t.untyped_storage()
        except (RuntimeError, NotImplementedError):
            return t
        key = st._cdata
        if key not in rec.param_storages:
            saved[key] = st.nbytes()
            # memory: which instance of the storage (the op index at pack time), its shape and dtype
            saved_meta.append((key, len(rec.records) - 1, st.nbytes(), tuple(t.shape), str(t.dtype).replace("torch.", "")))
        return t

    autocast = (torch.autocast(device_type="cpu", dtype=wl.compute_dtype) if wl.mixed else contextlib.nullcontext())
    phases: list[str] = []
    zo = wl.training and wl.optimizer == "zo-sgd"
    grad_ctx = torch.no_grad() if (not wl.training or zo) else contextlib.nullcontext()
    output = loss = None
    try:
        with fake_mode, rec.attributing(model), depth, blocks, _hf_masks_as_on_real_tensors(fake):
            with rec, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                rec.phase = FORWARD
                with autocast, grad_ctx:
                    if zo:
                        # MeZO step: two forward passes at θ+εz and θ−εz, then the update (all without autograd).
                        rec.phase = OPTIMIZER
                        zo_sgd_perturb(params, 1e-3)
                        rec.phase = FORWARD
                        built.loss(model(*args, **kwargs))
                        rec.phase = OPTIMIZER
                        zo_sgd_perturb(params, -2e-3)
                        rec.phase = FORWARD
                        output = model(*args, **kwargs)
                        loss = built.loss(output)
                    else:
                        output = model(*args, **kwargs)
                        if wl.training:
                            loss = built.loss(output)
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
                        optimizer.step()
                    phases.append(OPTIMIZER)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(_trace_failure(exc, rec)) from None
    step_events = list(rec.events)  # what happened in the step; frees after it (the model's teardown) are not part of it
    grad_bytes = sum(p.grad.numel() * p.grad.element_size() for p in _unique_params(model) if p.grad is not None)
    state_bytes = 0
    state_storages: list[int] = []
    if optimizer is not None:
        for state in optimizer.state.values():
            for v in state.values():
                if isinstance(v, torch.Tensor) and v.dim() > 0:
                    state_bytes += v.numel() * v.element_size()
                    state_storages.append(v.untyped_storage()._cdata)
    result = Trace(
        records=rec.records, events=step_events, saved_bytes=saved, module_tree=tree,
        unsupported=dict(rec.unsupported), param_bytes=param_bytes, buffer_bytes=buffer_bytes,
        input_bytes=input_bytes, grad_bytes=grad_bytes, optimizer_state_bytes=state_bytes,
        phases_run=phases, tokens=built.tokens, assumptions=built.assumptions + notes,
    )
    result.meta["token_unit"] = built.token_unit
    result.meta["causal"] = built.causal
    result.meta["memory"] = _memory_meta(model, wl, built, rec, saved_meta, blocks, state_storages, args, kwargs)
    del output, loss
    result.trace_s = time.perf_counter() - start
    return result, built


def _unique_params(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return list(model.parameters())  # parameters() already yields a shared (tied) parameter once


def _trace_failure(exc: Exception, rec: RecordingMode) -> str:
    where = rec.records[-1].module if rec.records else ""
    last = rec.records[-1].op if rec.records else "the first operator"
    kind = type(exc).__name__
    msg = str(exc).splitlines()[0] if str(exc) else ""
    hint = ("the model reads tensor values (data-dependent control flow), which a fake-tensor trace cannot do; "
            "make the branch depend on shapes, or trace the model's inference path with --mode inference"
            if "DataDependent" in kind or "item()" in msg or "data-dependent" in msg.lower() else
            "an operator without a fake-tensor implementation, or a model that cannot run these inputs")
    loc = f" in module '{where}'" if where else ""
    return f"cannot trace the model: {kind} after {last}{loc}: {msg[:200]} — {hint}"


def _apply_lora(model: torch.nn.Module, wl: Workload, notes: list[str]) -> None:
    if not wl.lora_rank:
        return
    from ..memory.lora import apply_lora  # issue "Memory": LoRA adapters on the fake model

    notes.extend(apply_lora(model, wl.lora_rank, wl.lora_targets))


class _BlockSpans:
    """memory: where each repeated block (a child of an nn.ModuleList) starts and ends in the forward op stream,
    and the bytes of its input (what full recomputation keeps)."""

    def __init__(self, model: torch.nn.Module, rec: RecordingMode) -> None:
        self.spans: list[dict[str, Any]] = []
        self._model = model
        self._rec = rec
        self._handles: list[Any] = []
        self._open: dict[int, dict[str, Any]] = {}

    def __enter__(self):
        for name, m in self._model.named_modules():
            if isinstance(m, torch.nn.ModuleList) and len(m) > 1:
                for child_name, child in m.named_children():
                    path = f"{name}.{child_name}" if name else child_name
                    self._handles.append(child.register_forward_pre_hook(self._pre(path), with_kwargs=True))
                    self._handles.append(child.register_forward_hook(self._post(path)))
        return self

    def _pre(self, path: str):
        def hook(module, args, kwargs):
            first = next((a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor)), None)
            nbytes = first.numel() * first.element_size() if first is not None else 0
            self._open[id(module)] = {"path": path, "start": len(self._rec.records), "input_bytes": nbytes,
                                      "phase": self._rec.phase}
        return hook

    def _post(self, path: str):
        def hook(module, args, output):
            span = self._open.pop(id(module), None)
            if span is not None and span["phase"] == FORWARD:
                span["end"] = len(self._rec.records)
                keys = []
                for t in (output if isinstance(output, (tuple, list)) else (output,)):
                    if isinstance(t, torch.Tensor):
                        try:
                            keys.append(t.untyped_storage()._cdata)
                        except (RuntimeError, NotImplementedError):
                            pass
                span["out_keys"] = keys
                self.spans.append(span)
        return hook

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()


def _memory_meta(model: torch.nn.Module, wl: Workload, built: BuiltModel, rec: _PhaseAwareRecording,
                 saved_meta: list[Any], blocks: _BlockSpans, state_storages: list[int],
                 args: Any, kwargs: Any) -> dict[str, Any]:
    """What the memory model needs beyond the op records (issue "Memory")."""
    params = []
    for name, p in model.named_parameters():
        params.append((name, tuple(p.shape), str(p.dtype).replace("torch.", ""), bool(p.requires_grad)))
    out_emb = ""
    get_out = getattr(model, "get_output_embeddings", None)
    if callable(get_out):
        try:
            head = get_out()
        except Exception:  # noqa: BLE001 - a model without output embeddings
            head = None
        if head is not None:
            out_emb = next((n for n, m in model.named_modules() if m is head), "")
    grad_storages = [p.grad.untyped_storage()._cdata for p in model.parameters() if p.grad is not None]
    inputs = [t for t in list(args) + list(kwargs.values()) if isinstance(t, torch.Tensor)]
    return {
        "params": params,
        "saved": saved_meta,
        "param_casts": rec.param_casts,
        "blocks": blocks.spans,
        "grad_storages": grad_storages,
        "state_storages": state_storages,
        "output_embedding": out_emb,
        "inputs": [(tuple(t.shape), str(t.dtype).replace("torch.", "")) for t in inputs],
        "batch": int(inputs[0].shape[0]) if inputs and inputs[0].dim() > 0 else wl.batch,
        "zo": wl.training and wl.optimizer == "zo-sgd",
        "training": wl.training,
        "recompute": wl.recompute if wl.training else "none",
        "precision": wl.precision,
        "optimizer": wl.optimizer,
        "mode": wl.mode,
    }


@contextlib.contextmanager
def _hf_masks_as_on_real_tensors(fake: bool):
    """Make Hugging Face's SDPA mask logic take the path it takes on real tensors.

    The traced inputs are one unpadded, unpacked sequence per row. On real tensors transformers proves that
    from the values (no padding, contiguous position ids) and calls SDPA with ``is_causal`` (or no mask) and
    grouped-query attention in the kernel. On fake tensors it cannot read values, so it materializes a
    batch×1×T×T mask, converts it to a float mask in every layer (saved for backward) and copies keys and
    values to all query heads: for Llama-3.1-405B at 8k tokens that is ~17 GB of masks and ~63 GB of
    key/value copies that a real run never allocates. During the trace the "sdpa" mask function is
    replaced (through transformers' public AttentionMaskInterface registry, restored afterwards) by one
    that returns no mask exactly where the real-tensor logic would, and delegates otherwise (padding,
    sliding windows).
    """
    import sys

    masking = sys.modules.get("transformers.masking_utils")
    if not fake or masking is None:
        yield
        return
    registry = masking.ALL_MASK_ATTENTION_FUNCTIONS
    original = registry["sdpa"]

    def sdpa_mask_as_real(*args: Any, **kwargs: Any) -> Any:
        attention_mask = kwargs.get("attention_mask")
        local_size = kwargs.get("local_size")
        q_length = kwargs.get("q_length")
        kv_length = kwargs.get("kv_length")
        if (not args and attention_mask is None and q_length is not None and kv_length is not None
                and (local_size is None or kv_length <= local_size) and (q_length == kv_length or q_length == 1)):
            return None
        return original(*args, **kwargs)

    registry.register("sdpa", sdpa_mask_as_real)
    try:
        yield
    finally:
        registry.register("sdpa", original)
