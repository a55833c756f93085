"""Hugging Face models built from a config on fake tensors (transformers is an optional extra)."""
from __future__ import annotations

import contextlib
from typing import Any

import torch

from ..core.errors import MissingExtraError, UserError
from ..core.state import quiet_dependency_loggers
from ..workload import Workload
from .spec import BuiltModel, ModelSpec, MoEInfo
import inspect
from .architectures import ARCHITECTURES

_TASK_BY_ARCH_SUFFIX = (
    ("ForCausalLM", "causal-lm"), ("LMHeadModel", "causal-lm"), ("ForMaskedLM", "masked-lm"),
    ("ForPreTraining", "masked-lm"), ("ForConditionalGeneration", "seq2seq-lm"),
    ("ForImageClassification", "image-classification"),
)
DEFAULT_SEQ_CAP = 4096


def transformers_module(what: str = "a Hugging Face model") -> Any:
    try:
        import transformers
    except ImportError:
        raise MissingExtraError(what, "hf", "transformers") from None
    quiet_dependency_loggers()  # inside a trace: its first import just set its own log level
    return transformers


def task_for(config: dict[str, Any]) -> str:
    for arch in config.get("architectures") or []:
        for suffix, task in _TASK_BY_ARCH_SUFFIX:
            if arch.endswith(suffix):
                return task
    if config.get("model_type") == "t5":
        return "seq2seq-lm"
    return "causal-lm" if config.get("is_decoder") or config.get("model_type") in ARCHITECTURES.value("tasks", "causal_lm") else "base"


def make_config(cfg: dict[str, Any], name: str) -> Any:
    transformers = transformers_module(f"model {name!r}")
    data = {k: v for k, v in cfg.items() if not k.startswith("_")}
    model_type = data.pop("model_type", None)
    if not model_type:
        raise UserError(f"config of {name!r} has no 'model_type'; add it (e.g. \"model_type\": \"llama\")")
    try:
        return transformers.AutoConfig.for_model(model_type, **data)
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"config of {name!r} cannot be loaded by transformers {transformers.__version__}: {exc}") from None


def hub_config(hub_id: str) -> dict[str, Any]:
    transformers = transformers_module(f"hub id {hub_id!r}")
    try:
        cfg = transformers.AutoConfig.from_pretrained(hub_id)
    except Exception as exc:  # OSError / HTTP errors / repo not found: all the user's to fix
        raise UserError(f"cannot resolve hub id {hub_id!r}: not in the local Hugging Face cache and the hub did not answer "
                        f"({type(exc).__name__}); download its config.json and pass its path instead") from None
    return cfg.to_dict()


def _auto_class(transformers: Any, task: str) -> Any:
    return {
        "causal-lm": transformers.AutoModelForCausalLM,
        "masked-lm": transformers.AutoModelForMaskedLM,
        "seq2seq-lm": transformers.AutoModelForSeq2SeqLM,
        "image-classification": transformers.AutoModelForImageClassification,
    }.get(task, transformers.AutoModel)


def _no_init(transformers: Any) -> Any:
    # Weight initialisation is irrelevant to costs and some of it (trunc_normal_) reads values.
    for path in ("transformers.initialization", "transformers.modeling_utils"):
        try:
            module = __import__(path, fromlist=["no_init_weights"])
            return module.no_init_weights()
        except (ImportError, AttributeError):
            continue
    return contextlib.nullcontext()


def default_seq(spec: ModelSpec) -> int:
    context = spec.facts.get("context") or 1024
    return int(min(context, DEFAULT_SEQ_CAP))


def _generation_prompt(spec: ModelSpec, wl: Workload, seq: int, context: int, bounded: bool,
                       assumptions: list[str]) -> int:
    """The prompt length of a generate workload, checked against the model's positions.

    With learned position embeddings (GPT-2, OPT, …) no token can sit past the table: prompt + generated tokens
    beyond it is an error, and without --seq the prompt leaves room for the generated tokens. Rotary or relative
    positions run past the trained context (with a quality cost not modelled): stated as an assumption."""
    gen = wl.gen_tokens
    if seq + gen <= context:
        return seq
    if bounded:
        if not wl.seq and gen < context:
            assumptions.append(f"prompt length {context - gen}: {spec.name}'s context of {context} positions less "
                               f"the {gen} generated tokens, as no --seq was given")
            return context - gen
        room = (f"generate at most {context - seq} tokens or shorten the prompt (--seq)" if seq < context
                else "shorten the prompt (--seq)")
        raise UserError(f"--seq {seq} + --gen-tokens {gen} exceeds {spec.name}'s context of {context} positions "
                        f"(learned position embeddings: no position past {context} exists); {room}"
                        if gen < context else
                        f"--gen-tokens {gen} exceeds {spec.name}'s context of {context} positions (learned position "
                        f"embeddings: no position past {context} exists); generate fewer than {context} tokens")
    assumptions.append(f"generation runs to {seq + gen:,} positions, past {spec.name}'s trained context of "
                       f"{context:,}: costed as if the positions extended (rotary/relative positions allow it; "
                       "the quality of text past the trained context is not modelled)")
    return seq


