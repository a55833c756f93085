"""Model states per device: weights, gradients and optimizer states.

Bytes per parameter element (Ψ = parameters on the device, before ZeRO):

==============  =========  =========  ==========================================
precision       weights    gradients  optimizer (Adam/AdamW)
==============  =========  =========  ==========================================
fp32            4          4          8  (fp32 m, v)
bf16 / fp16     2          2          4  (m, v in the parameter dtype, as torch.optim keeps them)
*-mixed         2          2          12 = 4 (fp32 master weights) + 8 (fp32 m, v)
*-mixed, AMP    4          4          8  (fp32 m, v: the fp32 weights are the master)
==============  =========  =========  ==========================================

Mixed precision follows the ZeRO paper (Rajbhandari et al. 2020, Sec. 3.1) and
Megatron-LM/DeepSpeed: 16-bit working weights and gradients, fp32 master
weights in the optimizer (2Ψ + 2Ψ + KΨ, K = 12 for Adam). fp8-mixed keeps the
same 16-bit working copy (FP8 weight casts are transient); with FP8 primary
weights (``--fp8-weights``: NeMo's fp8_params, torchao's FP8 all-gather) the
FP8 linear layers' working weights are FP8 (1 byte; the rest stay 16-bit), with
the same fp32 master copies. With fp32 working
weights (``--mixed-weights fp32``, the default without ZeRO-3: PyTorch AMP, DDP
under autocast) the weights and gradients are fp32 and the weights are the
optimizer's master copy (4Ψ + 4Ψ + 8Ψ): ZeRO-1/2 then shard 8 and 12 bytes of the
16, not 12 and 14.

Other optimizers (state dtype as Adam's): SGD none; SGD with momentum and Lion
one state; Adafactor (Shazeer & Stern 2018) the factored second moment, rows +
columns per matrix (torch.optim.Adafactor keeps ``shape[:-1]`` + ``shape[:-2]
× shape[-1]`` elements; a vector keeps a full one) and no first moment;
adam-8bit (bitsandbytes) two 1-byte states plus one fp32 absmax per block of 256
values each, 32-bit states for tensors under 4,096 elements; zo-sgd (MeZO) no
gradients and no states.

ZeRO over ``dp`` devices: stage 1 shards optimizer states, 2 also gradients, 3
also weights (ZeRO-3 keeps parameters under DeepSpeed's persistence threshold
whole, and gathers the current and the prefetched block). Tensor parallelism
divides every matrix (≥2-D parameter) by ``tp`` and replicates vectors
(norms, biases); pipeline parallelism gives each stage its blocks (the first
also the layers before the blocks, the last those after, a tied output
embedding on both); expert parallelism divides routed-expert parameters by
``ep`` and ZeRO shards them over the ``dp/ep`` expert-data-parallel group.

Offload (ZeRO-Offload, Ren et al. 2021; ZeRO-Infinity, Rajbhandari et al.
2021): ``cpu`` moves the optimizer states (with fp32 master weights) and the
gradient partition to host memory (with ZeRO-3 also the weights); ``nvme``
puts the optimizer states (with ZeRO-3 the weights) on disk and the gradients
in host memory. ZO2 (zo-sgd with offload, Wang et al. 2025) and offloaded
inference keep the layers outside the blocks on the device and stream the
blocks, two at a time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ...core.precision import precision as precision_of
from ...trace.records import ParamFact, Trace
from . import methods



@dataclass(frozen=True)
class ParamInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str
    trainable: bool
    group: int  # block number, or -1 (before the blocks) / -2 (after)
    expert: bool = False
    tied_output: bool = False  # the input embedding that the output embedding shares
    fp8_layer: bool = False  # an FP8 linear layer's weight (fp8_layer_weight), held in FP8 under FP8 primary weights

    @property
    def numel(self) -> int:
        return math.prod(self.shape) if self.shape else 1

    @property
    def matrix(self) -> bool:
        return len(self.shape) >= 2


@dataclass
class States:
    """Per-device model-state bytes and where the offloaded parts went."""

    weights_bytes: int = 0
    gradients_bytes: int = 0
    optimizer_bytes: int = 0
    host_bytes: int = 0
    nvme_bytes: int = 0
    breakdown: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    gradients_resident: bool = False  # gradients allocated for the whole step (not grown during backward)
    optimizer_on_device: bool = True

    @property
    def working_buffers_bytes(self) -> int:
        """Framework working buffers counted in the weights and gradients: ZeRO-3's gathered blocks, the
        ZeRO-2/3 gradient reduction bucket."""
        return int(self.breakdown.get("weights_gathered_bytes", 0) + self.breakdown.get("gradients_bucket_bytes", 0))

    @property
    def model_states_bytes(self) -> int:
        """Model states as ZeRO defines them (Rajbhandari et al. 2020, §3): this device's share of the weights,
        gradients and optimizer states, without the working buffers a framework adds to hold them."""
        return self.weights_bytes + self.gradients_bytes + self.optimizer_bytes - self.working_buffers_bytes


# ------------------------------------------------------------------------- per tensor


def optimizer_state_elems(optimizer: str, shape: tuple[int, ...]) -> int:
    """Optimizer state elements kept for one trainable tensor (not adam-8bit; see optimizer_state_bytes)."""
    n = math.prod(shape) if shape else 1
    if optimizer in ("sgd", "zo-sgd"):
        return 0
    if optimizer in ("sgd-momentum", "lion"):
        return n
    if optimizer in ("adam", "adamw"):
        return 2 * n
    if optimizer == "adafactor":
        if len(shape) >= 2:
            rows = math.prod(shape[:-1])
            cols = math.prod(shape[:-2]) * shape[-1]
            return rows + cols
        return n
    raise ValueError(optimizer)


def optimizer_state_bytes(optimizer: str, precision: str, shape: tuple[int, ...], master: bool = True) -> int:
    """Bytes of optimizer state for one trainable tensor, fp32 master copy included under mixed precision (not with
    fp32 working weights, ``master=False``: they are the master)."""
    n = math.prod(shape) if shape else 1
    master = precision_of(precision).master_bytes * n if (optimizer != "zo-sgd" and master) else 0
    if optimizer == "adam-8bit":
        if n < int(methods.value("adam_8bit", "min_8bit_size")):
            return master + 2 * 4 * n
        block = int(methods.value("adam_8bit", "block_size"))
        scale = int(methods.value("adam_8bit", "scale_bytes"))
        return master + 2 * n + 2 * scale * math.ceil(n / block)
    return master + precision_of(precision).state_bytes * optimizer_state_elems(optimizer, shape)


# ------------------------------------------------------------------------- quantized weights


def quantized_weight_bytes(numel: int, quant: str, qlora: bool = False) -> float:
    """Bytes of one weight matrix stored quantized, with its quantization state.

    int8/int4: symmetric group-wise, one fp16 scale per group of 128 (GPTQ/AWQ defaults); fp8: one fp32
    scale per tensor. QLoRA (4-bit base of a LoRA run): NF4 in blocks of 64, absmax double-quantized as in
    the QLoRA paper (8-bit absmax, one fp32 constant per 256 blocks): 0.5 + 1/64 + 4/(64·256) bytes/param.
    """
    if qlora and quant == "int4":
        block = int(methods.value("qlora", "block_size"))
        blocks = math.ceil(numel / block)
        if methods.value("qlora", "double_quant"):
            dq_block = int(methods.value("qlora", "dq_block_size"))
            state = blocks * int(methods.value("qlora", "dq_absmax_bytes")) + \
                math.ceil(blocks / dq_block) * int(methods.value("qlora", "dq_constant_bytes"))
        else:
            state = blocks * int(methods.value("qlora", "absmax_bytes"))
        return numel / 2 + state
    group = int(methods.value("quant", "group_size"))
    scale = int(methods.value("quant", "scale_bytes"))
    if quant == "int8":
        return numel + math.ceil(numel / group) * scale
    if quant == "int4":
        return numel / 2 + math.ceil(numel / group) * scale
    if quant == "fp8":
        return numel + int(methods.value("quant", "fp8_scale_bytes"))
    raise ValueError(quant)


def quantizable(p: ParamInfo) -> bool:
    """Weight-only quantization covers the linear layers inside the blocks (bitsandbytes, GPTQ and AWQ leave
    embeddings, the output head, norms and biases in 16 bits)."""
    return p.matrix and p.group >= 0 and len(p.shape) == 2


# ------------------------------------------------------------------------- a whole device


@dataclass(frozen=True)
class StateLayout:
    precision: str
    optimizer: str
    training: bool
    zero: int = 0
    dp: int = 1
    tp: int = 1
    ep: int = 1
    etp: int | None = None  # expert tensor parallelism: routed experts split over etp ranks, not tp (None: tp)
    shard_group: int | None = None  # FSDP/HSDP: ZeRO shards inside groups of this many dp ranks (None: all of dp)
    offload: str = "none"
    quant: str = "none"
    lora: bool = False
    stage_groups: frozenset[int] | None = None  # None: every group (no pipeline)
    last_stage: bool = True
    fp8_copy_bytes: int = 0  # per linear-weight element: Transformer Engine's FP8 weight copies (GPU fp8-mixed)
    # ZeRO++ (hpZ): the data-parallel ranks in one node, over which the secondary 16-bit weight copy is partitioned
    # (None: no ZeRO++)
    hpz_ranks: int | None = None
    # mixed precision over fp32 working weights (PyTorch AMP): fp32 weights and gradients, no separate master copy
    fp32_weights: bool = False
    # 16-bit working weights whose gradients accumulate in fp32 (Megatron-LM's main_grad buffers under bf16)
    fp32_grads: bool = False
    # FP8 primary weights (Workload.fp8_weights): the FP8 linear layers' trainable weights held in FP8
    fp8_weights: bool = False

    @property
    def weight_bytes(self) -> int:
        """A trainable working weight's bytes per element."""
        prec = precision_of(self.precision)
        return prec.traced_param_bytes if (self.fp32_weights and prec.mixed) else prec.weight_bytes

    @property
    def grad_bytes(self) -> int:
        """A gradient's bytes per element (fp32 with fp32 working weights or fp32 main gradients)."""
        prec = precision_of(self.precision)
        return prec.traced_param_bytes if ((self.fp32_weights or self.fp32_grads) and prec.mixed) else prec.grad_bytes

    @property
    def expert_tp(self) -> int:
        """The ranks a routed expert's matrices are split over: etp, else tp."""
        return self.etp if self.etp is not None else self.tp

    def working_bytes(self, p: ParamInfo) -> int:
        """A trainable working weight's bytes per element: FP8 for an FP8 linear layer's weight under FP8 primary
        weights (:func:`fp8_layer_weight`), else ``weight_bytes``."""
        if self.fp8_weights and self.training and p.fp8_layer:
            return int(methods.value("fp8", "primary_weight_bytes"))
        return self.weight_bytes

    def tp_of(self, p: ParamInfo) -> int:
        """The tensor-parallel split of one parameter (a routed expert's is expert_tp)."""
        return self.expert_tp if p.expert else self.tp


