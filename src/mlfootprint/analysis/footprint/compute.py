"""compute_footprint: device energy → facility energy → CO2e, water, cost, embodied carbon.

The chain, with J_kWh = 3.6e6:

    device energy   measured joules, or device_hours × 3600 × power_w × utilization
    facility energy device energy × PUE
    CO2e            facility kWh × grid intensity (location-based for the region,
                    or a given intensity, e.g. market-based)
    water           on-site WUE × device (IT) kWh + electricity water intensity × facility kWh
    cost            device_hours × price per device-hour, or facility kWh × price per kWh
    embodied        embodied kg × 1000 × device_hours / (lifespan_years × 8760 × lifetime utilization)
    serving         inferences × energy per inference, through the same PUE and intensity

Every input that moved a number is listed in ``result.inputs`` with its unit and
source; every default taken is written in ``result.assumptions``.
"""
from __future__ import annotations

import math

from ...core.errors import UserError
from .data import FootprintData, GridRegion, Sourced, load_data
from .embodied import amortized_embodied_g
from .hardware import DeviceFacts, lookup_device
from .lifecycle import params_served_per_gram, serving_energy_j
from .result import FootprintResult, InputUsed

J_PER_KWH = 3.6e6


def check_number(name: str, value: float | None, *, positive: bool = False, at_most: float | None = None,
           at_least: float | None = None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise UserError(f"{name} must be > 0, got {value:g}")
    if value < 0:
        raise UserError(f"{name} must be >= 0, got {value:g}")
    if at_least is not None and value < at_least:
        raise UserError(f"{name} must be >= {at_least:g}, got {value:g}")
    if at_most is not None and value > at_most:
        raise UserError(f"{name} must be <= {at_most:g}, got {value:g}")


class _Recorder:
    """Collects inputs, provenance and assumptions while the chain is computed."""

    def __init__(self) -> None:
        self.inputs: dict[str, InputUsed] = {}
        self.provenance: dict[str, str] = {}
        self.assumptions: list[str] = []

    def given(self, name: str, value: float | str, unit: str, flag: str) -> None:
        self.inputs[name] = InputUsed(value, unit, f"given ({flag})")

    def sourced(self, name: str, s: Sourced, unit: str, *, chosen: bool) -> float:
        """A value from a data file: 'published' when the user chose the entry, else 'assumed'."""
        self.inputs[name] = InputUsed(s.value, unit, s.cite())
        self.provenance[f"inputs.{name}"] = "published" if chosen and s.basis == "published" else "assumed"
        return s.value

    def default(self, name: str, value: float, unit: str, why: str) -> float:
        self.inputs[name] = InputUsed(value, unit, f"default: {why}")
        self.provenance[f"inputs.{name}"] = "assumed"
        return value

    def assume(self, text: str) -> None:
        if text not in self.assumptions:
            self.assumptions.append(text)


def compute_footprint(
    *,
    hardware: str | None = None,
    device_hours: float | None = None,
    devices: int | None = None,
    hours: float | None = None,
    power_w: float | None = None,
    utilization: float | None = None,
    energy_j: float | None = None,
    pue: float | None = None,
    facility: str | None = None,
    wue_l_per_kwh: float | None = None,
    region: str | None = None,
    intensity_g_per_kwh: float | None = None,
    water_l_per_kwh: float | None = None,
    price_per_hour: float | None = None,
    price_per_kwh: float | None = None,
    inferences: float | None = None,
    energy_per_inference_j: float | None = None,
    params: float | None = None,
    lifespan_years: float | None = None,
    lifetime_utilization: float | None = None,
    embodied_kg: float | None = None,
    data: FootprintData | None = None,
) -> FootprintResult:
    """Energy, CO2e, water, cost and embodied carbon of a run (see the module docstring).

    Give either ``energy_j`` (measured device energy) or device time
    (``device_hours``, or ``hours`` × ``devices``) with a power (``power_w``, or
    the catalog TDP of ``hardware``). Everything else has a sourced default.
    """
    # -- validate ----------------------------------------------------------------
    check_number("device-hours", device_hours)
    check_number("hours", hours)
    check_number("power (W)", power_w)
    check_number("utilization", utilization, positive=True, at_most=1.0)
    check_number("energy", energy_j)
    check_number("PUE", pue, at_least=1.0)
    check_number("WUE (L/kWh)", wue_l_per_kwh)
    check_number("grid intensity (gCO2e/kWh)", intensity_g_per_kwh)
    check_number("water intensity (L/kWh)", water_l_per_kwh)
    check_number("price per device-hour", price_per_hour)
    check_number("price per kWh", price_per_kwh)
    check_number("inferences", inferences)
    check_number("energy per inference (J)", energy_per_inference_j)
    check_number("params", params)
    check_number("lifespan (years)", lifespan_years, positive=True)
    check_number("lifetime utilization", lifetime_utilization, positive=True, at_most=1.0)
    check_number("embodied carbon (kg)", embodied_kg)
    if devices is not None and (isinstance(devices, bool) or not isinstance(devices, int) or devices < 1):
        raise UserError(f"devices must be a whole number >= 1, got {devices!r}")
    if device_hours is not None and hours is not None:
        raise UserError("give either --device-hours or --hours (with --devices), not both")
    if price_per_hour is not None and price_per_kwh is not None:
        raise UserError("give either --price-per-hour or --price-per-kwh, not both")
    if (inferences is None) != (energy_per_inference_j is None):
        raise UserError("serving needs both --inferences and --energy-per-inference-j")

    data = data or load_data()
    rec = _Recorder()

    # -- device time ---------------------------------------------------------------
    dh: float | None = None
    if device_hours is not None:
        dh = float(device_hours)
        rec.given("device_hours", dh, "device-h", "--device-hours")
    elif hours is not None:
        n = devices or 1
        dh = n * float(hours)
        rec.given("hours", float(hours), "h", "--hours")
        if devices is None:
            rec.default("devices", 1, "count", "one device")
            rec.assume("--devices not given: one device")
        else:
            rec.given("devices", n, "count", "--devices")
        rec.provenance["device_hours"] = "modeled"

    facts: DeviceFacts | None = lookup_device(hardware) if hardware else None
    if hardware:
        rec.given("hardware", facts.id if facts else hardware, "id", "--hardware")

    # -- device energy -----------------------------------------------------------------
    if energy_j is not None:
        e_dev = float(energy_j)
        rec.given("energy_j", e_dev, "J", "--energy-kwh")
        rec.provenance["device_energy_j"] = "measured"
        if power_w is not None or utilization is not None:
            rec.assume("measured energy given: --power-w/--utilization not used for energy")
    else:
        if dh is None:
            raise UserError("give the run's device time (--device-hours, or --hours with --devices) "
                            "or its measured energy (--energy-kwh)")
        if power_w is not None:
            p = float(power_w)
            rec.given("power_w", p, "W", "--power-w")
        elif facts is not None and facts.tdp_w is not None:
            p = facts.tdp_w
            rec.inputs["power_w"] = InputUsed(p, "W", f"TDP, {facts.tdp_source}")
            rec.provenance["inputs.power_w"] = "published"
        else:
            raise UserError("give the device power (--power-w W) or a catalog device (--hardware ID)")
        if utilization is not None:
            u = float(utilization)
            rec.given("utilization", u, "fraction of power_w", "--utilization")
        else:
            u = rec.default("utilization", 1.0, "fraction of power_w", "devices draw power_w for the whole run")
            rec.assume("--utilization not given: devices draw their full power_w (TDP) for the whole run, "
                       "an upper bound")
        e_dev = dh * 3600.0 * p * u
        rec.provenance["device_energy_j"] = "modeled"

    # -- region and facility -------------------------------------------------------------
    reg: GridRegion | None = None
    if region is not None:
        reg = data.region(region)
        rec.given("region", reg.key, "key", "--region")
    elif intensity_g_per_kwh is None:
        reg = data.regions[data.default_region]
        rec.inputs["region"] = InputUsed(reg.key, "key", "default region of grid.toml")
        rec.provenance["inputs.region"] = "assumed"
        rec.assume(f"no --region or --intensity: the {reg.name} grid average was used "
                   f"({reg.intensity.value:g} gCO2e/kWh, {reg.intensity.year})")

    if facility is not None:
        fac = data.facility(facility)
        rec.given("facility", fac.key, "type", "--facility")
        fac_chosen = True
    else:
        fac = data.facilities[data.cloud_facility if reg is not None and reg.is_cloud else data.default_facility]
        fac_chosen = False
        if pue is None or wue_l_per_kwh is None:
            rec.inputs["facility"] = InputUsed(fac.key, "type", "default facility type of facilities.toml")
            rec.provenance["inputs.facility"] = "assumed"
            rec.assume(f"no --facility: a {fac.name.lower()} was assumed"
                       + (" (the region is a cloud region)" if reg is not None and reg.is_cloud else ""))

    if pue is not None:
        pue_v = float(pue)
        rec.given("pue", pue_v, "ratio", "--pue")
    else:
        pue_v = rec.sourced("pue", fac.pue, "ratio", chosen=fac_chosen)
    e_fac = e_dev * pue_v
    rec.provenance["facility_energy_j"] = "modeled"

    # -- carbon ------------------------------------------------------------------------------
    if intensity_g_per_kwh is not None:
        ci = float(intensity_g_per_kwh)
        rec.given("intensity_g_per_kwh", ci, "gCO2e/kWh", "--intensity")
        accounting = "given intensity (market-based or user-supplied)"
    else:
        assert reg is not None
        ci = rec.sourced("intensity_g_per_kwh", reg.intensity, "gCO2e/kWh", chosen=region is not None)
        accounting = "location-based"
    co2 = e_fac / J_PER_KWH * ci
    rec.provenance["co2e_g"] = "modeled"

    # -- serving -------------------------------------------------------------------------------
    e_serve_fac: float | None = None
    co2_serve: float | None = None
    if inferences is not None and energy_per_inference_j is not None:
        rec.given("inferences", float(inferences), "count", "--inferences")
        rec.given("energy_per_inference_j", float(energy_per_inference_j), "J", "--energy-per-inference-j")
        e_serve_fac = serving_energy_j(float(inferences), float(energy_per_inference_j)) * pue_v
        co2_serve = e_serve_fac / J_PER_KWH * ci
        rec.provenance["serving_energy_j"] = "modeled"
        rec.provenance["serving_co2e_g"] = "modeled"
        rec.assume("serving: the energy per inference is device energy; the same PUE and grid apply")

    e_total = e_fac + (e_serve_fac or 0.0)
    e_it_total = e_total / pue_v
    rec.provenance["energy_j"] = "modeled"

    # -- water -------------------------------------------------------------------------------
    water_on: float | None = None
    if wue_l_per_kwh is not None:
        wue = float(wue_l_per_kwh)
        rec.given("wue_l_per_kwh", wue, "L/kWh (IT)", "--wue")
    elif fac.wue is not None:
        wue = rec.sourced("wue_l_per_kwh", fac.wue, "L/kWh (IT)", chosen=fac_chosen)
    else:
        wue = None
        rec.assume(f"on-site water not included: no WUE for facility type '{fac.key}' (pass --wue)")
    if wue is not None:
        water_on = wue * e_it_total / J_PER_KWH
        rec.provenance["water_onsite_l"] = "modeled"

    water_off: float | None = None
    if water_l_per_kwh is not None:
        wi = float(water_l_per_kwh)
        rec.given("water_l_per_kwh", wi, "L/kWh (electricity)", "--water-intensity")
    elif reg is not None and reg.water is not None:
        wi = rec.sourced("water_l_per_kwh", reg.water, "L/kWh (electricity)", chosen=region is not None)
    else:
        wi = None
        where = f"region '{reg.key}'" if reg is not None else "a given intensity without --region"
        rec.assume(f"water of electricity generation not included: no published water intensity for {where} "
                   "(pass --water-intensity L/kWh)")
    if wi is not None:
        water_off = wi * e_total / J_PER_KWH
        rec.provenance["water_offsite_l"] = "modeled"
    water = None
    if water_on is not None or water_off is not None:
        water = (water_on or 0.0) + (water_off or 0.0)
        rec.provenance["water_l"] = "modeled"

    # -- cost ----------------------------------------------------------------------------------
    cost: float | None = None
    if price_per_kwh is not None:
        rec.given("price_per_kwh", float(price_per_kwh), "USD/kWh", "--price-per-kwh")
        cost = e_total / J_PER_KWH * float(price_per_kwh)
        rec.assume("cost is electricity only (facility kWh × price per kWh), serving included")
    else:
        price: float | None = None
        if price_per_hour is not None:
            price = float(price_per_hour)
            rec.given("price_usd_per_device_hour", price, "USD/device-h", "--price-per-hour")
        elif facts is not None and facts.price_usd_per_hour is not None:
            price = facts.price_usd_per_hour
            rec.inputs["price_usd_per_device_hour"] = InputUsed(price, "USD/device-h", facts.price_source)
            rec.provenance["inputs.price_usd_per_device_hour"] = "assumed"
            rec.assume(f"cost at the catalog price of {facts.id} (${price:g} per device-hour); "
                       "pass --price-per-hour or --price-per-kwh for your own")
        if price is not None and dh is not None:
            cost = dh * price
            if e_serve_fac:
                rec.assume("cost covers the run's device-hours only, not serving")
        elif price is not None:
            rec.assume("cost not computed: a price per device-hour needs the run's device-hours")
        else:
            rec.assume("cost not computed: no price (pass --price-per-hour or --price-per-kwh)")
    if cost is not None:
        rec.provenance["cost_usd"] = "modeled"

    # -- embodied ------------------------------------------------------------------------------
    embodied: float | None = None
    if dh is not None and (hardware or embodied_kg is not None):
        kg: float | None = None
        if embodied_kg is not None:
            kg = float(embodied_kg)
            rec.given("embodied_kg_per_device", kg, "kgCO2e", "--embodied-kg")
        else:
            dev = data.embodied(facts.id if facts else hardware)  # type: ignore[arg-type]
            if dev is None:
                rec.assume(f"embodied carbon not computed: no embodied data for '{hardware}' (pass --embodied-kg)")
            else:
                acc = rec.sourced("embodied_accelerator_kg", dev.accelerator_kg, "kgCO2e", chosen=True)
                share = rec.sourced("embodied_server_share_kg", dev.server_share_kg, "kgCO2e", chosen=True)
                kg = acc + share
                if dev.accelerator_kg.basis == "estimate":
                    rec.assume(f"embodied carbon of {dev.name} is an estimate: {dev.accelerator_kg.derivation}")
                if share == 0:
                    rec.assume(f"embodied carbon of the host machine of the {dev.name} is not included")
        if kg is not None:
            if lifespan_years is not None:
                life = float(lifespan_years)
                rec.given("lifespan_years", life, "years", "--lifespan-years")
            else:
                life = rec.sourced("lifespan_years", data.lifespan_years, "years", chosen=False)
            if lifetime_utilization is not None:
                lu = float(lifetime_utilization)
                rec.given("lifetime_utilization", lu, "fraction", "--lifetime-utilization")
            else:
                lu = rec.sourced("lifetime_utilization", data.lifetime_utilization, "fraction", chosen=False)
            embodied = amortized_embodied_g(kg, dh, life, lu)
            rec.provenance["embodied_co2e_g"] = "modeled"
    elif dh is None and (hardware or embodied_kg is not None):
        rec.assume("embodied carbon not computed: amortization needs the run's device-hours")

    total = co2 + (co2_serve or 0.0) + (embodied or 0.0)
    rec.provenance["total_co2e_g"] = "modeled"

    pspg: float | None = None
    if params is not None:
        rec.given("params", float(params), "count", "--params")
        if inferences and total > 0:
            pspg = params_served_per_gram(float(params), float(inferences), total)
            rec.provenance["params_served_per_gco2e"] = "modeled"
        else:
            rec.assume("params served per gram not computed: it needs --inferences and a non-zero footprint")

    return FootprintResult(
        region=reg.key if reg is not None else None,
        facility=fac.key if (facility is not None or pue is None or wue_l_per_kwh is None) else None,
        carbon_accounting=accounting,
        device_energy_j=e_dev,
        facility_energy_j=e_fac,
        energy_j=e_total,
        co2e_g=co2,
        total_co2e_g=total,
        device_hours=dh,
        serving_energy_j=e_serve_fac,
        serving_co2e_g=co2_serve,
        embodied_co2e_g=embodied,
        water_onsite_l=water_on,
        water_offsite_l=water_off,
        water_l=water,
        cost_usd=cost,
        params_served_per_gco2e=pspg,
        inputs=rec.inputs,
        provenance=rec.provenance,
        assumptions=rec.assumptions,
    )
