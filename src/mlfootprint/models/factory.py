"""Models from user code: `package.module:callable` or `path/to/file.py:callable`.

The callable is called inside the trace's FakeTensorMode, so even a model that
would not fit in memory is built without allocating it. Inputs come from
`--input` shapes or from `--inputs file.py:callable`.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import UserError
from ..workload import Workload
from .spec import BuiltModel, ModelSpec

if TYPE_CHECKING:
    import torch


def looks_like_callable_ref(text: str) -> bool:
    if ":" not in text:
        return False
    left, _, right = text.rpartition(":")
    if not right.isidentifier():
        return False
    return left.endswith(".py") or all(part.isidentifier() for part in left.split("."))


def load_callable(ref: str, what: str = "model factory") -> Callable[..., Any]:
    left, _, attr = ref.rpartition(":")
    if left.endswith(".py"):
        path = Path(left)
        if not path.is_file():
            raise UserError(f"{what} file {left!r} does not exist")
        mod_name = f"_mlfootprint_user_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise UserError(f"cannot import {what} file {left!r}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except SystemExit as exc:
            sys.modules.pop(mod_name, None)
            raise UserError(f"importing {left!r} called sys.exit({exc.code!r}); a {what} file must define the "
                            "callable, not run a program (guard it with if __name__ == '__main__':)") from None
        except Exception as exc:
            sys.modules.pop(mod_name, None)
            raise UserError(f"importing {left!r} failed: {type(exc).__name__}: {exc}") from None
    else:
        try:
            module = importlib.import_module(left)
        except SystemExit as exc:
            raise UserError(f"importing module {left!r} for {what} {ref!r} called sys.exit({exc.code!r})") from None
        except Exception as exc:
            raise UserError(f"cannot import module {left!r} for {what} {ref!r}: {type(exc).__name__}: {exc}") from None
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise UserError(f"{what} {ref!r}: {left!r} has no callable named {attr!r}")
    return fn


def _call_with_workload(fn: Callable[..., Any], wl: Workload) -> Any:
    """Call fn, passing batch/seq if its signature asks for them."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    kwargs = {}
    if "batch" in params:
        kwargs["batch"] = wl.batch
    if "seq" in params and wl.seq is not None:
        kwargs["seq"] = wl.seq
    return fn(**kwargs)


def _to_dtype(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """``module.to(dtype)`` for a model built on fake tensors, tied weights included. torch's ``Module._apply``
    swaps each fake parameter in place (``torch.utils.swap_tensors``), which fails on a parameter that two modules
    share (a language model's tied embedding and head): then each distinct floating tensor is cast once and put
    back in every slot that held it, so the tie survives, as ``.to`` keeps it on real tensors."""
    import torch

    try:
        return module.to(dtype)
    except RuntimeError as exc:
        if "Couldn't swap" not in str(exc):
            raise
    cast: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id of the original → (original, cast)

    def cast_once(t: torch.Tensor, parameter: bool) -> torch.Tensor:
        if id(t) not in cast:
            with torch.no_grad():
                new = t.to(dtype)
            cast[id(t)] = (t, torch.nn.Parameter(new, requires_grad=t.requires_grad) if parameter else new)
        return cast[id(t)][1]

    for sub in module.modules():
        for slots, parameter in ((sub._parameters, True), (sub._buffers, False)):
            for name, t in list(slots.items()):
                if t is not None and (t.is_floating_point() or t.is_complex()) and t.dtype != dtype:
                    slots[name] = cast_once(t, parameter)
        if isinstance(sub, torch.nn.RNNBase):  # its flat weight list points at the parameters it had
            sub._init_flat_weights()
    return module


def build(spec: ModelSpec, wl: Workload) -> BuiltModel:
    """Call the factory (inside the fake mode) and make the inputs its forward takes."""
    import torch  # here, not at the top: resolving a model (and a cached trace) needs no torch

    try:
        module = _call_with_workload(spec.factory, wl)
    except UserError:
        raise
    except SystemExit as exc:  # the factory's own exit is not mlfootprint's answer (exit 0 would read as success)
        raise UserError(f"model factory {spec.origin!r} called sys.exit({exc.code!r}) instead of returning a "
                        "torch.nn.Module") from None
    except Exception as exc:
        raise UserError(f"model factory {spec.origin!r} raised {type(exc).__name__}: {exc}") from None
    if not isinstance(module, torch.nn.Module):
        raise UserError(f"model factory {spec.origin!r} returned {type(module).__name__}, not a torch.nn.Module")
    weights_dtype = getattr(torch, wl.traced_weights_dtype)
    if any(t.dtype.is_floating_point and t.dtype != weights_dtype for t in list(module.parameters()) + list(module.buffers())):
        module = _to_dtype(module, weights_dtype)
    module.train(wl.training)
    if spec.inputs_factory is None and not spec.input_specs:
        raise UserError(f"model {spec.origin!r} needs inputs: give --input SHAPE[:dtype] (e.g. --input 8x3x224x224) "
                        "or --inputs file.py:callable")
    float_dtype = weights_dtype
    given_batch = "batch" in wl.given

    def make_inputs() -> tuple[tuple[Any, ...], dict[str, Any]]:
        if spec.inputs_factory is not None:
            try:
                made = _call_with_workload(spec.inputs_factory, wl)
            except UserError:
                raise
            except SystemExit as exc:
                raise UserError(f"inputs callable called sys.exit({exc.code!r}) instead of returning inputs") from None
            except Exception as exc:
                raise UserError(f"inputs callable raised {type(exc).__name__}: {exc}") from None
            if isinstance(made, dict):
                return (), made
            if isinstance(made, torch.Tensor):
                return (made,), {}
            if isinstance(made, (tuple, list)):
                return tuple(made), {}
            raise UserError("inputs callable must return a tensor, a tuple of arguments or a dict of keyword arguments")
        tensors = []
        for s in spec.input_specs:
            shape = (wl.batch,) + s.shape[1:] if given_batch else s.shape
            dtype = s.dtype or float_dtype
            if dtype.is_floating_point:
                tensors.append(torch.randn(shape, dtype=dtype))
            else:
                tensors.append(torch.zeros(shape, dtype=dtype))
        return tuple(tensors), {}

    samples = (wl.batch if given_batch else (spec.input_specs[0].shape[0] if spec.input_specs else wl.batch))
    return BuiltModel(module, make_inputs, factory_loss, tokens=samples, token_unit="samples",
                      assumptions=["training loss for a custom model: the mean of its (first) output, "
                                   "a stand-in whose own cost is negligible"] if wl.training else [])


def factory_loss(output: Any) -> torch.Tensor:
    import torch

    first = output
    while isinstance(first, (tuple, list)) and first:
        first = first[0]
    if isinstance(first, dict) and first:
        first = next(iter(first.values()))
    loss = getattr(output, "loss", None)
    if isinstance(loss, torch.Tensor):
        return loss
    if not isinstance(first, torch.Tensor) or not first.dtype.is_floating_point:
        raise UserError("cannot train a model whose output is not a floating-point tensor; trace it with --mode inference")
    return first.float().mean()