def _per_device_numel(p: ParamInfo, lay: StateLayout) -> float:
    n = float(p.numel)
    tp = lay.tp_of(p)
    if p.matrix and tp > 1:
        n /= tp
    if p.expert and lay.ep > 1:
        n /= lay.ep
    return n


class ParamSet:
    """Parameters grouped for speed: blocks with the same parameter shapes share one computation.

    A model's blocks are usually identical, so a 126-block model costs one block's arithmetic per layout.
    """

    def __init__(self, params: list[ParamInfo]) -> None:
        self.params = params
        by_group: dict[int, list[ParamInfo]] = {}
        for p in params:
            by_group.setdefault(p.group, []).append(p)
        self.sig_of: dict[int, int] = {}
        self.reps: list[list[ParamInfo]] = []
        index: dict[tuple, int] = {}
        for g, plist in by_group.items():
            sig = (g if g < 0 else 0, tuple((p.shape, p.dtype, p.trainable, p.expert, p.tied_output) for p in plist))
            if sig not in index:
                index[sig] = len(self.reps)
                self.reps.append(plist)
            self.sig_of[g] = index[sig]
        self.tied: list[ParamInfo] = [p for p in params if p.tied_output]

    def counts(self, lay: StateLayout) -> dict[int, int]:
        """signature → how many of its groups are on this device's stage."""
        out: dict[int, int] = {}
        for g, sig in self.sig_of.items():
            if lay.stage_groups is None or g in lay.stage_groups:
                out[sig] = out.get(sig, 0) + 1
        return out


