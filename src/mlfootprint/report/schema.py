"""The Report: one typed object that every verb fills and every renderer reads.

Its JSON form is versioned (``"schema": "mlfootprint.report/1"``). A section a
verb did not compute is absent, never zero. Each figure's provenance is one of
``counted``, ``modeled``, ``measured``, ``published`` or ``assumed`` and is
keyed by the figure's dotted path (``"flops.forward": "counted"``).
"""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..core.datafiles import package_data_dir
from ..core.errors import UserError
from ..core.validate import parse_json, read_text, type_problem
from ..core.version import __version__
from .render import render
from .sections import Section

SCHEMA = "mlfootprint.report/1"
SCHEMA_VERSION = 1
SECTIONS = ("model", "workload", "params", "flops", "memory", "time", "footprint", "measured", "claims")
PROVENANCE_KINDS = ("counted", "modeled", "measured", "published", "assumed")
# The verbs that build a Report (verbs/): a report read back names one of them (tests/test_verbs_contract.py checks
# that every verb the package builds a Report for is here).
REPORT_VERBS = ("analyze", "count", "memory", "predict", "plan", "mfu", "bench", "footprint", "claims", "compare",
                "table", "track", "models", "models show", "hardware list", "hardware show", "hardware calibrate",
                "history add", "history list", "history diff")


