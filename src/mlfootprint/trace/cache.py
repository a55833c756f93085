"""Traces reused: within one verb call (in memory) and across runs (a persistent cache in the user's cache folder).

Every model verb starts with a fake-tensor trace; the verbs that try several batch sizes (``memory --max-batch``,
``plan``, ``claims``, the fit advice) ask for the same trace more than once, and a user trying what-ifs asks for
it again in the next process. :func:`traced_step` is the one door every verb traces through:

* **In memory**, inside :func:`reusing_traces` (each tracing verb opens one for its call): a trace already made
  for the same key in this call is returned again. The trace is a pure function of its key, so this is exact.
* **On disk** (:class:`TraceCache`), unless ``cache=False`` / ``--no-cache``: one file per key under
  ``$MLFOOTPRINT_CACHE_DIR`` or ``$XDG_CACHE_HOME/mlfootprint/traces`` (``~/.cache/mlfootprint/traces``).

**The key** (:func:`trace_key`) holds everything the trace reads: the model's config content (the catalog
record or ``config.json`` as parsed, never its path), the workload fields the trace reads (batch, sequence,
mode, precision, optimizer, attention, generated tokens, recomputation, LoRA, quantization, the user's hooks),
the target device's kernels (``trace/target.py``), the trace's option (``checkpoint_early_stop``), the merged
trace and architecture constants (the package's data files and the user's overrides of them), and the versions
of mlfootprint (its number and a hash of its installed code and data, which a development install changes
without a new number), torch, transformers and Python. Layout fields (dp, tp, pp, ZeRO, micro-batch, devices,
hardware size) are not in it: the trace never reads them (the analyses scale one trace to every layout), and a
hit carries the caller's own workload. A user's own model (``module:callable``, an ``nn.Module``) has no sound
key (its code and weights are the user's, and may change between runs without a trace of it), so it is never
cached on disk, nor reused in memory.

**Safe under concurrent use.** A writer writes a temporary file in the same folder and ``os.replace``-s it
into place (readers see the old file or the new one, never half of one); a reader that finds a truncated,
corrupt or foreign entry treats it as a miss, traces and replaces it; nothing here raises on a cache problem
(an unwritable folder only means no caching). The folder is bounded: beyond :data:`DEFAULT_MAX_BYTES` (or
``MLFOOTPRINT_CACHE_MAX_BYTES``) the least recently used entries are removed (a hit refreshes an entry's time).

Entries are pickles read back with an unpickler that only builds the trace's own record classes
(``trace/records.py``), so a planted file cannot run code through the cache.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import io
import json
import os
import pickle
import sys
import time
from collections import OrderedDict
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..core.errors import UserError
from ..core.usercache import cache_dir, replace_atomically
from ..core.version import __version__, installed_version
from ..models.spec import ModelSpec
from ..workload import Workload
from . import records
from .records import Trace

# Bumped when the entry layout (not the trace) changes.
FORMAT = 1
_MAGIC = b"mlfootprint-trace\n"
# The disk budget of the cache folder: the largest traces (405B-parameter models, long sequences) are tens of MB.
DEFAULT_MAX_BYTES = 2 * 1024**3
# Traces one verb call keeps in memory (claims visits ~20 workloads; each trace of a large model is ~10-100 MB).
_MEMORY_ENTRIES = 8
# Workload fields the trace reads (trace/, models/); the others (the layout) are the analyses'.
_TRACED_FIELDS = ("batch", "seq", "mode", "precision", "optimizer", "attention", "gen_tokens", "recompute",
                  "lora_rank", "lora_targets", "quant", "user_hooks", "mixed_weights")
CACHED_NOTE = "trace: reused from the trace cache"


# ------------------------------------------------------------------------------------------ the one door


def trace(spec: ModelSpec, wl: Workload, *, checkpoint_early_stop: bool = True) -> Trace:
    """A fresh trace (:func:`.run.trace`), imported on a miss only: a cache hit needs neither torch nor transformers."""
    from .run import trace as run_trace

    return run_trace(spec, wl, checkpoint_early_stop=checkpoint_early_stop)


def warm_up(spec: ModelSpec, wl: Workload) -> None:
    """Import what tracing ``spec`` imports (:func:`.run.warm_up`), before forking workers that will trace it."""
    from .run import warm_up as run_warm_up

    run_warm_up(spec, wl)


def traced_step(spec: ModelSpec, wl: Workload, *, checkpoint_early_stop: bool = True) -> Trace:
    """The trace of ``wl`` for ``spec``: from this verb call's memory, else the persistent cache (unless the
    caller's :func:`reusing_traces` turned it off), else a fresh :func:`~.run.trace` (then stored)."""
    scope = _SCOPE.get()
    key = trace_key(spec, wl, checkpoint_early_stop=checkpoint_early_stop)
    if key is None:
        return trace(spec, wl, checkpoint_early_stop=checkpoint_early_stop)
    digest = key_digest(key)
    if scope is not None and digest in scope.memo:
        scope.memo.move_to_end(digest)
        return dataclasses.replace(scope.memo[digest], workload=wl)
    persistent = scope.persistent if scope is not None else True
    store = TraceCache() if persistent else None
    tr = store.get(key, wl) if store is not None else None
    if tr is None:
        tr = trace(spec, wl, checkpoint_early_stop=checkpoint_early_stop)
        if store is not None:
            store.put(key, tr)
    if scope is not None:
        scope.memo[digest] = tr
        while len(scope.memo) > _MEMORY_ENTRIES:
            scope.memo.popitem(last=False)
    return tr


