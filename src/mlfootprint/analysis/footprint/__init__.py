"""Footprint: energy → carbon, water, cost and embodied hardware carbon, with sourced grid data.

>>> r = compute_footprint(device_hours=184_320, power_w=400, pue=1.1, intensity_g_per_kwh=385)
>>> round(r.co2e_g / 1e6, 2)   # Llama 2 7B, Touvron et al. (2023), Table 2
31.22
"""
from .compute import compute_footprint
from .data import EmbodiedDevice, Facility, FootprintData, GridRegion, Sourced, load_data
from .embodied import amortized_embodied_g
from .lifecycle import ModelCost, break_even, params_served_per_gram
from .result import FootprintResult, InputUsed

__all__ = [
    "compute_footprint",
    "FootprintResult",
    "InputUsed",
    "FootprintData",
    "GridRegion",
    "Facility",
    "EmbodiedDevice",
    "Sourced",
    "load_data",
    "amortized_embodied_g",
    "ModelCost",
    "break_even",
    "params_served_per_gram",
]
