"""What the workload changes in a model before it runs: LoRA adapters and activation recomputation.

:func:`prepare_model` is called by the trace (and by ``bench``) on mlfootprint's own copy of the model,
never on a user's module.

LoRA adapters (Hu et al. 2022, arXiv:2106.09685): each target linear layer is
wrapped by :class:`LoRALinear` (a frozen base plus A: in×r and B: r×out), and
every other parameter is frozen. The trace then sees exactly the adapter
gradients, the adapter optimizer states and the extra activations (the r-wide
intermediate ``x·Aᵀ`` saved for backward) of a real LoRA run.

QLoRA is LoRA with ``--quant int4``: the trace keeps the base weights in the
compute dtype (their arithmetic is what a 4-bit kernel does after
dequantizing), and the memory model stores them as 4-bit NF4 with their
quantization state (see :mod:`mlfootprint.analysis.memory.quant`).
"""
from __future__ import annotations

import torch
from torch import nn

from ..core.errors import UserError
from ..workload import Workload
from .constants import TRANSFORMS as CONSTANTS



class LoRALinear(nn.Module):
    """y = base(x) + (x·Aᵀ)·Bᵀ · (alpha / r), with the base frozen. Works for nn.Linear and GPT-2's Conv1D."""

    def __init__(self, base: nn.Module, rank: int, in_features: int, out_features: int, alpha: float | None = None) -> None:
        super().__init__()
        self.base = base
        weight = base.weight
        self.lora_A = nn.Linear(in_features, rank, bias=False, dtype=weight.dtype, device=weight.device)
        self.lora_B = nn.Linear(rank, out_features, bias=False, dtype=weight.dtype, device=weight.device)
        self.scaling = float(alpha if alpha is not None else 2 * rank) / rank
        self.rank = rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.lora_B(self.lora_A(x)) * self.scaling


def _features(module: nn.Module) -> tuple[int, int] | None:
    """(in, out) of a linear layer: nn.Linear, or a Conv1D (weight stored in×out, as in HF GPT-2)."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    weight = getattr(module, "weight", None)
    if type(module).__name__ == "Conv1D" and isinstance(weight, torch.Tensor) and weight.dim() == 2:
        return int(weight.shape[0]), int(weight.shape[1])
    return None


def _matches(name: str, targets: tuple[str, ...]) -> bool:
    return any(name == t or name.endswith("." + t) for t in targets)


def default_targets() -> tuple[str, ...]:
    return tuple(CONSTANTS.value("lora", "default_targets"))


def apply_lora(model: nn.Module, rank: int, targets: tuple[str, ...] | list[str] | None = None) -> list[str]:
    """Wrap the target linear layers of ``model`` with rank-``rank`` adapters and freeze everything else.

    ``targets`` are module-name suffixes (``q_proj``, ``attn.c_proj``); None means the default attention
    projections (see ``trace/data/transforms.toml``). Returns notes for the report's assumptions.
    """
    if not isinstance(rank, int) or rank < 1:
        raise UserError(f"--lora-rank must be a positive whole number, got {rank!r}")
    given = tuple(t.strip() for t in targets if t.strip()) if targets else ()
    wanted = given or default_targets()
    found: list[tuple[str, nn.Module, int, int]] = []
    linear_names: list[str] = []
    for name, module in model.named_modules():
        feats = _features(module)
        if feats is None:
            continue
        linear_names.append(name)
        if _matches(name, wanted):
            found.append((name, module, feats[0], feats[1]))
    if not found:
        tails = sorted({n.rsplit(".", 1)[-1] for n in linear_names})
        raise UserError(f"--lora-targets {','.join(wanted)} matches no linear layer of this model; "
                        f"its linear layers are named: {', '.join(tails[:12]) or 'none'}")
    if given:
        missing = [t for t in given if not any(_matches(n, (t,)) for n, *_ in found)]
        if missing:
            raise UserError(f"--lora-targets {','.join(missing)} matches no linear layer of this model")
    for name, _, fin, fout in found:
        if rank > min(fin, fout):
            raise UserError(f"--lora-rank {rank} exceeds the smaller side of the adapted layer '{name}' ({fin} → {fout}): "
                            "a rank above min(in, out) adds parameters without adding capacity; use --lora-rank "
                            f"{min(fin, fout)} or less")
    for p in model.parameters():
        p.requires_grad_(False)
    trainable = 0
    for name, module, fin, fout in found:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        wrapped = LoRALinear(module, rank, fin, fout)
        setattr(parent, attr, wrapped)
        trainable += rank * (fin + fout)
    kinds = sorted({n.rsplit(".", 1)[-1] for n, *_ in found})
    return [
        f"LoRA rank {rank} on {len(found)} linear layers ({', '.join(kinds)}): A (in×r) and B (r×out) trainable, "
        f"{trainable:,} parameters; every other parameter frozen (no gradients, no optimizer state)",
        "LoRA dropout is not traced (identity at p=0; with p>0 it adds one saved mask per adapted layer)",
    ]


def apply_recompute(model: nn.Module, wl: Workload) -> list[str]:
    """Activation checkpointing as the workload asks (training only). Returns notes for the assumptions."""
    if wl.recompute == "none" or not wl.training:
        return []
    if wl.recompute == "selective":
        return ["selective recomputation (Korthikanti et al. 2022) recomputes attention's softmax/dropout; "
                "with SDPA/flash attention those are not stored anyway, so the trace is unchanged"]
    kwargs: dict = {"use_reentrant": False}
    if wl.recompute == "selective-op":
        kwargs["context_fn"] = _op_policy_context
    if getattr(model, "activation_checkpointing_enable", None) is not None:  # transformers >= 5
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    elif getattr(model, "gradient_checkpointing_enable", None) is not None:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    else:
        raise UserError("--recompute full needs a Hugging Face model (activation checkpointing); "
                        "for a custom model, checkpoint its blocks in your factory with torch.utils.checkpoint")
    if wl.recompute == "selective-op":
        return ["selective-op recomputation (PyTorch selective activation checkpointing with TorchTitan's 'op' "
                "policy, torchtitan/parallelisms/parallelize_llama.py at 9dec370): each transformer block keeps "
                "the outputs of every other matmul and of its attention kernel and re-runs the rest in backward"]
    return ["full recomputation: every transformer block's forward is re-run in backward (HF gradient checkpointing)"]


def _op_policy_context() -> tuple:
    """TorchTitan's 'op' policy (data file [recompute] selective_op_saved): the outputs of the listed operators are
    kept, except every second matmul of a block; everything else is recomputed."""
    from collections import defaultdict

    from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

    saved = frozenset(CONSTANTS.value("recompute", "selective_op_saved"))
    counts: dict[str, int] = defaultdict(int)

    def policy(ctx, func, *args, **kwargs):  # noqa: ANN001, ANN202 - torch's policy signature
        name = func.overloadpacket.__name__ if hasattr(func, "overloadpacket") else ""
        key = "recompute" if ctx.is_recompute else "forward"
        if name == "mm":
            counts[key] += 1
        save = name in saved and func._overloadname == "default" and not (name == "mm" and counts[key] % 2 == 0)
        return CheckpointPolicy.MUST_SAVE if save else CheckpointPolicy.PREFER_RECOMPUTE

    return create_selective_checkpoint_contexts(policy)


def prepare_model(model: nn.Module, wl: Workload) -> list[str]:
    """LoRA, then recomputation: what the workload asks of the model. Returns notes for the assumptions."""
    notes = apply_lora(model, wl.lora_rank, wl.lora_targets) if wl.lora_rank else []
    return notes + apply_recompute(model, wl)