def trace_ready(spec: ModelSpec, wl: Workload, *, checkpoint_early_stop: bool = True) -> bool:
    """Whether :func:`traced_step` would return this trace without tracing: made in this verb call, or an entry in
    the persistent cache (its file there, not yet read)."""
    key = trace_key(spec, wl, checkpoint_early_stop=checkpoint_early_stop)
    if key is None:
        return False
    scope = _SCOPE.get()
    if scope is not None and key_digest(key) in scope.memo:
        return True
    return (scope is None or scope.persistent) and TraceCache().path_for(key).is_file()


@dataclasses.dataclass
class _Scope:
    persistent: bool
    memo: OrderedDict[str, Trace] = dataclasses.field(default_factory=OrderedDict)


_SCOPE: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("mlfootprint_trace_scope", default=None)


@contextlib.contextmanager
def reusing_traces(cache: bool = True) -> Iterator[None]:
    """Within the block, a trace asked for twice is made once; ``cache=False`` also keeps the persistent cache
    out (``--no-cache``). A block inside another shares its traces, and a ``cache=False`` outside wins."""
    if not isinstance(cache, bool):
        raise UserError(f"cache must be True or False, got {cache!r}")
    outer = _SCOPE.get()
    scope = _Scope(persistent=cache and (outer.persistent if outer else True),
                   memo=outer.memo if outer is not None else OrderedDict())
    token = _SCOPE.set(scope)
    try:
        yield
    finally:
        _SCOPE.reset(token)


# ------------------------------------------------------------------------------------------ the key


def trace_key(spec: ModelSpec, wl: Workload, *, checkpoint_early_stop: bool = True) -> dict[str, Any] | None:
    """Everything the trace of ``wl`` for ``spec`` depends on, as JSON-able data; None where no sound key
    exists (a user's own model)."""
    if spec.source not in ("catalog", "hf-config", "hf-hub") or spec.hf_config is None:
        return None
    if spec.factory is not None or spec.inputs_factory is not None or spec.input_specs:
        return None
    from .target import target_of

    target = target_of(wl)
    model = {"name": spec.name, "source": spec.source, "task": spec.task, "config": spec.hf_config,
             "entry": {k: v for k, v in (spec.entry or {}).items() if not str(k).startswith("_")}}
    workload = {name: getattr(wl, name) for name in _TRACED_FIELDS}
    # auto under ZeRO-3 traces as 16-bit does; without mixed precision the choice changes nothing
    workload["mixed_weights"] = wl.mixed_weights_resolved if wl.mixed else None
    workload["batch_given"] = "batch" in wl.given
    return {"format": FORMAT, "versions": versions(), "constants": _constants_digest(),
            "model": _jsonable(model), "workload": _jsonable(workload),
            "target": [target.kernels, target.device, target.reason],
            "checkpoint_early_stop": bool(checkpoint_early_stop)}


def key_digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def versions() -> dict[str, Any]:
    """The versions a cached trace is valid for (torch's from its installed metadata, as transformers': a cache hit
    does not import either)."""
    return {"mlfootprint": __version__, "code": code_digest(), "torch": _installed("torch"),
            "transformers": _installed("transformers"), "python": "%d.%d" % sys.version_info[:2]}


@lru_cache(maxsize=None)
def _installed(package: str) -> str | None:
    """The installed version of ``package`` (core/version.py), once per process."""
    return installed_version(package)


