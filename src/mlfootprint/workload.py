"""The Workload (what is run, how, on how many devices) and the Layout (how one step is spread over devices).

Both are frozen and validated once, when they are made: every check of a degree, a stage or a choice lives
here, and the API and the command line get the same one-line messages. A Workload records which fields the
user gave (``given``); every other field is a default, marked ``assumed`` in reports.

    import mlfootprint as mf
    wl = mf.Workload(batch=8, seq=1024, mode="train", precision="bf16-mixed", hardware="a100-80gb")
    wl.given                      # frozenset({'batch', 'seq', 'mode', 'precision', 'hardware'})
    wl.with_changes(batch=16)     # a new Workload; batch joins ``given``
"""
from __future__ import annotations

import functools
import math
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any

from .core.errors import UserError, suggest
from .core.precision import PRECISION_NAMES, Precision, precision
from .core.validate import MAX_COUNT

MODES = ("inference", "train", "generate")
# Options only a training step has. Given without --mode, they make the workload a training one: the verbs that
# default to inference (analyze, count, memory) would otherwise drop them unseen. Each counts when given at a value
# other than its default; --optimizer when given at all (it names the optimizer of a training step).
TRAINING_ONLY = ("optimizer", "zero", "zeropp", "shard_group", "recompute", "grad_accum", "grad_reduce",
                 "grad_reduce_dtype", "tp_backward", "zero_impl", "offload_activations", "lora_rank", "fp8_weights")
PRECISIONS = PRECISION_NAMES
OPTIMIZERS = ("sgd", "sgd-momentum", "adam", "adamw", "adafactor", "adam-8bit", "lion", "zo-sgd")
# selective: Korthikanti et al.'s attention core; selective-op: PyTorch selective activation checkpointing with
# TorchTitan's 'op' policy (trace/transforms.py)
RECOMPUTE = ("none", "selective", "selective-op", "full")
OFFLOAD = ("none", "cpu", "nvme")
QUANT = ("none", "int8", "int4", "fp8")
# attention of Hugging Face models: transformers' SDPA (fused kernels), the same SDPA timed as FlashAttention-2
# (PyTorch's flash backend, which SDPA has put before cuDNN attention on Hopper in some releases and builds), its
# eager code, or Megatron-LM's unfused kernels of before FlashAttention (models/unfused_attention.py)
ATTENTION = ("sdpa", "flash2", "eager", "unfused")
SCHEDULES = ("1f1b", "zero-bubble")  # pipeline schedules; 1F1B is interleaved when vp > 1
# context parallelism: ring attention (Megatron CP), Llama 3's K/V all-gather, DeepSpeed-Ulysses
CP_COMM = ("ring", "all-gather", "all-to-all")
# when the data-parallel gradient reduction runs: bucket by bucket under the backward (PyTorch DDP, FSDP, DeepSpeed,
# Megatron-LM with --overlap-grad-reduce), or after the last micro-batch's backward (Megatron-LM's default)
GRAD_REDUCE = ("overlap", "after-backward")
# how the backward's tensor-parallel collectives run: each column-parallel linear's input-gradient all-reduce (under
# sequence parallelism its reduce-scatter, and the re-gather of the input it saved sharded) under that linear's own
# GEMMs (Megatron-LM since its async all-reduce of 2021-09, Megatron-Core, Transformer Engine), or each after the
# linear's backward, on the critical path (PyTorch tensor parallelism (DTensor), Megatron-LM before 2021-09); auto:
# the target stack's (overlap on the fused stack, Megatron / Transformer Engine; exposed on PyTorch's eager or
# compiled stack)
TP_BACKWARD = ("auto", "overlap", "exposed")
# which ZeRO-3 runs: PyTorch's FSDP2, which copies each weight all-gather's buffer into the parameters and the gradients
# into the reduce-scatter buffer on the compute stream, or DeepSpeed's ZeRO-3, which gathers into and reduces from
# buffers in place (as Megatron's distributed optimizer does); auto: FSDP2 on PyTorch's eager or compiled stack,
# in place on the fused stack and under ZeRO++ (DeepSpeed's)
ZERO_IMPL = ("auto", "fsdp2", "deepspeed")
# how TP-comm overlap hides the tensor-parallel collectives: Megatron/Transformer Engine's userbuffers (each GEMM split
# into chunks, a chunk's collective under the next chunk's GEMM), or PyTorch's async tensor parallelism (the
# micro-pipelined collective matmuls torch.compile makes; TorchTitan's enable_async_tensor_parallel)
TP_OVERLAP = ("userbuffers", "async-tp")
# the dtype the data-parallel gradients are reduced in under mixed precision: auto (the gradients' own dtype: fp32
# under autocast over fp32 weights, which PyTorch DDP reduces as they are, unless ZeRO-3, whose FSDP param_dtype makes
# them 16-bit; 16-bit with 16-bit working weights, DeepSpeed's communication_data_type default), the 16-bit compute
# dtype (a DDP compression hook), or fp32 (Megatron-LM and NeMo under bf16, TorchTitan)
GRAD_REDUCE_DTYPE = ("auto", "compute", "fp32")
#: Kernel-fusion stacks of the step-time and memory models (analysis/predict/fusion.py, analysis/memory/fusion.py);
#: None: the target stack's default.
FUSION = ("none", "fused", "compiled")
# The dtype of the model's own weights under mixed precision: fp32, cast operator by operator by autocast (PyTorch
# AMP: Hugging Face Trainer, Lightning), or 16-bit working copies of fp32 master weights that the optimizer keeps
# (Megatron-LM's Float16Module, DeepSpeed's bf16/fp16 engines, FSDP's param_dtype, NeMo): no autocast, 16-bit
# activations and residual stream.
MIXED_WEIGHTS = ("auto", "fp32", "16-bit")

# Sanity bounds: far above anything real, low enough that arithmetic on them stays exact and fast.
_MAX_COUNT = MAX_COUNT  # the one bound of core/validate.py
_MAX_TOKENS = 1e18  # tokens to train on: 100,000× the largest published runs
_MIN_DEVICE_MEMORY, _MAX_DEVICE_MEMORY = 2**10, 2**50  # a device's memory: 1 KiB to 1 PiB


