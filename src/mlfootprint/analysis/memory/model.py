"""Per-device memory of a traced workload, for the workload as given and for any other layout.

:func:`memory_model` classifies one trace once (:mod:`.timeline`); then
:meth:`MemoryModel.per_device` answers for a :class:`~.layout.Layout` in
microseconds to milliseconds, without re-tracing, by these rules:

**Which step.** The steady-state training step (step ≥ 2), not the first:
optimizer states exist from the start of the step (the first step creates them
lazily inside ``optimizer.step()``, after activations are freed, so its peak is
never higher), and gradients are released by ``zero_grad(set_to_none=True)``
(PyTorch's default since 2.0) between steps, so they grow during backward —
unless they live for the whole step: with gradient accumulation (grad_accum >
1), pipeline parallelism (1F1B accumulates over micro-batches), ZeRO-2/3
(partitioned gradient buffers) or offload. The step's outputs (logits, loss)
are released before the next step.

**The traced timeline is replayed, scaled per class** (``timeline.CLASSES``):

* micro-batch: every activation class scales by ``micro_batch / traced batch``
  (parameter casts, gradients and optimizer temporaries do not). Linear in the
  batch, which holds for the per-sample activations of the models we trace;
  :func:`max_batch` re-traces instead of trusting it.
* tensor parallelism (Korthikanti et al. 2022, "Reducing Activation
  Recomputation in Large Transformer Models", Sec. 4.2): activations between the
  column- and row-parallel linears (inside attention and MLP), the vocabulary-
  parallel logits and loss are divided by ``tp``; the residual stream, norms and
  embeddings are replicated — unless ``sequence_parallel``, which divides them
  too (Sec. 4.2.2). Classified from the allocating module's name (see
  ``timeline._Classifier``); unknown modules count as replicated.
* precision: activations of the traced compute dtype scale by the ratio of
  element sizes (other dtypes — fp32 statistics, indices, masks — do not).
* mixed precision: autocast's 16-bit weight copies are not counted (the
  16-bit working weights are ``weights_bytes``, as in Megatron/DeepSpeed).
* gradients follow the traced timeline scaled to the layout's gradient bytes,
  or are resident (see above). Optimizer temporaries scale with the ZeRO and
  TP shard, and vanish from the device under offload.

**Recomputation.** ``full`` keeps only each block's input through the forward
pass and re-creates a block's saved tensors (and forward transients) when its
backward starts (replayed from a trace without recomputation: this matched a
real checkpointed step to 0.02%). ``selective`` drops the saved T×T attention
tensors (softmax output, dropout mask: Korthikanti et al. Sec. 5) and adds one
block's worth back as a transient; with SDPA/flash attention there are none.

**Pipeline parallelism** (1F1B schedule, Narayanan et al. 2021): stage k keeps
its blocks (``workload.stage_layers``: as even as possible, the smaller stages at
the ends; the first stage also the embedding, the last the head and loss)
and holds ``min(pp − k, grad_accum)`` micro-batches in flight: the replay of
its own allocations plus (in flight − 1) × what one micro-batch saves. With
``vp`` virtual stages (interleaved 1F1B) stage k holds Megatron's warm-up of
``(pp − k − 1)·2 + (vp − 1)·pp + 1`` model chunks of 1/vp stage each: the first
stage ``(1 + (pp − 1)/(pp·vp))·pp`` micro-batches' worth (Korthikanti et al. 2022,
Sec. 4.2.3). ZB-H1 keeps 1F1B's. The first stage, the first of the biggest and
the last are evaluated; the largest is reported.

**Context parallelism** (``cp``): each device holds 1/cp of each sequence's
activations; ZeRO shards over the dp × cp ranks (they hold the same weights).

**Activation offload** (``offload_activations`` = α; MEMO, Zhao et al. 2025, arXiv:2407.12117, which
offloads activations "to CPU memory after each layer's forward pass and fetch[es] them during the backward
pass"): α of every activation a repeated block keeps on the device from its forward to its backward (all its
saved tensors; under full recomputation only its output, the next block's input) leaves the device when the
block's forward ends and comes back when the backward that reads it starts (``Profile.offload_mask``). The host
holds α × those bytes for each micro-batch in flight; each crosses the host link twice per micro-batch (out and
back). Embedding, head and loss keep theirs on the device. MEMO picks the fraction per layer by linear programming
and recomputes the tokens it does not swap; here the fraction is the user's, one for every block.

**Generation.** Prefill is the traced forward over the prompt, with only the
last position's logits kept (as ``generate`` does), plus the prompt's KV cache;
decoding holds the full KV cache (prompt + generated) plus one token's
activations (the prefill peak / prompt length).

Structural changes the replay cannot express (training ↔ zo-sgd, or leaving a
traced full recomputation) re-trace once, lazily, and the result is cached.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ...core.errors import UserError
from ...core.progress import phase
from ...hardware.catalog import get_device
from ...core.precision import precision as precision_of
from ...models.spec import ModelSpec
from ...trace.records import Trace
from ...trace.cache import traced_step
from ...trace.scaling import derive_at_batch
from ...workload import Workload
from . import methods
from .fusion import describe as describe_fusion, stack_for
from .kvcache import kv_cache_bytes
from ...workload import Layout, check_against_model, check_context_parallel, micro_batch_of, stage_layers
from .states import (ParamInfo, ParamSet, StateLayout, States, model_states, params_from_trace,
                     quantizable)
from .timeline import ACT_CLASSES, CLASSES, C, N, POST, PRE, Profile, build_profile
from ...core.units import plain_number



def inflight_micro_batches(pp: int, vp: int, stage: int, micro_batches: int) -> float:
    """Micro-batches' worth of saved activations stage ``stage`` holds at its peak (in whole-stage units).

    1F1B: min(pp − stage, m). Interleaved (Megatron-LM's schedule): (pp − stage − 1)·2 + (vp − 1)·pp warm-up
    chunks plus one, each 1/vp of the stage, at most the m·vp chunks there are; stage 0 holds
    (1 + (pp − 1)/(pp·vp))·pp (Korthikanti et al. 2022, Sec. 4.2.3; Narayanan et al. 2021, Sec. 2.2.2)."""
    m = max(1, micro_batches)
    if vp <= 1:
        return float(max(1, min(pp - stage, m)))
    chunks = min((pp - stage - 1) * 2 + (vp - 1) * pp + 1, m * vp)
    return max(1.0, chunks / vp)


@dataclass
class MemoryEstimate:
    """Bytes per device. Components are each at their own maximum over the step; ``peak_bytes`` is the
    maximum of their sum over the step's timeline (so it can be less than the sum); ``at_peak`` splits it."""

    weights_bytes: int
    gradients_bytes: int
    optimizer_bytes: int
    activations_bytes: int
    kv_cache_bytes: int
    other_bytes: int
    peak_bytes: int
    host_bytes: int = 0  # everything the step keeps in host memory (offloaded states and activations)
    nvme_bytes: int = 0
    offload_activations: float = 0.0  # the fraction of the blocks' saved activations moved to the host
    activations_host_bytes: int = 0  # of host_bytes: the offloaded activations (every micro-batch in flight)
    activations_offloaded_bytes: int = 0  # device peak without the offload − with it
    activation_offload_traffic_bytes: int = 0  # host-link bytes per step, both directions
    device_bytes: int | None = None
    fits: bool | None = None
    headroom_bytes: int | None = None
    peak_phase: str = ""
    stage: int | None = None
    at_peak: dict[str, int] = field(default_factory=dict)
    breakdown: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, str] = field(default_factory=dict)
    assumptions: list[str] = field(default_factory=list)
    layout: Layout | None = None
    stack_note: str = ""  # the stack's assumption line when its fused chains changed the activations (else empty)

    def with_device(self, device_bytes: int | None, provenance: str = "assumed") -> MemoryEstimate:
        out = copy.copy(self)
        out.provenance = dict(self.provenance)
        out.device_bytes = device_bytes
        if device_bytes is None:
            out.fits = out.headroom_bytes = None
            for k in ("device_bytes", "fits", "headroom_bytes"):
                out.provenance.pop(k, None)
        else:
            out.fits = self.peak_bytes <= device_bytes
            out.headroom_bytes = device_bytes - self.peak_bytes
            out.provenance.update(device_bytes=provenance, fits="modeled", headroom_bytes="modeled")
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "weights_bytes": self.weights_bytes, "gradients_bytes": self.gradients_bytes,
            "optimizer_bytes": self.optimizer_bytes, "activations_bytes": self.activations_bytes,
            "kv_cache_bytes": self.kv_cache_bytes, "other_bytes": self.other_bytes, "peak_bytes": self.peak_bytes,
            "host_bytes": self.host_bytes, "nvme_bytes": self.nvme_bytes,
        }
        if self.offload_activations:
            out.update(offload_activations=self.offload_activations, activations_host_bytes=self.activations_host_bytes,
                       activations_offloaded_bytes=self.activations_offloaded_bytes,
                       activation_offload_traffic_bytes=self.activation_offload_traffic_bytes)
        if self.device_bytes is not None:
            out.update(device_bytes=self.device_bytes, fits=self.fits, headroom_bytes=self.headroom_bytes)
        out["peak_phase"] = self.peak_phase
        if self.stage is not None:
            out["pipeline_stage"] = self.stage
        out["at_peak"] = dict(self.at_peak)
        out["breakdown"] = dict(self.breakdown)
        if self.layout is not None:
            out["layout"] = self.layout.to_dict()
        return out


