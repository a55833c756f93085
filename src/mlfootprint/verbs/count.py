"""``count``: parameters and FLOPs (forward, backward, optimizer) by module and by operator."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..report.schema import Report
from ..workload import Workload
from .common import add_count, base_report, traced, reuses_traces


@reuses_traces
def count(model: Any = None, workload: Workload | None = None, inputs: Sequence[Any] = (), inputs_ref: str | None = None,
          *, ops: bool = True, macs: bool = False, cache: bool = True) -> Report:
    """Parameters and FLOPs of one step of ``workload``, by module and (``ops``) by operator.

    Args:
        model: a catalog name (``"gpt2"``), a path to an HF ``config.json``, an HF hub id,
            ``"package.module:callable"`` / ``"file.py:callable"``, or an ``nn.Module`` instance (never modified).
            None: the bundled default, gpt2.
        workload: what to run (:class:`mlfootprint.Workload`); default: inference, batch 1.
        inputs: input shapes (``"8x3x224x224[:dtype]"``) or example tensors, for a factory or module model.
        inputs_ref: ``"file.py:callable"`` returning the model's inputs.
        ops: include FLOPs by operator (``flops.by_op``).
        macs: also give matrix-class work as MACs (``flops.macs_forward``/``macs_backward``; 1 MAC = 2 FLOPs).
        cache: reuse a trace from the persistent trace cache (default True); False (``--no-cache``) traces
            anew and stores nothing.

    Returns:
        A Report with ``params`` and ``flops`` sections (``rep.sections["flops"]["model"]``).

    Example:
        >>> import mlfootprint as mf
        >>> rep = mf.count("gpt2", mf.Workload(seq=1024))
        >>> rep.sections["flops"]["forward"]
        291648307200
    """
    spec, wl, tr = traced(model, workload, inputs, inputs_ref)
    rep = base_report("count", spec, wl)
    add_count(rep, tr, wl, ops=ops, spec=spec)
    if macs:
        flops = rep.sections["flops"]
        flops["macs_forward"] = flops["forward"] // 2
        flops["macs_backward"] = flops["backward"] // 2
        rep.mark("flops.macs_forward", "counted")
        rep.mark("flops.macs_backward", "counted")
        rep.assume("MACs shown on request: 1 MAC = 2 FLOPs of matrix-class work")
    return rep
