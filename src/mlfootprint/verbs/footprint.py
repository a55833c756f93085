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

    The chain: device energy (``energy_kwh``, or device-hours × 3600 × ``power_w`` × ``utilization``) × PUE =
    facility energy; × grid intensity = CO2e; water = WUE × device kWh + ``water_intensity`` × facility kWh;
    cost = device-hours × price per device-hour, or facility kWh × price per kWh; embodied carbon = the device's
    manufacturing kgCO2e × device-hours / (lifespan × 8760 h × lifetime utilization). All arguments are
    keyword-only; None takes the default described.

    Args:
        hardware: a catalog device id (``"a100-80gb"``, ``"h100-sxm"``; see :func:`mlfootprint.hardware_list`)
            for the default power (its TDP), price per device-hour and embodied carbon.
        device_hours: device-hours of the run (devices × wall-clock hours). Give this or ``hours``, not both.
        devices: devices of the run, with ``hours`` (default 1).
        hours: wall-clock hours of the run, with ``devices``.
        power_w: mean power of one device in watts (default: the TDP of ``hardware``).
        utilization: fraction of ``power_w`` drawn on average, in (0, 1] (default 1.0: full power, an upper bound).
        energy_kwh: measured device (IT) energy of the run in kWh, used instead of device time × power.
        pue: power usage effectiveness, facility energy / IT energy, at least 1 (default: the ``facility``'s).
        facility: a facility type of the data files, e.g. ``"hyperscale"``, ``"google"``, ``"meta"``, ``"aws"``,
            ``"colocation"``, ``"enterprise"``, ``"hpc"``, ``"laptop"`` (default: ``"hyperscale"`` for a cloud
            region, else ``"colocation"``).
        wue: on-site water usage effectiveness in litres per IT kWh (default: the facility's, where published).
        region: a grid region key: a country code (``"us"``, ``"de"``, ``"fr"``), a US subregion
            (``"egrid:camx"``) or a cloud region (``"gcp:europe-west3"``, ``"aws:eu-central-1"``); default
            ``"world"``, the world average, unless ``intensity`` is given.
        intensity: grid carbon intensity in gCO2e/kWh, overriding the region's (e.g. market-based).
        water_intensity: water consumed to generate the electricity, litres per kWh (default: the region's,
            where published).
        price_per_hour: price per device-hour in USD (default: the catalog price of ``hardware``).
        price_per_kwh: electricity price in USD per facility kWh; cost is then electricity only. Give this or
            ``price_per_hour``, not both.
        inferences: requests served after the run; with ``energy_per_inference_j`` adds serving energy and CO2e
            (through the same PUE and grid). Give both or neither.
        energy_per_inference_j: device energy of one inference in joules.
        params: the model's parameter count, for ``params_served_per_gco2e`` (needs ``inferences``).
        lifespan_years: service life of the device for amortizing embodied carbon (default 6 years).
        lifetime_utilization: fraction of its life the device is busy, in (0, 1] (default 0.85).
        embodied_kg: manufacturing carbon of one device in kgCO2e (default: the data file's figure for
            ``hardware``, accelerator plus its share of the server; no embodied carbon without either).

    Returns:
        A Report with a ``footprint`` section: ``device_hours``, ``device_energy_j``, ``facility_energy_j``,
        ``energy_j`` (all grid energy, serving included), ``co2e_g`` (the run), ``serving_energy_j`` and
        ``serving_co2e_g``, ``embodied_co2e_g``, ``total_co2e_g`` (run + serving + embodied), ``water_onsite_l``,
        ``water_offsite_l``, ``water_l``, ``cost_usd``, ``params_served_per_gco2e``, ``region``, ``facility``,
        ``carbon_accounting``, and ``inputs`` (each input used: ``value``, ``unit``, ``source``). A figure
        that could not be computed is absent; the assumptions say why. Energies are in J, CO2e in g, water in L.

    Example:
        >>> rep = mf.footprint(device_hours=184_320, hardware="a100-80gb", power_w=400, pue=1.1, intensity=385)
        >>> round(rep.sections["footprint"]["co2e_g"] / 1e6, 2)   # Llama 2 7B, Touvron et al. 2023, Table 2
        31.22
        >>> rep = mf.footprint(hours=24, devices=8, hardware="h100-sxm", region="de")
        >>> rep.sections["footprint"]["total_co2e_g"], rep.sections["footprint"]["cost_usd"]
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
