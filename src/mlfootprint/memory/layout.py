"""A parallel layout: how one step is spread over devices, what the memory model is asked about.

``micro_batch`` is the batch one device processes in one forward/backward;
the global batch is ``micro_batch × dp × grad_accum``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from ..core.errors import UserError
from ..workload import OFFLOAD, OPTIMIZERS, PRECISIONS, RECOMPUTE, Workload


@dataclass(frozen=True)
class Layout:
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

    def replace(self, **kw: Any) -> Layout:
        return replace(self, **kw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def devices(self) -> int:
        return self.dp * self.tp * self.pp

    def label(self) -> str:
        s = f"tp={self.tp} pp={self.pp} dp={self.dp}"
        if self.ep > 1:
            s += f" ep={self.ep}"
        s += f" zero={self.zero}{'++' if self.zeropp else ''} micro-batch={self.micro_batch} recompute={self.recompute}"
        if self.offload != "none":
            s += f" offload={self.offload}"
        return s

    def validate(self) -> None:
        for name in ("dp", "tp", "pp", "ep", "micro_batch", "grad_accum"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise UserError(f"--{name.replace('_', '-')} must be a positive whole number, got {v!r}")
        if self.zero not in (0, 1, 2, 3):
            raise UserError(f"--zero must be 0, 1, 2 or 3, got {self.zero!r}")
        for name, allowed in (("offload", OFFLOAD), ("recompute", RECOMPUTE), ("precision", PRECISIONS),
                              ("optimizer", OPTIMIZERS)):
            if getattr(self, name) not in allowed:
                raise UserError(f"unknown --{name} {getattr(self, name)!r}; choose one of: {', '.join(allowed)}")

    @classmethod
    def from_workload(cls, wl: Workload) -> Layout:
        """The layout a workload describes; ``--batch`` is the global batch when given (see :func:`micro_batch_of`)."""
        return cls(dp=wl.dp, tp=wl.tp, pp=wl.pp, ep=wl.ep, zero=wl.zero, offload=wl.offload,
                   micro_batch=micro_batch_of(wl), recompute=wl.recompute if wl.training else "none",
                   precision=wl.precision, optimizer=wl.optimizer, grad_accum=wl.grad_accum)


def micro_batch_of(wl: Workload) -> int:
    """Per-device micro-batch: ``--micro-batch`` if given; else ``--batch / (dp × grad_accum)`` (it must divide);
    the default ``--batch 1`` with dp × grad_accum > 1 reads as one sample per device."""
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


def check_against_model(layout: Layout, facts: dict[str, Any], n_blocks: int | None = None, training: bool = True) -> None:
    """Layout constraints that depend on the model: one line, the fix included."""
    heads = facts.get("heads")
    if layout.tp > 1:
        if heads and heads % layout.tp:
            divisors = [d for d in range(1, heads + 1) if heads % d == 0]
            raise UserError(f"--tp {layout.tp} does not divide the model's {heads} attention heads; "
                            f"use one of: {', '.join(map(str, divisors[:12]))}")
    layers = n_blocks or facts.get("layers")
    if layout.pp > 1:
        if not layers:
            raise UserError(f"--pp {layout.pp} needs a model made of repeated blocks; this one has none to split into stages")
        if layout.pp > layers:
            raise UserError(f"--pp {layout.pp} exceeds the model's {layers} layers; use --pp {layers} or fewer")
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


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)

