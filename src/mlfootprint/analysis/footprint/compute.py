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
from dataclasses import dataclass
from typing import Any

from ...core.errors import UserError
from ...core.units import J_PER_KWH, plain_number
from .data import FootprintData, GridRegion, Sourced, load_data
from .embodied import amortized_embodied_g
from .hardware import DeviceFacts, lookup_device
from .lifecycle import params_served_per_gram, serving_energy_j
from .result import FootprintResult, InputUsed




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
        raise UserError(f"{name} must be at most {plain_number(at_most)}, got {value:g}")


class _Recorder:
    """Collects inputs, provenance and assumptions while the chain is computed."""

    def __init__(self, origins: dict[str, str] | None = None) -> None:
        self.inputs: dict[str, InputUsed] = {}
        self.provenance: dict[str, str] = {}
        self.assumptions: list[str] = []
        self.origins = origins or {}

    def given(self, name: str, value: Any, unit: str, flag: str) -> Any:
        """An input the caller passed: typed by the user (its flag), unless the caller says where it came from."""
        self.inputs[name] = InputUsed(value, unit, self.origins.get(name) or f"given ({flag})")
        return value

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


@dataclass(frozen=True)
class FootprintInputs:
    """What the chain is given; None takes the sourced default (see :func:`compute_footprint`)."""

    hardware: str | None = None
    device_hours: float | None = None
    devices: int | None = None
    hours: float | None = None
    power_w: float | None = None
    utilization: float | None = None
    energy_j: float | None = None
    pue: float | None = None
    facility: str | None = None
    wue_l_per_kwh: float | None = None
    region: str | None = None
    intensity_g_per_kwh: float | None = None
    water_l_per_kwh: float | None = None
    price_per_hour: float | None = None
    price_per_kwh: float | None = None
    inferences: float | None = None
    energy_per_inference_j: float | None = None
    params: float | None = None
    lifespan_years: float | None = None
    lifetime_utilization: float | None = None
    embodied_kg: float | None = None

    def check(self) -> None:
        """Every number finite and in range, and no two inputs that say the same thing differently."""
        # upper bounds far past any real run (100,000 devices for 10 years is 8.8e9 device-hours; the dirtiest grids
        # emit about 1,000 gCO2e/kWh; data centres use 0-10 L/kWh): beyond them a figure is a typo, not a workload
        for label, value, limits in (
                ("device-hours", self.device_hours, {"at_most": 1e12}), ("hours", self.hours, {"at_most": 1e6}),
                ("power (W)", self.power_w, {"at_most": 1e6}),
                ("utilization", self.utilization, {"positive": True, "at_most": 1.0}),
                ("energy", self.energy_j, {"at_most": 3.6e21}),
                ("PUE", self.pue, {"at_least": 1.0}), ("WUE (L/kWh)", self.wue_l_per_kwh, {"at_most": 1000.0}),
                ("grid intensity (gCO2e/kWh)", self.intensity_g_per_kwh, {"at_most": 10000.0}),
                ("water intensity (L/kWh)", self.water_l_per_kwh, {"at_most": 1000.0}),
                ("price per device-hour", self.price_per_hour, {}), ("price per kWh", self.price_per_kwh, {}),
                ("inferences", self.inferences, {"at_least": 1}), ("energy per inference (J)", self.energy_per_inference_j, {}),
                ("params", self.params, {}), ("lifespan (years)", self.lifespan_years, {"positive": True}),
                ("lifetime utilization", self.lifetime_utilization, {"positive": True, "at_most": 1.0}),
                ("embodied carbon (kg)", self.embodied_kg, {})):
            check_number(label, value, **limits)
        d = self.devices
        if d is not None and (isinstance(d, bool) or not isinstance(d, int) or d < 1):
            raise UserError(f"devices must be a whole number >= 1, got {d!r}")
        if self.device_hours is not None and self.hours is not None:
            raise UserError("give either --device-hours or --hours (with --devices), not both")
        if self.price_per_hour is not None and self.price_per_kwh is not None:
            raise UserError("give either --price-per-hour or --price-per-kwh, not both")
        if (self.inferences is None) != (self.energy_per_inference_j is None):
            raise UserError("serving needs both --inferences and --energy-per-inference-j")