@lru_cache(maxsize=1)
def code_digest() -> str:
    """A hash of the installed package's code and data files (a development install changes them without a new
    version number). About 1.3 MB read once per process: a few milliseconds."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.suffix in (".py", ".toml", ".json") and "__pycache__" not in path.parts and path.is_file():
            h.update(str(path.relative_to(root)).encode() + b"\0")
            h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:32]


def _constants_digest() -> str:
    """The merged constants the trace reads, with the user's overrides (``$XDG_CONFIG_HOME/mlfootprint/trace``,
    ``…/models``): an override changes the trace, so it changes the key."""
    from ..models.architectures import ARCHITECTURES
    from .constants import KERNELS, TRANSFORMS

    tables = []
    for constants in (TRANSFORMS, KERNELS, ARCHITECTURES):
        merged = constants._load()
        tables.append({s: {k: {f: v for f, v in e.items() if f != "_file"} for k, e in entries.items()}
                       for s, entries in merged.items()})
    return hashlib.sha256(json.dumps(_jsonable(tables), sort_keys=True).encode()).hexdigest()[:32]


def _jsonable(value: Any) -> Any:
    """Plain JSON values (TOML dates, tuples and sets made stable) so the key hashes the same every run."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_jsonable(v) for v in value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return repr(value)  # nan and inf hash too
    return f"{type(value).__name__}:{value}"


# ------------------------------------------------------------------------------------------ the folder


def max_bytes() -> int:
    raw = os.environ.get("MLFOOTPRINT_CACHE_MAX_BYTES", "")
    try:
        return max(0, int(raw)) if raw else DEFAULT_MAX_BYTES
    except ValueError:
        return DEFAULT_MAX_BYTES


class TraceCache:
    """One file per key (``<sha256>.trace``) in :func:`cache_dir`; see the module's notes on safety."""

    SUFFIX = ".trace"

    def __init__(self, folder: Path | None = None, limit: int | None = None) -> None:
        self.folder = folder or cache_dir()
        self.limit = max_bytes() if limit is None else limit

    def path_for(self, key: dict[str, Any]) -> Path:
        return self.folder / (key_digest(key) + self.SUFFIX)

    def get(self, key: dict[str, Any], wl: Workload) -> Trace | None:
        """The cached trace of ``key`` carrying ``wl``, or None (missing, corrupt, another key or version)."""
        path = self.path_for(key)
        start = time.perf_counter()
        try:
            data = path.read_bytes()
        except OSError:
            return None
        entry = _load_entry(data)
        if entry is None or entry.get("key") != key or not isinstance(entry.get("trace"), Trace):
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: the last to be evicted
        tr: Trace = entry["trace"]
        made = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(entry.get("created", 0)))
        note = (f"{CACHED_NOTE} in {self.folder}, made {made} by mlfootprint {key['versions']['mlfootprint']} with torch "
                f"{key['versions']['torch']} from the same model config and traced workload; --no-cache traces anew")
        return dataclasses.replace(tr, workload=wl, assumptions=[*tr.assumptions, note],
                                   trace_s=time.perf_counter() - start)

    def put(self, key: dict[str, Any], tr: Trace) -> bool:
        """Store ``tr`` under ``key`` (atomically); then keep the folder within its limit. False if it could not."""
        if self.limit <= 0:
            return False
        entry = {"key": key, "created": time.time(), "trace": dataclasses.replace(tr, workload=None)}
        try:
            payload = _MAGIC + pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL)
            replace_atomically(self.path_for(key), payload)
        except (OSError, pickle.PicklingError, TypeError, AttributeError, RecursionError):
            return False
        self.evict()
        return True

    def entries(self) -> list[tuple[float, int, Path]]:
        """(last used, bytes, path) of each entry, oldest first."""
        out = []
        try:
            paths = list(self.folder.iterdir())
        except OSError:
            return []
        for p in paths:
            if not p.name.endswith(self.SUFFIX) or p.name.startswith(".tmp-"):
                continue
            try:
                st = p.stat()
            except OSError:
                continue  # removed by another process meanwhile
            out.append((st.st_mtime, st.st_size, p))
        return sorted(out)

    def evict(self) -> None:
        """Remove the least recently used entries beyond the limit, and temporary files an interrupted writer
        left (older than an hour)."""
        now = time.time()
        with contextlib.suppress(OSError):
            for p in self.folder.glob(".tmp-*" + self.SUFFIX):
                with contextlib.suppress(OSError):
                    if now - p.stat().st_mtime > 3600:
                        p.unlink()
        entries = self.entries()
        total = sum(size for _, size, _ in entries)
        for _, size, p in entries:
            if total <= self.limit:
                break
            with contextlib.suppress(OSError):
                p.unlink()
            total -= size


class _TraceUnpickler(pickle.Unpickler):
    """Builds the trace's own record classes and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if module == records.__name__ and isinstance(getattr(records, name, None), type):
            return getattr(records, name)
        raise pickle.UnpicklingError(f"a trace cache entry may not hold {module}.{name}")


def _load_entry(data: bytes) -> dict[str, Any] | None:
    if not data.startswith(_MAGIC):
        return None
    try:
        entry = _TraceUnpickler(io.BytesIO(data[len(_MAGIC):])).load()
    except Exception:  # noqa: BLE001 - truncated or corrupt: a miss, traced again and replaced
        return None
    return entry if isinstance(entry, dict) else None
