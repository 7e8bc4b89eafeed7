"""The layers hold: no import cycle anywhere in janus_mp (type-only and function-level imports
included), and each layer imports only what it may.

    leaf      errors, addresses, osproc, safe_paths, private_fds, service, targets, version
    core/     pure policy: core and errors only (test_purity checks the stdlib side)
    metrics/  core, leaf
    adapters/ core, leaf (never the runtime: they run inside workers)
    runtime/  core, metrics, leaf
    pools/    core, metrics, runtime, leaf (task pools: the executor, dispatcher, task loop)
    app/      anything; nothing imports app (but __main__)
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "janus_mp"
LEAF = {"errors", "addresses", "osproc", "safe_paths", "private_fds", "service", "targets",
        "version"}
ALLOWED = {
    "core": {"core", "errors"},
    "metrics": {"core", "metrics", *LEAF},
    "adapters": {"core", "adapters", *LEAF},
    "runtime": {"core", "metrics", "runtime", *LEAF},
    "pools": {"core", "metrics", "runtime", "pools", *LEAF},
    "leaf": {"core", *LEAF},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # ``from pkg import mod`` depends on pkg.mod; ``from mod import name`` on mod.
                submodules = [f"{node.module}.{a.name}" for a in node.names
                              if f"{node.module}.{a.name}" in modules]
                targets = submodules or [node.module]
            for target in targets:
                if target in modules and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    if parts[1] in {"core", "metrics", "adapters", "runtime", "pools", "app"}:
        return parts[1]
    return "leaf" if parts[1] in LEAF else parts[1]


def test_no_import_cycle():
    graph = _graph()
    # Package __init__ modules re-export; an edge into a package is an edge into its __init__,
    # which is what Python runs, so they stay in the graph.
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_layers_import_only_what_they_may():
    graph = _graph()
    wrong = []
    for module, edges in graph.items():
        layer = _layer(module)
        for target in edges:
            target_layer = _layer(target)
            if target_layer == "app" and layer != "app" and module != "janus_mp.__main__":
                wrong.append(f"{module} -> {target} (nothing imports app)")
            elif layer in ALLOWED:
                allowed = ALLOWED[layer]
                name = target.split(".")[1] if target_layer == "leaf" else target_layer
                if target_layer == "package" or name not in allowed:
                    wrong.append(f"{module} -> {target}")
    assert not wrong, "\n".join(sorted(wrong))


def test_the_graph_sees_the_layers():
    graph = _graph()
    assert "janus_mp.core.lifecycle" in graph and "janus_mp.runtime.supervisor" in graph
    assert "janus_mp.core.policy" in graph["janus_mp.runtime.supervisor"]
