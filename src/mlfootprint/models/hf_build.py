"""Hugging Face models built from a config on fake tensors (transformers is an optional extra).

The model class is the one the config names (its ``architectures`` field), else the one transformers maps its
``model_type`` to (``hf.py``); the inputs are the model's own main input (``input_ids``, ``pixel_values``,
``input_features``, ``input_values``, or text and image together), sized from the config.
"""
from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from ..core.errors import UserError
from ..workload import Workload
from . import unfused_attention
from .architectures import ARCHITECTURES
from .hf import (DEFAULT_SEQ_CAP, accepts, default_seq, json_floats, make_config, model_class_or_none, task_of_class,
                 transformers_module)
from .spec import BuiltModel, ModelSpec, MoEInfo

# Training regularizers that decide at random whether a layer runs: a fake trace cannot draw them, so the
# traced copy of the config sets them to 0 (every layer runs).
_LAYERDROP = ("layerdrop", "encoder_layerdrop", "decoder_layerdrop")
# SpecAugment (wav2vec 2.0 family, Whisper): random time/feature masks, applied in training when a mask
# probability is positive and `apply_spec_augment` (default true, absent from some configs) allows it.
_SPEC_AUGMENT_PROBS = ("mask_time_prob", "mask_feature_prob")
UNFUSED_NOTE = ("attention: unfused, as Megatron-LM ran it before FlashAttention (--attention unfused): a batched GEMM "
                "writes the 16-bit T×T scores, one fused kernel scales, masks and soft-maxes them (16 bits in and "
                "out), dropout saves a one-byte mask, a batched GEMM multiplies the values; the whole square is "
                "computed (models/unfused_attention.py)")


def _auto_class(transformers: Any, task: str) -> Any:
    return {
        "causal-lm": transformers.AutoModelForCausalLM,
        "masked-lm": transformers.AutoModelForMaskedLM,
        "seq2seq-lm": transformers.AutoModelForSeq2SeqLM,
        "image-classification": transformers.AutoModelForImageClassification,
    }.get(task, transformers.AutoModel)


def _model_builder(transformers: Any, spec: ModelSpec, cfg: dict[str, Any]) -> tuple[Callable[..., Any], Any]:
    """``from_config`` of the class to build, and the class where known before building: a catalog entry's
    task decides its class; a config names its own."""
    if spec.source == "catalog":
        return _auto_class(transformers, spec.task).from_config, None
    cls = model_class_or_none(cfg)
    if cls is None:
        raise UserError(f"transformers {transformers.__version__} has no model class for {spec.name!r} "
                        f"(model_type {cfg.get('model_type')!r}, architectures {cfg.get('architectures')}); "
                        "name one of its classes in the config's \"architectures\" field, or pass the model as module:callable")
    return cls._from_config, cls


def _takes_experts_implementation(cls: Any) -> bool:
    """Whether the model's experts can run as one grouped GEMM (transformers' own check); older MoE designs
    (Switch Transformers, NLLB-MoE) route through their own capacity-limited dispatch."""
    if cls is None:
        return True
    check = getattr(cls, "_can_set_experts_implementation", None)
    try:
        return bool(check()) if callable(check) else False
    except Exception:  # noqa: BLE001 - transformers' heuristic reads source files; unreadable means no
        return False


def _no_init(transformers: Any) -> Any:
    # Weight initialisation is irrelevant to costs and some of it (trunc_normal_) reads values.
    for path in ("transformers.initialization", "transformers.modeling_utils"):
        try:
            module = __import__(path, fromlist=["no_init_weights"])
            return module.no_init_weights()
        except (ImportError, AttributeError):
            continue
    return contextlib.nullcontext()


