"""The import contract: imports run one way, data <- models <- predictions/CLV <- backtest <- report,
with the command line, Spark and the demo on top, and no module imports another that imports it
back (directly or round a circle).

Every ``import`` statement of the package counts, also those inside functions (a lazy import is
still a dependency). Importing a submodule runs its parent packages' ``__init__`` too; that
implicit step is not an edge, but an explicit import of a package (``from .models import X``) is an
edge to the package's ``__init__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "clvmodels"

#: Layer of each module (a module may import its own layer and the layers below); prefixes match
#: a module and its submodules.
LAYERS: dict[str, int] = {
    # the data layer: logs, summaries, files, units, errors and the array metrics
    "clvmodels._version": 0, "clvmodels.errors": 0, "clvmodels.units": 0, "clvmodels.io": 0,
    "clvmodels.data": 0, "clvmodels.periods": 0, "clvmodels.rfm": 0, "clvmodels.scale": 0,
    "clvmodels.log_screening": 0, "clvmodels.workers": 0, "clvmodels.progress": 0,
    "clvmodels.validation": 0,
    "clvmodels.metrics": 0, "clvmodels.datasets": 0, "clvmodels.regularity": 0,
    "clvmodels.exposure": 0, "clvmodels.timevarying": 0,
    # the models: likelihoods, formulas, fits, persistence
    "clvmodels.models": 1,
    # predictions and CLV
    "clvmodels.predictive": 2, "clvmodels.clv": 2, "clvmodels.scoring": 2,
    # backtests and their baselines
    "clvmodels.baselines": 3, "clvmodels.backtest": 3, "clvmodels.retention": 3,
    # reports and their plots
    "clvmodels.plotting": 4, "clvmodels.report": 4, "clvmodels.clv_report": 4,
    # on top
    "clvmodels.cli": 5, "clvmodels.spark": 5, "clvmodels.demo": 5, "clvmodels": 5,
}
LAYER_NAMES = ["data", "models", "predictions/CLV", "backtest", "report", "cli/spark/demo"]


def module_name(path: Path, root: Path = SRC) -> str:
    parts = ["clvmodels", *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len, default=None)
    if best is None:
        raise KeyError(f"{module} has no layer: add it to LAYERS in {Path(__file__).name}.")
    return LAYERS[best]


def import_graph(root: Path = SRC) -> dict[str, set[str]]:
    """``{module: {clvmodels modules it imports}}`` from every import statement of the package."""
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                # "from . import metrics" imports a module; "from .models import X" the package
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            graph[module] |= {t for t in targets if t in modules and t != module}
    return graph


def reversed_imports(graph: dict[str, set[str]]) -> list[str]:
    return [f"{m} ({LAYER_NAMES[layer(m)]}) imports {t} ({LAYER_NAMES[layer(t)]})"
            for m, targets in sorted(graph.items()) for t in sorted(targets) if layer(t) > layer(m)]


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_every_module_has_a_layer(graph):
    for module in graph:
        layer(module)


def test_imports_run_one_way(graph):
    assert reversed_imports(graph) == []


def test_no_circles(graph):
    assert circles(graph) == []


def test_results_do_not_import_the_report(graph):
    assert "clvmodels.report" not in graph["clvmodels.backtest"] | graph["clvmodels.retention"]


def test_only_the_top_imports_the_package_root(graph):
    assert sorted(m for m, targets in graph.items() if "clvmodels" in targets and layer(m) < 5) == []


def test_the_contract_catches_a_reversed_import_and_a_circle(tmp_path):
    # a copy of the package with one reversed import (the models importing the backtest) fails
    for path in SRC.rglob("*.py"):
        copy = tmp_path / path.relative_to(SRC)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(path.read_text())
    base = tmp_path / "models" / "base.py"
    base.write_text(base.read_text() + "\n\ndef _reversed():\n    from ..backtest import backtest\n")
    graph = import_graph(tmp_path)
    assert any("clvmodels.models.base (models) imports clvmodels.backtest" in r for r in reversed_imports(graph))
    assert any("clvmodels.models.base" in c and "clvmodels.backtest" in c for c in circles(graph))
