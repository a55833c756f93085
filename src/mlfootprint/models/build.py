"""Build a resolved model for a workload: a Hugging Face model from its config, or a user factory's module.

Call inside a FakeTensorMode to build without allocating weights (the trace does), or outside it for real
weights (``bench`` does).
"""
from __future__ import annotations

from ..workload import Workload
from . import factory, hf_build
from .spec import BuiltModel, ModelSpec


def build(spec: ModelSpec, wl: Workload) -> BuiltModel:
    if spec.source in ("factory", "module"):
        return factory.build(spec, wl)
    return hf_build.build(spec, wl)