class _ConstantSchedules(TorchFunctionMode):
    """Evaluate ``torch.linspace`` schedules on real tensors while a model is built on fake ones.

    Vision models compute their stochastic-depth rates at construction with
    ``[x.tolist() for x in torch.linspace(0, rate, n).split(depths)]`` (ConvNeXt, and others with ``.item()``):
    values no fake tensor has. They depend on the config alone, so the linspace and what is computed from it
    run outside the fake mode; parameters and buffers are still created fake.
    """

    def __init__(self) -> None:
        super().__init__()
        self._real: dict[int, weakref.ref[torch.Tensor]] = {}  # by id, checked by identity (ids are reused)

    def _is_real(self, t: torch.Tensor) -> bool:
        ref = self._real.get(id(t))
        return ref is not None and ref() is t

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        from torch._subclasses.fake_tensor import unset_fake_temporarily
        tensors = [a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor)]
        if func is torch.linspace or (tensors and all(self._is_real(t) for t in tensors)):
            with unset_fake_temporarily():
                out = func(*args, **kwargs)
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    self._real[id(t)] = weakref.ref(t)
            return out
        return func(*args, **kwargs)


# The sizes that make a model's cost; a config.json that leaves one out gets transformers' default for its class.
_SIZES = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
          "max_position_embeddings")


def _defaulted_sizes(cfg: dict[str, Any], config: Any) -> list[str]:
    """The sizes the config.json did not give and its class filled in (a Hub config may drop a key equal to its
    class default, so this is said, not refused)."""
    aliases = dict(getattr(config, "attribute_map", {}) or {})  # e.g. gpt2: hidden_size -> n_embd
    taken = []
    for name in _SIZES:
        if name in cfg or aliases.get(name) in cfg:
            continue
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            taken.append(f"{aliases.get(name, name)} {value}")
    if not taken:
        return []
    return [f"config: {type(config).__name__}'s defaults for what the config.json leaves out: {', '.join(taken)} "
            "(give them in the file to describe another model)"]


