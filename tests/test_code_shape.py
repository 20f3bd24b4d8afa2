"""The package's shape: public API only in the model code, no module-level import cycle, no
function longer than 80 lines."""

import ast
import os

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ainnoface_d2")


def test_modeling_uses_no_private_torch_calls():
    """The model code calls public torch/Detectron2 API only (no ``torch._*`` fast paths)."""
    root = os.path.join(PACKAGE, "modeling")
    for name in os.listdir(root):
        if name.endswith(".py"):
            with open(os.path.join(root, name)) as f:
                assert "torch._" not in f.read(), name


def _modules():
    """``{module name: parsed source}`` of every module of the package."""
    root = os.path.dirname(PACKAGE)
    modules = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, root)[: -len(".py")].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                with open(path) as f:
                    modules[".".join(parts)] = (ast.parse(f.read(), path), name == "__init__.py")
    return modules


def _module_level_imports(tree):
    """Import statements run when the module is imported: not those inside functions/classes."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If | ast.Try | ast.With):
            for field in ("body", "orelse", "finalbody", "handlers"):
                stack.extend(getattr(node, field, []))
        elif isinstance(node, ast.ExceptHandler):
            stack.extend(node.body)


def import_graph():
    """``{module: set of package modules it imports at module level}``."""
    modules = _modules()
    graph = {}
    for name, (tree, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        targets = set()
        for node in _module_level_imports(tree):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
                continue
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in modules else base)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph):
    """One import cycle as a list of modules (first == last), or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt, path + [nxt])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_module_level_import_cycle():
    graph = import_graph()
    assert "ainnoface_d2.data.mapper" in graph["ainnoface_d2.data"]
    assert "ainnoface_d2.data.augmentations" in graph["ainnoface_d2.data.mapper"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_no_function_longer_than_80_lines():
    long = []
    for name, (tree, _) in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > 80:
                    long.append(f"{name}.{node.name} ({lines} lines)")
    assert not long, "functions over 80 lines: " + ", ".join(sorted(long))
