"""The sections of a report (``mlfootprint.report/1``): one dataclass each, its fields the section's keys.

These classes are the schema. The verbs fill them from the typed results of the analyses; ``to_dict`` is the
JSON form (a field left at None is absent, never zero, except in the workload, which lists every field);
``mlfootprint.report.jsonschema`` derives the JSON Schema shipped in the package from them, so a key cannot
be written that the schema does not know. Keys carry their unit as a suffix (``_bytes``, ``_s``, ``_j``,
``_g``, ``_l``, ``_usd``, ``_per_s``); a rate over FLOPs is ``flop_per_s``.

Section names follow DESIGN.md. MFU and HFU live in ``time`` for every verb, ``mfu`` included. Sections
beyond DESIGN.md's list: ``measured`` (bench, track), ``plan``, ``claims``, ``catalog`` (models, hardware),
``compare``, ``history`` and ``table``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, ClassVar


@dataclass
class Section:
    """Base of every section: its name in the report and its JSON form."""

    NAME: ClassVar[str] = ""
    KEEP_NONE: ClassVar[bool] = False  # keep None-valued keys (the workload lists every field)
    OPEN: ClassVar[bool] = False  # keys beyond the fields are allowed (user-supplied tables)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and not self.KEEP_NONE:
                continue
            out[f.name] = _plain(value)
        return out


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return value.to_dict() if hasattr(value, "to_dict") else {f.name: _plain(getattr(value, f.name))
                                                                   for f in fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ------------------------------------------------------------------------------------------ model, workload


@dataclass
class ModelSection(Section):
    NAME: ClassVar[str] = "model"

    name: str = ""
    source: str = ""  # catalog | hf-config | hf-hub | factory | module
    origin: str = ""  # the catalog file in the package, a config path, a hub id or module:callable
    task: str = "custom"
    display_name: str | None = None
    hub_id: str | None = None
    paper: str | None = None
    config_source: str | None = None
    layers: int | None = None
    decoder_layers: int | None = None
    hidden: int | None = None
    heads: int | None = None
    vocab: int | None = None
    context: int | None = None
    kv_heads: int | None = None
    head_dim: int | None = None
    ffn: int | None = None
    experts: int | None = None
    experts_per_token: int | None = None
    image_size: int | None = None
    patch_size: int | None = None
    architecture: str | None = None
    parallel_block: bool | None = None  # attention and MLP side by side on one input (GPT-J, GPT-NeoX, Falcon, Phi)
    params: int | None = None  # track: parameters of the tracked module (its own count, not a trace's)


@dataclass
class WorkloadSection(Section):
    """Every workload field, given or default (``defaults`` lists the defaults; reports mark them assumed)."""

    NAME: ClassVar[str] = "workload"
    KEEP_NONE: ClassVar[bool] = True

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
    zeropp: bool = False
    shard_group: int | None = None
    tp_comm_overlap: bool = False
    tp_overlap: str = "userbuffers"  # how TP-comm overlap hides the collectives
    pp_comm_overlap: bool = False
    grad_reduce: str = "overlap"
    tp_backward: str = "auto"  # the backward's TP collectives under the column-parallel linears' GEMMs, exposed, or auto
    zero_impl: str = "auto"  # which ZeRO-3 runs: PyTorch's FSDP2 (buffer copies on the compute stream), DeepSpeed's, or auto
    grad_reduce_dtype: str = "auto"
    mixed_weights: str = "auto"  # under mixed precision: fp32 weights under autocast, 16-bit working weights, or auto
    fp8_weights: bool = False  # FP8 primary weights: the FP8 linear layers' weights held and gathered in FP8
    etp: int | None = None
    dp: int = 1
    tp: int = 1
    pp: int = 1
    ep: int = 1
    cp: int = 1  # context-parallel degree
    vp: int = 1  # virtual pipeline stages per device
    schedule: str = "1f1b"  # pipeline schedule
    cp_comm: str = "ring"  # context-parallel exchange
    sequence_parallel: bool | None = None
    lora_rank: int | None = None
    lora_targets: list[str] | None = None
    quant: str = "none"
    hardware: str | None = None
    devices: int | None = None
    tokens: float | None = None
    device_memory: int | None = None
    other_bytes: int | None = None
    offload_activations: float = 0.0  # the fraction of the blocks' saved activations moved to the host
    kernels: str | None = None  # whose kernels the trace emulated: cpu or cuda (the target device's)
    fusion: str | None = None  # the kernel-fusion stack asked for (none | fused | compiled); absent: the default
    defaults: list[str] = field(default_factory=list)


@dataclass
class TrackedWorkloadSection(Section):
    """The workload of a tracked loop (``track``): what the tracker was told or saw, nothing assumed."""

    NAME: ClassVar[str] = "workload"
    KEEP_NONE: ClassVar[bool] = True

    mode: str = "train"
    grad_accum: int = 1
    precision: str | None = None
    hardware: str | None = None
    tokens_per_step: float | None = None
    world_size: int = 1


# ------------------------------------------------------------------------------------------ params, flops


@dataclass
class ParamsSection(Section):
    NAME: ClassVar[str] = "params"

    total: int = 0
    trainable: int = 0
    frozen: int = 0
    embedding: int = 0
    non_embedding: int = 0
    active: int = 0  # parameters one token uses (MoE: top-k of the routed experts)
    expert: int | None = None  # routed expert parameters (MoE)
    by_dtype: dict[str, int] = field(default_factory=dict)
    published: float | None = None  # the catalog's published count (models show)


@dataclass
class FlopsSection(Section):
    NAME: ClassVar[str] = "flops"

    forward: int = 0  # model (matrix-class) FLOPs of the forward pass
    backward: int = 0
    model: int = 0  # forward + backward: the MFU numerator
    other: int = 0  # elementwise, normalization, softmax, reductions (forward + backward)
    other_forward: int = 0
    other_backward: int = 0
    optimizer: int = 0
    recompute: int = 0  # hardware-only FLOPs (activation recomputation, fused-attention recomputation)
    hardware: int = 0  # model + recompute: the HFU numerator
    total: int = 0  # every FLOP the step executes: model + recompute + other + optimizer
    attention: int = 0  # attention score/value products inside model
    attention_causal_halved: int | None = None  # model with causal attention halved (absent: no causal attention)
    scan: int | None = None  # state-space scan products inside model (Mamba); never attention (absent: no scan)
    per_token: float | None = None
    tokens: int = 0
    # --mode generate: the forward FLOPs of the --gen-tokens decode steps after the prompt (modeled from the trace;
    # the figures above are the prompt's prefill)
    decode: int | None = None
    unsupported_ops: dict[str, int] | None = None
    by_module: dict[str, Any] | None = None  # the module tree (name, path, type, params, forward, backward, ...)
    by_op: dict[str, dict[str, Any]] | None = None
    trace_s: float | None = None  # wall-clock time of the trace (this run, not the workload)
    token_unit: str = "tokens"
    macs_forward: int | None = None  # on request (--macs): 1 MAC = 2 FLOPs of matrix-class work
    macs_backward: int | None = None


# ------------------------------------------------------------------------------------------ memory


@dataclass
class FitSuggestion:
    """A change that makes a workload fit, as the memory model checked it."""

    change: str  # the options to add, e.g. "--zero 3" or "--devices 4 --zero 3"
    peak_bytes: int  # per device, with the change
    devices: int  # devices the changed layout uses
    at_most: bool = False  # sized on a trace of other working weights (autocast's fp32 stream): an upper bound


@dataclass
class MemorySection(Section):
    NAME: ClassVar[str] = "memory"

    weights_bytes: int = 0
    gradients_bytes: int = 0
    optimizer_bytes: int = 0
    activations_bytes: int = 0
    kv_cache_bytes: int = 0
    other_bytes: int = 0
    peak_bytes: int = 0  # per device, the worst pipeline stage
    host_bytes: int = 0  # everything kept in host memory: offloaded model states and activations
    nvme_bytes: int = 0
    offload_activations: float | None = None  # --offload-activations: the fraction moved to the host
    activations_host_bytes: int | None = None  # of host_bytes, the offloaded activations
    activations_offloaded_bytes: int | None = None  # device memory saved: the peak without the offload − with it
    activation_offload_traffic_bytes: int | None = None  # host-link bytes per step, both directions
    device_bytes: int | None = None
    fits: bool | None = None
    headroom_bytes: int | None = None
    peak_phase: str = ""
    pipeline_stage: int | None = None
    at_peak: dict[str, int] = field(default_factory=dict)
    breakdown: dict[str, Any] = field(default_factory=dict)
    layout: dict[str, Any] | None = None
    weights_compression_vs_bf16_ratio: float | None = None
    quantized_compression_vs_bf16_ratio: float | None = None
    device_source: str | None = None
    max_micro_batch: int | None = None
    max_batch: int | None = None
    max_batch_traces: int | None = None
    suggestions: list[FitSuggestion] | None = None  # when it does not fit: the smallest changes that do


# ------------------------------------------------------------------------------------------ time


@dataclass
class TimeSection(Section):
    """Predicted time of one step and what follows (or, for ``mfu``, utilization from a measured throughput)."""

    NAME: ClassVar[str] = "time"

    hardware: str | None = None
    devices: int | None = None
    layout: str | None = None
    step_s: float | None = None
    tokens_per_step: int | None = None
    samples_per_step: int | None = None
    tokens_per_s: float | None = None
    samples_per_s: float | None = None
    mfu: float | None = None
    hfu: float | None = None
    model_flops_per_token: float | None = None
    hardware_flops_per_token: float | None = None
    achieved_flop_per_s: float | None = None
    achieved_per_device_flop_per_s: float | None = None
    peak_flop_per_s: float | None = None
    peak_dtype: str | None = None
    seq: int | None = None
    formula: str | None = None  # mfu: where the FLOPs per token came from
    basis: str | None = None
    bottleneck: str | None = None
    token_unit: str | None = None
    breakdown: dict[str, float] | None = None
    fusion: str | None = None  # the kernel-fusion stack the step model used: none | fused | compiled
    fusion_counts: dict[str, float] | None = None  # ops, kernels, ops_fused_away, traffic_{unfused,fused,fused_away}_bytes
    gemm_efficiency: float | None = None  # FLOP-weighted achieved/peak of the size-rated GEMMs at this layout
    phases: dict[str, float] | None = None
    communication: dict[str, float] | None = None
    communication_volume: dict[str, float] | None = None
    prefill_s: float | None = None
    decode_batch: int | None = None
    decode_context: int | None = None
    decode_token_s: float | None = None
    decode_tokens_per_s: float | None = None
    decode_bound: str | None = None
    gen_tokens: int | None = None
    generate_s: float | None = None
    generate_tokens_per_s: float | None = None
    train_tokens: float | None = None
    train_steps: float | None = None
    train_s: float | None = None
    device_hours: float | None = None
    train_flops: float | None = None
    train_hardware_flops: float | None = None
    train_flops_6nd: float | None = None
    deadline_s: float | None = None
    devices_for_deadline: int | None = None
    devices_for_deadline_exact: float | None = None
    deadline_mfu: float | None = None


# ------------------------------------------------------------------------------------------ footprint


@dataclass
class FootprintInput:
    value: float | str
    unit: str
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "unit": self.unit, "source": self.source}


@dataclass
class FootprintSection(Section):
    NAME: ClassVar[str] = "footprint"

    scope: str | None = None  # analyze/predict: "one step", "one generate call" or "training run (--tokens)"
    region: str | None = None
    facility: str | None = None
    carbon_accounting: str = ""
    device_hours: float | None = None
    device_energy_j: float = 0.0
    facility_energy_j: float = 0.0
    serving_energy_j: float | None = None
    energy_j: float = 0.0
    co2e_g: float = 0.0
    serving_co2e_g: float | None = None
    embodied_co2e_g: float | None = None
    total_co2e_g: float = 0.0
    water_onsite_l: float | None = None
    water_offsite_l: float | None = None
    water_l: float | None = None
    cost_usd: float | None = None
    params_served_per_gco2e: float | None = None
    inputs: dict[str, FootprintInput] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ measured


@dataclass
class VersusPredicted:
    measured: float | None
    predicted: float | None
    error_fraction: float | None  # (predicted − measured) / measured
    predicted_by: str
    note: str = ""


@dataclass
class MeasuredSection(Section):
    """What a real run measured (``bench``, ``track``), with the prediction beside it where there is one."""

    NAME: ClassVar[str] = "measured"

    status: str | None = None  # track: complete | incomplete | ...
    device: str | None = None
    mode: str | None = None
    batch: int | None = None
    seq: int | None = None
    token_unit: str | None = None
    tokens_per_step: int | None = None
    samples_per_step: int | None = None
    warmup_runs: int | None = None
    runs: int | None = None
    stopped_because: str | None = None
    latency_median_s: float | None = None
    latency_p90_s: float | None = None
    latency_p99_s: float | None = None
    latency_mean_s: float | None = None
    latency_min_s: float | None = None
    latency_max_s: float | None = None
    latency_stdev_s: float | None = None
    latency_median_ci_low_s: float | None = None
    latency_median_ci_high_s: float | None = None
    latency_median_ci_fraction: float | None = None
    latency_median_ci_level: float | None = None  # the interval's exact coverage (0.75 at 3 runs, 0.95 from about 12)
    latency_samples: int | None = None
    ranks: int | None = None  # track, several ranks: all ranks, and those that reported steps
    ranks_reporting: int | None = None
    steps: int | None = None
    micro_steps: int | None = None
    warmup_steps_excluded: int | None = None
    tokens: float | None = None
    step_s: float | None = None
    step_mean_s: float | None = None
    step_p90_s: float | None = None
    step_p99_s: float | None = None
    step_min_s: float | None = None
    step_max_s: float | None = None
    counted_elapsed_s: float | None = None
    straggler_ratio: float | None = None
    slowest_rank: int | None = None
    fastest_rank: int | None = None
    tokens_per_s: float | None = None
    samples_per_s: float | None = None
    model_flops_per_step: float | None = None
    hardware_flops_per_step: float | None = None
    model_flops_per_token: float | None = None
    hardware_flops_per_token: float | None = None
    model_flops_per_micro_batch: float | None = None
    hardware_flops_per_micro_batch: float | None = None
    forwards_in_first_step: int | None = None
    flops_source: str | None = None
    trace_s: float | None = None
    achieved_flops_per_s: float | None = None
    peak_flop_per_s: float | None = None
    peak_dtype: str | None = None
    peak_from: str | None = None
    hardware: str | None = None
    mfu: float | None = None
    hfu: float | None = None
    peak_bytes: int | None = None  # peak memory of the step (allocated tensors), comparable to memory.peak_bytes
    reserved_bytes: int | None = None  # CUDA: peak reserved by the caching allocator
    memory_method: str | None = None
    energy_provenance: str | None = None
    energy_method: str | None = None
    energy_j: float | None = None
    energy_per_step_j: float | None = None
    energy_per_token_j: float | None = None
    mean_power_w: float | None = None
    partial_energy_j: float | None = None
    energy_notes: list[str] | None = None
    vs_predicted: dict[str, VersusPredicted] | None = None
    oom: dict[str, Any] | None = None
    by_rank: dict[str, dict[str, Any]] | None = None
    unavailable: dict[str, str] | None = None
    series: list[dict[str, Any]] | None = None
    rank_series: dict[str, list[dict[str, Any]]] | None = None
    memory_samples: list[dict[str, Any]] | None = None
    energy_samples: list[dict[str, Any]] | None = None


# ------------------------------------------------------------------------------------------ plan


@dataclass
class PlanLayout:
    rank: int
    tp: int
    pp: int
    dp: int
    ep: int
    zero: int
    zeropp: bool
    micro_batch: int
    micro_batches: int
    recompute: str
    step_s: float
    tokens_per_s: float
    mfu: float
    hfu: float
    peak_bytes: float | None
    fits: bool | None
    bottleneck: str
    breakdown: dict[str, float]
    cp: int = 1  # context-parallel degree
    vp: int = 1  # virtual pipeline stages per device
    schedule: str = "1f1b"
    cp_comm: str = "ring"
    stage_layers: list[int] | None = None  # blocks per pipeline stage
    bubble_fraction: float = 0.0  # bubble / the slowest stage's busy time
    why: str = ""  # why it loses to #1: the parts of the step that grew most ("+18% bubble")
    weights: str | None = None  # working weights under mixed precision: fp32 (PyTorch AMP) or 16-bit


@dataclass
class PlanSection(Section):
    NAME: ClassVar[str] = "plan"

    hardware: str = ""
    devices: int = 0
    global_batch: int = 0
    tokens_per_step: int = 0
    best: str = ""
    step_s: float = 0.0
    tokens_per_s: float = 0.0
    mfu: float = 0.0
    hfu: float = 0.0
    peak_bytes: float | None = None
    device_bytes: int = 0
    bottleneck: str = ""
    explanation: str = ""
    considered: int = 0
    memory_checked: int = 0
    plan_s: float | None = None  # wall-clock time of the planning (this run)
    layouts: list[PlanLayout] | None = None


# ------------------------------------------------------------------------------------------ claims, catalog, ...


@dataclass
class ClaimRow:
    claim: str
    kind: str  # the checker that recomputed it (papers/checkers.py)
    published: Any
    ours: Any
    unit: str
    difference: float | None
    tolerance: float | None
    verdict: str  # reproduced | consistent | differs | not checkable | error (README, "Published claims")
    expected_verdict: str | None
    detail: str
    missing: list[str]
    source: str
    url: str
    machinery: list[str] = field(default_factory=list)  # parts of mlfootprint that recomputed it; [] = arithmetic
    pinned: float | None = None  # our figure when the row was last reviewed
    pin_tolerance: float | None = None
    pin_drift: float | None = None  # (ours − pinned) / pinned


@dataclass
class ClaimsSection(Section):
    NAME: ClassVar[str] = "claims"

    rows: dict[str, ClaimRow] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # rows per verdict
    # Published runs held against `predict` (the predict_step rows): how many, and |(ours − published) / published|.
    predict_rows: int = 0
    predict_median_abs_difference: float | None = None
    predict_worst_abs_difference: float | None = None


@dataclass
class CatalogSection(Section):
    """The model or hardware catalog (``models list``, ``hardware list``, ``hardware show``)."""

    NAME: ClassVar[str] = "catalog"
    OPEN: ClassVar[bool] = False

    count: int = 0
    models: dict[str, dict[str, Any]] | None = None
    devices: dict[str, dict[str, Any]] | None = None  # id → the device's figures, each with its source
    saved_to: str | None = None  # hardware calibrate: where the profile was saved


@dataclass
class CompareSection(Section):
    NAME: ClassVar[str] = "compare"

    reports: list[dict[str, Any]] = field(default_factory=list)
    figures: list[dict[str, Any]] = field(default_factory=list)
    pareto: dict[str, Any] | None = None


@dataclass
class HistorySection(Section):
    """``history list``, ``history add`` and ``history diff``."""

    NAME: ClassVar[str] = "history"

    db: str = ""
    entries: list[dict[str, Any]] | None = None  # list: newest first
    filters: dict[str, str] | None = None  # list: the filters given
    added: list[dict[str, Any]] | None = None  # add: file, id, verb, model
    a: dict[str, Any] | None = None  # diff: the two entries
    b: dict[str, Any] | None = None
    rows: list[dict[str, Any]] | None = None  # diff: path, a, b, rel_change
    all_figures: bool | None = None  # diff: unchanged figures listed too


@dataclass
class PaperTableColumn:
    key: str  # params, flops, memory, step, mfu, energy, co2e
    label: str
    unit: str  # the base unit of the values (parameters, FLOP, bytes, s, fraction, J, gCO2e)


@dataclass
class PaperTableRow:
    label: str
    source: str  # the report file (or "reportN" for a Report object)
    values: dict[str, float | None] = field(default_factory=dict)  # column key → value in the base unit
    paths: dict[str, str] = field(default_factory=dict)  # column key → the figure it came from (measured.step_s)
    provenance: dict[str, str] = field(default_factory=dict)  # column key → counted / measured / modeled / ...
    footprint_scope: str | None = None  # what energy and CO2e cover ("one step", "the training run")
    workload: str = ""  # the workload in one line: mode, precision, batch, devices


@dataclass
class PaperTableSection(Section):
    """``table``: one row per report, the figures a paper's efficiency table has."""

    NAME: ClassVar[str] = "table"

    columns: list[PaperTableColumn] = field(default_factory=list)
    rows: list[PaperTableRow] = field(default_factory=list)


SECTION_TYPES: tuple[type[Section], ...] = (
    ModelSection, WorkloadSection, TrackedWorkloadSection, ParamsSection, FlopsSection, MemorySection, TimeSection, FootprintSection,
    MeasuredSection, PlanSection, ClaimsSection, CatalogSection, CompareSection, HistorySection, PaperTableSection,
)
# section name → the dataclasses its JSON form may follow (the workload of a tracked loop has its own shape)
SECTIONS: dict[str, tuple[type[Section], ...]] = {}
for _cls in SECTION_TYPES:
    SECTIONS[_cls.NAME] = SECTIONS.get(_cls.NAME, ()) + (_cls,)

