"""The one precision table: what each workload precision stores, computes in, and keeps per parameter.

Every layer reads its dtypes and byte counts from here (dtype names are torch's, as strings, so this
module needs no torch). Byte counts per parameter element follow the ZeRO paper (Rajbhandari et al. 2020,
Sec. 3.1) and Megatron-LM/DeepSpeed for the mixed precisions: 16-bit working weights and gradients, fp32
master weights kept with the optimizer states. fp8-mixed keeps the same 16-bit working copy (its FP8 weight
casts are transient).
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import UserError, suggest


@dataclass(frozen=True)
class Precision:
    name: str
    traced_param_dtype: str  # the weights' dtype in the traced model (fp32 under autocast for *-mixed)
    compute_dtype: str  # dtype of the activations and matmuls
    peak_dtype: str  # the device peak (catalog key) that applies to its matmuls: the MFU denominator
    weight_bytes: int  # working weights on the device, per element (16-bit for *-mixed)
    grad_bytes: int  # gradients, per element
    master_bytes: int  # fp32 master weights kept with the optimizer states (mixed precision only)
    state_bytes: int  # one optimizer state element (Adam's m or v), as the optimizer keeps it
    compute_bytes: int  # one activation element

    @property
    def mixed(self) -> bool:
        return self.name.endswith("-mixed")

    @property
    def traced_param_bytes(self) -> int:
        return DTYPE_BYTES[self.traced_param_dtype]


PRECISIONS: dict[str, Precision] = {p.name: p for p in (
    #          name          traced weights  compute     peak    w  g  master state act
    Precision("fp32",       "float32",      "float32",  "fp32", 4, 4, 0,     4,    4),
    Precision("bf16",       "bfloat16",     "bfloat16", "bf16", 2, 2, 0,     2,    2),
    Precision("fp16",       "float16",      "float16",  "fp16", 2, 2, 0,     2,    2),
    Precision("bf16-mixed", "float32",      "bfloat16", "bf16", 2, 2, 4,     4,    2),
    Precision("fp16-mixed", "float32",      "float16",  "fp16", 2, 2, 4,     4,    2),
    Precision("fp8-mixed",  "float32",      "bfloat16", "fp8",  2, 2, 4,     4,    2),
)}
PRECISION_NAMES: tuple[str, ...] = tuple(PRECISIONS)

# Bytes per element of the dtypes a trace can hold (torch's names).
DTYPE_BYTES: dict[str, int] = {
    "float64": 8, "float32": 4, "bfloat16": 2, "float16": 2, "float8_e4m3fn": 1, "float8_e5m2": 1,
    "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "bool": 1, "complex64": 8, "complex128": 16,
}


def precision(name: str) -> Precision:
    """The table row of a precision; a one-line UserError naming the choices for an unknown one."""
    try:
        return PRECISIONS[name]
    except (KeyError, TypeError):
        raise UserError(f"unknown --precision {name!r}; choose one of: {', '.join(PRECISION_NAMES)}."
                        f"{suggest(str(name), PRECISION_NAMES)}") from None