@dataclass
class _Totals:
    """Bytes of one device's model states while they are added up, before offload moves some away."""

    weights: float = 0.0
    weights_full: float = 0.0  # before ZeRO-3 sharding (what offloading streams)
    quant_weights: float = 0.0
    bf16_equiv: float = 0.0
    grads: float = 0.0
    bucket: float = 0.0  # ZeRO-2/3 gradient reduction bucket
    opt: float = 0.0
    host: float = 0.0
    nvme: float = 0.0
    fp8_copies: float = 0.0
    fp8_weights: float = 0.0  # FP8 primary weights: the FP8 linear layers' weights, before ZeRO-3 sharding
    block_fp8: dict[int, float] = field(default_factory=dict)  # per block signature, its FP8 weight copies
    trainable_elems: float = 0.0
    block_weight: dict[int, float] = field(default_factory=dict)  # per block signature, its weight bytes
    block_count: dict[int, int] = field(default_factory=dict)  # ... and how many blocks share it
    block_partitioned: dict[int, float] = field(default_factory=dict)  # ZeRO-3: what each block must gather


def model_states(params: list[ParamInfo] | ParamSet, lay: StateLayout) -> States:
    """Per-device weights, gradients and optimizer states for one device of the layout (see module docstring)."""
    pset = params if isinstance(params, ParamSet) else ParamSet(params)
    st = States()
    zo = lay.optimizer == "zo-sgd"
    train = lay.training
    zero_dp = (lay.shard_group or lay.dp) if (train and lay.zero >= 1) else 1
    t = _add_up(pset, lay, zero_dp)
    st.breakdown["weights_full_bytes"] = int(t.weights_full)
    if lay.quant != "none":
        st.breakdown["quantized_weights_bytes"] = int(t.quant_weights)
        st.breakdown["weights_bf16_bytes"] = int(t.bf16_equiv)
    zero3 = train and lay.zero >= 3 and zero_dp > 1 and not zo  # weights gathered block by block
    if zero3:
        _zero3_working_set(st, t, lay, zero_dp)
    if train and not zo and lay.zero >= 2 and zero_dp > 1 and t.trainable_elems:
        _reduce_bucket(st, t, lay)
    if train and not zo:
        # Megatron-LM allocates its fp32 main-gradient buffers once, for the whole run
        st.gradients_resident = (lay.zero >= 2 and zero_dp > 1) or lay.fp32_grads
    if lay.offload != "none" and (zo or not train):
        _stream_blocks(st, t, lay, zo)
    elif lay.offload != "none" and train:
        _offload_optimizer(st, t, lay)
    if zero3 and lay.hpz_ranks:
        # ZeRO++ hpZ (Wang et al. 2023, arXiv:2306.10209, Sec. 3.2): a second copy of the 16-bit weights, partitioned
        # over the node's data-parallel ranks only, from which the backward gathers them inside the node
        secondary = t.bf16_equiv / lay.hpz_ranks
        st.breakdown["zeropp_secondary_weights_bytes"] = int(round(secondary))
        st.notes.append(f"ZeRO++ hpZ: a secondary copy of the 16-bit weights partitioned over the {lay.hpz_ranks} "
                        "data-parallel rank(s) in a node (counted in weights)")
        t.weights += secondary
    if t.fp8_weights:
        st.breakdown["fp8_weights_bytes"] = int(round(t.fp8_weights))
        fp8_bytes = int(methods.value("fp8", "primary_weight_bytes"))
        st.notes.append("FP8 primary weights: the linear layers inside the blocks hold their working weights in FP8 "
                        f"({fp8_bytes} byte per element, gathered so under ZeRO-3), the other weights 16-bit, the fp32 "
                        "master copies with the optimizer")
    if t.fp8_copies and zero3:
        _fp8_copies_of_gathered_blocks(st, t, lay)
    elif t.fp8_copies:
        st.breakdown["fp8_weight_copies_bytes"] = int(round(t.fp8_copies))
        kept = "its FP8 weight's transpose" if t.fp8_weights else "each linear weight's FP8 copy and its FP8 transpose"
        st.notes.append(f"fp8-mixed: Transformer Engine keeps {kept} ({lay.fp8_copy_bytes} byte(s) per element, "
                        "counted in weights) from step to step")
        t.weights += t.fp8_copies
    st.weights_bytes = int(round(t.weights))
    st.gradients_bytes = int(round(t.grads + t.bucket))
    st.optimizer_bytes = int(round(t.opt))
    st.host_bytes = int(round(t.host))
    st.nvme_bytes = int(round(t.nvme))
    st.breakdown["trainable_elements"] = int(t.trainable_elems)
    return st


