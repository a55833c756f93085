"""Full-cycle comparisons: training once, serving many times.

Costs are in any one unit (gCO2e, J, USD) as long as both models use the same.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ...core.errors import UserError


@dataclass(frozen=True)
class ModelCost:
    """A model's one-time cost (training) and its cost per inference served."""

    name: str
    training: float
    per_inference: float

    def __post_init__(self) -> None:
        for label, value in (("training", self.training), ("per_inference", self.per_inference)):
            if not math.isfinite(value) or value < 0:
                raise UserError(f"{self.name}: {label} cost must be a finite number >= 0, got {value!r}")

    def total(self, inferences: float) -> float:
        return self.training + inferences * self.per_inference


def break_even(model_a: ModelCost, model_b: ModelCost) -> float:
    """Inferences after which ``model_a`` costs no more than ``model_b``, for good.

    The typical case is a model that costs more to train but less per inference
    (a distilled or better-trained small model): it pays off after
    ``(training_a - training_b) / (per_inference_b - per_inference_a)`` inferences.
    Returns 0.0 when ``model_a`` is never more expensive, and ``math.inf`` when
    it never pays off (it is no cheaper per inference and costs more to train).
    """
    d_train = model_a.training - model_b.training
    d_infer = model_b.per_inference - model_a.per_inference  # saving per inference with a
    if d_infer > 0:
        return max(0.0, d_train / d_infer)
    if d_infer == 0:
        return 0.0 if d_train <= 0 else math.inf
    return math.inf  # a costs more per inference: its total eventually exceeds b's


def params_served_per_gram(params: float, inferences: float, co2e_g: float) -> float:
    """Efficiency score: parameters × inferences served per gram of CO2e (higher is better).

    ``co2e_g`` should be the whole footprint of the model's life being scored
    (training, serving and amortized hardware), so that a small model served a
    lot and a large model served rarely compare on the same footing.
    """
    for label, value in (("params", params), ("inferences", inferences), ("co2e_g", co2e_g)):
        if not math.isfinite(value) or value < 0:
            raise UserError(f"{label} must be a finite number >= 0, got {value!r}")
    if co2e_g == 0:
        raise UserError("params served per gram is undefined for a zero-carbon footprint")
    return params * inferences / co2e_g


def serving_energy_j(inferences: float, energy_per_inference_j: float) -> float:
    """Device energy of serving ``inferences`` requests at a measured or modeled energy each."""
    return inferences * energy_per_inference_j