def _deterministic_structure(config: Any, training: bool) -> list[str]:
    """Set the random-structure regularizers of the traced config (and its sub-configs) to their
    deterministic form; the assumptions that changed a training step."""
    notes: list[str] = []
    configs = [("", config)] + [(f"{key}.", sub) for key, sub in vars(config).items()
                                 if hasattr(sub, "to_dict") and hasattr(sub, "model_type")]
    for prefix, c in configs:
        for key in _LAYERDROP:
            value = getattr(c, key, None)
            if isinstance(value, (int, float)) and value > 0:
                setattr(c, key, 0.0)
                if training:  # inactive in inference: nothing changed
                    notes.append(f"{prefix}{key} {value} traced as 0: every layer runs (a real training step skips "
                                 f"each layer with probability {value}; this is the step's upper bound)")
        rate = getattr(c, "drop_path_rate", None)
        if training and isinstance(rate, (int, float)) and rate > 0:
            # not random in shape: each sample's block output is computed, then scaled by a 0/1 keep mask
            notes.append(f"{prefix}stochastic depth (drop_path_rate {rate}) traced as it runs: every block is computed "
                         "for every sample, then multiplied by a per-sample keep mask (no compute is skipped)")
        masking = [k for k in _SPEC_AUGMENT_PROBS if (getattr(c, k, 0) or 0) > 0]
        if masking and getattr(c, "apply_spec_augment", True):
            # set, not only changed: a config without the key reads it with getattr(..., True)
            c.apply_spec_augment = False
            if training:
                notes.append(f"SpecAugment ({prefix}{' and '.join(masking)}) off in the trace: its random masks select "
                             "positions by value; what it skips is one fill of the masked positions, no matmul")
    return notes


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
    if wl.mode == "generate" and spec.task != "causal-lm":
        # token-by-token decoding over a KV cache is modelled for decoder-only language models; an encoder's or a
        # classifier's one pass would otherwise be labelled as generation (and an encoder-decoder's decoding is not
        # modelled)
        raise UserError(f"{spec.name} is a {spec.task} model, and --mode generate (decoding token by token with a "
                        "KV cache) is modelled for causal language models; use --mode inference for one forward pass")
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
    cfg = json_floats(spec.hf_config or {})
    config = make_config(cfg, spec.name)
    assumptions += _defaulted_sizes(cfg, config)
    assumptions += _deterministic_structure(config, wl.training)
    moe = None
    from_config, cls = _model_builder(transformers, spec, cfg)
    if spec.facts.get("experts"):
        # Static-shape grouped GEMM: every token visits top-k experts, FLOPs independent of the routing.
        if _takes_experts_implementation(cls):
            config._experts_implementation = "grouped_mm"
        moe = MoEInfo(int(spec.facts["experts"]), int(spec.facts.get("experts_per_token", 1)),
                      lambda name: ".experts." in f".{name}" and "shared_expert" not in name)
        assumptions.append(f"MoE routing: balanced top-{moe.top_k} of {moe.experts} experts "
                           "(each token visits exactly k experts; capacity limits and drops not modelled)")
    kwargs: dict[str, Any] = {"dtype": getattr(torch, wl.traced_weights_dtype)}
    # flash2 is SDPA traced as such; only its timing differs (analysis/predict/attention_rate.py)
    want_attn = unfused_attention.register() if wl.attention == "unfused" else \
        "sdpa" if wl.attention == "flash2" else wl.attention
    try:
        with _no_init(transformers), _ConstantSchedules():
            module = from_config(config, attn_implementation=want_attn, **kwargs)
    except (ValueError, ImportError) as exc:
        if want_attn == "eager":
            raise UserError(f"model {spec.name!r} cannot be built: {exc}") from None
        with _no_init(transformers), _ConstantSchedules():
            module = from_config(config, attn_implementation="eager", **kwargs)
        what = "takes no attention function (--attention unfused)" if wl.attention == "unfused" else \
            "has no SDPA implementation"
        assumptions.append(f"{type(module).__name__} {what} in transformers; eager attention traced")
    else:
        if wl.attention == "unfused":
            # a model whose attention is its own code (BLOOM's ALiBi baddbmm) takes no attention function
            takes_functions = bool(getattr(type(module), "_supports_attention_backend", False))
            if not takes_functions:
                # built as eager: the registered function's mask builder (SDPA's: no mask for a plain causal
                # model) would leave such a model's own code without its causal mask
                with _no_init(transformers), _ConstantSchedules():
                    module = from_config(config, attn_implementation="eager", **kwargs)
            assumptions.append(UNFUSED_NOTE if takes_functions else
                               f"{type(module).__name__} runs its own attention code, which takes no attention "
                               "function in transformers: --attention unfused not applied, its eager attention traced")
    # Building without weight init skips transformers' own tying of input and output embeddings.
    if getattr(module, "tie_weights", None) is not None:
        module.tie_weights()
    if wl.training:
        module.train()
    else:
        module.eval()
    task = spec.task if spec.source == "catalog" else task_of_class(type(module), cfg)
    make = _INPUTS.get(task, _text_inputs)
    if make is _text_inputs:  # the prompt length checked (and fitted to the context) before the build
        return _text_inputs(module, config, spec, wl, moe, assumptions, seq=seq)
    return make(module, config, spec, wl, moe, assumptions)


# ------------------------------------------------------------------------------------------ inputs by task


def _float_dtype(wl: Workload) -> torch.dtype:
    return getattr(torch, wl.traced_weights_dtype)


def _image_size(config: Any) -> tuple[int, int, int]:
    """(channels, height, width) of the images a vision config takes."""
    size = getattr(config, "image_size", None)
    if size is None:
        size = ARCHITECTURES.value("inputs", "image_size")
    if isinstance(size, (list, tuple)):
        height, width = int(size[0]), int(size[-1])
    else:
        height = width = int(size)
    return int(getattr(config, "num_channels", 3) or 3), height, width


def _state_no_kv_cache(module: torch.nn.Module, wl: Workload, assumptions: list[str]) -> None:
    """The trace passes ``use_cache=False`` (make_inputs): say so where the model would otherwise build a cache.
    Generation models its cache apart (analysis/memory/kvcache.py), so it needs no line."""
    if wl.mode != "generate" and accepts(module, "use_cache"):
        assumptions.append("use_cache=False: the traced forward builds no key/value cache (Hugging Face's default, "
                           "use_cache=True, also keeps every layer's keys and values until the outputs are "
                           "dropped: after the backward in a training loop; --mode generate models the cache)")


