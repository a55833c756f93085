"""A Hugging Face ``Trainer`` callback that tracks training with :mod:`mlfootprint.measure.track`.

    from mlfootprint.hf_callback import MlfootprintCallback

    trainer = Trainer(model=model, args=args, train_dataset=ds,
                      callbacks=[MlfootprintCallback(report="run.json", hardware="a100-80gb")])
    trainer.train()

The Trainer calls ``on_step_end`` once per optimizer step (after all of its
``gradient_accumulation_steps`` micro-batches), so every call is one tracked
step. Tokens are counted per rank from the training forwards' ``input_ids``
(their number of elements: padding included), or ``inputs_embeds`` (batch ×
sequence), or the batch size of ``pixel_values`` (samples) — unless you give
``tokens_per_step`` (this rank's tokens per optimizer step). Everything else
(FLOPs from a trace of the model, MFU, memory, energy, the report; every rank
under torchrun, one report from rank 0) is :class:`~mlfootprint.measure.track.Tracker`'s.

``transformers`` is an optional extra (``pip install 'mlfootprint[hf]'``).
"""
from __future__ import annotations

import logging
from typing import Any

import torch

from .core.errors import MissingExtraError
from .measure.track import Tracker
from .verbs.track import track

logger = logging.getLogger("mlfootprint.track")

try:
    from transformers import TrainerCallback as _Base
except ImportError:  # pragma: no cover - exercised only without the extra
    _Base = None


def _count_tokens(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int | None:
    ids = kwargs.get("input_ids")
    if ids is None and args and isinstance(args[0], torch.Tensor) and not args[0].dtype.is_floating_point:
        ids = args[0]
    if isinstance(ids, torch.Tensor):
        return int(ids.numel())
    emb = kwargs.get("inputs_embeds")
    if isinstance(emb, torch.Tensor) and emb.dim() >= 2:
        return int(emb.shape[0] * emb.shape[1])
    pix = kwargs.get("pixel_values")
    if isinstance(pix, torch.Tensor) and pix.dim() >= 1:
        return int(pix.shape[0])
    return None


if _Base is not None:

    class MlfootprintCallback(_Base):  # type: ignore[misc,valid-type]
        """Tracks a Trainer run; the keyword arguments are those of :class:`Tracker` (not ``model``/``grad_accum``)."""

        def __init__(self, report: Any = None, *, tokens_per_step: float | None = None, **track_kwargs: Any) -> None:
            for bad in ("model", "grad_accum"):
                if bad in track_kwargs:
                    raise TypeError(f"MlfootprintCallback takes no {bad}=: the Trainer provides it")
            self.report_path = report
            self.tokens_per_step = tokens_per_step
            self.track_kwargs = track_kwargs
            self.tracker: Tracker | None = None
            self._tokens = 0
            self._counted = True
            self._hook = None

        def _count(self, module: Any, args: Any, kwargs: Any) -> None:
            try:
                if module.training and torch.is_grad_enabled():
                    n = _count_tokens(tuple(args), dict(kwargs or {}))
                    if n is None:
                        self._counted = False
                    else:
                        self._tokens += n
            except Exception:  # noqa: BLE001 - counting must never break training
                self._counted = False

        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            try:
                self.tracker = track(model, report=self.report_path, tokens_per_step=self.tokens_per_step,
                                       grad_accum=1, **self.track_kwargs)
                if self.tokens_per_step is None and isinstance(model, torch.nn.Module):
                    self._hook = model.register_forward_pre_hook(self._count, with_kwargs=True)
                self._tokens = 0
                self._counted = True
                self.tracker.start()
            except Exception as exc:  # noqa: BLE001 - a tracking problem must not stop the training
                if type(exc).__name__ == "UserError":
                    raise
                logger.warning("mlfootprint: tracking could not start (%s: %s); training goes on untracked",
                               type(exc).__name__, exc)
                self.tracker = None

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.tracker is None:
                return
            tokens = self._tokens if (self._counted and self._tokens) else None
            self._tokens = 0
            self._counted = True
            self.tracker.step(tokens=tokens, optimizer_step=True)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self._hook is not None:
                self._hook.remove()
                self._hook = None
            if self.tracker is not None:
                self.tracker.stop()

else:  # pragma: no cover

    class MlfootprintCallback:  # type: ignore[no-redef]
        def __init__(self, *a: Any, **k: Any) -> None:
            raise MissingExtraError("MlfootprintCallback", "hf", "transformers")
