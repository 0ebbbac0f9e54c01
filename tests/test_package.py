"""The package's shape: imports run one way, modules stay readable, kernel kinds parse one way."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from fscnn_tvm.kinds import FAMILIES, Kind, block_rows, bsr

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for base, prefix in ((ROOT / "fscnn_tvm", "fscnn_tvm"), (ROOT / "schedules", "fscnn_tvm.schedules")):
        for path in base.rglob("*.py"):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([prefix, *parts])] = path
    return found


def _imports(name: str, path: Path, modules: dict) -> set[str]:
    """Every fscnn_tvm module ``name`` imports, at module level or inside a function."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module or ""
            for alias in node.names:
                full = f"{target}.{alias.name}"
                out.add(full if full in modules else target)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    # the root package only re-exports lazily (``fscnn_tvm.compile`` and friends): not an edge
    return {m for m in out if m in modules and m not in (name, "fscnn_tvm")}


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_modules_stay_readable():
    long = {str(p.relative_to(ROOT)): n for p in _modules().values() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


@pytest.mark.parametrize("text, family, rows", [("dense", "dense", 1), ("csr", "csr", 1), ("bsr8", "bsr", 8),
                                                ("bsr4", "bsr", 4)])
def test_kernel_kinds_round_trip(text, family, rows):
    kind = Kind.parse(text)
    assert (kind.family, kind.rows, str(kind), block_rows(text)) == (family, rows, text, rows)
    assert kind.family in FAMILIES and kind.sparse == (family != "dense")


@pytest.mark.parametrize("text", ["bsr", "csr8", "dense2", "winograd", "", "BSR8"])
def test_unknown_kernel_kinds_are_refused(text):
    with pytest.raises(ValueError, match="unknown kernel kind"):
        Kind.parse(text)


def test_bsr_names():
    assert bsr(8) == "bsr8" and bsr(1) == "csr"
