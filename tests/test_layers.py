"""vitlight's layers, and a check that every import of the package (lazy ones included) goes down them.

    entry     cli, __main__, cli_help, commands        `vitlight ...`: picks the subcommand
      |
    commands  lightning_cli, parse_check, wandb_summaries, tools, sweeps, analysis
      |                                                 what a subcommand does; the fit command is lightning_cli
    tasks     tasks                                     LightningModules: loss, metrics, optimizers
      |
    data      data, models                              LightningDataModules; plain nn.Modules (neither imports
                                                        the other)
      |
    core      errors, files, hub, runs, checkpoints, reliability, cli_errors, cluster, console,
              logging_wandb, precision, fsdp, syncs     errors, file writes, run folders, callbacks every layer may use

A module imports modules of its own layer or of layers below it, never above, and no chain of
imports comes back to where it started. The map is written once, here.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vitlight"

# top to bottom; a module belongs to the layer of its longest listed prefix
LAYERS: dict[str, tuple[str, ...]] = {
    "entry": ("vitlight.cli", "vitlight.__main__", "vitlight.cli_help", "vitlight.commands"),
    "commands": (
        "vitlight.lightning_cli",
        "vitlight.parse_check",
        "vitlight.wandb_summaries",
        "vitlight.tools",
        "vitlight.sweeps",
        "vitlight.analysis",
    ),
    "tasks": ("vitlight.tasks",),
    "data": ("vitlight.data", "vitlight.models"),
    "core": (
        "vitlight.errors",
        "vitlight.files",
        "vitlight.hub",
        "vitlight.runs",
        "vitlight.checkpoints",
        "vitlight.reliability",
        "vitlight.cli_errors",
        "vitlight.cluster",
        "vitlight.console",
        "vitlight.logging_wandb",
        "vitlight.precision",
        "vitlight.fsdp",
        "vitlight.syncs",
        "vitlight",
    ),
}
DEPTH = {layer: depth for depth, layer in enumerate(LAYERS)}  # 0 is the top


def module_files(root: Path = PACKAGE) -> dict[str, Path]:
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that `name` imports anywhere in its file (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            # a package's __init__ re-exports its own files: not an edge for them
            if target and target != name and not name.startswith(target + "."):
                found.add(target)
    return found


def layer_of(module: str) -> str:
    matches = [
        (len(prefix), layer)
        for layer, prefixes in LAYERS.items()
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    if not matches:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return max(matches)[1]


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    modules = module_files(root)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})"
        for module, targets in graph.items()
        for target in targets
        if DEPTH[layer_of(target)] < DEPTH[layer_of(module)]
    )


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as its modules in order (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def test_every_module_has_a_layer():
    for module in module_files():
        layer_of(module)


def test_imports_only_go_down_the_layers():
    upward = upward_imports(import_graph())
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_no_import_cycle_lazy_imports_included():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_check_names_an_upward_edge_and_a_cycle(tmp_path: Path):
    """The checks above on a made-up package: a core module that imports a task, which imports it back lazily."""
    package = tmp_path / "vitlight"
    (package / "tasks").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "tasks" / "__init__.py").write_text("")
    (package / "errors.py").write_text("from vitlight.tasks.model import Model\n")
    (package / "tasks" / "model.py").write_text("def build():\n    from ..errors import ConfigError\n")
    graph = import_graph(package)
    assert upward_imports(graph) == ["vitlight.errors (core) imports vitlight.tasks.model (tasks)"]
    assert find_cycle(graph) == ["vitlight.errors", "vitlight.tasks.model", "vitlight.errors"]