class MemoryModel:
    """One trace, classified; ``per_device(layout)`` for any layout of the same model and sequence length."""

    def __init__(self, spec: ModelSpec, wl: Workload, trace: Trace) -> None:
        traced = trace.workload
        self.spec = spec
        self.wl = wl
        self.trace = trace
        self.training = traced.training
        self.mode = traced.mode
        self.traced_batch = trace.memory.batch or traced.batch
        self.traced_precision = traced.precision
        self.traced_optimizer = traced.optimizer
        # the trace of --recompute selective is the trace without it (trace/transforms.py): the model drops
        # the saved T×T tensors
        self.traced_recompute = traced.recompute if traced.training else "none"
        self.traced_zo = traced.training and traced.optimizer == "zo-sgd"
        compute = precision_of(self.traced_precision).compute_dtype
        self.fusion, self._fusion_why = stack_for(wl)
        self.profile: Profile = build_profile(trace, self.training, compute, self.fusion)
        self.params: list[ParamInfo] = params_from_trace(trace, self.profile.block_paths, self._pre_paths())
        self.pset = ParamSet(self.params)
        self._largest_trainable = max((p.numel for p in self.params if p.trainable), default=0)
        self._largest_frozen_linear = max((p.numel for p in self.params if quantizable(p) and not p.trainable), default=0)
        self.facts = dict(spec.facts or {})
        self.lora = any("lora_A" in p.name for p in self.params)
        self._cache: dict[Any, MemoryEstimate] = {}
        self._variants: dict[Any, MemoryModel] = {}
        self._states_cache: dict[StateLayout, States] = {}
        self._expert_shares: dict[tuple[int, int, int], float] = {}

    def _pre_paths(self) -> set[str]:
        spans = self.trace.memory.blocks
        if not spans:
            return set()
        return {r.module for r in self.trace.records[:spans[0].start] if r.phase == "forward"}

    # ------------------------------------------------------------------ public
    def layout(self) -> Layout:
        """The layout of the workload as given. Without --batch, the traced inputs' batch (e.g. from --input
        shapes or an inputs callable) is the per-device micro-batch."""
        lay = Layout.from_workload(self.wl)
        if "batch" not in self.wl.given and not self.wl.micro_batch and self.wl.batch == 1:
            lay = lay.replace(micro_batch=self.traced_batch)
        return lay

    def per_device(self, layout: Layout, other_bytes: int | None = None, quant: str | None = None,
                   gen_tokens: int | None = None) -> MemoryEstimate:
        """Memory of one device of ``layout`` (the worst pipeline stage). See the module docstring for the rules."""
        other = int(other_bytes) if other_bytes is not None else self._default_other()
        quant = self.wl.quant if quant is None else quant
        gen = self.wl.gen_tokens if gen_tokens is None else gen_tokens
        key = (layout, other, quant, gen)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        check_against_model(layout, self.facts, self.profile.n_blocks or None, self.training)
        check_context_parallel(layout, self.profile.seq, self.facts.get("heads"))
        if self.training and layout.optimizer == "zo-sgd" and not self.traced_zo:
            est = self._variant(optimizer="zo-sgd").per_device(layout, other, quant, gen)
        elif self.training and self.traced_zo and layout.optimizer != "zo-sgd":
            est = self._variant(optimizer=layout.optimizer).per_device(layout, other, quant, gen)
        elif self.training and self.traced_recompute == "full" and layout.recompute != "full":
            est = self._variant(recompute="none").per_device(layout, other, quant, gen)
        else:
            est = self._estimate(layout, other, quant, gen)
        if est.offload_activations:
            base = self.per_device(layout.replace(offload_activations=0.0), other, quant, gen)
            est.activations_offloaded_bytes = base.peak_bytes - est.peak_bytes
        if len(self._cache) > 8192:
            self._cache.clear()
        self._cache[key] = est
        return est

    def _default_other(self) -> int:
        if self.wl.other_bytes is not None:
            return int(self.wl.other_bytes)
        return int(methods.value("framework", "other_bytes"))

    def _variant(self, **changes: Any) -> MemoryModel:
        key = tuple(sorted(changes.items()))
        hit = self._variants.get(key)
        if hit is None:
            wl = self.wl.with_changes(batch=self.traced_batch, **changes)
            hit = MemoryModel(self.spec, wl, traced_step(self.spec, wl))
            self._variants[key] = hit
        return hit

    # ------------------------------------------------------------------ the estimate
    def _states(self, lay: StateLayout) -> States:
        hit = self._states_cache.get(lay)
        if hit is None:
            hit = model_states(self.pset, lay)
            if not self.training and lay.quant == "none":
                # inference keeps the weights as traced (fp32 under *-mixed autocast, 16-bit with 16-bit weights)
                prec = precision_of(lay.precision)
                bpp = prec.compute_bytes if (prec.mixed and self.trace.workload.weights_16bit) else prec.traced_param_bytes
                hit.weights_bytes = int(sum(p.numel * bpp / self._tp_div(p, lay) for p in self.params
                                            if self._on_stage(p, lay)))
            self._states_cache[lay] = hit
        return hit

    def _fp8_copy_bytes(self, layout: Layout) -> int:
        """Bytes per linear-weight element of Transformer Engine's FP8 weight copies: a GPU target's fp8-mixed."""
        if self.trace.kernels != "cuda" or layout.precision != "fp8-mixed":
            return 0
        copies = int(methods.value("fp8", "weight_copy_bytes"))
        if self.training and self.wl.fp8_weights:  # the FP8 weight is its own cast: only the transpose is added
            copies -= int(methods.value("fp8", "primary_weight_bytes"))
        return copies

    def _expert_share(self, layout: Layout) -> float:
        """The trainable parameters one device of ``layout`` holds, as a share of what splitting all of them by tp
        alone leaves: routed experts are split over ep × expert-tp ranks instead (1 without expert parallelism)."""
        if layout.ep == 1 and layout.expert_tp == layout.tp:
            return 1.0
        key = (layout.tp, layout.ep, layout.expert_tp)  # once per split: the planner asks for every layout
        if key not in self._expert_shares:
            trainable = [p for p in self.params if p.trainable]
            by_tp = sum(p.numel / layout.tp for p in trainable)
            held = sum(p.numel / (layout.expert_tp * layout.ep if p.expert else layout.tp) for p in trainable)
            self._expert_shares[key] = held / by_tp if by_tp else 1.0
        return self._expert_shares[key]

    @staticmethod
    def _tp_div(p: ParamInfo, lay: StateLayout) -> float:
        d = lay.tp_of(p) if p.matrix else 1
        return d * (lay.ep if p.expert else 1)

    @staticmethod
    def _on_stage(p: ParamInfo, lay: StateLayout) -> bool:
        return lay.stage_groups is None or p.group in lay.stage_groups or (p.tied_output and lay.last_stage)

    def _stages(self, layout: Layout) -> list[tuple[int | None, frozenset[int] | None, bool, float]]:
        """(stage index, its groups, is last, micro-batches in flight) for the stages worth evaluating: the
        first, the first of the biggest, the last (``workload.stage_layers``: the ends hold fewer blocks)."""
        if layout.pp == 1:
            return [(None, None, True, 1.0)]
        L = self.profile.n_blocks
        p, v = layout.pp, layout.vp
        sizes = stage_layers(L, p)
        bounds = [0]
        for size in sizes:
            bounds.append(bounds[-1] + size)
        out = []
        for k in sorted({0, sizes.index(max(sizes)), p - 1}):
            groups = self.profile.group_of_block_range(bounds[k], bounds[k + 1], k == 0, k == p - 1)
            out.append((k, groups, k == p - 1, inflight_micro_batches(p, v, k, layout.grad_accum)
                        if self.training else 1.0))
        return out

    def _estimate(self, layout: Layout, other: int, quant: str, gen: int) -> MemoryEstimate:
        best: MemoryEstimate | None = None
        for stage, groups, last, inflight in self._stages(layout):
            est = self._estimate_stage(layout, other, quant, gen, stage, groups, last, inflight)
            if best is None or est.peak_bytes > best.peak_bytes:
                best = est
        assert best is not None
        return best

    def _coefficients(self, layout: Layout, st: States) -> tuple[list[float], dict[str, Any]]:
        prof = self.profile
        rb = layout.micro_batch / self.traced_batch / layout.cp  # context parallelism: 1/cp of each sequence
        tp = layout.tp
        repl_div = tp if layout.sequence_parallel else 1
        pr = precision_of(layout.precision).compute_bytes / precision_of(self.traced_precision).compute_bytes
        c = [0.0] * N
        c[C["act_shard_cd"]] = rb * pr / tp
        c[C["act_shard_o"]] = rb / tp
        c[C["act_repl_cd"]] = rb * pr / repl_div
        c[C["act_repl_o"]] = rb / repl_div
        c[C["sq"]] = rb * pr / tp
        c[C["head"]] = rb * pr / tp
        info: dict[str, Any] = {"batch_ratio": rb, "precision_ratio": pr}
        if self.mode == "generate":
            seq = prof.seq or 1
            c[C["head"]] /= seq  # generate keeps the last position's logits only
        resident = False
        if self.training and not self.traced_zo:
            resident = (st.gradients_resident or layout.grad_accum > 1 or layout.pp > 1)
            if not resident and prof.grad_bytes:
                c[C["grad"]] = st.gradients_bytes / prof.grad_bytes
        info["gradients_resident"] = resident
        traced_mixed = precision_of(self.traced_precision).mixed
        c[C["cast"]] = 0.0 if (traced_mixed and self.training) else 1.0 / tp
        opt_const = 0.0
        if self.training and st.optimizer_on_device:
            shard = layout.zero_shards * tp
            gpu = self.trace.kernels == "cuda"
            framework = layout.zero >= 1 or layout.tp > 1 or layout.pp > 1
            foreach = gpu and methods.has("optimizer_temporaries_foreach", layout.optimizer)
            if gpu and framework and methods.has("optimizer_temporaries_fused", layout.optimizer):
                # ZeRO, TP and PP layouts are DeepSpeed's or Megatron-LM's, whose fused multi-tensor optimizers
                # work in chunks: no full-size temporaries (data file [optimizer_temporaries_fused])
                largest = self._largest_trainable
                opt_const = methods.value("optimizer_temporaries_fused", layout.optimizer) * largest * 4 / shard
                info["optimizer_temporaries_modeled"] = True
                info["optimizer_fused"] = True
            elif layout.optimizer == self.traced_optimizer:
                # foreach temporaries span every parameter this device holds (a pipeline stage 1/pp of them,
                # expert parallelism 1/ep of the experts); the single-tensor loop's, one tensor at a time, do not
                # shrink with the stage
                c[C["opt"]] = 1.0 / (shard * (layout.pp if foreach else 1)) * self._expert_share(layout)
            elif foreach:
                total = sum(p.numel for p in self.params if p.trainable)
                opt_const = (methods.value("optimizer_temporaries_foreach", layout.optimizer) * total * 4
                             / (shard * layout.pp)) * self._expert_share(layout)
                info["optimizer_temporaries_modeled"] = True
            else:
                largest = self._largest_trainable
                opt_const = methods.value("optimizer_temporaries", layout.optimizer) * largest * 4 / shard
                info["optimizer_temporaries_modeled"] = True
        info["optimizer_temporaries_const"] = opt_const
        return c, info

    def _hpz_ranks(self, layout: Layout) -> int | None:
        """ZeRO++: the data-parallel ranks that share one node (ranks tp apart, tensor-parallel ranks adjacent), over
        which hpZ partitions its secondary weight copy; the device's node size from the catalog (8 without a
        device)."""
        if not (self.training and layout.zeropp and layout.zero >= 3):
            return None
        per_node = 8
        if self.wl.hardware:
            per_node = int(get_device(self.wl.hardware).devices_per_node or 8)
        return max(1, min(layout.dp * layout.cp, per_node // layout.tp))

    def _estimate_stage(self, layout: Layout, other: int, quant: str, gen: int, stage: int | None,
                        groups: frozenset[int] | None, last: bool, inflight: float) -> MemoryEstimate:
        prof = self.profile
        training = self.training
        lay = StateLayout(precision=layout.precision, optimizer=layout.optimizer, training=training,
                          zero=layout.zero if training else 0, dp=layout.dp * layout.cp, tp=layout.tp, ep=layout.ep,
                          etp=layout.etp,
                          shard_group=layout.shard_group * layout.cp if layout.shard_group else None,
                          offload=layout.offload, quant=quant, lora=self.lora, stage_groups=groups, last_stage=last,
                          fp8_copy_bytes=self._fp8_copy_bytes(layout), hpz_ranks=self._hpz_ranks(layout),
                          fp32_weights=training and self.wl.mixed_weights_at(layout.zero, layout.model_split) == "fp32",
                          fp32_grads=training and self.wl.fp32_main_grads_at(layout.zero, layout.model_split),
                          fp8_weights=training and self.wl.fp8_weights)
        st = self._states(lay)
        c, info = self._coefficients(layout, st)
        notes: list[str] = list(st.notes)
        stack_note = describe_fusion(prof.fusion, self._fusion_why, prof.fused_dropped, prof.fused_kept,
                                     self.traced_batch, prof.fused_loss) if training else ""
        if stack_note:
            notes.append(stack_note)
        if info.get("optimizer_fused"):
            notes.append(f"optimizer: with ZeRO, tensor or pipeline parallelism on a GPU, {layout.optimizer} is "
                         "DeepSpeed's or Megatron-LM's fused multi-tensor kernel (chunked: no full-size "
                         "temporaries), not torch.optim's foreach step")
        if training and layout.tp > 1:
            given = self.wl.sequence_parallel is not None and self.wl.tp == layout.tp
            notes.append(f"tensor parallelism {layout.tp} {'with' if layout.sequence_parallel else 'without'} sequence "
                         "parallelism: " + ("norms, dropout and the residual stream are sharded too (Korthikanti et al. "
                                            "2022, Sec. 4.2.2)" if layout.sequence_parallel else
                                            "norms, dropout after the row-parallel linears and the residual stream "
                                            "are replicated")
                         + ("" if given else "; the default under --tp, as plan assumes (--no-sequence-parallel "
                                             "to turn it off)"))

        convert_full = training and layout.recompute == "full" and self.traced_recompute != "full"
        alpha = layout.offload_activations if training and not self.traced_zo else 0.0
        mat, phases = prof.matrix(groups, recompute_full=convert_full, offload=alpha)
        # bytes one micro-batch keeps on the host under activation offload (see the module docstring)
        off_vec = prof.offload_vector(groups, convert_full) if alpha else [0.0] * N
        offloaded_mb = alpha * sum(off_vec[k] * c[k] for k in ACT_CLASSES)
        sq_extra = 0.0
        if training and layout.recompute == "selective" and self.traced_recompute != "full":
            sq_extra = prof.sq_per_block() * c[C["sq"]]
            c[C["sq"]] = 0.0
        weights = np.array([c, [c[k] if k in ACT_CLASSES else 0.0 for k in range(N)]], dtype=np.float64).T
        series = mat @ weights  # [points, 2]: everything on the timeline, and the activations alone
        i = int(np.argmax(series[:, 0]))
        timeline_peak = float(series[i, 0])
        act_peak = float(series[:, 1].max())
        row = mat[i].tolist()

        # micro-batches in flight on a pipeline stage: each holds what one micro-batch saves
        inflight_bytes = 0.0
        if inflight > 1:
            saved = prof.recompute_kept_vector(groups) if layout.recompute == "full" else prof.saved_vector(groups)
            if layout.recompute == "selective":
                saved = list(saved)
                saved[C["sq"]] = 0.0
            inflight_bytes = (inflight - 1) * (sum(saved[k] * c[k] for k in ACT_CLASSES) - offloaded_mb)
            if layout.vp > 1:
                notes.append(f"pipeline stage {stage}: {inflight:.3g} micro-batches' activations in flight under "
                             f"interleaved 1F1B with vp={layout.vp} (Megatron's warm-up (pp − stage − 1)·2 + (vp − 1)·pp "
                             f"+ 1 model chunks of 1/vp stage each; the first stage holds (1 + (pp−1)/(pp·vp))·pp "
                             "micro-batches: Korthikanti et al. 2022, Sec. 4.2.3)")
            else:
                notes.append(f"pipeline stage {stage}: {inflight:g} micro-batches in flight under 1F1B "
                             f"(min(pp − stage, grad_accum)); {inflight - 1:g} more hold their saved activations")
        inputs = self.trace.input_bytes * info["batch_ratio"]
        dequant = 0.0
        if self.lora and quant != "none" and training:
            biggest = self._largest_frozen_linear
            dequant = biggest * precision_of(layout.precision).compute_bytes / layout.tp
            notes.append("QLoRA: one base weight at a time is dequantized to the compute dtype for its matmul "
                         "(bitsandbytes), a transient counted in activations")
        act_extra = inflight_bytes + inputs + sq_extra + dequant

        kv = 0
        decode_total = None
        if self.mode == "generate":
            kv, prompt_kv, decode_act = self._kv(layout, gen, act_peak)
            prefill = timeline_peak + act_extra + prompt_kv
            decode = kv + decode_act + inputs
            decode_total = decode
            if decode > prefill:
                timeline_peak, act_extra, phase = decode_act, inputs, "decode"
            else:
                phase = "prefill"
            kv_at_peak = kv if phase == "decode" else prompt_kv
        else:
            phase = phases[i]
            kv_at_peak = 0

        grads_resident = info["gradients_resident"]
        grads_dev = st.gradients_bytes if (training and not self.traced_zo) else 0
        grad_at_peak = grads_dev if grads_resident else row[C["grad"]] * c[C["grad"]]
        if self.mode == "generate" and phase == "decode":
            act_at_peak = timeline_peak + act_extra
            opt_tmp = cast_at = 0.0
            grad_at_peak = 0.0
        else:
            act_at_peak = sum(row[k] * c[k] for k in ACT_CLASSES) + act_extra
            opt_tmp = row[C["opt"]] * c[C["opt"]] + info["optimizer_temporaries_const"]
            cast_at = row[C["cast"]] * c[C["cast"]]
        peak = (st.weights_bytes + st.optimizer_bytes + grad_at_peak + act_at_peak + opt_tmp + cast_at
                + kv_at_peak + other)
        activations = max(act_peak + act_extra, act_at_peak)
        if self.mode == "generate":
            activations = max(act_peak + inputs, (decode_total or 0) - kv)
        at_peak = {
            "weights_bytes": st.weights_bytes, "optimizer_bytes": st.optimizer_bytes,
            "gradients_bytes": int(round(grad_at_peak)), "activations_bytes": int(round(act_at_peak)),
            "optimizer_temporaries_bytes": int(round(opt_tmp)), "weight_casts_bytes": int(round(cast_at)),
            "kv_cache_bytes": int(kv_at_peak), "other_bytes": other,
        }
        peak_int = int(round(peak))
        act_host = int(round(offloaded_mb * inflight))
        if alpha:
            notes.append(f"activation offload: {alpha:g} of each block's activations kept for backward "
                         f"({'its output, the next block input' if layout.recompute == 'full' else 'its saved tensors'}) "
                         "leaves the device when the block's forward ends and returns when its backward starts "
                         "(MEMO's per-layer swap); the last block's output, embedding, head and loss stay; "
                         f"{plain_number(offloaded_mb / 1e9)} GB per micro-batch, over the host link twice")
        breakdown: dict[str, Any] = dict(st.breakdown)
        breakdown.update(micro_batch=layout.micro_batch, traced_batch=self.traced_batch,
                         inputs_bytes=int(round(inputs)), inflight_activations_bytes=int(round(inflight_bytes)),
                         inflight_micro_batches=round(inflight, 4))
        if quant != "none" and "quantized_weights_bytes" in breakdown and breakdown["quantized_weights_bytes"]:
            q = breakdown["quantized_weights_bytes"]
            quantized_bf16 = sum(2 * p.numel / self._tp_div(p, lay) for p in self.params
                                 if self._on_stage(p, lay) and quantizable(p) and (not p.trainable or not self.training))
            breakdown["quantized_compression_vs_bf16_ratio"] = round(quantized_bf16 / q, 4) if q else None
            total_w = breakdown.get("weights_full_bytes") or st.weights_bytes
            breakdown["weights_compression_vs_bf16_ratio"] = round(breakdown["weights_bf16_bytes"] / total_w, 4) if total_w else None
        prov = self._provenance(layout, st, c, convert_full or sq_extra > 0 or inflight > 1 or alpha > 0, other)
        return MemoryEstimate(
            weights_bytes=st.weights_bytes, gradients_bytes=grads_dev, optimizer_bytes=st.optimizer_bytes,
            activations_bytes=int(round(activations)), kv_cache_bytes=int(kv), other_bytes=other, peak_bytes=peak_int,
            host_bytes=st.host_bytes + act_host, nvme_bytes=st.nvme_bytes, offload_activations=alpha,
            activations_host_bytes=act_host,
            activation_offload_traffic_bytes=int(round(2 * offloaded_mb * layout.grad_accum)), peak_phase=phase, stage=stage, at_peak=at_peak,
            breakdown=breakdown, provenance=prov, assumptions=notes, layout=layout,
            stack_note=stack_note if prof.fused_dropped > 0 else "")

    def _kv(self, layout: Layout, gen: int, act_peak: float) -> tuple[int, int, float]:
        f = self.facts
        layers, kv_heads, head_dim = f.get("layers"), f.get("kv_heads"), f.get("head_dim")
        if not (layers and kv_heads and head_dim):
            raise UserError("--mode generate needs a decoder language model whose config gives layers, attention heads "
                            "and head size; this model has none")
        prompt = self.profile.seq or (self.wl.seq or 1)
        nbytes = precision_of(layout.precision).compute_bytes  # a 16-bit cache under *-mixed
        full = kv_cache_bytes(int(layers), int(kv_heads), int(head_dim), prompt + gen, layout.micro_batch, nbytes,
                              layout.tp, layout.pp)
        prompt_kv = kv_cache_bytes(int(layers), int(kv_heads), int(head_dim), prompt, layout.micro_batch, nbytes,
                                   layout.tp, layout.pp)
        decode_act = act_peak / max(prompt, 1)
        return full, prompt_kv, decode_act

    def _provenance(self, layout: Layout, st: States, c: list[float], converted: bool, other: int) -> dict[str, str]:
        tr = self.trace
        prov = {
            "weights_bytes": "counted" if st.weights_bytes == tr.param_bytes else "modeled",
            "gradients_bytes": "counted" if st.gradients_bytes == tr.grad_bytes else "modeled",
            "optimizer_bytes": "counted" if (st.optimizer_bytes == tr.optimizer_state_bytes
                                             and layout.optimizer == self.traced_optimizer
                                             and layout.optimizer != "adam-8bit") else "modeled",
            "kv_cache_bytes": "modeled",
            "other_bytes": "assumed",
            "host_bytes": "modeled",
            "nvme_bytes": "modeled",
            "activations_host_bytes": "modeled",
            "activations_offloaded_bytes": "modeled",
            "activation_offload_traffic_bytes": "modeled",
        }
        unit = all(abs(c[k] - 1.0) < 1e-12 for k in ACT_CLASSES) and not converted
        prov["activations_bytes"] = "counted" if unit and self.mode != "generate" else "modeled"
        all_counted = all(prov[k] == "counted" for k in ("weights_bytes", "gradients_bytes", "optimizer_bytes",
                                                         "activations_bytes"))
        prov["peak_bytes"] = "counted" if (all_counted and other == 0) else "modeled"
        return prov


# ---------------------------------------------------------------------- functions

def memory_model(spec: ModelSpec, wl: Workload, trace: Trace) -> MemoryModel:
    """Classify a trace once; then ``.per_device(layout)`` for any layout (fast: no re-tracing)."""
    return MemoryModel(spec, wl, trace)


def device_bytes_for(wl: Workload) -> tuple[int | None, str, str]:
    """(bytes, provenance, source) of one device's memory: --device-memory, else --hardware's catalog entry."""
    if getattr(wl, "device_memory", None):
        return int(wl.device_memory), "assumed", "--device-memory"
    if wl.hardware:
        dev = get_device(wl.hardware)
        src = dev.sources.get("memory_bytes", {})
        return int(dev.memory_bytes), str(src.get("provenance", "published")), dev.source_of("memory_bytes")
    return None, "", ""


def estimate_memory(spec: ModelSpec, wl: Workload, trace: Trace, device_bytes: int | None = None,
                    other_bytes: int | None = None) -> MemoryEstimate:
    """Per-device memory of the workload as given (its layout, micro-batch and mode)."""
    model = memory_model(spec, wl, trace)
    est = model.per_device(model.layout(), other_bytes=other_bytes)
    prov = "assumed"
    if device_bytes is None:
        device_bytes, prov, _ = device_bytes_for(wl)
    return est.with_device(device_bytes, prov or "assumed")


def max_batch(spec: ModelSpec, wl: Workload, device_bytes: int, other_bytes: int | None = None,
              limit: int = 1 << 20, trace: Trace | None = None, probes: list[tuple[int, int, bool, bool]] | None = None
              ) -> int:
    """The largest per-device micro-batch whose peak fits in ``device_bytes`` (see :func:`_max_batch`)."""
    with phase(f"searching the largest micro-batch of {spec.name} (a trace per candidate)"):
        return _max_batch(spec, wl, device_bytes, other_bytes, limit, trace, probes)


def _max_batch(spec: ModelSpec, wl: Workload, device_bytes: int, other_bytes: int | None = None,
               limit: int = 1 << 20, trace: Trace | None = None, probes: list[tuple[int, int, bool, bool]] | None = None
               ) -> int:
    """The largest per-device micro-batch whose peak fits in ``device_bytes``.

    The search starts from the memory model's guess (one trace, scaled), then gallops — doubling its
    step — away from the guess until a micro-batch that fits and one that does not bracket the answer,
    then bisects. Each verdict is the memory model's peak of a trace at that very micro-batch: a real
    trace for the first probes; once two real traces at micro-batches of 2 or more exist, a trace derived
    from them (``trace/scaling.py``: every figure on the line through the two, where the two traces are
    the same step), which is exact for a step affine in the batch. The answer ``b`` is then confirmed by
    real traces at ``b`` (fits) and ``b + 1`` (does not); if either disagrees with its derived verdict,
    the search runs again on real traces only, so a model whose memory is not linear in the batch is
    still answered correctly, and the answer always has a real trace at ``b`` that fits and one at
    ``b + 1`` that does not (unless ``b`` is ``limit``). Returns 0 when one sample does not fit.
    ``trace`` may be a trace of ``wl`` already made (it is reused); ``probes``, if given, receives
    (micro_batch, peak_bytes, traced_now, derived) for each verdict.
    """
    base_layout = Layout.from_workload(wl)
    verdicts: dict[int, int] = {}
    models: dict[int, MemoryModel] = {}
    real: dict[int, Trace] = {}
    derived: set[int] = set()
    derive = [True]

    def probe_workload(mb: int) -> Workload:
        return wl.with_changes(batch=mb, micro_batch=None, dp=1, grad_accum=1, devices=None)

    def trace_at(mb: int) -> tuple[Trace, bool, bool]:
        """(trace at mb, made now, derived)."""
        probe_wl = probe_workload(mb)
        bases = sorted(b for b in real if b >= 2)  # batch 1 may run another step (a squeezed loss): not a base
        if derive[0] and len(bases) >= 2 and mb not in real:
            near = sorted(bases, key=lambda b: (abs(b - mb), b))[:2]
            got = derive_at_batch(real[min(near)], real[max(near)], mb)
            if got is not None:
                return replace(got, workload=probe_wl), False, True
        # the trace of one device's micro-batch: the layout is the memory model's to apply
        got = traced_step(spec, probe_wl)
        real[mb] = got
        return got, True, False

    def peak_at(mb: int, tr: Trace | None = None, now: bool = False) -> int:
        if mb in verdicts:
            return verdicts[mb]
        is_derived = False
        if tr is None:
            tr, now, is_derived = trace_at(mb)
        else:
            real[mb] = tr
        traced = tr.memory.batch or mb
        if traced != mb:
            raise UserError(f"asked for a batch of {mb} but the model's inputs have {traced} samples (its inputs "
                            "callable ignores the batch), so there is no largest batch to search for")
        model = MemoryModel(spec, wl, tr)
        models[mb] = model
        est = model.per_device(replace(base_layout, micro_batch=mb), other_bytes=other_bytes)
        verdicts[mb] = est.peak_bytes
        if is_derived:
            derived.add(mb)
        if probes is not None:
            probes.append((mb, est.peak_bytes, now, is_derived))
        return est.peak_bytes

    def fits(mb: int) -> bool:
        return peak_at(mb) <= device_bytes

    def confirmed(answer: int) -> bool:
        """Real traces at the answer and the next micro-batch agree with their derived verdicts."""
        for mb in (answer, answer + 1):
            if mb in derived and 1 <= mb <= limit:
                said = verdicts.pop(mb) <= device_bytes
                derived.discard(mb)
                tr = traced_step(spec, probe_workload(mb))
                if (peak_at(mb, tr, now=True) <= device_bytes) != said:
                    return False
        return True

    b0 = min(base_layout.micro_batch, limit)
    reuse = trace if (trace is not None and trace.memory.batch == b0) else None
    p0 = peak_at(b0, reuse)
    # the starting guess: the memory model's own scaling from the first trace (then verified by traces)
    p1 = models[b0].per_device(replace(base_layout, micro_batch=b0 + 1), other_bytes=other_bytes).peak_bytes
    slope = max(p1 - p0, 1)
    guess = max(1, min(limit, b0 + math.floor((device_bytes - p0) / slope)))
    answer = _search(fits, b0, p0 <= device_bytes, guess, limit)
    if not confirmed(answer):
        derive[0] = False
        for mb in list(derived):
            verdicts.pop(mb, None)
        derived.clear()
        answer = _search(fits, b0, p0 <= device_bytes, guess, limit)
    return answer


def _search(fits: Any, b0: int, b0_fits: bool, guess: int, limit: int) -> int:
    """Gallop from the guess, then bisect: the largest micro-batch that ``fits`` (0: none; ``limit``: all)."""
    lo: int | None = b0 if b0_fits else None
    hi: int | None = None if b0_fits else b0
    if guess != b0 and (lo is None or guess > lo) and (hi is None or guess < hi):
        if fits(guess):
            lo = guess
        else:
            hi = guess
    step = 1
    while hi is None:  # gallop up
        if lo >= limit:
            return limit
        cand = min(limit, lo + step)
        if fits(cand):
            lo = cand
            step *= 2
        else:
            hi = cand
    step = 1
    while lo is None:  # gallop down
        if hi <= 1:
            return 0
        cand = max(1, hi - step)
        if fits(cand):
            lo = cand
        else:
            hi = cand
            step *= 2
    while hi - lo > 1:  # bisect
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


__all__ = ["CLASSES", "PRE", "POST", "Layout", "MemoryEstimate", "MemoryModel", "estimate_memory", "max_batch",
           "memory_model", "micro_batch_of"]
