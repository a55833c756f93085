"""``models`` and ``hardware``: the catalogs (and ``hardware calibrate``, which adds this machine to one)."""
from __future__ import annotations

from collections.abc import Callable

from ..analysis.count.params import parameter_stats
from ..core.errors import UserError, suggest
from ..hardware.catalog import get_device, load_devices
from ..models import catalog
from ..models.facts import facts_from_config
from ..report.schema import Report
from ..report.sections import CatalogSection, ParamsSection
from ..trace.cache import traced_step
from ..workload import Workload
from .common import base_report, resolve_model, reuses_traces


def models_list() -> Report:
    """Every catalog model with its architecture facts (``catalog.models``).

    Args:
        No arguments.

    Returns:
        A Report (verb ``models``) with a ``catalog`` section: ``count`` and ``models``, a dict from each catalog
        name (``"gpt2"``, ``"llama-2-7b"``, ``"mixtral-8x7b"``, ...) to its ``family``, ``task``, ``layers``,
        ``hidden``, ``heads``, ``kv_heads``, ``vocab``, ``context``, ``experts`` (None for dense models) and
        ``hub_id``.

    Example:
        >>> rep = mf.models_list()
        >>> rep.sections["catalog"]["models"]["llama-2-7b"]["layers"]
        32
    """
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


@reuses_traces
def models_show(name: str, *, cache: bool = True) -> Report:
    """One catalog model: its source, architecture and counted parameters (beside the published count).

    The parameters are counted from a trace of the model (batch 1, sequence 8, on fake tensors).

    Args:
        name: a catalog model name (``"gpt2"``, ``"llama-2-7b"``; see :func:`mlfootprint.models_list`). An
            unknown name raises :class:`~mlfootprint.core.errors.UserError` with the closest names.
        cache: reuse a trace from the persistent trace cache (default True); False (``--no-cache``) traces
            anew and stores nothing.

    Returns:
        A Report (verb ``models show``) with a ``model`` section (``name``, ``source``, ``hub_id``, ``layers``,
        ``hidden``, ``heads``, ``vocab``, ``context``, ...) and a ``params`` section (``total``, ``trainable``,
        ``embedding``, ``non_embedding``, ``active``, ``by_dtype``, and ``published`` when the catalog has the
        published count).

    Example:
        >>> rep = mf.models_show("gpt2")
        >>> rep.sections["params"]["total"]
        124439808
    """
    entry = catalog.find(name)
    if entry is None:  # one line, with the closest names; other model sources belong to count/analyze
        raise UserError(f"models show takes a catalog name, not {name!r} (see 'mlfootprint models list'); for a "
                        f"config.json, a hub id or a module:callable use 'mlfootprint count MODEL'."
                        f"{suggest(name, catalog.names())}")
    spec = resolve_model(name)
    tr = traced_step(spec, Workload(batch=1, seq=8))
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
    """Every known device (the package catalog, the user's files, then the calibrated profile 'this').

    Args:
        No arguments.

    Returns:
        A Report (verb ``hardware list``) with a ``catalog`` section: ``count`` and ``devices``, a dict from each
        device id (``"a100-80gb"``, ``"h100-sxm"``, ``"tpu-v4"``, ...) to its figures, as for
        :func:`mlfootprint.hardware_show`.

    Example:
        >>> rep = mf.hardware_list()
        >>> rep.sections["catalog"]["devices"]["a100-80gb"]["peak_flop_per_s"]["bf16"]
        312000000000000.0
    """
    devices = sorted(load_devices().values(), key=lambda d: d.id == "this")
    rep = Report(verb="hardware list")
    rep.add(CatalogSection(count=len(devices), devices={d.id: d.to_dict() for d in devices}))
    return rep


def hardware_show(device_id: str) -> Report:
    """Every figure of one device with its source and date.

    Args:
        device_id: a device id of the catalog (case-insensitive; ``"h100-sxm"``, ``"a100-80gb"``; see
            :func:`mlfootprint.hardware_list`), or ``"this"`` for the calibrated profile of this machine. An
            unknown id raises :class:`~mlfootprint.core.errors.UserError` with the closest ids.

    Returns:
        A Report (verb ``hardware show``) with a ``catalog`` section: ``count`` (1) and ``devices``, a dict from
        the device id to its ``name``, ``vendor``, ``kind``, ``peak_flop_per_s`` (dense FLOP/s per dtype),
        ``memory_bytes``, ``memory_bandwidth_bytes_per_s``, ``intra_node_bandwidth_bytes_per_s``,
        ``inter_node_bandwidth_bytes_per_s``, ``devices_per_node``, ``tdp_w``, ``price_usd_per_hour`` and
        ``sources`` (per figure: ``source``, ``date``, ``url``, ``provenance``).

    Example:
        >>> rep = mf.hardware_show("h100-sxm")
        >>> rep.sections["catalog"]["devices"]["h100-sxm"]["tdp_w"]
        700.0
    """
    dev = get_device(device_id)
    rep = Report(verb="hardware show")
    rep.add(CatalogSection(count=1, devices={dev.id: dev.to_dict()}))
    return rep


def hardware_calibrate(*, budget_s: float = 45.0, device: str = "auto", save: bool = True,
                       progress: Callable[[str, float], None] | None = None,
                       say: Callable[[str], None] | None = None) -> Report:
    """Measure what this machine achieves (matmul FLOP/s per dtype, memory bandwidth, per-op overhead) and save
    it as the device ``this``; on a CPU, also per-operator-class rate curves (used by ``--hardware this``).

    The profile is written to ``$XDG_CONFIG_HOME/mlfootprint/hardware/this.toml`` (``~/.config`` by default);
    a file there that mlfootprint did not write is never overwritten (a UserError, before any measuring). All
    arguments are keyword-only.

    Args:
        budget_s: about how long to measure, in seconds, more than 0 and at most 86400 (default 45). On a CPU
            60% goes to the device figures and, when saving, the rest to the per-operator curves.
        device: ``"auto"`` (default: CUDA when available, else the CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        save: save the profile as ``this`` (default True); False only measures and reports.
        progress: called as ``progress(message, fraction_done)`` (fraction in [0, 1]) while measuring; default
            None.
        say: called with a line of text at each stage (default None: silent).

    Returns:
        A Report (verb ``hardware calibrate``) with a ``catalog`` section: ``count`` (1), ``devices``, a dict
        from ``"this"`` to the measured figures (``peak_flop_per_s`` per dtype, ``memory_bandwidth_bytes_per_s``,
        ``memory_bytes``, ..., each with its source, as for :func:`mlfootprint.hardware_show`), and
        ``saved_to``, the profile's path (absent when ``save`` is False).

    Example:
        >>> rep = mf.hardware_calibrate(budget_s=60)
        >>> rep.sections["catalog"]["saved_to"]
        >>> rep = mf.predict("gpt2", mf.Workload(batch=8, seq=512, hardware="this"))
    """
    # torch here, not at import: `models list` and `hardware list` run without it
    from ..measure import opcal
    from ..measure.calibrate import calibrate, check_device, check_profile_target, save_profile

    if isinstance(budget_s, bool) or not isinstance(budget_s, (int, float)) or not 0 < budget_s <= 86400:
        raise UserError(f"--budget-s must be a positive number of seconds (at most 86400), got {budget_s!r}")
    check_device(device)  # a device this machine lacks: one line, before the first message
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
    import torch

    return torch.cuda.is_available()
