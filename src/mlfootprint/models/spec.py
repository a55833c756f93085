"""A resolved model (what MODEL named) and a built one (a fake module ready to trace)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .inputs import InputSpec

if TYPE_CHECKING:
    import torch


@dataclass
class ModelSpec:
    """What the MODEL argument resolved to, before anything is built."""

    name: str
    source: str  # catalog | hf-config | hf-hub | factory
    origin: str  # catalog file, config path, hub id or 'module:callable'
    task: str = "custom"  # causal-lm | masked-lm | seq2seq-lm | base (text) | image-classification | image | image-text | audio | speech-seq2seq | custom
    hf_config: dict[str, Any] | None = None
    factory: Callable[..., Any] | None = None
    input_specs: tuple[InputSpec, ...] = ()
    inputs_factory: Callable[..., Any] | None = None
    entry: dict[str, Any] | None = None  # the catalog record
    facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "source": self.source, "origin": self.origin, "task": self.task}
        if self.entry:
            for key in ("display_name", "hub_id", "paper"):
                if self.entry.get(key):
                    out[key] = self.entry[key]
            out["config_source"] = self.entry.get("source")
        out.update({k: v for k, v in self.facts.items() if k != "model_type"})
        if self.facts.get("model_type"):
            out["architecture"] = self.facts["model_type"]
        return out


@dataclass
class MoEInfo:
    experts: int
    top_k: int
    is_expert_param: Callable[[str], bool]  # parameter name → routed expert weight?


@dataclass
class BuiltModel:
    """A model built on fake tensors, with how to feed it and what one step processes."""

    module: torch.nn.Module
    make_inputs: Callable[[], tuple[tuple[Any, ...], dict[str, Any]]]  # called inside the fake mode
    loss: Callable[[Any], torch.Tensor]
    tokens: int  # tokens (or samples, for non-sequence models) per step
    token_unit: str = "tokens"
    causal: bool = False
    moe: MoEInfo | None = None
    assumptions: list[str] = field(default_factory=list)