@dataclass(repr=False)
class Report:
    """What one verb computed, with the provenance and assumptions of each figure.

    ``sections`` maps a section name (``params``, ``flops``, ``memory``, ``time``, ...) to its figures in base
    units (``rep.sections["flops"]["model"]``); ``provenance`` maps a figure's dotted path to how it was
    obtained; ``assumptions`` lists every default or choice that moved a number, and ``key_assumptions`` the
    few that moved them most. Render it with ``to_json``, ``to_markdown``, ``to_latex``, ``to_html`` or
    ``to_text``; in a notebook it shows its card. ``Report.load(path)`` reads one saved with ``to_json``.

    Attributes:
        verb: the verb that made it (``"count"``, ``"analyze"``, ``"footprint"``, ``"models show"``, ...).
        sections: section name → figures (``model``, ``workload``, ``params``, ``flops``, ``memory``, ``time``,
            ``footprint``, ``measured``, ``claims``, ``catalog``, ``compare``, ``history``, ...). Figures are in
            base units with the unit in the key (``peak_bytes``, ``step_s``, ``co2e_g``); a section or figure
            that was not computed is absent, never zero.
        provenance: a figure's dotted path → ``counted``, ``modeled``, ``measured``, ``published`` or
            ``assumed`` (``{"flops.forward": "counted"}``).
        assumptions: every default or choice that moved a number, as sentences.
        conventions: term → the definition the numbers use (``"FLOP"``, ``"units"``, ...).
        tool_version: the mlfootprint version that wrote a report read back from the history
            (:func:`mlfootprint.history_show`); "" otherwise, and ``to_json`` then writes this version.
        key_assumptions: the few assumptions that moved the numbers most (shown on the card).

    Example:
        >>> rep = mf.count("gpt2", mf.Workload(seq=1024))
        >>> rep
        <Report count of gpt2: model, workload, params, flops>
        >>> rep.sections["params"]["total"], rep.provenance["params.total"]
        (124439808, 'counted')
        >>> with open("gpt2.json", "w") as f:
        ...     _ = f.write(rep.to_json())
        >>> mf.Report.load("gpt2.json").get("flops")["forward"]
        291648307200
    """

    verb: str
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    provenance: dict[str, str] = field(default_factory=dict)
    assumptions: list[str] = field(default_factory=list)
    conventions: dict[str, str] = field(default_factory=dict)
    tool_version: str = ""
    key_assumptions: list[str] = field(default_factory=list)

    def add(self, section: Section, provenance: dict[str, str] | None = None) -> dict[str, Any]:
        """Add a section (its JSON form), marking the provenance of its figures by key. Returns the stored form."""
        data = section.to_dict()
        self.sections[section.NAME] = data
        for key, kind in (provenance or {}).items():
            self.mark(f"{section.NAME}.{key}", kind)
        return data

    def mark(self, path: str, kind: str) -> None:
        if kind not in PROVENANCE_KINDS:
            raise ValueError(f"unknown provenance {kind!r}")
        self.provenance[path] = kind

    def assume(self, text: str, key: bool = False) -> None:
        """Record an assumption; ``key``: one of the few that moved the numbers most (shown on the card)."""
        if text not in self.assumptions:
            self.assumptions.append(text)
        if key and text not in self.key_assumptions:
            self.key_assumptions.append(text)

    # -- in Python -----------------------------------------------------------
    def __repr__(self) -> str:
        model = (self.get("model") or {}).get("name")
        shown = ", ".join(f"{name}" for name in self.sections)
        return f"<Report {self.verb}{' of ' + model if model else ''}: {shown}>"

    def __str__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:  # Jupyter shows the card
        return self.to_html()

    def to_text(self, details: bool = False, width: int = 100) -> str:
        """The terminal form (the card and the answer; every breakdown with ``details``)."""
        return _render(self, "table", details=details, width=width)

    def to_markdown(self, details: bool = False) -> str:
        """GitHub-flavoured Markdown: the card (with ``details``, every breakdown and assumption)."""
        return _render(self, "md", details=details)

    def to_latex(self, details: bool = False) -> str:
        """A one-page summary table (with ``details``, every breakdown as an appendix)."""
        return _render(self, "latex", details=details)

    def to_html(self) -> str:
        """A self-contained page (no network) with the card, the plots and every figure."""
        return _render(self, "html", details=True)

    def get(self, section: str) -> dict[str, Any] | None:
        return self.sections.get(section)

    # -- JSON ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schema": SCHEMA, "tool": f"mlfootprint {self.tool_version or __version__}", "verb": self.verb}
        for name in SECTIONS:
            if name in self.sections:
                out[name] = self.sections[name]
        for name, data in self.sections.items():
            if name not in out:
                out[name] = data
        if self.conventions:
            out["conventions"] = self.conventions
        out["provenance"] = dict(sorted(self.provenance.items()))
        out["assumptions"] = list(self.assumptions)
        if self.key_assumptions:
            out["key_assumptions"] = list(self.key_assumptions)
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=_json_default)

    @classmethod
    def from_dict(cls, data: Any, origin: str = "report") -> Report:
        if not isinstance(data, dict) or "schema" not in data:
            raise UserError(f"{origin} is not an mlfootprint report (no 'schema' field); pass a file written with --format json")
        schema = str(data["schema"])
        if not schema.startswith("mlfootprint.report/"):
            raise UserError(f"{origin} is not an mlfootprint report (schema {schema!r}); pass a file written with --format json")
        try:
            version = int(schema.rsplit("/", 1)[1])
        except ValueError:
            raise UserError(f"{origin} has an unreadable schema version {schema!r}") from None
        if version > SCHEMA_VERSION:
            raise UserError(
                f"{origin} uses schema {schema}, newer than this mlfootprint reads ({SCHEMA}); upgrade mlfootprint"
            )
        problem = type_problem(data, _shipped_schema(), _shipped_schema())
        if problem:
            raise UserError(f"{origin} is not a valid mlfootprint report: {problem}; write it again with --format json")
        reserved = {"schema", "tool", "verb", "provenance", "assumptions", "conventions", "key_assumptions"}
        rep = cls(verb=str(data.get("verb", "report")))
        rep.sections = {k: v for k, v in data.items() if k not in reserved and isinstance(v, dict)}
        rep.provenance = dict(data.get("provenance") or {})
        rep.assumptions = list(data.get("assumptions") or [])
        rep.conventions = dict(data.get("conventions") or {})
        rep.key_assumptions = list(data.get("key_assumptions") or [])
        return rep

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Report:
        p = Path(path)
        text = read_text(p, "report")  # one line for a folder, a missing file, UTF-16, Latin-1 or binary data
        if not text.strip():
            raise UserError(f"report {p} is empty; pass a file written with --format json")
        try:
            data = parse_json(text, f"report {p}", not_json="is not a JSON report (it does not parse)")
        except UserError as exc:
            raise UserError(f"{exc.cli_message}; pass a file written with --format json") from None
        report = cls.from_dict(data, origin=str(p))
        if not report.sections:  # every verb writes at least one section: this file has lost its figures
            raise UserError(f"report {p} holds no section of figures (only its schema and verb); pass a whole "
                            "report written with --format json")
        return report


