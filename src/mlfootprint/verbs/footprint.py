"""``footprint``: energy, CO2e, water, cost and embodied carbon of a run from its device-hours or energy."""
from __future__ import annotations

from ..analysis.footprint import compute_footprint
from ..analysis.footprint.compute import check_number
from ..core.units import J_PER_KWH
from ..report.schema import Report
from .parts import footprint_section


def footprint(*, hardware: str | None = None, device_hours: float | None = None, devices: int | None = None,
              hours: float | None = None, power_w: float | None = None, utilization: float | None = None,
              energy_kwh: float | None = None, pue: float | None = None, facility: str | None = None,
              wue: float | None = None, region: str | None = None, intensity: float | None = None,
              water_intensity: float | None = None, price_per_hour: float | None = None,
              price_per_kwh: float | None = None, inferences: float | None = None,
              energy_per_inference_j: float | None = None, params: float | None = None,
              lifespan_years: float | None = None, lifetime_utilization: float | None = None,
              embodied_kg: float | None = None) -> Report:
    """Energy → facility energy (PUE) → CO2e → water → cost → embodied carbon of a run, every input sourced.

    Give the run's device time (``device_hours``, or ``hours`` with ``devices``) with a power (``power_w``, or
    the catalog TDP of ``hardware``), or its measured device energy (``energy_kwh``). Every other input has a
    sourced default, listed in ``footprint.inputs``: the grid of ``region`` (or ``intensity`` gCO2e/kWh), the
    PUE/WUE of ``facility`` (or ``pue``/``wue``), the catalog price (or ``price_per_hour``/``price_per_kwh``).

    Example:
        >>> rep = mf.footprint(device_hours=184_320, hardware="a100-80gb", power_w=400, pue=1.1, intensity=385)
        >>> round(rep.sections["footprint"]["co2e_g"] / 1e6, 2)   # Llama 2 7B, Touvron et al. 2023, Table 2
        31.22
    """
    energy_j = None
    if energy_kwh is not None:
        check_number("--energy-kwh", energy_kwh)
        energy_j = energy_kwh * J_PER_KWH
    result = compute_footprint(
        hardware=hardware, device_hours=device_hours, devices=devices, hours=hours, power_w=power_w,
        utilization=utilization, energy_j=energy_j, pue=pue, facility=facility, wue_l_per_kwh=wue, region=region,
        intensity_g_per_kwh=intensity, water_l_per_kwh=water_intensity, price_per_hour=price_per_hour,
        price_per_kwh=price_per_kwh, inferences=inferences, energy_per_inference_j=energy_per_inference_j,
        params=params, lifespan_years=lifespan_years, lifetime_utilization=lifetime_utilization,
        embodied_kg=embodied_kg)
    section, provenance = footprint_section(result)
    rep = Report(verb="footprint")
    rep.add(section, provenance)
    for text in result.assumptions:
        rep.assume(text)
    rep.conventions["carbon"] = ("location-based grid averages unless --intensity is given; "
                                 "co2e_g is the run, total_co2e_g adds serving and amortized embodied carbon")
    rep.conventions["water"] = ("consumption (evaporated), not withdrawal; "
                                "on-site per IT kWh, power plants per facility kWh")
    return rep
