"""Options shared by the verbs that take a MODEL and a workload."""
from __future__ import annotations

import argparse

from ..core.units import parse_size
from ..workload import (ATTENTION, CP_COMM, FUSION, GRAD_REDUCE, GRAD_REDUCE_DTYPE, MIXED_WEIGHTS, MODES, OFFLOAD, OPTIMIZERS, PRECISIONS, QUANT,
                        RECOMPUTE, SCHEDULES, TP_BACKWARD, TP_OVERLAP, Workload, ZERO_IMPL)


def _choice(allowed: tuple[str, ...]):
    # Validation happens in Workload so the message (with suggestions) is the same from API and CLI.
    return str


def add_model_options(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("model", nargs=None if required else "?", default=None, metavar="MODEL",
                   help="catalog name (see 'mlfootprint models list'), path to an HF config.json or its folder, "
                        "an HF hub id, or package.module:callable / file.py:callable (default: gpt2)")
    p.add_argument("--input", action="append", default=[], metavar="SHAPE[:DTYPE]",
                   help="input shape for a module:callable model, e.g. 8x3x224x224 or 4x128:int64 (repeatable)")
    p.add_argument("--inputs", dest="inputs_ref", default=None, metavar="FILE.py:CALLABLE",
                   help="a callable returning the model's inputs (a tensor, a tuple, or a dict of keyword args)")


def add_workload_options(p: argparse.ArgumentParser, parallel: bool = True, *, mode_default: str = "inference",
                         batch_default: str = "training a text model, about 4M tokens as plan lays out (a LoRA "
                                              "fine-tune: 64 samples); otherwise "
                                              "one sample per data-parallel replica",
                         hardware_help: str = "") -> None:
    """The workload options; the defaults a verb gives them are said in its help (predict and plan train)."""
    g = p.add_argument_group("workload")
    g.add_argument("--batch", type=int, default=None, help=f"global batch size (default: {batch_default})")
    g.add_argument("--seq", type=int, default=None, help="sequence length (default: the model's context, at most 4096)")
    implied = "" if mode_default == "train" else \
        "; train when an option only a training step has, such as --optimizer, --zero, --recompute or --lora-rank, " \
        "is given"
    g.add_argument("--mode", type=_choice(MODES), default=None,
                   help=f"{{{','.join(MODES)}}} (default {mode_default}{implied})")
    g.add_argument("--precision", type=_choice(PRECISIONS), default=None, help=f"{{{','.join(PRECISIONS)}}} (default: bf16-mixed to train, bf16 to serve, on a "
                        "device with a bf16 peak; fp32 otherwise)")
    g.add_argument("--optimizer", type=_choice(OPTIMIZERS), default=None, help=f"{{{','.join(OPTIMIZERS)}}} (default adamw)")
    g.add_argument("--attention", type=_choice(ATTENTION), default=None,
                   help="attention implementation of HF models: sdpa (fused; default; on Hopper GPUs timed as "
                        "cuDNN's kernel, as Transformer Engine stacks run it), flash2 (SDPA timed as "
                        "FlashAttention-2, PyTorch's flash backend, which SDPA has put first on Hopper in some releases "
                        "and builds), eager (transformers' eager code: stores the T×T "
                        "probabilities, in fp32 under autocast) or unfused (Megatron-LM before FlashAttention: "
                        "16-bit T×T scores, fused scale-mask-softmax, dropout)")
    g.add_argument("--gen-tokens", type=int, default=None, help="tokens generated in --mode generate (default 128)")
    g.add_argument("--micro-batch", type=int, default=None)
    g.add_argument("--grad-accum", type=int, default=None)
    g.add_argument("--recompute", type=_choice(RECOMPUTE), default=None, help=f"{{{','.join(RECOMPUTE)}}} (default none)")
    g.add_argument("--lora-rank", type=int, default=None)
    g.add_argument("--lora-targets", default=None, help="comma-separated module name parts, e.g. q_proj,v_proj")
    g.add_argument("--quant", type=_choice(QUANT), default=None, help=f"{{{','.join(QUANT)}}}")
    g.add_argument("--no-user-hooks", dest="user_hooks", action="store_const", const=False, default=None,
                   help="trace a module:callable model without its own forward/backward/gradient hooks (they run "
                        "by default, as part of the model)")
    add_save_options(p)
    add_cache_option(p)
    if parallel:
        g.add_argument("--zero", type=int, default=None, help="ZeRO stage 0-3")
        g.add_argument("--offload", type=_choice(OFFLOAD), default=None)
        g.add_argument("--offload-activations", default=None, metavar="FRACTION",
                       help="move this fraction (0-1, or 'all') of each transformer block's saved activations to host "
                            "memory between its forward and its backward (MEMO-style activation offload; training)")
        g.add_argument("--dp", type=int, default=None)
        g.add_argument("--tp", type=int, default=None)
        g.add_argument("--pp", type=int, default=None)
        g.add_argument("--ep", type=int, default=None)
        g.add_argument("--cp", type=int, default=None,
                       help="context parallelism: each sequence split over CP devices (devices = dp × tp × pp × cp)")
        g.add_argument("--cp-comm", type=_choice(CP_COMM), default=None,
                       help="context-parallel exchange: ring (ring attention, Megatron CP; default), all-gather "
                            "(Llama 3: K and V gathered before attention, exposed) or all-to-all (DeepSpeed-Ulysses)")
        g.add_argument("--vp", type=int, default=None,
                       help="virtual pipeline stages per device: interleaved 1F1B, bubble (pp-1)/(vp·m) (default 1)")
        g.add_argument("--schedule", type=_choice(SCHEDULES), default=None,
                       help=f"pipeline schedule {{{','.join(SCHEDULES)}}}: 1f1b (default; interleaved with --vp) or "
                            "zero-bubble (ZB-H1, Qi et al. 2023)")
        g.add_argument("--sequence-parallel", action=argparse.BooleanOptionalAction, default=None,
                       help="Megatron sequence parallelism with --tp: norms, dropout and the residual stream are "
                            "sharded too (default: on when --tp > 1, as plan assumes)")
        g.add_argument("--shard-group", type=int, default=None, metavar="G",
                       help="FSDP/HSDP with a ZeRO stage: shard inside groups of G data-parallel ranks, replicate "
                            "across the groups (default: shard over all of them)")
        g.add_argument("--tp-comm-overlap", action="store_true", default=None,
                       help="tensor-parallel collectives overlapped with the GEMMs (Megatron/Transformer Engine "
                            "--tp-comm-overlap; default: exposed)")
        g.add_argument("--tp-overlap", type=_choice(TP_OVERLAP), default=None,
                       help="with --tp-comm-overlap, how the collectives are hidden: userbuffers (Megatron/Transformer "
                            "Engine's chunked GEMMs: hidden up to the compute; default) or async-tp (PyTorch's async "
                            "tensor parallelism under torch.compile, as TorchTitan runs it: a calibrated share hidden)")
        g.add_argument("--pp-comm-overlap", action="store_true", default=None,
                       help="with --pp and --vp > 1: the interleaved schedule's sends and receives overlapped with "
                            "its steady state's compute, fill and flush exposed (Megatron-Core overlap_p2p_comm, "
                            "NeMo's default with virtual stages; default: exposed)")
        g.add_argument("--etp", type=int, default=None, metavar="N",
                       help="expert tensor-parallel size with --ep, a divisor of --tp (Megatron Core's "
                            "--expert-tensor-parallel-size, MoE Parallel Folding): routed experts split over N ranks, "
                            "each expert-parallel group ep ranks N apart (default: --tp)")
        g.add_argument("--grad-reduce", type=_choice(GRAD_REDUCE), default=None,
                       help="when the data-parallel gradient reduction runs: overlap (bucket by bucket under the "
                            "backward, as PyTorch DDP, FSDP and DeepSpeed do; default) or after-backward (after the "
                            "last micro-batch's backward, exposed: Megatron-LM without --overlap-grad-reduce)")
        g.add_argument("--tp-backward", type=_choice(TP_BACKWARD), default=None,
                       help="with --tp > 1 in training: how the backward's tensor-parallel collectives run: overlap "
                            "(each column-parallel linear's input-gradient all-reduce, or under sequence parallelism "
                            "its reduce-scatter and its input's re-gather, under that linear's own GEMMs: Megatron-LM "
                            "since 2021-09, Megatron-Core, Transformer Engine), exposed (after each linear's "
                            "backward: PyTorch tensor parallelism, Megatron-LM before 2021-09) or auto (default: "
                            "overlap on the fused stack, exposed on PyTorch's eager or compiled one, see --fusion)")
        g.add_argument("--zero-impl", type=_choice(ZERO_IMPL), default=None,
                       help="with --zero 3 in training: which ZeRO-3 runs: fsdp2 (PyTorch's FSDP2: each weight "
                            "all-gather's buffer copied into the parameters and the gradients into the reduce-scatter "
                            "buffer, on the compute stream), deepspeed (DeepSpeed's ZeRO-3, as Megatron's: gathered "
                            "into and reduced from buffers in place) or auto (default: fsdp2 on PyTorch's eager or "
                            "compiled stack, deepspeed on the fused stack and with --zeropp, see --fusion)")
        g.add_argument("--grad-reduce-dtype", type=_choice(GRAD_REDUCE_DTYPE), default=None,
                       help="the dtype data-parallel gradients are reduced in under mixed precision: auto (their own "
                            "dtype: fp32 under autocast over fp32 weights, as PyTorch DDP reduces them; 16-bit with "
                            "16-bit working weights or ZeRO-3, as DeepSpeed and FSDP do; fp32 main gradients under bf16 with the "
                            "model split over devices, as Megatron-LM keeps them; default), compute (the 16-bit "
                            "compute dtype: a DDP compression hook) or fp32 (Megatron-LM and NeMo under bf16, "
                            "TorchTitan's mixed_precision_reduce)")
        g.add_argument("--mixed-weights", type=_choice(MIXED_WEIGHTS), default=None,
                       help="under mixed precision, the dtype of the model's own weights: auto (default: 16-bit "
                            "under ZeRO-3, as FSDP and DeepSpeed gather them, and with --tp, --pp or --cp above 1, "
                            "as Megatron-LM runs them; fp32 otherwise), fp32 (PyTorch AMP: "
                            "autocast casts them per operator) or 16-bit (16-bit weights and activations with fp32 "
                            "master weights in the optimizer: Megatron-LM, NeMo, DeepSpeed, FSDP's param_dtype)")
        g.add_argument("--fp8-weights", action="store_true", default=None,
                       help="with --precision fp8-mixed training: FP8 primary weights, the FP8 linear layers' weights "
                            "held and gathered in FP8 with fp32 master copies in the optimizer (NeMo fp8_params, "
                            "Megatron-LM --fp8-param-gather, torchao enable_fsdp_float8_all_gather; default: 16-bit "
                            "weights cast to FP8 after the gather)")
        g.add_argument("--hardware", default=None, metavar="ID",
                       help="device id from 'mlfootprint hardware list'" + (f" ({hardware_help})" if hardware_help else ""))
        g.add_argument("--devices", type=int, default=None)
        g.add_argument("--fusion", type=_choice(FUSION), default=None,
                       help=f"{{{','.join(FUSION)}}}: operators fused into kernels by the step-time model, and the "
                            "activations a fused chain keeps in the memory model (default: the target stack's: fused "
                            "on GPUs, compiled on TPUs, none on CPUs and --hardware this)")
        g.add_argument("--tokens", type=float, default=None, help="tokens to train on, for time-to-train")


def add_cache_option(p: argparse.ArgumentParser) -> None:
    """--no-cache, for every verb that traces a model (the API's ``cache=False``)."""
    p.add_argument("--no-cache", dest="cache", action="store_false", default=True,
                   help="trace the model anew instead of reusing a trace from the trace cache "
                        "($MLFOOTPRINT_CACHE_DIR, else ~/.cache/mlfootprint/traces), and store nothing there")


def add_save_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("history")
    g.add_argument("--save", action="store_true",
                   help="also save the report to the history database (see 'mlfootprint history')")
    g.add_argument("--label", default=None, help="a label for the saved report, e.g. 'baseline'")
    g.add_argument("--db", default=None, metavar="PATH",
                   help="history database (default: $MLFOOTPRINT_HISTORY or the user data folder)")


def add_site_options(p: argparse.ArgumentParser) -> None:
    """Where the run happens and what it costs: the footprint's options, shared by footprint, analyze, predict."""
    site = p.add_argument_group("the site and the grid (footprint)")
    site.add_argument("--region", metavar="R",
                      help="grid region: country code, eu, world, egrid:<subregion>, us-<iso>, "
                           "aws:<region>, gcp:<region>, azure:<region> (default: world average)")
    site.add_argument("--intensity", type=float, metavar="G",
                      help="grid carbon intensity in gCO2e/kWh; overrides the region's location-based value "
                           "(use it for market-based accounting)")
    site.add_argument("--facility", metavar="TYPE",
                      help="facility type for default PUE and WUE: hyperscale, colocation, enterprise, hpc, "
                           "laptop, google, meta, aws (default: hyperscale for cloud regions, else colocation)")
    site.add_argument("--pue", type=float, metavar="P", help="power usage effectiveness, >= 1 (overrides --facility)")
    site.add_argument("--wue", type=float, metavar="L",
                      help="on-site water usage effectiveness in L per IT kWh (overrides --facility)")
    site.add_argument("--water-intensity", type=float, metavar="L",
                      help="water consumed to generate electricity, L/kWh (overrides the region's value)")
    site.add_argument("--utilization", type=float, metavar="U",
                      help="fraction of the device power drawn on average, in (0, 1] (default 1: full TDP, an upper "
                           "bound)")
    cost = p.add_argument_group("cost")
    cost.add_argument("--price-per-hour", type=float, metavar="X",
                      help="price per device-hour in USD (default: the catalog price of --hardware)")
    cost.add_argument("--price-per-kwh", type=float, metavar="Y",
                      help="electricity price in USD/kWh: cost = facility kWh x Y (instead of device-hours)")


SITE_OPTIONS = ("region", "intensity", "facility", "pue", "wue", "water_intensity", "utilization", "price_per_hour",
                "price_per_kwh")


def site_from(args: argparse.Namespace) -> dict[str, object]:
    """The site options given (the API's ``site=``)."""
    return {k: getattr(args, k) for k in SITE_OPTIONS if getattr(args, k, None) is not None}


def add_other_bytes_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--other-bytes", type=lambda s: parse_size(s, "--other-bytes"), default=None, metavar="SIZE",
                   help="framework overhead per device: CUDA context, workspaces, fragmentation (default 1GB, "
                        "assumed)")


def add_view_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--depth", type=_depth, default=2, help="levels of the module tree to show (default 2)")
    p.add_argument("--by-op", action="store_true", help="also show FLOPs by operator")
    p.add_argument("--macs", action="store_true", help="show matrix-class work as MACs (labelled), not FLOPs")


def _depth(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--depth is a whole number of levels, got {text!r}") from None
    if not 0 <= n <= 1000:
        raise argparse.ArgumentTypeError(f"--depth is a whole number of levels from 0 to 1000, got {text!r}")
    return n


def workload_from(args: argparse.Namespace) -> Workload:
    """The workload the options describe; options left out keep the defaults and are not 'given'."""
    return Workload.from_options(vars(args))