def compute_footprint(*, data: FootprintData | None = None, origins: dict[str, str] | None = None,
                      **given: Any) -> FootprintResult:
    """Energy, CO2e, water, cost and embodied carbon of a run (see the module docstring for the chain).

    Give either ``energy_j`` (measured device energy) or device time (``device_hours``, or ``hours`` ×
    ``devices``) with a power (``power_w``, or the catalog TDP of ``hardware``). Everything else has a sourced
    default; the keyword arguments are the fields of :class:`FootprintInputs`. ``origins`` names where inputs
    the user did not type came from (``{"device_hours": "predicted (...)"}``); the rest read ``given (--flag)``.
    """
    x = FootprintInputs(**given)
    x.check()
    data = data or load_data()
    rec = _Recorder(origins)
    facts: DeviceFacts | None = lookup_device(x.hardware) if x.hardware else None
    dh = _device_hours(rec, x)
    if x.hardware:
        rec.given("hardware", facts.id if facts else x.hardware, "id", "--hardware")
    e_dev = _device_energy(rec, x, facts, dh)
    reg = _region(rec, x, data)
    fac, fac_chosen = _facility(rec, x, data, reg)
    pue = rec.given("pue", float(x.pue), "ratio", "--pue") if x.pue is not None else \
        rec.sourced("pue", fac.pue, "ratio", chosen=fac_chosen)
    e_fac = e_dev * pue
    rec.provenance["facility_energy_j"] = "modeled"
    ci, accounting = _intensity(rec, x, reg)
    co2 = e_fac / J_PER_KWH * ci
    rec.provenance["co2e_g"] = "modeled"
    e_serve_fac, co2_serve = _serving(rec, x, pue, ci)
    e_total = e_fac + (e_serve_fac or 0.0)
    rec.provenance["energy_j"] = "modeled"
    water_on, water_off, water = _water(rec, x, fac, fac_chosen, reg, e_total / pue, e_total)
    cost = _cost(rec, x, facts, dh, e_total, e_serve_fac)
    embodied = _embodied(rec, x, data, facts, dh)
    total = co2 + (co2_serve or 0.0) + (embodied or 0.0)
    rec.provenance["total_co2e_g"] = "modeled"
    pspg = _params_per_gram(rec, x, total)
    figures = {"energy": e_total, "CO2e": total, "water": water, "cost": cost}
    overflow = [name for name, v in figures.items() if v is not None and not math.isfinite(v)]
    if overflow:  # each input is finite, their product is not (--pue 1e308): no figure to write or read back
        names = ", ".join(overflow[:-1]) + " and " + overflow[-1] if len(overflow) > 1 else overflow[0]
        raise UserError(f"the {names} overflow: the inputs multiply to more than a float holds; "
                        "check the values given (device-hours, power, PUE, intensity, prices)")
    return FootprintResult(
        region=reg.key if reg is not None else None,
        facility=fac.key if (x.facility is not None or x.pue is None or x.wue_l_per_kwh is None) else None,
        carbon_accounting=accounting, device_energy_j=e_dev, facility_energy_j=e_fac, energy_j=e_total,
        co2e_g=co2, total_co2e_g=total, device_hours=dh, serving_energy_j=e_serve_fac, serving_co2e_g=co2_serve,
        embodied_co2e_g=embodied, water_onsite_l=water_on, water_offsite_l=water_off, water_l=water, cost_usd=cost,
        params_served_per_gco2e=pspg, inputs=rec.inputs, provenance=rec.provenance, assumptions=rec.assumptions)


# ------------------------------------------------------------------------------------------ the steps


def _device_hours(rec: _Recorder, x: FootprintInputs) -> float | None:
    if x.device_hours is not None:
        return rec.given("device_hours", float(x.device_hours), "device-h", "--device-hours")
    if x.hours is None:
        return None
    rec.given("hours", float(x.hours), "h", "--hours")
    if x.devices is None:
        rec.default("devices", 1, "count", "one device")
        rec.assume("--devices not given: one device")
    else:
        rec.given("devices", x.devices, "count", "--devices")
    rec.provenance["device_hours"] = "modeled"
    return (x.devices or 1) * float(x.hours)