def _check_choice(option: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UserError(f"unknown --{option} {value!r}; choose one of: {', '.join(allowed)}.{suggest(str(value), allowed)}")


def _check_expert_tp(etp: int | None, tp: int, ep: int) -> None:
    if etp is None:
        return
    _check_positive("etp", etp, optional=False)
    if ep <= 1:
        raise UserError(f"--etp {etp} splits the routed experts of expert parallelism; add --ep (2 or more) with a "
                        "mixture-of-experts model, or drop --etp")
    if tp % etp:
        raise UserError(f"--etp {etp} must divide --tp {tp} (the experts split over a part of the tensor-parallel "
                        f"ranks); use a divisor of {tp}")


def _check_positive(option: str, value: Any, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"--{option} must be a positive whole number, got {value!r}")
    if value > _MAX_COUNT:
        raise UserError(f"--{option} {value} is beyond any real workload (at most {_MAX_COUNT:,})")


@dataclass(frozen=True, init=False)
class Workload:
    """What is run, how, and on how many devices; every field has a default.

    Args (all keyword-only; those passed are recorded in ``given``):
        batch: global batch, samples per optimizer step (default 1).
        seq: sequence length; None takes the model's own (its context length, at most 4096).
        mode: ``inference``, ``train`` or ``generate``. Not given, an option only a training step has
            (``TRAINING_ONLY``: ``optimizer``, ``zero`` 1-3, ``recompute``, ``grad_accum``, ``lora_rank``, ...) makes it
            ``train`` (``training_implied_by`` names them; the report states it).
        precision: ``fp32``, ``bf16``, ``fp16``, ``bf16-mixed``, ``fp16-mixed`` or ``fp8-mixed``. Not given, the
            verbs take ``bf16-mixed`` (training) or ``bf16`` (serving) on a device whose catalog entry has a bf16
            peak, ``fp32`` otherwise (``verbs/runnable.py``, stated in the report's assumptions).
        optimizer: ``sgd``, ``sgd-momentum``, ``adam``, ``adamw``, ``adafactor``, ``adam-8bit``, ``lion``, ``zo-sgd``.
        attention: ``sdpa`` (fused; on Hopper GPUs timed as cuDNN's kernel, the attention of Megatron / NeMo /
            Transformer Engine stacks), ``flash2`` (the same trace, timed as FlashAttention-2: PyTorch's flash
            backend, which SDPA has put before cuDNN attention on Hopper in some releases and builds; torch 2.11
            with CUDA 13 runs cuDNN's), ``eager``
            (transformers' eager code) or ``unfused`` (Megatron-LM's attention before FlashAttention: 16-bit
            scores, one fused scale-mask-softmax kernel, dropout, two batched GEMMs) for Hugging Face models.
        gen_tokens: tokens generated per sequence in ``generate`` mode.
        micro_batch: samples per device per forward/backward (default: the per-replica batch / grad_accum).
        grad_accum: micro-batches accumulated per optimizer step.
        recompute: activation recomputation, ``none``, ``selective`` (Korthikanti et al.'s attention core),
            ``selective-op`` (PyTorch selective activation checkpointing with TorchTitan's op policy: every other
            matmul's and the attention kernel's outputs kept, the rest of each block re-run) or ``full``.
        zero: ZeRO stage 0-3; zeropp: ZeRO++ communication (with stage 3).
        shard_group: FSDP/HSDP sharding group: ZeRO shards inside groups of this many data-parallel ranks and
            replicates across the groups (None: the whole data-parallel group).
        tp_comm_overlap: tensor-parallel collectives overlapped with the GEMMs (Megatron/Transformer Engine
            ``--tp-comm-overlap``); default False: exposed.
        tp_overlap: how ``tp_comm_overlap`` hides them: ``userbuffers`` (default: Megatron/Transformer Engine's
            chunked GEMMs, hidden up to the forward and backward compute) or ``async-tp`` (PyTorch's async tensor
            parallelism under torch.compile, as TorchTitan runs it: the calibrated share of that hidden,
            analysis/predict/data/step_model.toml [communication] async_tp_hidden_share).
        pp_comm_overlap: pipeline sends and receives of the interleaved schedule (``vp`` > 1) overlapped with the
            steady state's compute, fill and flush exposed (Megatron-Core ``overlap_p2p_comm``, NeMo's default
            with virtual stages); default False: exposed.
        grad_reduce: when the data-parallel gradient reduction runs: ``overlap`` (default: bucket by bucket under
            the backward, as PyTorch DDP, FSDP and DeepSpeed do) or ``after-backward`` (after the last
            micro-batch's backward, exposed: Megatron-LM without ``--overlap-grad-reduce``).
        tp_backward: how the backward's tensor-parallel collectives run: ``overlap`` (Megatron-LM's since its async
            all-reduce of 2021-09, Megatron-Core's and Transformer Engine's: a column-parallel linear's
            input-gradient all-reduce runs under its weight-gradient GEMM; under sequence parallelism its
            reduce-scatter does, and the re-gather of the input it saved sharded runs under its input-gradient GEMM),
            ``exposed`` (PyTorch tensor parallelism (DTensor), Megatron-LM before 2021-09: each after the linear's
            backward, on the critical path) or ``auto`` (default: the target stack's, ``overlap`` on the fused
            stack, ``exposed`` on PyTorch's eager or compiled one; the report says which). Training with ``tp`` > 1.
        zero_impl: which ZeRO-3 runs: ``fsdp2`` (PyTorch's FSDP2: each weight all-gather's buffer copied into the
            parameters, forward and backward, and the gradients copied into the reduce-scatter buffer, on the
            compute stream), ``deepspeed`` (DeepSpeed's ZeRO-3, and Megatron's: gathered into and reduced from
            buffers in place, no copies) or ``auto`` (default: ``fsdp2`` on PyTorch's eager or compiled stack,
            ``deepspeed`` on the fused stack and with ``zeropp``). Training with ``zero=3``.
        grad_reduce_dtype: the dtype the data-parallel gradient reduction moves under mixed precision: ``auto``
            (default: the gradients' own dtype, see ``grad_reduce_resolved``: fp32 under autocast over fp32 weights
            as PyTorch DDP reduces them, 16-bit under ZeRO-3 and with 16-bit working weights, fp32 under bf16 with
            16-bit weights from tensor, pipeline or context parallelism, as Megatron-LM forces), ``compute`` (the
            16-bit compute dtype: a DDP compression hook, DeepSpeed's and FSDP's defaults) or ``fp32`` (Megatron-LM
            and NeMo under bf16, which force ``--accumulate-allreduce-grads-in-fp32``; TorchTitan's
            ``mixed_precision_reduce``; the Llama 3 run). Without mixed precision gradients move in their own dtype.
        mixed_weights: under mixed precision, the dtype of the model's own weights: ``fp32`` (PyTorch AMP,
            autocast casting them operator by operator; Hugging Face Trainer, Lightning), ``16-bit`` (16-bit working
            weights and activations, the fp32 master copies kept with the optimizer: Megatron-LM, NeMo, DeepSpeed's
            bf16/fp16 engines, FSDP's ``param_dtype``) or ``auto`` (default: 16-bit under ZeRO-3, whose weights
            FSDP and DeepSpeed gather in 16 bits, and under tensor, pipeline or context parallelism, which the
            frameworks that run them (Megatron-LM, NeMo, DeepSpeed's pipeline engine, TorchTitan) run over 16-bit
            weights; fp32 otherwise; see ``mixed_weights_resolved``). Ignored without mixed precision.
        fp8_weights: FP8 primary weights under ``fp8-mixed`` training: the FP8 linear layers' working weights are
            held in FP8 (one byte an element, the fp32 master copies kept with the optimizer) and gathered in FP8 by
            data parallelism (NeMo's ``fp8_params``, Megatron-LM ``--fp8-param-gather`` over Transformer Engine's
            ``fp8_model_init``; torchao's ``enable_fsdp_float8_all_gather`` under FSDP2); default False: 16-bit
            working weights cast to FP8 after they are gathered. Implies 16-bit working weights for the other layers.
        etp: expert tensor-parallel size, a divisor of ``tp`` (Megatron Core's ``--expert-tensor-parallel-size``,
            MoE Parallel Folding): the routed experts split over ``etp`` ranks instead of ``tp``, and each
            expert-parallel group is ``ep`` ranks ``etp`` apart; default None: ``tp`` (ranks ``tp`` apart).
        offload: ``none``, ``cpu`` or ``nvme`` (ZeRO-Offload / ZeRO-Infinity).
        offload_activations: the fraction (0 to 1, or ``"all"``) of each transformer block's saved activations
            moved to host memory between the block's forward and its backward (MEMO, Zhao et al. 2025); training only.
        dp, tp, pp, ep: data, tensor, pipeline and expert parallel degrees.
        cp: context-parallel degree (each sequence split over cp devices); cp_comm: ``ring`` (ring attention,
            Megatron CP), ``all-gather`` (Llama 3's K/V all-gather, exposed) or ``all-to-all`` (DeepSpeed-Ulysses).
        vp: virtual pipeline stages per device (interleaved 1F1B when > 1); schedule: ``1f1b`` or
            ``zero-bubble`` (ZB-H1).
        sequence_parallel: Megatron sequence parallelism under tensor parallelism (norms, dropout and the
            residual stream sharded too); None takes what ``plan`` assumes: on when ``tp > 1``.
        lora_rank, lora_targets: LoRA adapters (rank; module-name parts to adapt).
        quant: weight quantization, ``none``, ``int8``, ``int4`` or ``fp8``.
        hardware: a device id of the hardware catalog; devices: how many.
        fusion: how the step-time model groups operators into kernels, and which activations the memory model
            keeps (a fused chain's inputs, not its intermediates): ``none`` (eager), ``fused`` (fused-kernel
            stacks: Megatron-LM / Transformer Engine) or ``compiled`` (torch.compile / XLA); None (default) takes
            the target stack's: ``fused`` on GPUs, ``compiled`` on TPUs, ``none`` on CPUs and calibrated profiles.
        tokens: tokens to train on (time to train).
        device_memory: bytes of one device's memory, when no ``hardware`` gives it.
        other_bytes: per-device framework overhead; None takes the memory model's default.
        user_hooks: run the hooks of the user's own model (module:callable or nn.Module) in the trace, as part of
            its computation (default True); False traces without them (a hook that only logs or reads values).
        given: the fields the user set; by default exactly the keywords passed.

    With ``devices`` and no ``dp``, the data-parallel degree is what is left: ``devices / (tp × pp × cp)``.
    Defaults: ``batch=1``, ``mode="inference"``, ``precision="fp32"``, ``optimizer="adamw"``,
    ``attention="sdpa"``, ``gen_tokens=128``, ``grad_accum=1``, ``recompute="none"``, ``zero=0``,
    ``zeropp=False``, ``offload="none"``, ``dp=tp=pp=ep=cp=vp=1``, ``schedule="1f1b"``, ``cp_comm="ring"``,
    ``tp_overlap="userbuffers"``, ``tp_backward="auto"``, ``quant="none"``, ``user_hooks=True``; the other fields
    None. A bad value raises :class:`~mlfootprint.core.errors.UserError` when the Workload is made. Frozen: change it
    with ``with_changes``.

    Example:
        >>> wl = mf.Workload(batch=8, seq=1024, mode="train", precision="bf16-mixed", hardware="a100-80gb")
        >>> sorted(wl.given)
        ['batch', 'hardware', 'mode', 'precision', 'seq']
        >>> wl.with_changes(batch=16).batch        # a new Workload; batch joins ``given``
        16
        >>> mf.Workload(devices=8, tp=2).dp         # dp follows from devices / (tp × pp)
        4
        >>> rep = mf.analyze("llama-2-7b", mf.Workload(mode="train", seq=4096, devices=8, hardware="h100-sxm"))
    """

    batch: int = 1
    seq: int | None = None
    mode: str = "inference"
    precision: str = "fp32"
    optimizer: str = "adamw"
    attention: str = "sdpa"
    gen_tokens: int = 128
    micro_batch: int | None = None
    grad_accum: int = 1
    recompute: str = "none"
    zero: int = 0
    offload: str = "none"
    offload_activations: float = 0.0
    zeropp: bool = False
    shard_group: int | None = None
    tp_comm_overlap: bool = False
    tp_overlap: str = "userbuffers"
    pp_comm_overlap: bool = False
    grad_reduce: str = "overlap"
    tp_backward: str = "auto"
    zero_impl: str = "auto"
    grad_reduce_dtype: str = "auto"
    mixed_weights: str = "auto"
    fp8_weights: bool = False
    etp: int | None = None
    dp: int = 1
    tp: int = 1
    pp: int = 1
    ep: int = 1
    cp: int = 1
    vp: int = 1
    schedule: str = "1f1b"
    cp_comm: str = "ring"
    sequence_parallel: bool | None = None
    lora_rank: int | None = None
    lora_targets: tuple[str, ...] | None = None
    quant: str = "none"
    hardware: str | None = None
    devices: int | None = None
    fusion: str | None = None
    tokens: float | None = None
    device_memory: int | None = None
    other_bytes: int | None = None
    user_hooks: bool = True
    given: frozenset[str] = field(default=frozenset(), compare=False)

    def __init__(self, **kwargs: Any) -> None:
        names = {f.name for f in fields(self)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise UserError(f"Workload has no field {unknown[0]!r}.{suggest(unknown[0], names)}")
        given = kwargs.pop("given", None)
        for f in fields(self):
            if f.name == "given":
                continue
            value = kwargs.get(f.name, f.default if f.default is not MISSING else None)
            object.__setattr__(self, f.name, value)
        if isinstance(self.lora_targets, str):
            object.__setattr__(self, "lora_targets", tuple(t for t in self.lora_targets.split(",") if t))
        elif self.lora_targets is not None:
            object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        object.__setattr__(self, "given", frozenset(kwargs if given is None else given))
        object.__setattr__(self, "offload_activations", offload_fraction(self.offload_activations))
        if self.training_implied_by:
            object.__setattr__(self, "mode", "train")
        self._check()
        if self.devices is not None and "dp" not in self.given:
            object.__setattr__(self, "dp", self.devices // self.model_split)
        if self.shard_group is not None and self.dp % self.shard_group:
            raise UserError(f"--shard-group {self.shard_group} does not divide the {self.dp} data-parallel ranks; "
                            f"use a divisor of {self.dp}")
        if self.micro_batch is not None and "batch" in self.given and self.micro_batch * self.dp > self.batch:
            raise UserError(f"--micro-batch {self.micro_batch} on each of {self.dp} data-parallel replica(s) is more "
                            f"than the --batch {self.batch} of a step; give --micro-batch "
                            f"{max(1, self.batch // self.dp)} or less, or a larger --batch")
        if (self.micro_batch is not None and "batch" in self.given and "grad_accum" in self.given
                and self.devices is None and self.micro_batch * self.grad_accum * self.dp != self.batch):
            raise UserError(f"--micro-batch {self.micro_batch} × --grad-accum {self.grad_accum} × {self.dp} "
                            f"data-parallel replica(s) = {self.micro_batch * self.grad_accum * self.dp} samples, but "
                            f"--batch is {self.batch}; drop --grad-accum (it follows from the others) or make them agree")
        if (self.micro_batch is not None and "batch" in self.given and "grad_accum" not in self.given
                and (self.batch % self.dp or (self.batch // self.dp) % self.micro_batch)):
            per = self.batch / self.dp
            raise UserError(f"--micro-batch {self.micro_batch} does not divide the per-replica batch {per:g} (global "
                            f"--batch {self.batch} / {self.dp} data-parallel replica(s)); give a --batch that is a "
                            f"multiple of {self.dp * self.micro_batch}, or a --micro-batch that divides {per:g}")

    def _check(self) -> None:
        """Every check of a workload's own fields, in one place."""
        for name in ("batch", "gen_tokens", "grad_accum", "tp", "pp", "ep", "dp", "cp", "vp"):
            _check_positive(name.replace("_", "-"), getattr(self, name), optional=False)
        for name in ("seq", "micro_batch", "lora_rank", "devices", "shard_group", "etp"):
            _check_positive(name.replace("_", "-"), getattr(self, name))
        for name, allowed in (("mode", MODES), ("precision", PRECISIONS), ("optimizer", OPTIMIZERS),
                              ("recompute", RECOMPUTE), ("offload", OFFLOAD), ("quant", QUANT),
                              ("attention", ATTENTION), ("schedule", SCHEDULES), ("cp-comm", CP_COMM),
                              ("grad-reduce", GRAD_REDUCE), ("tp-backward", TP_BACKWARD),
                              ("zero-impl", ZERO_IMPL), ("grad-reduce-dtype", GRAD_REDUCE_DTYPE),
                              ("mixed-weights", MIXED_WEIGHTS), ("tp-overlap", TP_OVERLAP)):
            _check_choice(name, getattr(self, name.replace("-", "_")), allowed)
        if self.fusion is not None:
            _check_choice("fusion", self.fusion, FUSION)
        if self.zero not in (0, 1, 2, 3) or isinstance(self.zero, bool):
            raise UserError(f"--zero must be 0, 1, 2 or 3, got {self.zero!r}")
        if self.zeropp and self.zero != 3:
            raise UserError("--zeropp applies to ZeRO stage 3; add --zero 3")
        _check_zero_impl(self.zero_impl, self.zeropp)
        if self.offload_activations and self.mode != "train":
            raise UserError("--offload-activations moves the activations a training step saves for its backward; "
                            "add --mode train, or drop --offload-activations")
        # options that mean something only in another mode were shown in the workload and then ignored (checked
        # against a mode given: a verb's own default mode is applied after this workload is made)
        stated = "mode" in self.given
        if stated and self.mode != "train" and "recompute" in self.given and self.recompute != "none":
            raise UserError(f"--recompute {self.recompute} redoes a training step's forward in its backward; add "
                            "--mode train, or drop --recompute")
        if stated and self.mode != "train" and "grad_accum" in self.given and self.grad_accum != 1:
            raise UserError(f"--grad-accum {self.grad_accum} accumulates a training step's gradients; add --mode train, "
                            "or drop --grad-accum")
        if stated and "gen_tokens" in self.given and self.mode != "generate":
            raise UserError(f"--gen-tokens sets how many tokens --mode generate produces; add --mode generate, or drop "
                            f"--gen-tokens (this workload is {self.mode})")
        if "lora_targets" in self.given and self.lora_targets and not self.lora_rank:
            raise UserError("--lora-targets names the modules LoRA adapts; add --lora-rank R, or drop --lora-targets")
        # with --devices and no --pp, the planner chooses the pipeline a given --vp needs (its layout is checked)
        planner_pipes = (self.devices or 1) > 1 and "pp" not in self.given
        _check_pipeline(self.pp, self.vp, self.schedule, pp_open=planner_pipes)
        _check_expert_tp(self.etp, self.tp, self.ep)
        if not isinstance(self.user_hooks, bool):
            raise UserError(f"user_hooks must be True or False, got {self.user_hooks!r}")
        if not isinstance(self.tp_comm_overlap, bool):
            raise UserError(f"tp_comm_overlap must be True or False, got {self.tp_comm_overlap!r}")
        if "tp_overlap" in self.given and not self.tp_comm_overlap:
            raise UserError(f"--tp-overlap {self.tp_overlap} says how --tp-comm-overlap hides the tensor-parallel "
                            "collectives; add --tp-comm-overlap, or drop --tp-overlap")
        if not isinstance(self.pp_comm_overlap, bool):
            raise UserError(f"pp_comm_overlap must be True or False, got {self.pp_comm_overlap!r}")
        _check_fp8_weights(self)
        if self.shard_group is not None and self.zero == 0:
            raise UserError("--shard-group shards ZeRO's states inside groups of data-parallel ranks; add --zero 1, 2 "
                            "or 3 (--zero 3 is FSDP/HSDP)")
        if self.sequence_parallel is not None and not isinstance(self.sequence_parallel, bool):
            raise UserError(f"sequence_parallel must be True, False or None, got {self.sequence_parallel!r}")
        if self.mode == "train" and self.quant in ("int4", "int8") and not self.lora_rank:
            raise UserError(f"--quant {self.quant} with --mode train needs --lora-rank R: integer weights get no "
                            "gradients, so only adapters train on them (QLoRA); drop --quant to train every weight")
        if self.hardware is not None and (not isinstance(self.hardware, str) or not self.hardware.strip()):
            raise UserError(f"--hardware must be a device id (see 'mlfootprint hardware list'), got {self.hardware!r}")
        if self.devices is not None:
            group = self.model_split
            names = f"--tp {self.tp} × --pp {self.pp}" + (f" × --cp {self.cp}" if self.cp > 1 else "")
            if self.devices % group:
                raise UserError(f"--devices {self.devices} is not divisible by {names} = {group}; "
                                f"use a device count that is a multiple of {group}, or change --tp/--pp/--cp")
            if "dp" in self.given and self.dp * group != self.devices:
                raise UserError(f"--dp {self.dp} × {names} = {self.dp * group} devices, but "
                                f"--devices is {self.devices}; drop --dp (it follows from the others) or make them agree")
        for name in ("tokens",):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value < 1 or value != int(value)
                                      or value > _MAX_TOKENS):
                raise UserError(f"--{name} must be a whole number of tokens from 1 to {_MAX_TOKENS:,.0f} (the largest "
                                f"runs train on about 15 trillion), got {value!r}")
        if self.device_memory is not None and (isinstance(self.device_memory, bool)
                                               or not isinstance(self.device_memory, int)
                                               or not _MIN_DEVICE_MEMORY <= self.device_memory <= _MAX_DEVICE_MEMORY):
            raise UserError(f"--device-memory must be a size from 1 KiB to 1 PiB such as 80GB, got "
                            f"{self.device_memory!r}")
        if self.other_bytes is not None and (isinstance(self.other_bytes, bool)
                                             or not isinstance(self.other_bytes, int) or self.other_bytes < 0):
            raise UserError(f"--other-bytes must be zero or a positive size such as 1GB, got {self.other_bytes!r}")

    # -- derived facts -------------------------------------------------------------------------
    @property
    def training(self) -> bool:
        return self.mode == "train"

    @property
    def training_implied_by(self) -> tuple[str, ...]:
        """Without --mode, the training-only options given (``TRAINING_ONLY``), which make this a training step."""
        if "mode" in self.given:
            return ()
        return tuple(name for name in TRAINING_ONLY if name in self.given
                     and (name == "optimizer" or getattr(self, name) != _DEFAULTS[name]))

    @property
    def precision_info(self) -> Precision:
        return precision(self.precision)

    @property
    def mixed(self) -> bool:
        return self.precision_info.mixed

    @property
    def traced_weights_dtype(self) -> str:
        """The dtype (torch's name) of the traced model's floating weights and inputs: fp32 under autocast, else the
        compute dtype."""
        return self.precision_info.compute_dtype if self.weights_16bit else self.precision_info.traced_param_dtype

    @property
    def autocast(self) -> bool:
        """Whether the step runs under autocast: mixed precision over fp32 weights."""
        return self.mixed and not self.weights_16bit

    @property
    def weights_16bit(self) -> bool:
        """Mixed precision with 16-bit working weights (``mixed_weights_resolved`` ``16-bit``): the model runs as in
        its compute dtype, without autocast, and the optimizer steps fp32 master copies."""
        return self.mixed and self.mixed_weights_resolved == "16-bit"

    @property
    def model_split(self) -> int:
        """The devices one replica's model is split over, tp × pp × cp (``Layout.model_split``)."""
        return self.tp * self.pp * self.cp

    @property
    def mixed_weights_resolved(self) -> str:
        """``mixed_weights`` as given, or under ``auto`` 16-bit with ZeRO-3 (FSDP's ``param_dtype`` and DeepSpeed's
        bf16/fp16 engines gather and compute with 16-bit weights, keeping the fp32 shard with the optimizer) or with
        tensor, pipeline or context parallelism (Megatron-LM and NeMo cast the model to its 16-bit compute dtype and
        keep fp32 main copies in the optimizer, as do DeepSpeed's pipeline engine and TorchTitan), and fp32 otherwise
        (PyTorch AMP: DDP, with or without ZeroRedundancyOptimizer, under autocast)."""
        return self.mixed_weights_at(self.zero, self.model_split)

    def mixed_weights_at(self, zero: int, split: int = 1) -> str:
        """``mixed_weights_resolved`` under ZeRO stage ``zero`` with the model split over ``split`` = tp × pp × cp
        devices (the planner weighs every layout from one workload)."""
        if self.mixed_weights != "auto":
            return self.mixed_weights
        # FP8 primary weights come with fp32 master copies in the optimizer, as 16-bit working weights do
        return "16-bit" if zero >= 3 or split > 1 or self.fp8_weights else "fp32"

    @property
    def grad_reduce_resolved(self) -> str:
        """The dtype the data-parallel gradients move in under mixed precision, ``compute`` or ``fp32``: as given, or
        under ``auto`` the gradients' own dtype. Autocast over fp32 weights leaves fp32 ``.grad`` tensors, which PyTorch
        DDP (with or without ZeroRedundancyOptimizer) reduces as they are; under ZeRO-3 the weights are gathered in
        16 bits (FSDP's ``param_dtype``), so the gradients are 16-bit too; 16-bit working weights have 16-bit
        gradients (DeepSpeed's ``communication_data_type`` default), except under bf16 with the model split over
        devices, where Megatron-LM accumulates and reduces them in fp32 main gradients (its arguments force
        ``accumulate_allreduce_grads_in_fp32`` with ``--bf16``)."""
        return self.grad_reduce_at(self.zero, self.model_split)

    def grad_reduce_at(self, zero: int, split: int = 1) -> str:
        """``grad_reduce_resolved`` under ZeRO stage ``zero`` with the model split over ``split`` devices."""
        if self.grad_reduce_dtype != "auto":
            return self.grad_reduce_dtype
        if self.mixed and self.mixed_weights_at(zero, split) == "fp32":
            return "fp32"  # autocast's fp32 .grad tensors (FSDP without param_dtype under ZeRO-3)
        if zero >= 3:
            return "compute"
        # bf16 compute (fp8-mixed computes the rest in bf16 too): Megatron-LM's fp32 main gradients
        return "fp32" if split > 1 and self.precision_info.compute_dtype == "bfloat16" else "compute"

    def fp32_main_grads_at(self, zero: int, split: int = 1) -> bool:
        """Whether 16-bit working weights keep their gradients in fp32 (Megatron-LM's ``main_grad`` buffers, which
        its bf16 runs reduce in fp32): under mixed precision with 16-bit weights whose gradients are reduced in fp32,
        below ZeRO-3 (whose 16-bit gradients are reduce-scattered as they come)."""
        return (self.mixed and zero < 3 and self.mixed_weights_at(zero, split) == "16-bit"
                and self.grad_reduce_at(zero, split) == "fp32")

    @property
    def sequence_parallel_on(self) -> bool:
        """Sequence parallelism as applied: as given, else on under tensor parallelism (as ``plan`` assumes)."""
        return self.sequence_parallel_at(self.tp)

    def sequence_parallel_at(self, tp: int) -> bool:
        """``sequence_parallel_on`` at tensor-parallel degree ``tp`` (the planner weighs every layout from one
        workload): as given (``--no-sequence-parallel``), else on whenever tp > 1."""
        return tp > 1 if self.sequence_parallel is None else bool(self.sequence_parallel and tp > 1)

    # -- new workloads from this one -----------------------------------------------------------
    def with_changes(self, *, given: frozenset[str] | set[str] | None = None, **changes: Any) -> Workload:
        """A copy with ``changes``; the changed fields join ``given`` unless ``given`` is passed."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "given"}
        values.update(changes)
        new_given = frozenset(given) if given is not None else self.given | set(changes)
        if values.get("devices") is not None and "dp" not in new_given:
            del values["dp"]  # it follows from devices / (tp × pp)
        return Workload(**values, given=new_given)

    def with_defaults(self, **defaults: Any) -> Workload:
        """A copy where each of ``defaults`` replaces a field the user did not give (it stays not given)."""
        changes = {k: v for k, v in defaults.items() if k not in self.given}
        return self.with_changes(given=self.given, **changes) if changes else self

    # -- serialization -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        # user_hooks says how the model is traced, not what runs: a trace without them states it as an assumption
        skip = ("given", "user_hooks")
        out = {k: v for k, v in asdict(self).items() if k not in skip}
        if out.get("lora_targets") is not None:
            out["lora_targets"] = list(out["lora_targets"])
        out["defaults"] = sorted(f.name for f in fields(self) if f.name not in skip and f.name not in self.given)
        return out

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Workload:
        """From command-line options: those left at None keep the defaults and are not given."""
        names = {f.name for f in fields(cls)} - {"given"}
        return cls(**{k: v for k, v in options.items() if k in names and v is not None})


# each field's default, which a training-only option must differ from to imply training (Workload.training_implied_by)
_DEFAULTS = {f.name: f.default for f in fields(Workload)}


@dataclass(frozen=True)
class Layout:
    """How one step is spread over devices: the question the memory model and the step model answer.

    ``micro_batch`` is the batch one device processes in one forward/backward; the global batch is
    ``micro_batch × dp × grad_accum``. Validated when made (a bad value raises
    :class:`~mlfootprint.core.errors.UserError`); frozen, so ``replace(**changes)`` gives a changed copy.
    ``Layout.from_workload(wl)`` gives the layout a :class:`Workload` describes.

    Attributes:
        dp, tp, pp, ep: data, tensor, pipeline and expert parallel degrees (default 1 each).
        zero: ZeRO stage 0-3 (default 0).
        offload: ``none`` (default), ``cpu`` or ``nvme`` (ZeRO-Offload / ZeRO-Infinity).
        micro_batch: samples per device per forward/backward (default 1).
        recompute: activation recomputation, ``none`` (default), ``selective`` or ``full``.
        precision: ``fp32`` (default), ``bf16``, ``fp16``, ``bf16-mixed``, ``fp16-mixed`` or ``fp8-mixed``.
        optimizer: as for :class:`Workload` (default ``adamw``).
        grad_accum: micro-batches per optimizer step (default 1); bounds the micro-batches a pipeline stage
            holds at once.
        sequence_parallel: Megatron sequence parallelism, sharding what TP replicates (default False).
        zeropp: ZeRO++ quantized/hierarchical communication, with ``zero=3`` (default False).
        shard_group: FSDP/HSDP sharding group, a divisor of ``dp`` (default None: ZeRO shards over all of dp).
        tp_comm_overlap: tensor-parallel collectives hidden under the GEMMs (default False: exposed).
        tp_overlap: how, ``userbuffers`` (default) or ``async-tp``; see :class:`Workload`.
        pp_comm_overlap: the interleaved schedule's pipeline sends hidden in its steady state (default False).
        grad_reduce: the gradient reduction under the backward, ``overlap`` (default), or ``after-backward``.
        tp_backward: the backward's tensor-parallel collectives under the column-parallel linears' GEMMs,
            ``overlap``, or ``exposed``, or ``auto`` (default: the step model's target stack's); see :class:`Workload`.
        zero_impl: which ZeRO-3 runs, ``fsdp2``, ``deepspeed`` or ``auto`` (default: the target stack's); see
            :class:`Workload`.
        etp: expert tensor-parallel size, a divisor of ``tp`` (default None: ``tp``); see :class:`Workload`.
        cp, cp_comm: context-parallel degree (default 1) and its exchange, ``ring`` (default), ``all-gather`` or
            ``all-to-all``.
        vp, schedule: virtual pipeline stages per device (default 1; > 1 is interleaved 1F1B) and the schedule,
            ``1f1b`` (default) or ``zero-bubble`` (ZB-H1).
        devices: (property) ``dp × tp × pp × cp``.

    Example:
        >>> lay = mf.Layout(dp=8, zero=3, micro_batch=4, precision="bf16-mixed")
        >>> lay.devices, lay.label()
        (8, 'tp=1 pp=1 dp=8 zero=3 micro-batch=4 recompute=none')
        >>> mf.Layout.from_workload(mf.Workload(batch=64, dp=8, grad_accum=2, mode="train")).micro_batch
        4
    """

    dp: int = 1
    tp: int = 1
    pp: int = 1
    ep: int = 1
    zero: int = 0
    offload: str = "none"
    micro_batch: int = 1
    recompute: str = "none"
    precision: str = "fp32"
    optimizer: str = "adamw"
    grad_accum: int = 1  # micro-batches per step: bounds the micro-batches a pipeline stage holds at once
    sequence_parallel: bool = False  # Megatron sequence parallelism: shards what TP replicates (norms, dropout)
    zeropp: bool = False  # ZeRO++ quantized/hierarchical communication (with zero 3)
    offload_activations: float = 0.0  # fraction of each block's saved activations held in host memory (MEMO)
    shard_group: int | None = None  # FSDP/HSDP: ZeRO shards inside groups of this many dp ranks (None: all of dp)
    tp_comm_overlap: bool = False  # TP collectives overlapped with the GEMMs (Megatron --tp-comm-overlap)
    tp_overlap: str = "userbuffers"  # how: Megatron/TE userbuffers, or PyTorch's async TP (TorchTitan)
    pp_comm_overlap: bool = False  # interleaved pipeline sends overlapped in the steady state (overlap_p2p_comm)
    grad_reduce: str = "overlap"  # gradient reduction under the backward, or after it (Megatron-LM's default)
    tp_backward: str = "auto"  # backward TP collectives under the column-parallel GEMMs (Megatron), exposed, or auto
    zero_impl: str = "auto"  # ZeRO-3 as PyTorch's FSDP2 (buffer copies on the compute stream), DeepSpeed's, or auto
    etp: int | None = None  # expert tensor parallelism (MoE Parallel Folding); None: tp
    cp: int = 1  # context parallelism: each sequence split over cp devices
    vp: int = 1  # virtual pipeline stages per device (interleaved 1F1B when > 1)
    schedule: str = "1f1b"  # pipeline schedule: 1f1b (interleaved with vp > 1) or zero-bubble (ZB-H1)
    cp_comm: str = "ring"  # ring attention (Megatron CP), all-gather (Llama 3) or all-to-all (DeepSpeed-Ulysses)

    def __post_init__(self) -> None:
        object.__setattr__(self, "offload_activations", offload_fraction(self.offload_activations))
        for name in ("dp", "tp", "pp", "ep", "micro_batch", "grad_accum", "cp", "vp"):
            _check_positive(name.replace("_", "-"), getattr(self, name), optional=False)
        if self.zero not in (0, 1, 2, 3) or isinstance(self.zero, bool):
            raise UserError(f"--zero must be 0, 1, 2 or 3, got {self.zero!r}")
        for name, allowed in (("offload", OFFLOAD), ("recompute", RECOMPUTE), ("precision", PRECISIONS),
                              ("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("cp-comm", CP_COMM),
                              ("grad-reduce", GRAD_REDUCE), ("tp-overlap", TP_OVERLAP), ("tp-backward", TP_BACKWARD),
                              ("zero-impl", ZERO_IMPL)):
            _check_choice(name, getattr(self, name.replace("-", "_")), allowed)
        if self.zeropp and self.zero != 3:
            raise UserError("--zeropp applies to ZeRO stage 3; add --zero 3")
        _check_zero_impl(self.zero_impl, self.zeropp)
        if self.shard_group is not None:
            _check_positive("shard-group", self.shard_group, optional=False)
            if self.dp % self.shard_group:
                raise UserError(f"--shard-group {self.shard_group} does not divide the {self.dp} data-parallel ranks; "
                                f"use a divisor of {self.dp}")
        if not isinstance(self.tp_comm_overlap, bool):
            raise UserError(f"tp_comm_overlap must be True or False, got {self.tp_comm_overlap!r}")
        if not isinstance(self.pp_comm_overlap, bool):
            raise UserError(f"pp_comm_overlap must be True or False, got {self.pp_comm_overlap!r}")
        _check_pipeline(self.pp, self.vp, self.schedule)
        _check_expert_tp(self.etp, self.tp, self.ep)

    @property
    def expert_tp(self) -> int:
        """The ranks a routed expert is split over: ``etp``, else ``tp``."""
        return self.etp if self.etp is not None else self.tp

    @property
    def zero_shards(self) -> int:
        """Ranks ZeRO shards the model states over: the sharding group (of dp ranks) or all of dp, times cp (the
        context-parallel ranks hold the same weights)."""
        return (self.shard_group or self.dp) * self.cp if self.zero >= 1 else 1

    def replace(self, **changes: Any) -> Layout:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def devices(self) -> int:
        return self.dp * self.tp * self.pp * self.cp

    @property
    def model_split(self) -> int:
        """The devices one replica's model is split over, tp × pp × cp (``Workload.mixed_weights_at``)."""
        return self.tp * self.pp * self.cp

    def label(self) -> str:
        s = f"tp={self.tp} pp={self.pp}"
        if self.vp > 1:
            s += f" vp={self.vp}"
        if self.schedule != "1f1b":
            s += f" schedule={self.schedule}"
        if self.cp > 1:
            s += f" cp={self.cp}" + ("" if self.cp_comm == "ring" else f" cp-comm={self.cp_comm}")
        s += f" dp={self.dp}"
        if self.ep > 1:
            s += f" ep={self.ep}"
        s += f" zero={self.zero}{'++' if self.zeropp else ''}"
        if self.shard_group and self.shard_group != self.dp:
            s += f" shard-group={self.shard_group}"
        s += f" micro-batch={self.micro_batch} recompute={self.recompute}"
        if self.tp_comm_overlap:
            s += " tp-comm-overlap" + ("" if self.tp_overlap == "userbuffers" else f"={self.tp_overlap}")
        if self.pp_comm_overlap and self.pp > 1 and self.vp > 1:
            s += " pp-comm-overlap"
        if self.grad_reduce != "overlap":
            s += f" grad-reduce={self.grad_reduce}"
        if self.tp > 1 and self.tp_backward != "auto":
            s += f" tp-backward={self.tp_backward}"
        if self.zero >= 3 and self.zero_impl != "auto":
            s += f" zero-impl={self.zero_impl}"
        if self.etp is not None and self.etp != self.tp:
            s += f" etp={self.etp}"
        if self.offload != "none":
            s += f" offload={self.offload}"
        if self.offload_activations:
            s += f" offload-activations={self.offload_activations:g}"
        return s

    @classmethod
    def from_workload(cls, wl: Workload) -> Layout:
        """The layout a workload describes; ``batch`` is the global batch when given (see :func:`micro_batch_of`)."""
        return cls(dp=wl.dp, tp=wl.tp, pp=wl.pp, ep=wl.ep, zero=wl.zero, zeropp=wl.zeropp and wl.training,
                   offload=wl.offload,
                   micro_batch=micro_batch_of(wl), recompute=wl.recompute if wl.training else "none",
                   precision=wl.precision, optimizer=wl.optimizer, grad_accum=grad_accum_of(wl),
                   sequence_parallel=wl.sequence_parallel_on,
                   shard_group=wl.shard_group if wl.training and wl.zero else None,
                   tp_comm_overlap=wl.tp_comm_overlap, tp_overlap=wl.tp_overlap,
                   pp_comm_overlap=wl.pp_comm_overlap, grad_reduce=wl.grad_reduce, tp_backward=wl.tp_backward,
                   zero_impl=wl.zero_impl, etp=wl.etp, offload_activations=wl.offload_activations if wl.training else 0.0,
                   cp=wl.cp, vp=wl.vp, schedule=wl.schedule, cp_comm=wl.cp_comm)


def _check_zero_impl(zero_impl: str, zeropp: bool) -> None:
    if zeropp and zero_impl == "fsdp2":
        raise UserError("--zeropp is DeepSpeed's ZeRO++, which PyTorch's FSDP2 does not run; drop --zero-impl fsdp2 "
                        "(or --zeropp)")


def offload_fraction(value: Any) -> float:
    """``--offload-activations`` as a fraction in [0, 1]: a number, a numeric string, or ``all`` (1)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "all":
            return 1.0
        try:
            value = float(text)
        except ValueError:
            raise UserError(f"--offload-activations takes a fraction between 0 and 1 (e.g. 0.5) or 'all', got "
                            f"{value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 <= value <= 1:
        raise UserError(f"--offload-activations takes a fraction between 0 and 1 (e.g. 0.5) or 'all', got {value!r}")
    return float(value)


def _check_fp8_weights(wl: Workload) -> None:
    """FP8 primary weights are a training scheme of fp8-mixed over 16-bit working weights (one-line UserErrors)."""
    if not isinstance(wl.fp8_weights, bool):
        raise UserError(f"fp8_weights must be True or False, got {wl.fp8_weights!r}")
    if not wl.fp8_weights:
        return
    if wl.precision != "fp8-mixed":
        raise UserError(f"--fp8-weights keeps the FP8 linear layers' weights in FP8, which needs --precision fp8-mixed "
                        f"(got {wl.precision}); add --precision fp8-mixed, or drop --fp8-weights")
    if "mode" in wl.given and wl.mode != "train":  # a verb's own default mode is applied after this is made
        raise UserError("--fp8-weights is a training scheme (fp32 master copies with the optimizer); to serve FP8 "
                        "weights use --quant fp8, or add --mode train")
    if wl.mixed_weights == "fp32":
        raise UserError("--fp8-weights replaces the 16-bit working weights by FP8 ones, which --mixed-weights fp32 "
                        "(autocast over fp32 weights) does not have; drop one of them")


def _check_pipeline(pp: int, vp: int, schedule: str, pp_open: bool = False) -> None:
    if vp > 1 and pp == 1 and not pp_open:
        raise UserError(f"--vp {vp} (virtual pipeline stages) needs pipeline parallelism; add --pp 2 or more, or drop --vp")
    if schedule == "zero-bubble" and vp > 1:
        raise UserError("--schedule zero-bubble is modeled as ZB-H1 (one stage per device); drop --vp, or use "
                        "--schedule 1f1b for the interleaved schedule")


@functools.lru_cache(maxsize=4096)
def stage_layers(layers: int, pp: int) -> tuple[int, ...]:
    """Blocks on each pipeline stage: as even as possible (sizes differ by at most one), the smaller stages at the
    two ends, which also hold the embedding (first) and the head and loss (last).

    126 layers on 16 stages: 7, 8 × 14, 7 — what Megatron-LM's ``account_for_embedding_in_pipeline_split`` and
    ``account_for_loss_in_pipeline_split`` give (the embedding and the loss each count as one layer: 128 / 16 = 8).
    """
    if pp < 1 or layers < pp:
        raise UserError(f"--pp {pp} exceeds the model's {layers} layers; use --pp {max(layers, 1)} or fewer")
    small, extra = divmod(layers, pp)
    sizes = [small] * pp
    # the extra blocks go to the middle stages, outward from the centre
    order = sorted(range(pp), key=lambda k: (min(k, pp - 1 - k), k), reverse=True)
    for k in order[:extra]:
        sizes[k] += 1
    return tuple(sizes)


@functools.lru_cache(maxsize=4096)
def max_virtual_stages(layers: int, pp: int) -> int:
    """The most model chunks (virtual stages) each of ``pp`` stages can hold with at least one block per chunk,
    where a chunk at the ends may hold the embedding (first stage) or the head and loss (last stage) alone.

    126 layers on 16 stages (7, 8 × 14, 7 blocks): 8 — Llama 3's layout (Llama 3 paper, Sec. 3.3.2: "the first
    model chunk on the first stage has only the embedding, and the last model chunk on the last stage has only output
    projection and loss calculation"), Megatron-LM's ``pipeline_model_parallel_layout`` "E|t|…|t|L". 96 on 8: 12.
    """
    sizes = stage_layers(layers, pp)
    if pp == 1:
        return sizes[0]
    return min(n + (k == 0) + (k == pp - 1) for k, n in enumerate(sizes))


def _stage_sizes_text(layers: int, pp: int) -> str:
    sizes = stage_layers(layers, pp)
    return ", ".join(str(n) for n in sizes) if pp <= 4 else f"{sizes[0]}, …, {max(sizes)}, …, {sizes[-1]}"


def check_context_parallel(layout: Layout, seq: int | None, heads: int | None) -> None:
    """Context-parallel constraints that depend on the sequence and the heads: one line, the fix included."""
    if layout.cp == 1:
        return
    if not seq:
        raise UserError(f"--cp {layout.cp} splits each sequence over devices; this model has no sequence length "
                        "(use --cp 1)")
    if layout.cp_comm in ("ring", "all-gather") and seq % (2 * layout.cp):
        kind = "ring attention" if layout.cp_comm == "ring" else "the K/V all-gather"
        raise UserError(f"--cp {layout.cp} with {kind} needs --seq divisible by 2 × cp = {2 * layout.cp} "
                        f"(each device takes two chunks, one early and one late, to balance causal attention); "
                        f"--seq {seq} is not")
    if layout.cp_comm == "all-to-all":
        if seq % layout.cp:
            raise UserError(f"--cp {layout.cp} needs --seq divisible by {layout.cp}; --seq {seq} is not")
        if heads and (heads // max(layout.tp, 1)) % layout.cp:
            raise UserError(f"--cp {layout.cp} --cp-comm all-to-all splits the attention heads: the {heads} heads / "
                            f"--tp {layout.tp} must be divisible by cp; use --cp-comm ring or a cp dividing "
                            f"{heads // max(layout.tp, 1)}")


def grad_accum_of(wl: Workload) -> int:
    """Micro-batches per replica per step: ``grad_accum`` if given; with ``micro_batch`` and a global ``batch``
    given, the per-replica batch / micro-batch (``--batch 2048 --dp 128 --micro-batch 1`` is 16 micro-batches, which
    bound what a pipeline stage holds in flight); else 1."""
    if wl.micro_batch and "batch" in wl.given and "grad_accum" not in wl.given:
        return wl.batch // wl.dp // wl.micro_batch  # Workload checked that it divides
    return wl.grad_accum


def micro_batch_of(wl: Workload) -> int:
    """Per-device micro-batch: ``micro_batch`` if given; else ``batch / (dp × grad_accum)`` (it must divide);
    the default ``batch`` of 1 with dp × grad_accum > 1 reads as one sample per device."""
    if wl.micro_batch:
        return wl.micro_batch
    split = wl.dp * wl.grad_accum
    if split == 1:
        return wl.batch
    if "batch" not in wl.given and wl.batch == 1:
        return 1
    if wl.batch % split:
        raise UserError(f"--batch {wl.batch} cannot be split over --dp {wl.dp} × --grad-accum {wl.grad_accum} = {split} "
                        f"micro-batches; give a multiple of {split}, or --micro-batch")
    return wl.batch // split


def check_against_model(layout: Layout, facts: dict[str, Any], n_blocks: int | None = None,
                        training: bool = True) -> None:
    """Layout constraints that depend on the model: one line, the fix included."""
    heads = facts.get("heads")
    if layout.tp > 1 and heads and heads % layout.tp:
        divisors = [d for d in range(1, heads + 1) if heads % d == 0]
        raise UserError(f"--tp {layout.tp} does not divide the model's {heads} attention heads; "
                        f"use one of: {', '.join(map(str, divisors[:12]))}")
    layers = n_blocks or facts.get("layers")
    if layout.pp > 1:
        if not layers:
            raise UserError(f"--pp {layout.pp} needs a model made of repeated blocks; this one has none to split into stages")
        if layout.pp > layers:
            raise UserError(f"--pp {layout.pp} exceeds the model's {layers} layers; use --pp {layers} or fewer")
        most = max_virtual_stages(layers, layout.pp)
        if layout.vp > most:
            raise UserError(f"--pp {layout.pp} × --vp {layout.vp}: a stage would hold a model chunk with no layer "
                            f"({layers} layers on {layout.pp} stages: {_stage_sizes_text(layers, layout.pp)} blocks, "
                            f"the embedding and the head a chunk each at the ends); use a --vp of at most {most}")
    experts = facts.get("experts")
    if layout.ep > 1:
        if not experts:
            raise UserError(f"--ep {layout.ep} needs a mixture-of-experts model; this one has no experts")
        if experts % layout.ep:
            raise UserError(f"--ep {layout.ep} does not divide the model's {experts} experts")
        if layout.dp % layout.ep:
            raise UserError(f"--ep {layout.ep} must divide --dp {layout.dp} (expert-parallel groups are carved out of "
                            "the data-parallel devices)")
    if training and layout.offload != "none" and layout.zero == 0 and layout.optimizer != "zo-sgd":
        raise UserError(f"--offload {layout.offload} needs ZeRO (--zero 1, 2 or 3): ZeRO-Offload moves the partitioned "
                        "optimizer states; or use --optimizer zo-sgd (ZO2 streams the weights)")
    if training and layout.offload == "nvme" and layout.zero not in (3,) and layout.optimizer != "zo-sgd":
        raise UserError("--offload nvme needs --zero 3 (ZeRO-Infinity)")
