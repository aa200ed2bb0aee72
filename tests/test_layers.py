"""The layers stay layers: a module imports only from its own layer or the ones below it,
and no modules import each other in a circle (checked on the source, no import runs)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

PACKAGE = Path(__file__).resolve().parents[1] / "framework"

# Bottom to top. A module may import from its own layer and any layer before it; whatever
# is not listed is the public surface on top (framework/*.py, testing/), free to import all.
LAYERS: list[tuple[str, ...]] = [
    ("framework.exceptions",),
    ("framework.serde",),
    ("framework._protocol",),
    ("framework._journal",),
    ("framework._runtime",),
    ("framework._api",),
    ("framework._endpoint",),
    ("framework._server",),
    ("framework._dev",),
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    for rank, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return len(LAYERS)


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.Module, *, runtime_only: bool) -> set[str]:
    """The framework modules a module imports (``runtime_only``: skip TYPE_CHECKING ones)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if runtime_only and _is_type_checking_block(node):
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "framework":
                found.update(f"framework.{alias.name}" for alias in node.names)
            elif node.module.startswith("framework."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("framework."))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _graph(*, runtime_only: bool) -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = _imports(ast.parse(path.read_text()), runtime_only=runtime_only)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def test_imports_point_down() -> None:
    upward = [
        f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
        for module, targets in sorted(_graph(runtime_only=False).items())
        for target in sorted(targets)
        if _layer(target) > _layer(module)
    ]
    assert not upward, "imports pointing up the layers:\n" + "\n".join(upward)


def test_no_import_cycles() -> None:
    graph = _graph(runtime_only=True)
    # A package's __init__ re-exports its submodules: an edge from a submodule back to its own
    # package is the package importing itself, not a cycle between modules.
    for module in graph:
        graph[module] = {t for t in graph[module] if not module.startswith(t + ".")}
    cycles: list[str] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "modules importing each other in a circle:\n" + "\n".join(cycles)


def test_call_targets_do_not_need_the_runtime() -> None:
    """The ingress client resolves call targets without the invocation driver."""
    graph = _graph(runtime_only=True)
    reached: set[str] = set()
    todo = ["framework._api.targets"]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo.extend(graph[module])
    assert not {m for m in reached if m.startswith(("framework._runtime", "framework._journal"))}
