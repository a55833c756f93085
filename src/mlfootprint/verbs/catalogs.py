"""``models`` and ``hardware``: the catalogs (and ``hardware calibrate``, which adds this machine to one)."""
from __future__ import annotations

from collections.abc import Callable

import torch

from ..analysis.count.params import parameter_stats

from ..core.errors import UserError
from ..hardware.catalog import get_device, load_devices
from ..measure import opcal
from ..measure.calibrate import calibrate, check_profile_target, save_profile
from ..models import catalog
from ..models.facts import facts_from_config
from ..report.schema import Report
from ..report.sections import CatalogSection, ParamsSection
from ..trace.run import trace
from ..workload import Workload
from .common import base_report, resolve_model


def models_list() -> Report:
    """Every catalog model with its architecture facts (``catalog.models``)."""
    rows = {}
    for name in catalog.names():
        entry = catalog.get(name)
        facts = facts_from_config(entry["config"])
        rows[name] = {
            "family": entry.get("family", facts.get("model_type")), "task": entry.get("task"),
            "layers": facts.get("layers"), "hidden": facts.get("hidden"), "heads": facts.get("heads"),
            "kv_heads": facts.get("kv_heads"), "vocab": facts.get("vocab"), "context": facts.get("context"),
            "experts": facts.get("experts"), "hub_id": entry.get("hub_id"),
        }
    rep = Report(verb="models")
    rep.add(CatalogSection(count=len(rows), models=rows))
    return rep


def models_show(name: str) -> Report:
    """One catalog model: its source, architecture and counted parameters (beside the published count)."""
    entry = catalog.get(name)  # unknown name: one-line error with suggestions
    spec = resolve_model(name)
    tr = trace(spec, Workload(batch=1, seq=8))
    params = parameter_stats(tr)
    rep = base_report("models show", spec, None)
    published = (entry.get("published_params") or {}).get("value")
    rep.add(ParamsSection(**vars(params), published=published),
            {k: "counted" for k in vars(params) if k != "by_dtype" and getattr(params, k) is not None})
    if params.active != params.total:
        rep.mark("params.active", "modeled")
    if published is not None:
        rep.mark("params.published", "published")
    for a in tr.assumptions:
        rep.assume(a)
    if entry.get("notes"):
        rep.assume(entry["notes"])
    return rep


def hardware_list() -> Report:
    """Every known device (the package catalog, the user's files, then the calibrated profile 'this')."""
    devices = sorted(load_devices().values(), key=lambda d: d.id == "this")
    rep = Report(verb="hardware list")
    rep.add(CatalogSection(count=len(devices), devices={d.id: d.to_dict() for d in devices}))
    return rep


def hardware_show(device_id: str) -> Report:
    """Every figure of one device with its source and date."""
    dev = get_device(device_id)
    rep = Report(verb="hardware show")
    rep.add(CatalogSection(count=1, devices={dev.id: dev.to_dict()}))
    return rep


def hardware_calibrate(*, budget_s: float = 45.0, device: str = "auto", save: bool = True,
                       progress: Callable[[str, float], None] | None = None,
                       say: Callable[[str], None] | None = None) -> Report:
    """Measure what this machine achieves (matmul FLOP/s per dtype, memory bandwidth, per-op overhead) and save
    it as the device ``this``; on a CPU, also per-operator-class rate curves (used by ``--hardware this``)."""
    if isinstance(budget_s, bool) or not isinstance(budget_s, (int, float)) or not 0 < budget_s <= 86400:
        raise UserError(f"--budget-s must be a positive number of seconds (at most 86400), got {budget_s!r}")
    if save:
        check_profile_target()  # refuse early, before spending the budget
    say = say or (lambda text: None)
    say(f"calibrating this machine for about {budget_s:g} s …")
    cpu = device == "cpu" or (device == "auto" and not _cuda_available())
    device_budget = budget_s * (0.6 if cpu else 1.0)
    dev = calibrate(device=device, progress=progress, budget_s=device_budget)
    saved = save_profile(dev) if save else None
    if cpu and save:
        say("  measuring per-operator-class rates (convolution, matmul, attention, elementwise, …)")
        say(f"  saved operator curves to {opcal.calibrate(budget_s=budget_s - device_budget)}")
    rep = Report(verb="hardware calibrate")
    rep.add(CatalogSection(count=1, devices={dev.id: dev.to_dict()},
                           saved_to=str(saved) if saved is not None else None))
    return rep


def _cuda_available() -> bool:
    return torch.cuda.is_available()
