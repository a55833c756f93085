"""Amortizing a device's manufacturing carbon over the hours a run uses it."""
from __future__ import annotations

HOURS_PER_YEAR = 8760.0


def amortized_embodied_g(embodied_kg_per_device: float, device_hours: float,
                         lifespan_years: float, lifetime_utilization: float) -> float:
    """Grams of embodied CO2e charged to ``device_hours`` of use.

    A device's embodied carbon is spread over the hours it is busy in its life,
    ``lifespan_years × 8760 × lifetime_utilization``; a run is charged its share.
    """
    if lifespan_years <= 0 or not 0 < lifetime_utilization <= 1:
        raise ValueError("lifespan_years must be > 0 and lifetime_utilization in (0, 1]")
    busy_hours = lifespan_years * HOURS_PER_YEAR * lifetime_utilization
    return embodied_kg_per_device * 1000.0 * device_hours / busy_hours