def _text_inputs(module: torch.nn.Module, config: Any, spec: ModelSpec, wl: Workload, moe: MoEInfo | None,
                 assumptions: list[str], seq: int | None = None) -> BuiltModel:
    batch, task = wl.batch, spec.task if spec.source == "catalog" else task_of_class(type(module), spec.hf_config or {})
    seq = seq if seq is not None else _sequence_length(spec, wl, assumptions)
    vocab = int(spec.facts.get("vocab") or 2)
    encoder_decoder = task == "seq2seq-lm" or bool(getattr(config, "is_encoder_decoder", False))

    def make_inputs():
        ids = torch.zeros(batch, seq, dtype=torch.long) % vocab
        kw: dict[str, Any] = {"input_ids": ids}
        if encoder_decoder:
            with_labels = wl.training and accepts(module, "labels")
            kw["labels" if with_labels else "decoder_input_ids"] = torch.zeros(batch, seq, dtype=torch.long)
        elif wl.training and task in ("causal-lm", "masked-lm") and accepts(module, "labels"):
            kw["labels"] = ids
        if accepts(module, "use_cache"):
            kw["use_cache"] = False
        return (), kw

    _state_no_kv_cache(module, wl, assumptions)
    tokens = batch * seq * (2 if encoder_decoder else 1)
    return BuiltModel(module, make_inputs, _hf_loss, tokens=tokens, causal=task == "causal-lm",
                      moe=moe, assumptions=assumptions)


def _image_inputs(module: torch.nn.Module, config: Any, spec: ModelSpec, wl: Workload, moe: MoEInfo | None,
                  assumptions: list[str]) -> BuiltModel:
    batch = wl.batch
    channels, height, width = _image_size(config)
    if getattr(config, "image_size", None) is None:
        assumptions.append(f"images of {height}×{width}: the config gives no image_size "
                           f"({ARCHITECTURES.source('inputs', 'image_size')})")
    labels_n = max(int(getattr(config, "num_labels", 2) or 2), 1)
    with_labels = wl.training and accepts(module, "labels")

    def make_inputs():
        kw: dict[str, Any] = {"pixel_values": torch.randn(batch, channels, height, width, dtype=_float_dtype(wl))}
        if with_labels:
            kw["labels"] = torch.zeros(batch, dtype=torch.long) % labels_n
        return (), kw

    return BuiltModel(module, make_inputs, _hf_loss, tokens=batch, token_unit="samples", causal=False,
                      moe=moe, assumptions=assumptions)


def _image_text_inputs(module: torch.nn.Module, config: Any, spec: ModelSpec, wl: Workload, moe: MoEInfo | None,
                       assumptions: list[str]) -> BuiltModel:
    """Contrastive image-text models (CLIP, SigLIP): a batch of (caption, image) pairs."""
    batch = wl.batch
    text, vision = config.text_config, config.vision_config
    context = int(getattr(text, "max_position_embeddings", 0) or 0)
    seq = wl.seq or context or default_seq(spec)
    if context and seq > context:
        raise UserError(f"--seq {seq} exceeds {spec.name}'s text context of {context} positions; use --seq {context} or less")
    vocab = int(getattr(text, "vocab_size", 2) or 2)
    channels, height, width = _image_size(vision)
    with_loss = wl.training and accepts(module, "return_loss")

    def make_inputs():
        kw: dict[str, Any] = {"input_ids": torch.zeros(batch, seq, dtype=torch.long) % vocab,
                              "pixel_values": torch.randn(batch, channels, height, width, dtype=_float_dtype(wl))}
        if with_loss:
            kw["return_loss"] = True
        return (), kw

    return BuiltModel(module, make_inputs, _hf_loss, tokens=batch, token_unit="samples", causal=False,
                      moe=moe, assumptions=assumptions)


