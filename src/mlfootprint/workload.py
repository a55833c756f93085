"""The Workload: what is run, how, and on how many devices.

Every field has a default; `given` records which ones the user set, so reports
can mark the rest as assumed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

from .core.errors import UserError

MODES = ("inference", "train", "generate")
PRECISIONS = ("fp32", "bf16", "fp16", "bf16-mixed", "fp16-mixed", "fp8-mixed")
OPTIMIZERS = ("sgd", "sgd-momentum", "adam", "adamw", "adafactor", "adam-8bit", "lion", "zo-sgd")
RECOMPUTE = ("none", "selective", "full")
OFFLOAD = ("none", "cpu", "nvme")
QUANT = ("none", "int8", "int4", "fp8")
ATTENTION = ("sdpa", "eager")

# Storage dtype of the weights and the dtype of the math, per precision.
_PARAM_DTYPE = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
                "bf16-mixed": torch.float32, "fp16-mixed": torch.float32, "fp8-mixed": torch.float32}
_COMPUTE_DTYPE = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
                  "bf16-mixed": torch.bfloat16, "fp16-mixed": torch.float16, "fp8-mixed": torch.bfloat16}


@dataclass
class Workload:
    batch: int = 1
    seq: int | None = None  # None: the model's own default (its context length, capped at 1024 for the trace)
    mode: str = "inference"
    precision: str = "fp32"
    optimizer: str = "adamw"
    attention: str = "sdpa"
    gen_tokens: int = 128  # tokens generated in --mode generate
    micro_batch: int | None = None
    grad_accum: int = 1
    recompute: str = "none"
    zero: int = 0
    offload: str = "none"
    zeropp: bool = False  # ZeRO++ (quantized weight/gradient communication, hierarchical partitioning); needs zero 3
    dp: int = 1
    tp: int = 1
    pp: int = 1
    ep: int = 1
    lora_rank: int | None = None
    lora_targets: tuple[str, ...] | None = None
    quant: str = "none"
    hardware: str | None = None
    devices: int | None = None
    tokens: float | None = None
    device_memory: int | None = None  # bytes of one device's memory (--device-memory), when no --hardware gives it
    other_bytes: int | None = None  # per-device framework overhead (--other-bytes); None: the memory model's default
    given: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.validate()
        if not self.given:
            # Built in Python (not from the CLI): what differs from the defaults was given.
            self.given = {f.name for f in fields(self) if f.name != "given" and getattr(self, f.name) != f.default}

    def validate(self) -> None:
        def positive(name: str, value: Any) -> None:
            if value is not None and (not isinstance(value, int) or value < 1):
                raise UserError(f"--{name.replace('_', '-')} must be a positive whole number, got {value!r}")

        for name in ("batch", "seq", "gen_tokens", "micro_batch", "grad_accum", "lora_rank", "devices", "tp", "pp", "ep"):
            positive(name, getattr(self, name))
        if not isinstance(self.dp, int) or self.dp < 1:
            raise UserError(f"--dp must be a positive whole number, got {self.dp!r}")
        for name, allowed in (("mode", MODES), ("precision", PRECISIONS), ("optimizer", OPTIMIZERS),
                              ("recompute", RECOMPUTE), ("offload", OFFLOAD), ("quant", QUANT), ("attention", ATTENTION)):
            value = getattr(self, name)
            if value not in allowed:
                from .core.errors import suggest

                raise UserError(f"unknown --{name} {value!r}; choose one of: {', '.join(allowed)}.{suggest(str(value), allowed)}")
        if self.zero not in (0, 1, 2, 3):
            raise UserError(f"--zero must be 0, 1, 2 or 3, got {self.zero!r}")
        if self.zeropp and self.zero != 3:
            raise UserError("--zeropp applies to ZeRO stage 3; add --zero 3")
        if self.devices is not None:
            # --devices N with --tp/--pp: the data-parallel degree is what is left (dp 1 reads as "not given").
            group = self.tp * self.pp
            if self.devices % group:
                raise UserError(f"--devices {self.devices} is not divisible by --tp {self.tp} × --pp {self.pp} = {group}; "
                                f"use a device count that is a multiple of {group}, or change --tp/--pp")
            if self.dp == 1:
                self.dp = self.devices // group
            elif self.dp * group != self.devices:
                raise UserError(f"--dp {self.dp} × --tp {self.tp} × --pp {self.pp} = {self.dp * group} devices, but "
                                f"--devices is {self.devices}; drop --dp (it follows from the others) or make them agree")
        if self.tokens is not None and self.tokens <= 0:
            raise UserError(f"--tokens must be positive, got {self.tokens!r}")
        if self.device_memory is not None and (not isinstance(self.device_memory, int) or self.device_memory < 1):
            raise UserError(f"--device-memory must be a positive size such as 80GB, got {self.device_memory!r}")
        if self.other_bytes is not None and (not isinstance(self.other_bytes, int) or self.other_bytes < 0):
            raise UserError(f"--other-bytes must be zero or a positive size such as 1GB, got {self.other_bytes!r}")

    @property
    def training(self) -> bool:
        return self.mode == "train"

    @property
    def param_dtype(self) -> torch.dtype:
        return _PARAM_DTYPE[self.precision]

    @property
    def compute_dtype(self) -> torch.dtype:
        return _COMPUTE_DTYPE[self.precision]

    @property
    def mixed(self) -> bool:
        return self.precision.endswith("-mixed")

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "given"}
        if out.get("lora_targets") is not None:
            out["lora_targets"] = list(out["lora_targets"])
        out["defaults"] = sorted(f.name for f in fields(self) if f.name != "given" and f.name not in self.given)
        return out

    @classmethod
    def from_args(cls, args: Any) -> Workload:
        """Build from argparse options; options left at None keep the defaults and are not 'given'."""
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "given":
                continue
            value = getattr(args, f.name, None)
            if value is not None:
                kwargs[f.name] = value
        if isinstance(kwargs.get("lora_targets"), str):
            kwargs["lora_targets"] = tuple(t for t in kwargs["lora_targets"].split(",") if t)
        wl = cls(**kwargs)
        wl.given = set(kwargs)
        return wl
