"""The few hardware facts a footprint needs: TDP and hourly price, from the hardware catalog.

The catalog (:mod:`mlfootprint.hardware.catalog`) is imported lazily so the
footprint works, with explicit --power-w and prices, in builds without it.
"""
from __future__ import annotations

from dataclasses import dataclass
from ...hardware.catalog import get_device




@dataclass(frozen=True)
class DeviceFacts:
    id: str
    name: str
    tdp_w: float | None
    price_usd_per_hour: float | None
    tdp_source: str  # where the TDP came from, for the report's inputs
    price_source: str  # where the price came from


def lookup_device(hardware_id: str) -> DeviceFacts | None:
    """Facts for a catalog device; an unknown id is the catalog's UserError (with its suggestion)."""
    dev = get_device(hardware_id)
    tdp = getattr(dev, "tdp_w", None)
    price = getattr(dev, "price_usd_per_hour", None)
    dev_id = str(getattr(dev, "id", hardware_id))
    return DeviceFacts(
        id=dev_id,
        name=str(getattr(dev, "name", dev_id)),
        tdp_w=float(tdp) if tdp is not None else None,
        price_usd_per_hour=float(price) if price is not None else None,
        tdp_source=_source(dev, "tdp_w", dev_id),
        price_source=_source(dev, "price_usd_per_hour", dev_id),
    )


def _source(dev: object, path: str, dev_id: str) -> str:
    where = f"hardware catalog '{dev_id}'"
    source_of = getattr(dev, "source_of", None)
    if callable(source_of):
        text = str(source_of(path))
        if text and text != "unknown source":
            return f"{where}: {text}"
    return where
