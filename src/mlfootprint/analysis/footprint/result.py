"""The typed result of a footprint computation."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class InputUsed:
    """One input that moved a number: its value, unit and where it came from."""

    value: float | str
    unit: str
    source: str



@dataclass
class FootprintResult:
    """Energy, carbon, water and cost of a run (and, optionally, of serving it).

    ``energy_j`` is everything drawn from the grid (training/run plus serving,
    facility overhead included); ``co2e_g`` is the operational carbon of the
    run alone, ``total_co2e_g`` adds serving and amortized embodied carbon. A
    figure that could not be computed is ``None`` and absent from the section.
    """

    region: str | None
    facility: str | None
    carbon_accounting: str
    device_energy_j: float
    facility_energy_j: float
    energy_j: float
    co2e_g: float
    total_co2e_g: float
    device_hours: float | None = None
    serving_energy_j: float | None = None
    serving_co2e_g: float | None = None
    embodied_co2e_g: float | None = None
    water_onsite_l: float | None = None
    water_offsite_l: float | None = None
    water_l: float | None = None
    cost_usd: float | None = None
    params_served_per_gco2e: float | None = None
    inputs: dict[str, InputUsed] = field(default_factory=dict)
    provenance: dict[str, str] = field(default_factory=dict)
    assumptions: list[str] = field(default_factory=list)
