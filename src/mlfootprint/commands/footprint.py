"""`mlfootprint footprint`: energy, CO2e, water, cost and embodied carbon from device-hours or energy."""
from __future__ import annotations

import argparse
import sys

from .common import add_site_options
from .output import add_output_options

EPILOG = """\
how it is computed:
  device energy   = measured (--energy-kwh), or device-hours x power-w x utilization
  facility energy = device energy x PUE
  CO2e            = facility kWh x grid intensity (location-based for --region,
                    or --intensity for a market-based/contractual figure)
  water           = WUE x device kWh (on site) + water intensity x facility kWh (power plants)
  cost            = device-hours x price per device-hour, or facility kWh x price per kWh
  embodied        = embodied kg x device-hours / (lifespan-years x 8760 x lifetime-utilization)

regions: country codes (us, de, cn, ...), eu, world, eGRID subregions (egrid:camx),
US ISOs (us-caiso, us-ercot, us-pjm, ...) and cloud regions (aws:us-east-1,
gcp:us-central1, azure:westeurope); see --list-regions. Every default is listed
in the report with its source and year.

examples:
  mlfootprint footprint --device-hours 184320 --hardware a100-80gb --pue 1.1 --intensity 385
  mlfootprint footprint --hours 72 --devices 64 --hardware h100-sxm --region gcp:us-central1
  mlfootprint footprint --energy-kwh 1200 --region de --facility colocation --format json
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "footprint",
        help="energy, CO2e, water, cost and embodied carbon from device-hours or energy",
        description="Energy, CO2e, water, cost and embodied hardware carbon of a training run "
                    "(and, optionally, of serving the model), from device-hours or measured energy.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run_g = p.add_argument_group("the run")
    run_g.add_argument("--hardware", metavar="ID",
                       help="catalog device (e.g. a100-80gb): default power (TDP), price and embodied carbon")
    run_g.add_argument("--device-hours", type=float, metavar="N",
                       help="total device-hours of the run (devices x wall-clock hours)")
    run_g.add_argument("--hours", type=float, metavar="H", help="wall-clock hours (with --devices)")
    run_g.add_argument("--devices", type=int, metavar="N", help="number of devices (with --hours; default 1)")
    run_g.add_argument("--power-w", type=float, metavar="W",
                       help="average power per device in watts (default: the catalog TDP of --hardware)")
    run_g.add_argument("--energy-kwh", type=float, metavar="E",
                       help="measured device energy of the run in kWh (replaces device-hours x power)")

    add_site_options(p)

    life = p.add_argument_group("serving and hardware life")
    life.add_argument("--inferences", type=float, metavar="N", help="inferences served (with --energy-per-inference-j)")
    life.add_argument("--energy-per-inference-j", type=float, metavar="J", help="device energy per inference in joules")
    life.add_argument("--params", type=float, metavar="N",
                      help="model parameters, for the 'parameters served per gCO2e' score (needs --inferences)")
    life.add_argument("--lifespan-years", type=float, metavar="Y",
                      help="hardware lifespan for amortizing embodied carbon (default: 6, Luccioni et al. 2023)")
    life.add_argument("--lifetime-utilization", type=float, metavar="U",
                      help="fraction of its life the hardware is busy (default: 0.85, Luccioni et al. 2023)")
    life.add_argument("--embodied-kg", type=float, metavar="K",
                      help="embodied kgCO2e per device including its server share (overrides embodied.toml)")

    p.add_argument("--list-regions", action="store_true", help="list the known grid regions and exit")
    p.add_argument("--list-facilities", action="store_true", help="list the known facility types and exit")
    add_output_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace):
    from ..analysis.footprint import load_data
    from ..verbs.footprint import footprint  # torch loads with the verb, not for --help
    if args.list_regions or args.list_facilities:
        _print_lists(load_data(), args)
        return None
    return footprint(
        hardware=args.hardware, device_hours=args.device_hours, devices=args.devices, hours=args.hours,
        power_w=args.power_w, utilization=args.utilization, energy_kwh=args.energy_kwh, pue=args.pue,
        facility=args.facility, wue=args.wue, region=args.region, intensity=args.intensity,
        water_intensity=args.water_intensity, price_per_hour=args.price_per_hour, price_per_kwh=args.price_per_kwh,
        inferences=args.inferences, energy_per_inference_j=args.energy_per_inference_j, params=args.params,
        lifespan_years=args.lifespan_years, lifetime_utilization=args.lifetime_utilization,
        embodied_kg=args.embodied_kg)


def _print_lists(data, args: argparse.Namespace) -> None:
    lines: list[str] = []
    if args.list_regions:
        for key in sorted(data.regions):
            r = data.regions[key]
            water = f", water {r.water.value:g} L/kWh" if r.water else ""
            lines.append(f"{key:28} {r.intensity.value:8.1f} gCO2e/kWh ({r.intensity.year}{water})  {r.name}")
    if args.list_facilities:
        for key in sorted(data.facilities):
            f = data.facilities[key]
            wue = f", WUE {f.wue.value:g} L/kWh" if f.wue else ", WUE unknown"
            lines.append(f"{key:14} PUE {f.pue.value:g}{wue}  {f.name}")
    sys.stdout.write("\n".join(lines) + "\n")
