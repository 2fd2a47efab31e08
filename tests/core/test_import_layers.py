"""Layers import only downward (README "Architecture"): a lower layer importing a higher one fails here.

Every ``import``/``from ... import`` of a dinobench module is checked, at module level and inside functions
(a lazy import is still a dependency). The layer of a module is the one of the longest matching prefix.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO

#: source folder -> the package name it imports as (see dinobench/_layout.py)
FOLDERS = {"dinobench": "dinobench", "backbones": "dinobench.backbones", "heads": "dinobench.heads",
           "plugins": "dinobench.plugins"}

#: the real dependency order, bottom up (a module may import its own layer and the ones below)
LAYERS: dict[str, int] = {
    # 0-1: errors and version; utilities and the typed-section checker
    "dinobench.errors": 0, "dinobench._version": 0, "dinobench._layout": 0,
    "dinobench.utils": 1, "dinobench.typed_config": 1,
    # 2-4: the contracts (protocol types, configs, recipe provenance, records), the registry and its hooks, task resolution, the
    # plugin manager; the plugin API resolves its names on first use (importlib): no import edge of its own
    "dinobench.protocol": 2, "dinobench.config": 2, "dinobench.results": 2, "dinobench.recipes": 2,
    "dinobench.registry": 3, "dinobench.hookspecs": 3, "dinobench.tasks": 3,
    "dinobench.plugin_manager": 4, "dinobench.api": 4,
    # 5: backbones and the SSL parts
    "dinobench.backbones": 5, "dinobench.ssl": 5,
    # 6: what every family reuses: metrics, figures' drawing, inference helpers, feature kinds and their cache,
    # dataset readers and joint transforms, heads and necks
    "dinobench.metrics": 6, "dinobench.visualize": 6, "dinobench.dense_inference": 6, "dinobench.features": 6,
    "dinobench.data": 6, "dinobench.heads": 6,
    # 7-8: the run context, the training engine, synthetic data writers; what identifies a run
    "dinobench.context": 7, "dinobench.training": 7, "dinobench.synthetic": 7,
    "dinobench.identity": 8,
    # 9-10: the two protocol templates and dino.txt; the protocols, the figures of a run, the plugins
    "dinobench.templates": 9, "dinobench.text": 9,
    "dinobench.protocols": 10, "dinobench.figures": 10, "dinobench.plugins": 10,
    # 11: task resolution and the runner; 12: commands and what they print
    "dinobench.resolve": 11, "dinobench.runner": 11,
    "dinobench.cli": 12, "dinobench.head_export": 12, "dinobench.commands": 12, "dinobench.listing": 12,
    "dinobench.reference": 12, "dinobench.demo": 12, "dinobench.report": 12, "dinobench.leaderboard": 12,
    "dinobench.__main__": 12, "dinobench": 12,
}


def layer_of(module: str) -> int | None:
    """Layer of ``module`` (longest registered prefix), None for non-dinobench modules."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in LAYERS:
            return LAYERS[prefix]
    return None


def source_modules() -> dict[str, Path]:
    """Every first-party module name -> its file."""
    modules = {}
    for folder, package in FOLDERS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            modules[".".join([package, *parts])] = path
    return modules


def import_statements(path: Path, module: str) -> list[tuple[int, str, list[str] | None]]:
    """``(line, absolute module name, names)`` of every run-time import in ``path``: ``names`` is None for
    ``import x``, the imported names for ``from x import a, b`` (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block.test)
                   for stmt in block.body for n in ast.walk(stmt)}
    out: list[tuple[int, str, list[str] | None]] = []
    for node in ast.walk(tree):
        if id(node) in typing_only:  # `if TYPE_CHECKING:` imports are annotations, not dependencies
            continue
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name, [alias.name for alias in node.names]))
    return out


def imported_modules(path: Path, module: str) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``path``; ``from pkg import name`` gives both ``pkg``
    and ``pkg.name`` (which of them is a module is for the caller to decide)."""
    out = []
    for line, name, names in import_statements(path, module):
        out.append((line, name))
        out += [(line, f"{name}.{alias}") for alias in names or ()]  # `from pkg import module`
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


MODULES = source_modules()


def test_every_module_has_a_layer():
    missing = sorted(m for m in MODULES if layer_of(m) is None)
    assert not missing, f"give these modules a layer in {__file__}: {missing}"


def layer_violations(modules: dict[str, Path]) -> list[str]:
    """``file:line (layer a) imports module (layer b)`` for every import of a higher layer in ``modules``."""
    violations: list[str] = []
    for module, path in modules.items():
        own = layer_of(module)
        for line, target in imported_modules(path, module):
            if target.startswith("dinobench.") and target not in modules and target.rsplit(".", 1)[0] in modules:
                target = target.rsplit(".", 1)[0]  # `from pkg.module import name`: the module is the dependency
            if target == "dinobench":  # the package itself: every submodule import runs it (it imports layer 0 only)
                continue
            theirs = layer_of(target)
            where = f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}:{line}"
            if theirs is not None and target in modules and theirs > own and not any(
                    v.startswith(where + " ") for v in violations):
                violations.append(f"{where} (layer {own}) imports {target} (layer {theirs})")
    return violations


def test_no_module_imports_a_higher_layer():
    violations = layer_violations(MODULES)
    assert not violations, "lower layers import higher ones:\n" + "\n".join(violations)