# The shapes of the free-form fields that renderers walk (typed ``dict[str, Any]`` in sections.py): a report read
# back is checked against these too.
_SCALAR = {"type": ["string", "number", "boolean", "null"]}
_FREE_FORM_SHAPES: dict[tuple[str, str], dict[str, Any]] = {
    ("FlopsSection", "by_module"): {"anyOf": [{"$ref": "#/$defs/_ModuleNode"}, {"type": "null"}]},
    ("FlopsSection", "by_op"): {"anyOf": [{"type": "object", "additionalProperties": {"type": "object", "properties": {
        "calls": {"type": "integer"}, "flops": {"type": "number"}, "model": {"type": "number"},
        "other": {"type": "number"}, "bytes": {"type": "number"}, "class": {"type": "string"}}}},
        {"type": "null"}]},
    ("MemorySection", "breakdown"): {"type": "object", "properties": {  # what MemoryModel always states
        **{k: {"type": "integer"} for k in ("micro_batch", "inputs_bytes", "inflight_activations_bytes",
                                            "weights_full_bytes", "trainable_elements")},
        "traced_batch": {"type": ["integer", "null"]}, "inflight_micro_batches": {"type": "number"}},
        "additionalProperties": {"anyOf": [_SCALAR, {"type": "array"}, {"type": "object"}]}},
    ("MemorySection", "layout"): {"anyOf": [{"type": "object", "properties": {  # workload.Layout's fields
        **{k: {"type": "integer"} for k in ("dp", "tp", "pp", "ep", "cp", "vp", "zero", "micro_batch", "grad_accum")},
        "shard_group": {"type": ["integer", "null"]}, "etp": {"type": ["integer", "null"]},
        "offload_activations": {"type": "number"},
        **{k: {"type": "string"} for k in ("offload", "recompute", "precision", "optimizer", "schedule", "cp_comm",
                                           "grad_reduce", "tp_overlap", "tp_backward",
                                           "zero_impl")},
        **{k: {"type": "boolean"} for k in ("sequence_parallel", "zeropp", "tp_comm_overlap",
                                                            "pp_comm_overlap")}},
        "additionalProperties": _SCALAR},
        {"type": "null"}]},
}
_MODULE_NODE = {"type": "object", "properties": {
    "name": {"type": "string"}, "path": {"type": "string"}, "type": {"type": "string"},
    "params": {"type": "integer"}, "forward": {"type": "number"}, "backward": {"type": "number"},
    "other": {"type": "number"}, "recompute": {"type": "number"},
    "children": {"type": "array", "items": {"$ref": "#/$defs/_ModuleNode"}}}}


@lru_cache(maxsize=1)
def _shipped_schema() -> dict[str, Any]:
    """The report schema shipped in the package (``report/data/report.schema.json``) with the shapes of its
    free-form fields filled in: a report read back is checked against its field types, so every renderer can
    trust what it reads."""
    schema = json.loads((package_data_dir("report") / "report.schema.json").read_text(encoding="utf-8"))
    defs = schema.setdefault("$defs", {})
    defs["_ModuleNode"] = _MODULE_NODE
    for (section, key), shape in _FREE_FORM_SHAPES.items():
        if key in defs.get(section, {}).get("properties", {}):
            defs[section]["properties"][key] = shape
    return schema


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")



def _render(report: Report, fmt: str, **options: Any) -> str:
    return render(report, fmt, argparse.Namespace(**options))
