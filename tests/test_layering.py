"""The layering of the code: each package imports only the packages below it.

A newcomer finds a concern by its folder (docs/architecture.md), and can read the engine
from the bottom up: nothing low in the stack reaches up into what is built on it. Every
import counts, including those inside functions (kept there for start-up time) and those
only for type checking, since each is a dependency a reader must follow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# From the bottom up. A module may import its own package and those listed before it.
LAYERS = [
    "schemas",
    "pipelines.home",
    "pipelines.lake",
    "pipelines.intake",
    "pipelines.validation",
    "pipelines.governance",
    "pipelines.warehouse",
    "pipelines.oversight",
    "pipelines.reviews",
    "pipelines.desk",
    "pipelines.demo",
    "assets",
    "pipelines.orchestration",
    "pipelines.cli",
]


def _layer(module: str) -> int:
    """The index of the package `module` belongs to."""
    matches = [i for i, pkg in enumerate(LAYERS) if module == pkg or module.startswith(pkg + ".")]
    if not matches:
        raise AssertionError(f"{module} belongs to no package of the layering")
    return max(matches, key=lambda i: len(LAYERS[i]))


def _modules() -> dict[str, Path]:
    found = {}
    for top in ("schemas", "pipelines", "assets"):
        for path in sorted((REPO / top).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(path: Path) -> set[str]:
    """Every module of ours `path` imports, wherever the import statement stands."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            # `from pipelines.lake import store` imports the module pipelines.lake.store
            out |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in out if name.split(".")[0] in ("schemas", "pipelines", "assets")}


MODULES = _modules()


def test_every_module_sits_in_a_package_of_the_layering():
    loose = [name for name in MODULES if name not in ("pipelines",) and _safe_layer(name) is None]
    assert loose == [], f"modules outside the layering: {loose}"


def _safe_layer(name: str) -> int | None:
    try:
        return _layer(name)
    except AssertionError:
        return None


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "pipelines"))
def test_no_module_imports_a_package_above_its_own(module):
    own = _layer(module)
    upward = sorted(
        name
        for name in _imports(MODULES[module])
        if name in MODULES and name != "pipelines" and _layer(name) > own
    )
    assert upward == [], (
        f"{module} ({LAYERS[own]}) imports {upward}, above it in the layering; move what it "
        "needs down, or the module up"
    )


def test_modules_import_each_other_without_cycles():
    graph = {
        name: {dep for dep in _imports(path) if dep in MODULES and dep != name}
        for name, path in MODULES.items()
    }
    done: set[str] = set()

    def visit(name: str, stack: list[str]) -> None:
        if name in stack:
            raise AssertionError(
                "import cycle: " + " -> ".join([*stack[stack.index(name) :], name])
            )
        if name in done:
            return
        for dep in sorted(graph[name]):
            visit(dep, [*stack, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
