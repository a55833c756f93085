"""Architecture facts read from a Hugging Face-style config (names differ across families)."""
from __future__ import annotations

from typing import Any

from ..core.errors import UserError
from .architectures import ARCHITECTURES

_ALIASES: dict[str, tuple[str, ...]] = {
    "layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "hidden": ("hidden_size", "n_embd", "d_model", "dim"),
    "heads": ("num_attention_heads", "n_head", "num_heads", "n_heads"),
    "kv_heads": ("num_key_value_heads", "n_kv_heads", "num_kv_heads"),
    "ffn": ("intermediate_size", "n_inner", "d_ff", "ffn_dim", "ffn_hidden_size"),
    "vocab": ("vocab_size",),
    "context": ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "n_ctx", "max_target_positions"),
    "experts": ("num_local_experts", "num_experts", "n_routed_experts"),
    "experts_per_token": ("num_experts_per_tok", "top_k", "moe_top_k"),
    "image_size": ("image_size",),
    "patch_size": ("patch_size",),
    "decoder_layers": ("num_decoder_layers",),
}


def facts_from_config(cfg: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"model_type": cfg.get("model_type")}
    for fact, keys in _ALIASES.items():
        for k in keys:
            # a number only: hierarchical vision models give per-stage lists (Swin's num_heads [3, 6, 12, 24])
            if isinstance(cfg.get(k), (int, float)) and not isinstance(cfg.get(k), bool):
                out[fact] = cfg[k]
                break
    if out.get("heads") and "kv_heads" not in out:
        out["kv_heads"] = out["heads"]
    if out.get("hidden") and out.get("heads"):
        out["head_dim"] = cfg.get("head_dim") or out["hidden"] // out["heads"]
    if out.get("ffn") is None and out.get("hidden") and cfg.get("model_type") in ARCHITECTURES.value("defaults", "ffn_four_times_hidden"):
        out["ffn"] = 4 * out["hidden"]
    if parallel_block(cfg):
        out["parallel_block"] = True
    return {k: v for k, v in out.items() if v is not None}


def parallel_block(cfg: dict[str, Any]) -> bool:
    """Whether the config's blocks run attention and the MLP in parallel on one input (data file [parallel_block])."""
    model_type = cfg.get("model_type")
    if model_type in ARCHITECTURES.value("parallel_block", "always"):
        return True
    by_key = ARCHITECTURES.value("parallel_block", "by_config_key").get(model_type)
    if by_key is None:
        return False
    key, default = by_key
    if model_type == "falcon" and cfg.get("new_decoder_architecture"):
        return True  # FalconDecoderLayer: the new architecture always adds attention and MLP in parallel
    return bool(cfg.get(key, default))


# Facts that count things a model has at least one of; a config giving 0, a negative or a fractional count (or
# text) cannot be built, and transformers' own error for it is long and far from the key.
_COUNTS = ("layers", "hidden", "heads", "kv_heads", "vocab", "context", "experts", "experts_per_token",
           "decoder_layers", "ffn")


def check_config(cfg: dict[str, Any], origin: str) -> None:
    """A config's size keys are whole numbers >= 1 and its depth within ``[limits] max_layers``; a one-line
    UserError naming the key otherwise."""
    for fact, keys in _ALIASES.items():
        if fact not in _COUNTS:
            continue
        for key in keys:
            value = cfg.get(key)
            if value is None:
                continue
            # per-stage sizes (Swin's heads, SegFormer's depths) are lists of whole numbers
            for item in (value if isinstance(value, list) and value else [value]):
                if isinstance(item, float) and item.is_integer():
                    item = int(item)
                if isinstance(item, bool) or not isinstance(item, int) or item < 1:
                    raise UserError(f"{origin}: \"{key}\" must be a whole number >= 1 (or a list of them), "
                                    f"got {value!r}; fix the config")
            break
    limit = int(ARCHITECTURES.value("limits", "max_layers"))
    facts = facts_from_config(cfg)
    depth = int(facts.get("layers") or 0) + int(facts.get("decoder_layers") or 0)
    if depth > limit:
        raise UserError(f"{origin} has {depth:,} layers, more than the {limit:,} mlfootprint traces (a trace holds "
                        "every layer's operations); trace a copy with fewer layers and scale the per-layer figures, "
                        "or raise the limit with '[limits] max_layers = { value = N, source = \"...\" }' in a file in "
                        "$XDG_CONFIG_HOME/mlfootprint/models/")
