"""The package's shape: imports point one way (DESIGN.md's layers), and nothing imports in a circle.

Every import statement counts, at module level or inside a function: a function-local import that goes
up a layer is a cycle waiting to happen, only hidden.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mlfootprint"

# Lowest first. A module may import its own layer and the layers below, never one above.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("core",),
    ("workload",),
    ("models", "hardware", "formulas"),
    ("trace",),
    ("analysis",),
    ("measure", "papers"),
    ("report",),
    ("verbs",),
    ("api", "hf_callback"),
    ("commands",),
    ("cli", "__main__", "__init__"),
)
RANK = {part: i for i, names in enumerate(LAYERS) for part in names}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in SRC.rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The mlfootprint modules ``name`` imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "mlfootprint")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "mlfootprint":
                continue
            for alias in node.names:  # `from . import x` may name a submodule
                sub = f"{target}.{alias.name}"
                out.add(sub if sub in known else target)
    return {m for m in out if m in known and m != name}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: _imports(name, path, known) for name, path in mods.items()}


def _layer(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    return RANK[top]


def test_every_package_has_a_layer():
    tops = {p.name if p.is_dir() else p.stem for p in SRC.iterdir() if p.suffix == ".py" or
            (p.is_dir() and (p / "__init__.py").exists())}
    assert tops <= set(RANK), f"place these in LAYERS (and DESIGN's picture): {sorted(tops - set(RANK))}"


def test_imports_point_down_the_layers(graph):
    upward = sorted(f"{a} → {b}" for a, deps in graph.items() for b in deps if _layer(b) > _layer(a))
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


def test_no_import_cycle(graph):
    # Tarjan's strongly connected components: any component of more than one module is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, "modules that import each other in a circle:\n" + "\n".join(" ↔ ".join(c) for c in cycles)


def test_the_check_sees_function_local_imports(tmp_path):
    # A test that cannot fail is a defect: an upward import inside a function must be found.
    mod = tmp_path / "mlfootprint" / "core"
    mod.mkdir(parents=True)
    (mod / "x.py").write_text("def f():\n    from ..verbs import count\n")
    found = _imports("mlfootprint.core.x", mod / "x.py", {"mlfootprint.verbs", "mlfootprint.core.x"})
    assert found == {"mlfootprint.verbs"}
