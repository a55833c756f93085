"""Architecture facts read from a Hugging Face-style config (names differ across families)."""
from __future__ import annotations

from typing import Any
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
    return {k: v for k, v in out.items() if v is not None}