def _add_up(pset: ParamSet, lay: StateLayout, zero_dp: int) -> _Totals:
    """Weights, gradients and optimizer states of each parameter on this device (ZeRO sharding, TP/EP, quant)."""
    train = lay.training
    zo = lay.optimizer == "zo-sgd"
    prec = precision_of(lay.precision)
    wb = lay.weight_bytes if train else prec.compute_bytes
    # the ranks holding the same expert shard: tp·dp/(ep·etp) (dp/ep when etp is tp)
    expert_dp = max(1, min(lay.dp * lay.tp // (lay.ep * lay.expert_tp), lay.shard_group or lay.dp)) \
        if (train and lay.zero >= 1) else 1
    persist = int(methods.value("zero", "param_persistence_threshold"))
    t = _Totals()

    def shard(p: ParamInfo) -> int:
        return expert_dp if p.expert else zero_dp

    work = [(sig, cnt, pset.reps[sig]) for sig, cnt in pset.counts(lay).items()]
    if lay.stage_groups is not None and lay.last_stage:
        work += [(-1, 1, [p]) for p in pset.tied if p.group not in lay.stage_groups]
    for sig, count, plist in work:
        for p in plist:
            n = _per_device_numel(p, lay)
            if lay.quant != "none" and (not p.trainable or not train) and quantizable(p):
                b = quantized_weight_bytes(int(n), lay.quant, qlora=lay.lora)
                t.quant_weights += b * count
            else:
                b = n * (lay.working_bytes(p) if (train and p.trainable) else wb if not train else prec.compute_bytes)
                if train and p.trainable and lay.fp8_weights and p.fp8_layer:
                    t.fp8_weights += b * count
            t.bf16_equiv += 2 * n * count
            if lay.fp8_copy_bytes and quantizable(p) and lay.quant == "none":
                t.fp8_copies += lay.fp8_copy_bytes * n * count
                if p.group >= 0:
                    t.block_fp8[sig] = t.block_fp8.get(sig, 0.0) + lay.fp8_copy_bytes * n
            t.weights_full += b * count
            if p.group >= 0:
                t.block_weight[sig] = t.block_weight.get(sig, 0.0) + b
                t.block_count[sig] = count
                if p.numel >= persist:
                    t.block_partitioned[sig] = t.block_partitioned.get(sig, 0.0) + b
            if lay.zero >= 3 and train and p.numel >= persist:
                t.weights += b / shard(p) * count
            else:
                t.weights += b * count
            if train and p.trainable and not zo:
                t.trainable_elems += n * count
                t.grads += n * lay.grad_bytes / (shard(p) if lay.zero >= 2 else 1) * count
                ob = optimizer_state_bytes(lay.optimizer, lay.precision, _sharded_shape(p, lay),
                                           master=not lay.fp32_weights)
                t.opt += ob / (shard(p) if lay.zero >= 1 else 1) * count
    return t


def _zero3_working_set(st: States, t: _Totals, lay: StateLayout, zero_dp: int) -> None:
    """ZeRO-3 keeps the block being computed and the prefetched one, gathered whole."""
    gathered_blocks = int(methods.value("zero", "gathered_blocks"))
    persist = int(methods.value("zero", "param_persistence_threshold"))
    max_live = float(methods.value("zero", "max_live_parameters")) * lay.weight_bytes
    biggest_partitioned = max(t.block_partitioned.values(), default=0.0)
    gathered = min(gathered_blocks * biggest_partitioned * (1 - 1 / zero_dp), max_live)
    st.breakdown["weights_shard_bytes"] = int(t.weights)
    st.breakdown["weights_gathered_bytes"] = int(gathered)
    st.notes.append(f"ZeRO-3 gathers the current and the prefetched block's weights on each device "
                    f"({gathered_blocks} × the largest block, capped at stage3_max_live_parameters); parameters "
                    f"under {persist:,} elements stay whole (stage3_param_persistence_threshold)")
    t.weights += gathered


def _fp8_copies_of_gathered_blocks(st: States, t: _Totals, lay: StateLayout) -> None:
    """Under ZeRO-3 no FP8 weight copy lives from micro-batch to micro-batch: the weights are gathered block by
    block and freed, and the FP8 casts of a gathered block go with it (methods.toml [fp8]). What is on the device
    is the copies of the blocks gathered at once (the current and the prefetched), and the whole FP8 copies of the
    weights outside the blocks, which stay gathered."""
    gathered_blocks = int(methods.value("zero", "gathered_blocks"))
    in_blocks = sum(c * t.block_count.get(sig, 1) for sig, c in t.block_fp8.items())
    live = gathered_blocks * max(t.block_fp8.values(), default=0.0) + (t.fp8_copies - in_blocks)
    st.breakdown["fp8_weight_copies_bytes"] = int(round(live))
    st.notes.append(f"fp8-mixed under ZeRO-3: the FP8 copies ({lay.fp8_copy_bytes} bytes per element, counted in "
                    f"weights) are made from each gathered block and freed with it: {gathered_blocks} blocks' worth "
                    "at a time, none kept from step to step")
    t.weights += live


def _reduce_bucket(st: States, t: _Totals, lay: StateLayout) -> None:
    """The ZeRO-2/3 reduce-scatter buffer gradients are copied into (counted in gradients)."""
    t.bucket = min(float(methods.value("zero", "reduce_bucket_elements")), t.trainable_elems) * lay.grad_bytes
    st.breakdown["gradients_bucket_bytes"] = int(t.bucket)
    st.notes.append("ZeRO-2/3 reduce gradients through a bucket of min(reduce_bucket_size = 500,000,000 elements, "
                    "the device's trainable elements), counted in gradients_bytes")


def _stream_blocks(st: States, t: _Totals, lay: StateLayout, zo: bool) -> None:
    """ZO2 / offloaded inference: blocks live off the device and are uploaded a few at a time."""
    gathered_blocks = int(methods.value("zero", "gathered_blocks"))
    block_total = sum(w * t.block_count[sig] for sig, w in t.block_weight.items())
    resident = t.weights - block_total
    working = min(gathered_blocks, max(sum(t.block_count.values()), 1)) * max(t.block_weight.values(), default=0.0)
    if lay.offload == "cpu":
        t.host += block_total
    else:
        t.nvme += block_total
        t.host += working  # staging buffers in host memory
    st.breakdown["weights_streamed_bytes"] = int(block_total)
    st.breakdown["weights_resident_bytes"] = int(resident)
    st.notes.append(("ZO2 (Wang et al. 2025, arXiv:2503.12668): " if zo else "offloaded inference: ")
                    + f"the blocks' weights live in {'host memory' if lay.offload == 'cpu' else 'NVMe'} and are "
                    f"uploaded {gathered_blocks} blocks at a time (the block computed and the next); the layers "
                    "outside the blocks stay on the device")
    t.weights = resident + working


def _offload_optimizer(st: States, t: _Totals, lay: StateLayout) -> None:
    """ZeRO-Offload / ZeRO-Infinity: optimizer states (with fp32 master weights) off the device, the step on
    the CPU, gradients to host memory; with ZeRO-3 the weight partition too."""
    where = "host memory" if lay.offload == "cpu" else "NVMe"
    if lay.offload == "cpu":
        t.host += t.opt
    else:
        t.nvme += t.opt
    st.optimizer_on_device = False
    t.host += t.grads
    st.breakdown["gradients_offloaded_bytes"] = int(t.grads)
    t.grads = 0.0
    st.gradients_resident = True
    if lay.zero >= 3:
        shard_w = st.breakdown.get("weights_shard_bytes", t.weights)
        if lay.offload == "cpu":
            t.host += shard_w
        else:
            t.nvme += shard_w
        t.weights -= shard_w
        st.notes.append("ZeRO-Infinity parameter offload: each device's weight partition lives off the device; "
                        "only the gathered working set is on it")
    st.notes.append(f"ZeRO-Offload{'/Infinity' if lay.offload == 'nvme' else ''}: optimizer states with the fp32 "
                    f"master weights in {where}, gradients moved to host memory as they are reduced, the optimizer "
                    "step on the CPU")
    st.breakdown["optimizer_offloaded_bytes"] = int(t.opt)
    t.opt = 0.0


def _sharded_shape(p: ParamInfo, lay: StateLayout) -> tuple[int, ...]:
    """The tensor a device holds under TP/EP (for per-tensor rules: Adafactor factors, 8-bit blocks, and every
    optimizer's state). A packed expert tensor [experts, out, in] (Hugging Face's grouped experts) is split by
    expert parallelism along its experts and by tensor parallelism along its rows; a 2-D one along its rows."""
    shape = list(p.shape)
    tp = lay.tp_of(p)
    rows = 1 if (p.expert and len(shape) >= 3) else 0
    if p.matrix and tp > 1 and shape:
        shape[rows] = max(1, math.ceil(shape[rows] / tp))
    if p.expert and lay.ep > 1 and shape:
        shape[0] = max(1, math.ceil(shape[0] / lay.ep))
    return tuple(shape)


def fp8_layer_weight(fact: ParamFact, head: str | None) -> bool:
    """Whether a traced parameter is the weight of an FP8 linear layer, which FP8 primary weights hold in FP8: a
    trainable matrix that is neither an embedding table nor the output head (``head``: its module path), as
    Megatron-LM/NeMo run Transformer Engine's linear layers in the blocks and keep the output layer 16-bit, and
    TorchTitan converts every linear layer but ``output`` to float8."""
    return (fact.trainable and len(fact.shape) == 2 and not fact.embedding
            and not (head and fact.name.startswith(head + ".")))


def fp8_weight_elements(trace: Trace) -> int:
    """Elements of the FP8 linear layers' weights in a trace (:func:`fp8_layer_weight`)."""
    head = trace.memory.output_embedding
    return sum(p.numel for p in trace.params if fp8_layer_weight(p, head))


def params_from_trace(trace: Trace, block_paths: list[str], pre_paths: set[str] | None = None) -> list[ParamInfo]:
    """ParamInfo for each (unique) parameter the trace recorded, placed in its block or before/after them."""
    out: list[ParamInfo] = []
    sorted_blocks = sorted(((p, i) for i, p in enumerate(block_paths)), key=lambda t: -len(t[0]))
    names = {p.name for p in trace.params}
    out_emb = trace.memory.output_embedding
    tied_name = None
    if out_emb and f"{out_emb}.weight" not in names:
        tied_name = "?"  # the head's weight is shared with an earlier parameter: the input embedding
    for fact in trace.params:
        name, shape = fact.name, fact.shape
        group = None
        for path, i in sorted_blocks:
            if name.startswith(path + "."):
                group = i
                break
        module = name.rpartition(".")[0]
        if group is None:
            group = -1 if (pre_paths is None or module in pre_paths or not block_paths) else -2
        tied = bool(tied_name) and group == -1 and len(shape) == 2 and ("embed" in name or "wte" in name or "word" in name)
        out.append(ParamInfo(name, tuple(shape), fact.dtype, fact.trainable, group, fact.expert, tied,
                             fp8_layer_weight(fact, out_emb)))
    return out
