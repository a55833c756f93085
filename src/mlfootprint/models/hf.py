"""Hugging Face configs: what a config names, the task it does, its transformers config (an optional extra).

The model class is the one the config names (its ``architectures`` field), else the one transformers maps its
``model_type`` to. Building the model on fake tensors is ``hf_build.py``'s; nothing here imports torch, so a
cached trace is reused without it.
"""
from __future__ import annotations

import hashlib
import inspect
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..core.errors import MissingExtraError, UserError, suggest
from ..core.usercache import recall, remember
from ..core.version import installed_version
from ..core.state import quiet_dependency_loggers
from .architectures import ARCHITECTURES
from .spec import ModelSpec

_TASK_BY_ARCH_SUFFIX = (
    ("ForCausalLM", "causal-lm"), ("LMHeadModel", "causal-lm"), ("ForMaskedLM", "masked-lm"),
    ("ForPreTraining", "masked-lm"), ("ForConditionalGeneration", "seq2seq-lm"), ("MTModel", "seq2seq-lm"),
    ("ForImageClassification", "image-classification"),
)
# Tasks whose main input is a token sequence (--seq is its length); the others feed images or audio.
TEXT_TASKS = ("causal-lm", "masked-lm", "seq2seq-lm", "base")
# Tasks by the model's main input (the model class's `main_input_name`).
_TASK_BY_MAIN_INPUT = {"pixel_values": "image", "input_values": "audio", "input_features": "speech-seq2seq"}
DEFAULT_SEQ_CAP = 4096
def transformers_module(what: str = "a Hugging Face model") -> Any:
    try:
        import transformers
    except ImportError:
        raise MissingExtraError(what, "hf", "transformers") from None
    quiet_dependency_loggers()  # inside a trace: its first import just set its own log level
    return transformers


def json_floats(value: Any) -> Any:
    """Decode the non-finite floats transformers writes into config.json as ``{"__float__": "Infinity"}``
    (JSON has no Infinity/NaN; Mamba-2's ``time_step_limit`` is ``[0.0, inf]``)."""
    if isinstance(value, dict):
        if set(value) == {"__float__"} and isinstance(value["__float__"], str):
            try:
                return float(value["__float__"])
            except ValueError:
                return value
        return {k: json_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_floats(v) for v in value]
    return value


def task_for(config: dict[str, Any]) -> str:
    """What the config's model does, by the input it takes: causal-lm, masked-lm, seq2seq-lm, base (text),
    image-classification, image, audio, speech-seq2seq, image-text.

    The model class transformers maps the config to decides; finding it imports transformers (about a second), so
    the answer is remembered in the user's cache folder (``core/usercache.py``), keyed by the config's content,
    transformers' installed version and this module's code: a warm run on a config.json then imports neither
    transformers nor torch. Without transformers installed, the config's architecture names decide."""
    version = installed_version("transformers")
    if version is None:
        return _task_from_names(config)
    key = {"config": config, "transformers": version, "code": _code_digest(),
           "causal_lm": ARCHITECTURES.value("tasks", "causal_lm")}
    task = recall("tasks", key)
    if task is not None:
        return task
    try:
        import transformers  # noqa: F401 - the class a config names decides; without transformers, its name does
    except ImportError:
        return _task_from_names(config)
    cls = model_class_or_none(config)
    task = _task_from_names(config) if cls is None else task_of_class(cls, config)
    remember("tasks", key, task)
    return task


