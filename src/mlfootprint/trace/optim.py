"""Optimizers as traced: torch.optim where PyTorch has them, small step functions otherwise.

The optimizer step runs on the same fake tensors as the model, so its FLOPs
and its state memory come from the same trace.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from ..workload import Workload


class Lion(torch.optim.Optimizer):
    """Lion (Chen et al. 2023, arXiv:2302.06675): sign of an interpolated momentum, one state per weight."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99),
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable | None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                m = state["exp_avg"]
                p.mul_(1 - group["lr"] * group["weight_decay"])
                update = m.mul(b1).add_(p.grad, alpha=1 - b1).sign_()
                p.add_(update, alpha=-group["lr"])
                m.mul_(b2).add_(p.grad, alpha=1 - b2)


class Adafactor(torch.optim.Optimizer):
    """Adafactor (Shazeer & Stern 2018, arXiv:1804.04235) with factored second moments.

    Same state as torch.optim.Adafactor (a row and a column statistic per matrix, a full one per
    vector) and the same arithmetic, but the update clipping uses tensor ops (clamp) instead of
    reading values, so the step can run on fake tensors.
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1e-2, beta2: float = 0.999, eps: float = 1e-30,
                 clip: float = 1.0) -> None:
        super().__init__(params, {"lr": lr, "beta2": beta2, "eps": eps, "clip": clip})

    @torch.no_grad()
    def step(self, closure: Callable | None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            b2, eps = group["beta2"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g2 = p.grad.square().add_(eps)
                state = self.state[p]
                if p.dim() >= 2:
                    if not state:
                        state["row_var"] = torch.zeros(p.shape[:-1], dtype=p.dtype)
                        state["col_var"] = torch.zeros(p.shape[:-2] + p.shape[-1:], dtype=p.dtype)
                    row, col = state["row_var"], state["col_var"]
                    row.lerp_(g2.mean(dim=-1), 1 - b2)
                    col.lerp_(g2.mean(dim=-2), 1 - b2)
                    v = row.unsqueeze(-1) * col.unsqueeze(-2) / row.mean(dim=-1, keepdim=True).unsqueeze(-1)
                else:
                    if not state:
                        state["variance"] = torch.zeros_like(p)
                    v = state["variance"].lerp_(g2, 1 - b2)
                update = p.grad * v.rsqrt()
                rms = update.square().mean().sqrt()
                update.div_(torch.clamp(rms / group["clip"], min=1.0))
                p.add_(update, alpha=-group["lr"])


def zo_sgd_perturb(params: list[torch.Tensor], scale: float) -> None:
    """MeZO (Malladi et al. 2023): perturb every weight by scale·z, z ~ N(0, 1) regenerated from a seed."""
    with torch.no_grad():
        for p in params:
            z = torch.randn_like(p)
            p.add_(z, alpha=scale)


class MasterWeights:
    """The optimizer step of mixed precision with 16-bit working weights (Megatron-LM's Float16OptimizerWithFloat16Params,
    DeepSpeed's bf16 optimizer): ``optimizer`` steps fp32 master copies of the 16-bit weights, each with an fp32
    gradient buffer (Megatron's main_grad; see :func:`master_copies`). A step copies every 16-bit gradient into its
    buffer, steps the masters and copies each one back into its 16-bit weight; the copies are in place (the trace
    records no traffic for in-place copies)."""

    def __init__(self, params: list[torch.Tensor], masters: list[torch.Tensor], optimizer: torch.optim.Optimizer) -> None:
        self.params, self.masters, self.optimizer = params, masters, optimizer

    @property
    def state(self) -> dict[torch.Tensor, dict[str, object]]:
        return self.optimizer.state  # type: ignore[return-value]

    def storages(self) -> set[int]:
        """The storages of the masters and their gradient buffers (persistent, like the weights)."""
        return {t.untyped_storage()._cdata for m in self.masters for t in (m, m.grad) if t is not None}

    def zero_grad(self, set_to_none: bool = True) -> None:
        """The 16-bit weights' gradients, as torch.optim's zero_grad (the masters' buffers are overwritten)."""
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def step(self) -> None:
        with torch.no_grad():
            for p, m in zip(self.params, self.masters):
                if p.grad is not None:
                    m.grad.copy_(p.grad)
        self.optimizer.step()
        with torch.no_grad():
            for p, m in zip(self.params, self.masters):
                p.copy_(m)


def master_copies(params: list[torch.Tensor]) -> list[torch.Tensor]:
    """fp32 master copies of ``params``, each with a zeroed fp32 gradient buffer: made with the model, before the
    traced step, as the weights are."""
    with torch.no_grad():
        masters = [p.detach().float().requires_grad_(True) for p in params]
        for m in masters:
            m.grad = torch.zeros_like(m)
    return masters


def make_optimizer(wl: Workload, params: list[torch.Tensor],
                   foreach: bool = False) -> tuple[torch.optim.Optimizer | MasterWeights | None, list[str]]:
    """The workload's optimizer over ``params`` (over their fp32 master copies with 16-bit working weights).
    ``foreach``: torch.optim's multi-tensor implementation (CUDA's default; its temporaries span every parameter at
    once), else the single-tensor loop (the CPU's default)."""
    if wl.weights_16bit and wl.optimizer != "zo-sgd":
        masters = master_copies(params)
        inner, notes = _optimizer(wl, masters, foreach)
        assert inner is not None  # only zo-sgd has none
        return MasterWeights(params, masters, inner), notes
    return _optimizer(wl, params, foreach)


def _optimizer(wl: Workload, params: list[torch.Tensor],
               foreach: bool = False) -> tuple[torch.optim.Optimizer | None, list[str]]:
    notes: list[str] = []
    name = wl.optimizer
    if name == "zo-sgd":
        return None, notes
    if foreach and name in ("sgd", "sgd-momentum", "adam", "adamw", "adam-8bit"):
        notes.append("optimizer: traced as torch.optim's foreach implementation, CUDA's default (its temporaries span "
                     "all parameters at once)")
    if name == "sgd":
        return torch.optim.SGD(params, lr=1e-3, foreach=foreach), notes
    if name == "sgd-momentum":
        return torch.optim.SGD(params, lr=1e-3, momentum=0.9, foreach=foreach), notes
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-3, foreach=foreach), notes
    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-3, foreach=foreach), notes
    if name == "adam-8bit":
        notes.append("adam-8bit traced as Adam for FLOPs (block-wise (de)quantization arithmetic not counted); "
                     "its 8-bit state memory is modelled by the memory section")
        return torch.optim.Adam(params, lr=1e-3, foreach=foreach), notes
    if name == "adafactor":
        return Adafactor(params), notes
    if name == "lion":
        return Lion(params), notes
    raise AssertionError(name)