def test_a_planted_violation_is_found(tmp_path):
    """The checker itself: a utility importing the runner inside a function is reported; a TYPE_CHECKING
    import is not."""
    (tmp_path / "bad.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                     "    from dinobench.cli import main\n\ndef f():\n"
                                     "    from dinobench.runner import run\n    return run\n")
    found = layer_violations({"dinobench.utils.bad": tmp_path / "bad.py", "dinobench.runner": MODULES["dinobench.runner"],
                              "dinobench.cli": MODULES["dinobench.cli"]})
    assert [v.split(" ", 1)[1] for v in found if "bad.py" in v] == ["(layer 1) imports dinobench.runner (layer 11)"]


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the first-party modules it imports at run time (lazy imports included, TYPE_CHECKING ones not).
    ``from pkg import name`` depends on ``pkg.name`` when that is a module, else on ``pkg`` (the parent packages
    that Python initialises first are not counted: a package importing its own submodules is no cycle)."""

    def owner(name: str) -> str | None:
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        return name if name in modules else None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        deps = set()
        for _, name, names in import_statements(path, module):
            targets = [name] if names is None else [
                f"{name}.{alias}" if f"{name}.{alias}" in modules else name for alias in names]
            deps.update(target for target in map(owner, targets) if target and target != module)
        graph[module] = deps
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative): each is an import cycle.
    A package whose ``__init__`` imports its submodules is not one, unless a submodule imports the package back."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_no_runtime_import_cycle():
    """No module reaches itself through run-time imports (lazy ones included): each cycle is listed."""
    cycles = import_cycles(import_graph(MODULES))
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(cycle) for cycle in cycles)


def test_a_planted_cycle_is_found(tmp_path):
    """The checker itself: two modules importing each other (one lazily) are a cycle; a TYPE_CHECKING import
    back is not, nor a package importing its own submodule."""
    (tmp_path / "a.py").write_text("from dinobench.utils import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from dinobench.utils.a import g\n    return g\n")
    (tmp_path / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                   "    from dinobench.utils.a import g\nfrom dinobench.utils import a\n")
    (tmp_path / "__init__.py").write_text("from dinobench.utils.a import g\n")
    planted = {"dinobench.utils.a": tmp_path / "a.py", "dinobench.utils.b": tmp_path / "b.py",
               "dinobench.utils.c": tmp_path / "c.py", "dinobench.utils": tmp_path / "__init__.py"}
    assert import_cycles(import_graph(planted)) == [["dinobench.utils.a", "dinobench.utils.b"]]
    (tmp_path / "b.py").write_text("def f():\n    return 1\n")
    assert import_cycles(import_graph(planted)) == []


@pytest.mark.parametrize("importer, target, expected", [
    ("dinobench.utils.io", "dinobench.runner", False), ("dinobench.runner", "dinobench.utils.io", True),
    ("dinobench.backbones.factory", "dinobench.protocols.knn", False), ("dinobench.cli", "dinobench.runner", True),
])
def test_the_layer_rule_itself(importer, target, expected):
    assert (layer_of(target) <= layer_of(importer)) is expected


def test_plugins_only_register():
    """Plugin modules hold hook implementations naming lazy "module:attr" targets, no implementation: they
    import nothing heavier than the registry and the hook marker."""
    # backbones.variants is torch-free data (names, sizes) the backbone listing shows
    allowed = {"dinobench.hookspecs", "dinobench.registry", "dinobench.utils.paths", "dinobench.backbones.variants",
               "dinobench.features.builtin",  # the built-in feature kinds' entries: names and lazy targets
               "__future__"}
    for module, path in MODULES.items():
        if not module.startswith("dinobench.plugins."):
            continue
        names = {target for _, target in imported_modules(path, module)}
        heavy = sorted(n for n in names if not any(n == a or n.startswith(a + ".") for a in allowed))
        assert not heavy, f"{path.relative_to(REPO)} imports {heavy}: move the implementation out of plugins/"


#: protocol -> protocol imports that remain by design: the dense families' base (protocols.dense: head and
#: inference sections, segmentation's shared half), canopy height on DPT depth (another head and metric) and a
#: protocol's private solver or trainer module. The templates live in dinobench/templates/; everything else shared lives in
#: metrics/, features/, text/ or data/.
ALLOWED_PROTOCOL_IMPORTS = {
    ("dinobench.protocols.depth", "dinobench.protocols.dense"),
    ("dinobench.protocols.linear_seg", "dinobench.protocols.dense"),
    ("dinobench.protocols.m2f_seg", "dinobench.protocols.dense"),
    ("dinobench.protocols.canopy", "dinobench.protocols.dense"),
    ("dinobench.protocols.canopy", "dinobench.protocols.depth"),
    ("dinobench.protocols.logreg", "dinobench.protocols.logreg_torch"),
    ("dinobench.protocols.linear", "dinobench.protocols.linear_heads"),  # its grid of heads on the engine
}


def test_no_protocol_imports_another_protocols_module():
    found = set()
    for module, path in source_modules().items():
        if not module.startswith("dinobench.protocols."):
            continue
        for _, target, _ in import_statements(path, module):
            if target.startswith("dinobench.protocols.") and target != module:
                found.add((module, target))
    unexpected = sorted(found - ALLOWED_PROTOCOL_IMPORTS)
    assert not unexpected, f"protocol modules import each other (move the shared part to metrics/, features/, text/): " \
                           f"{unexpected}"