@lru_cache(maxsize=1)
def _code_digest() -> str:
    """This module's code: a changed rule changes the remembered tasks' key."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def _task_from_names(config: dict[str, Any]) -> str:
    for arch in config.get("architectures") or []:
        for suffix, task in _TASK_BY_ARCH_SUFFIX:
            if arch.endswith(suffix):
                return task
    if config.get("model_type") == "t5":
        return "seq2seq-lm"
    return "causal-lm" if config.get("is_decoder") or config.get("model_type") in ARCHITECTURES.value("tasks", "causal_lm") else "base"


def task_of_class(cls: Any, config: dict[str, Any]) -> str:
    main = getattr(cls, "main_input_name", "input_ids")
    if main == "pixel_values":
        return "image-classification" if cls.__name__.endswith("ForImageClassification") else "image"
    if main in _TASK_BY_MAIN_INPUT:
        return _TASK_BY_MAIN_INPUT[main]
    if config.get("vision_config") is not None and config.get("text_config") is not None and accepts(cls, "pixel_values"):
        return "image-text"
    name = cls.__name__
    for suffix, task in _TASK_BY_ARCH_SUFFIX:
        if name.endswith(suffix):
            return task
    if config.get("is_encoder_decoder"):
        return "seq2seq-lm"
    return "base"


def _mapping(name: str) -> dict[str, Any]:
    from transformers.models.auto import modeling_auto
    return getattr(modeling_auto, name, {})


def model_class_or_none(config: dict[str, Any]) -> Any:
    """The class the config names in ``architectures`` (the one its checkpoint was saved from), else the one
    transformers maps its ``model_type`` to: a language-model head where the family has one
    (sequence-to-sequence, then causal), a classifier for image models, else the bare model."""
    import transformers
    for arch in config.get("architectures") or []:
        cls = getattr(transformers, str(arch), None)
        if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel):
            return cls
    model_type = config.get("model_type")
    masked = _mapping("MODEL_FOR_MASKED_LM_MAPPING_NAMES")
    causal = _mapping("MODEL_FOR_CAUSAL_LM_MAPPING_NAMES")
    # an encoder-decoder's causal-LM class is its decoder alone (BartForCausalLM, WhisperForCausalLM): the
    # sequence-to-sequence classes come first
    chosen = (_mapping("MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES").get(model_type)
              or _mapping("MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES").get(model_type))
    if not chosen and model_type in causal and (model_type not in masked
                                                or model_type in ARCHITECTURES.value("tasks", "causal_lm")):
        chosen = causal[model_type]
    if not chosen:
        # a text + vision config (CLIP, SigLIP): the bare model is the contrastive pair, not an image classifier
        pair = config.get("text_config") is not None and config.get("vision_config") is not None
        for table in ("MODEL_MAPPING_NAMES" if pair else "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES",
                      "MODEL_MAPPING_NAMES"):
            chosen = _mapping(table).get(model_type)
            if chosen:
                break
    if not chosen:
        # a family with task heads only (depth estimation, segmentation, …): the first that transformers lists
        from transformers.models.auto import modeling_auto
        for table in sorted(n for n in dir(modeling_auto) if n.endswith("_MAPPING_NAMES") and n != "CONFIG_MAPPING_NAMES"):
            chosen = _mapping(table).get(model_type)
            if chosen:
                break
    if isinstance(chosen, (tuple, list)):
        chosen = chosen[0]
    cls = getattr(transformers, chosen, None) if chosen else None
    return cls if isinstance(cls, type) else None


def make_config(cfg: dict[str, Any], name: str) -> Any:
    transformers = transformers_module(f"model {name!r}")
    data = {k: v for k, v in json_floats(cfg).items() if not k.startswith("_")}
    model_type = data.pop("model_type", None)
    if not model_type:
        raise UserError(f"config of {name!r} has no 'model_type'; add it (e.g. \"model_type\": \"llama\")")
    known = list(getattr(transformers, "CONFIG_MAPPING", {}).keys())
    if known and model_type not in known:  # transformers' own message lists all ~800 types on one line
        raise UserError(f"config of {name!r} has model_type {model_type!r}, which transformers "
                        f"{transformers.__version__} does not know; use one it has (e.g. llama, gpt2, mistral) or a "
                        f"transformers release that added it.{suggest(str(model_type), known)}")
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


def default_seq(spec: ModelSpec) -> int:
    context = spec.facts.get("context") or 1024
    return int(min(context, DEFAULT_SEQ_CAP))


def accepts(module: Any, name: str) -> bool:
    try:
        return name in inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False