def _audio_inputs(module: torch.nn.Module, config: Any, spec: ModelSpec, wl: Workload, moe: MoEInfo | None,
                  assumptions: list[str]) -> BuiltModel:
    """Raw-waveform encoders (wav2vec 2.0, HuBERT, WavLM): ``--seq`` is the number of audio samples."""
    batch = wl.batch
    samples = wl.seq or int(ARCHITECTURES.value("inputs", "audio_samples"))
    if not wl.seq:
        assumptions.append(f"{samples} audio samples per clip, pass --seq for another length "
                           f"({ARCHITECTURES.source('inputs', 'audio_samples')})")

    def make_inputs():
        return (), {"input_values": torch.randn(batch, samples, dtype=_float_dtype(wl))}

    return BuiltModel(module, make_inputs, _hf_loss, tokens=batch, token_unit="samples", causal=False,
                      moe=moe, assumptions=assumptions)


def _speech_seq2seq_inputs(module: torch.nn.Module, config: Any, spec: ModelSpec, wl: Workload, moe: MoEInfo | None,
                           assumptions: list[str]) -> BuiltModel:
    """Speech recognition encoder-decoders and ``--seq`` decoder tokens. Whisper takes log-mel features of the
    fixed window its encoder positions cover (``2 × max_source_positions`` frames: its second convolution has
    stride 2), channels first; Speech2Text takes (frames, features), up to a 30 s window that its
    convolutions subsample into its positions."""
    batch = wl.batch
    source_positions = int(getattr(config, "max_source_positions", 1500))
    if getattr(config, "num_mel_bins", None) is not None:
        features, frames = int(config.num_mel_bins), 2 * source_positions
        shape: tuple[int, ...] = (batch, features, frames)
    else:
        features = int(getattr(config, "input_feat_per_channel", 80)) * int(getattr(config, "input_channels", 1))
        window = int(ARCHITECTURES.value("inputs", "speech_frames"))
        frames = min(window, source_positions * 2 ** int(getattr(config, "num_conv_layers", 2)))
        shape = (batch, frames, features)
        assumptions.append(f"{frames} feature frames per clip ({ARCHITECTURES.source('inputs', 'speech_frames')})")
    context = int(getattr(config, "max_target_positions", 0) or 0)
    seq = wl.seq or (min(context, DEFAULT_SEQ_CAP) if context else default_seq(spec))
    if context and seq > context:
        raise UserError(f"--seq {seq} exceeds {spec.name}'s decoder context of {context} tokens; use --seq {context} or less")
    with_labels = wl.training and accepts(module, "labels")

    def make_inputs():
        kw: dict[str, Any] = {"input_features": torch.randn(*shape, dtype=_float_dtype(wl)),
                              "labels" if with_labels else "decoder_input_ids": torch.zeros(batch, seq, dtype=torch.long)}
        if accepts(module, "use_cache"):
            kw["use_cache"] = False
        return (), kw

    _state_no_kv_cache(module, wl, assumptions)
    return BuiltModel(module, make_inputs, _hf_loss, tokens=batch, token_unit="samples", causal=False,
                      moe=moe, assumptions=assumptions)


_INPUTS = {
    "image-classification": _image_inputs, "image": _image_inputs, "image-text": _image_text_inputs,
    "audio": _audio_inputs, "speech-seq2seq": _speech_seq2seq_inputs,
}


def _hf_loss(output: Any) -> torch.Tensor:
    """The model's own loss where it computed one (labels given), else the mean of its first output."""
    loss = getattr(output, "loss", None)
    if loss is not None:
        return loss
    for name in ("logits", "logits_per_image", "last_hidden_state"):
        value = getattr(output, name, None)
        if isinstance(value, torch.Tensor):
            return value.float().mean()
    values = output.values() if hasattr(output, "values") else output if isinstance(output, (tuple, list)) else (output,)
    first = next(v for v in values if isinstance(v, torch.Tensor) and v.is_floating_point())
    return first.float().mean()