def _device_energy(rec: _Recorder, x: FootprintInputs, facts: DeviceFacts | None, dh: float | None) -> float:
    """Measured joules, or device-hours × power × utilization."""
    if x.energy_j is not None:
        rec.given("energy_j", float(x.energy_j), "J", "--energy-kwh")
        rec.provenance["device_energy_j"] = "measured"
        if x.power_w is not None or x.utilization is not None:
            rec.assume("measured energy given: --power-w/--utilization not used for energy")
        return float(x.energy_j)
    if dh is None:
        raise UserError("give the run's device time (--device-hours, or --hours with --devices) "
                        "or its measured energy (--energy-kwh)")
    if x.power_w is not None:
        p = rec.given("power_w", float(x.power_w), "W", "--power-w")
    elif facts is not None and facts.tdp_w is not None:
        p = facts.tdp_w
        rec.inputs["power_w"] = InputUsed(p, "W", f"TDP, {facts.tdp_source}")
        rec.provenance["inputs.power_w"] = "published"
    else:
        raise UserError("give the device power (--power-w W) or a catalog device (--hardware ID)")
    if x.utilization is not None:
        u = rec.given("utilization", float(x.utilization), "fraction of power_w", "--utilization")
    else:
        u = rec.default("utilization", 1.0, "fraction of power_w", "devices draw power_w for the whole run")
        rec.assume("--utilization not given: devices draw their full power_w (TDP) for the whole run, an upper bound")
    rec.provenance["device_energy_j"] = "modeled"
    return dh * 3600.0 * p * u


def _region(rec: _Recorder, x: FootprintInputs, data: FootprintData) -> GridRegion | None:
    """The grid: the region given, the default one unless an intensity is given, or none."""
    if x.region is not None:
        reg = data.region(x.region)
        rec.given("region", reg.key, "key", "--region")
        return reg
    if x.intensity_g_per_kwh is not None:
        return None
    reg = data.regions[data.default_region]
    rec.inputs["region"] = InputUsed(reg.key, "key", "default region of grid.toml")
    rec.provenance["inputs.region"] = "assumed"
    rec.assume(f"no --region or --intensity: the {reg.name} grid average was used "
               f"({reg.intensity.value:g} gCO2e/kWh, {reg.intensity.year})")
    return reg


def _facility(rec: _Recorder, x: FootprintInputs, data: FootprintData, reg: GridRegion | None) -> tuple[Any, bool]:
    """The facility type (PUE, WUE): given, or the default for the region (cloud regions: hyperscale)."""
    if x.facility is not None:
        fac = data.facility(x.facility)
        rec.given("facility", fac.key, "type", "--facility")
        return fac, True
    cloud = reg is not None and reg.is_cloud
    fac = data.facilities[data.cloud_facility if cloud else data.default_facility]
    if x.pue is None or x.wue_l_per_kwh is None:
        rec.inputs["facility"] = InputUsed(fac.key, "type", "default facility type of facilities.toml")
        rec.provenance["inputs.facility"] = "assumed"
        rec.assume(f"no --facility: a {fac.name.lower()} was assumed" + (" (the region is a cloud region)" if cloud else ""))
    return fac, False


def _intensity(rec: _Recorder, x: FootprintInputs, reg: GridRegion | None) -> tuple[float, str]:
    """Grid carbon intensity (gCO2e/kWh) and how it is accounted."""
    if x.intensity_g_per_kwh is not None:
        ci = rec.given("intensity_g_per_kwh", float(x.intensity_g_per_kwh), "gCO2e/kWh", "--intensity")
        return ci, "given intensity (market-based or user-supplied)"
    assert reg is not None
    return rec.sourced("intensity_g_per_kwh", reg.intensity, "gCO2e/kWh", chosen=x.region is not None), "location-based"


def _serving(rec: _Recorder, x: FootprintInputs, pue: float, ci: float) -> tuple[float | None, float | None]:
    """Facility energy and CO2e of serving (inferences × energy per inference), through the same PUE and grid."""
    if x.inferences is None or x.energy_per_inference_j is None:
        return None, None
    rec.given("inferences", float(x.inferences), "count", "--inferences")
    rec.given("energy_per_inference_j", float(x.energy_per_inference_j), "J", "--energy-per-inference-j")
    e_serve_fac = serving_energy_j(float(x.inferences), float(x.energy_per_inference_j)) * pue
    rec.provenance["serving_energy_j"] = "modeled"
    rec.provenance["serving_co2e_g"] = "modeled"
    rec.assume("serving: the energy per inference is device energy; the same PUE and grid apply")
    return e_serve_fac, e_serve_fac / J_PER_KWH * ci