def _sequence_length(spec: ModelSpec, wl: Workload, assumptions: list[str]) -> int:
    seq = wl.seq or default_seq(spec)
    if spec.task == "image-classification":
        return seq
    context = spec.facts.get("context")
    bounded = spec.facts.get("model_type") in ARCHITECTURES.value("positions", "bounded_by_context")
    if context and seq > context and bounded:
        raise UserError(f"--seq {seq} exceeds {spec.name}'s context of {context} positions (learned position embeddings); use --seq {context} or less")
    if wl.mode == "generate" and spec.task == "causal-lm" and context:
        seq = _generation_prompt(spec, wl, seq, int(context), bounded, assumptions)
    return seq


def build(spec: ModelSpec, wl: Workload) -> BuiltModel:
    """Build the model (call inside a FakeTensorMode) and describe its inputs for this workload."""
    assumptions: list[str] = []
    seq = _sequence_length(spec, wl, assumptions)  # checked before the (slow) transformers import
    transformers = transformers_module(f"model {spec.name!r}")
    config = make_config(spec.hf_config or {}, spec.name)
    moe = None
    if spec.facts.get("experts"):
        # Static-shape grouped GEMM: every token visits top-k experts, FLOPs independent of the routing.
        config._experts_implementation = "grouped_mm"
        moe = MoEInfo(int(spec.facts["experts"]), int(spec.facts.get("experts_per_token", 1)),
                      lambda name: ".experts." in f".{name}" and "shared_expert" not in name)
        assumptions.append(f"MoE routing: balanced top-{moe.top_k} of {moe.experts} experts "
                           "(each token visits exactly k experts; capacity limits and drops not modelled)")
    cls = _auto_class(transformers, spec.task)
    kwargs: dict[str, Any] = {"dtype": getattr(torch, wl.precision_info.traced_param_dtype)}
    want_attn = wl.attention
    try:
        with _no_init(transformers):
            module = cls.from_config(config, attn_implementation=want_attn, **kwargs)
    except (ValueError, ImportError) as exc:
        if want_attn == "eager":
            raise UserError(f"model {spec.name!r} cannot be built: {exc}") from None
        with _no_init(transformers):
            module = cls.from_config(config, attn_implementation="eager", **kwargs)
        assumptions.append(f"{type(module).__name__} has no SDPA implementation in transformers; eager attention traced")
    # Building without weight init skips transformers' own tying of input and output embeddings.
    if getattr(module, "tie_weights", None) is not None:
        module.tie_weights()
    if wl.training:
        module.train()
    else:
        module.eval()

    batch = wl.batch
    task = spec.task
    if task == "image-classification":
        size = int(spec.facts.get("image_size") or 224)
        channels = int(getattr(config, "num_channels", 3))
        labels_n = int(getattr(config, "num_labels", 2))

        def make_inputs():
            x = torch.randn(batch, channels, size, size, dtype=getattr(torch, wl.precision_info.compute_dtype) if not wl.mixed else torch.float32)
            kw: dict[str, Any] = {"pixel_values": x}
            if wl.training:
                kw["labels"] = torch.zeros(batch, dtype=torch.long) % max(labels_n, 1)
            return (), kw

        return BuiltModel(module, make_inputs, _hf_loss, tokens=batch, token_unit="samples", causal=False,
                          moe=moe, assumptions=assumptions)

    vocab = int(spec.facts.get("vocab") or 2)

    def make_inputs():
        ids = torch.zeros(batch, seq, dtype=torch.long) % vocab
        kw: dict[str, Any] = {"input_ids": ids}
        if task == "seq2seq-lm":
            kw["labels" if wl.training else "decoder_input_ids"] = torch.zeros(batch, seq, dtype=torch.long)
        elif wl.training and task in ("causal-lm", "masked-lm"):
            kw["labels"] = ids
        if task in ("causal-lm", "seq2seq-lm", "base") and _accepts(module, "use_cache"):
            kw["use_cache"] = False
        return (), kw

    tokens = batch * seq * (2 if task == "seq2seq-lm" else 1)
    return BuiltModel(module, make_inputs, _hf_loss, tokens=tokens, causal=task == "causal-lm",
                      moe=moe, assumptions=assumptions)


def _accepts(module: torch.nn.Module, name: str) -> bool:
    try:
        return name in inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False


def _hf_loss(output: Any) -> torch.Tensor:
    loss = getattr(output, "loss", None)
    if loss is not None:
        return loss
    logits = getattr(output, "logits", None)
    if logits is None and isinstance(output, (tuple, list)):
        logits = output[0]
    if logits is None:
        logits = getattr(output, "last_hidden_state", None)
    return logits.float().mean()
