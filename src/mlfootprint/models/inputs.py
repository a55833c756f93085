"""`--input 8x3x224x224[:dtype]` shapes and `--inputs file.py:callable`."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core.errors import UserError

if TYPE_CHECKING:
    import torch

# --input dtype names → torch dtype attribute names (torch is imported only when an input is parsed)
DTYPE_NAMES: dict[str, str] = {
    "float32": "float32", "fp32": "float32", "float": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16",
    "float64": "float64", "fp64": "float64", "double": "float64",
    "int64": "int64", "long": "int64", "int32": "int32", "int": "int32",
    "int8": "int8", "uint8": "uint8", "bool": "bool",
}

_SHAPE = re.compile(r"^\d{1,20}(x\d{1,20})*$")
# Elements of one input tensor: 2^48 is hundreds of terabytes in any dtype, yet sizes (and products with the
# batch) stay far inside the int64 that torch keeps them in.
MAX_INPUT_ELEMENTS = 1 << 48


@dataclass(frozen=True)
class InputSpec:
    shape: tuple[int, ...]
    dtype: torch.dtype | None  # None: the model's compute dtype for floats

    def __str__(self) -> str:
        s = "x".join(str(d) for d in self.shape)
        return s + (f":{str(self.dtype).replace('torch.', '')}" if self.dtype is not None else "")


def parse_input(text: str) -> InputSpec:
    shape_part, colon, dtype_part = text.strip().partition(":")
    if colon and not dtype_part.strip():
        raise UserError(f"malformed --input {text!r}: name a dtype after the ':' (e.g. 4x128:int64) or leave the ':' out")
    shape_part = shape_part.strip().lower()
    if not _SHAPE.match(shape_part):
        raise UserError(f"malformed --input {text!r}: write the shape as sizes joined by 'x', e.g. 8x3x224x224 or 4x128:int64")
    shape = tuple(int(d) for d in shape_part.split("x"))
    if any(d < 1 for d in shape):
        raise UserError(f"malformed --input {text!r}: every size must be at least 1")
    if math.prod(shape) > MAX_INPUT_ELEMENTS:
        raise UserError(f"--input {text!r} has {math.prod(shape):.3g} elements, beyond any real input (at most "
                        f"2^48 = {MAX_INPUT_ELEMENTS:.3g}); check the shape")
    dtype = None
    if dtype_part:
        name = DTYPE_NAMES.get(dtype_part.strip().lower())
        if name is None:
            raise UserError(f"unknown dtype {dtype_part!r} in --input {text!r}; use one of: {', '.join(sorted(DTYPE_NAMES))}")
        import torch

        dtype = getattr(torch, name)
    return InputSpec(shape, dtype)