def _water(rec: _Recorder, x: FootprintInputs, fac: Any, fac_chosen: bool, reg: GridRegion | None,
           e_it: float, e_total: float) -> tuple[float | None, float | None, float | None]:
    """On-site water (WUE × IT kWh) and the water of generating the electricity (intensity × facility kWh)."""
    if x.wue_l_per_kwh is not None:
        wue = rec.given("wue_l_per_kwh", float(x.wue_l_per_kwh), "L/kWh (IT)", "--wue")
    elif fac.wue is not None:
        wue = rec.sourced("wue_l_per_kwh", fac.wue, "L/kWh (IT)", chosen=fac_chosen)
    else:
        wue = None
        rec.assume(f"on-site water not included: no WUE for facility type '{fac.key}' (pass --wue)")
    water_on = None
    if wue is not None:
        water_on = wue * e_it / J_PER_KWH
        rec.provenance["water_onsite_l"] = "modeled"
    if x.water_l_per_kwh is not None:
        wi = rec.given("water_l_per_kwh", float(x.water_l_per_kwh), "L/kWh (electricity)", "--water-intensity")
    elif reg is not None and reg.water is not None:
        wi = rec.sourced("water_l_per_kwh", reg.water, "L/kWh (electricity)", chosen=x.region is not None)
    else:
        wi = None
        where = f"region '{reg.key}'" if reg is not None else "a given intensity without --region"
        rec.assume(f"water of electricity generation not included: no published water intensity for {where} "
                   "(pass --water-intensity L/kWh)")
    water_off = None
    if wi is not None:
        water_off = wi * e_total / J_PER_KWH
        rec.provenance["water_offsite_l"] = "modeled"
    if water_on is None and water_off is None:
        return None, None, None
    rec.provenance["water_l"] = "modeled"
    return water_on, water_off, (water_on or 0.0) + (water_off or 0.0)


def _cost(rec: _Recorder, x: FootprintInputs, facts: DeviceFacts | None, dh: float | None, e_total: float,
          e_serve_fac: float | None) -> float | None:
    """Device-hours × price per device-hour, or facility kWh × price per kWh."""
    cost: float | None = None
    if x.price_per_kwh is not None:
        rec.given("price_per_kwh", float(x.price_per_kwh), "USD/kWh", "--price-per-kwh")
        cost = e_total / J_PER_KWH * float(x.price_per_kwh)
        rec.assume("cost is electricity only (facility kWh × price per kWh), serving included")
    else:
        price: float | None = None
        if x.price_per_hour is not None:
            price = rec.given("price_usd_per_device_hour", float(x.price_per_hour), "USD/device-h", "--price-per-hour")
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
    return cost


def _embodied(rec: _Recorder, x: FootprintInputs, data: FootprintData, facts: DeviceFacts | None,
              dh: float | None) -> float | None:
    """The device's manufacturing carbon, amortized over its service life (lifespan × utilization)."""
    if not (x.hardware or x.embodied_kg is not None):
        return None
    if dh is None:
        rec.assume("embodied carbon not computed: amortization needs the run's device-hours")
        return None
    if x.embodied_kg is not None:
        kg = rec.given("embodied_kg_per_device", float(x.embodied_kg), "kgCO2e", "--embodied-kg")
    else:
        dev = data.embodied(facts.id if facts else x.hardware)  # type: ignore[arg-type]
        if dev is None:
            rec.assume(f"embodied carbon not computed: no embodied data for '{x.hardware}' (pass --embodied-kg)")
            return None
        acc = rec.sourced("embodied_accelerator_kg", dev.accelerator_kg, "kgCO2e", chosen=True)
        share = rec.sourced("embodied_server_share_kg", dev.server_share_kg, "kgCO2e", chosen=True)
        kg = acc + share
        if dev.accelerator_kg.basis == "estimate":
            rec.assume(f"embodied carbon of {dev.name} is an estimate: {dev.accelerator_kg.derivation}")
        if share == 0:
            rec.assume(f"embodied carbon of the host machine of the {dev.name} is not included")
    if x.lifespan_years is not None:
        life = rec.given("lifespan_years", float(x.lifespan_years), "years", "--lifespan-years")
    else:
        life = rec.sourced("lifespan_years", data.lifespan_years, "years", chosen=False)
    if x.lifetime_utilization is not None:
        lu = rec.given("lifetime_utilization", float(x.lifetime_utilization), "fraction", "--lifetime-utilization")
    else:
        lu = rec.sourced("lifetime_utilization", data.lifetime_utilization, "fraction", chosen=False)
    rec.provenance["embodied_co2e_g"] = "modeled"
    return amortized_embodied_g(kg, dh, life, lu)


def _params_per_gram(rec: _Recorder, x: FootprintInputs, total: float) -> float | None:
    if x.params is None:
        return None
    rec.given("params", float(x.params), "count", "--params")
    if x.inferences and total > 0:
        rec.provenance["params_served_per_gco2e"] = "modeled"
        return params_served_per_gram(float(x.params), float(x.inferences), total)
    rec.assume("params served per gram not computed: it needs --inferences and a non-zero footprint")
    return None
