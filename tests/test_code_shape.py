"""The shape of the code: no import cycles in research/ and kernels/, short functions, and
every tf.function traced without AutoGraph.

Both read the source with `ast` (nothing is imported, no TensorFlow): fast, and a cycle
hidden in a function-level import counts as much as one at the top of a module.
"""
import ast
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("research", "kernels")
# Function lengths are checked in the command lines too: they are code a user reads.
SHAPE_CHECKED = PACKAGES + ("scripts",)

# Imports that close a cycle and stay for now, as (importer, imported); remove an entry
# once its import is gone (the test then says so).
KNOWN_CYCLE_EDGES = set()   # (importer, imported) pairs allowed to close a cycle: none

LIMIT = 100                          # lines per function, docstring included
LIMITS = {"research/train.py": 60}   # stricter per file
BODY_LIMIT = 45                      # lines of code per function, docstring left out: a screen
# Functions over their limit that are being split right now; remove an entry once its
# function fits (the test then says so).
KNOWN_LONG = set()   # (file, function) allowed over the limit: none


def python_files(packages=None):
    """{module name: path relative to the repository} for every .py file of `packages`
    (default PACKAGES)."""
    modules = {}
    for package in packages or PACKAGES:
        for folder, _, files in os.walk(os.path.join(REPO, package)):
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                path = os.path.relpath(os.path.join(folder, name), REPO)
                parts = path[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                modules[".".join(parts)] = path
    return modules


def _parse(path):
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        return ast.parse(f.read(), filename=path)


def imported_modules(module, path, known):
    """The modules of `known` that `module` imports anywhere (top level or in a function).

    `from a.b import c` imports a.b.c when that is a module, else a.b; relative imports are
    resolved against `module`. A package's parent packages are not counted: importing
    a.b.c runs a/__init__.py, but every package's own submodules would be a cycle then.
    """
    found = set()
    is_package = path.endswith("__init__.py")
    for node in ast.walk(_parse(path)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                parts = parts[:len(parts) - node.level + (1 if is_package else 0)]
                base = ".".join(parts + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                     for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:     # `import a.b.c` of a name that is no module
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def import_graph():
    """{module: set of modules of research/ and kernels/ it imports}."""
    modules = python_files()
    return {module: imported_modules(module, path, modules) for module, path in modules.items()}


def find_cycles(graph):
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(tuple(sorted(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def shortest_cycle(component, graph):
    """"a -> b -> a": a shortest import path from the component's first module back to it."""
    start = component[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node]):
                if target == start:
                    return " -> ".join(paths[node] + [start])
                if target in component and target not in paths:
                    paths[target] = paths[node] + [target]
                    following.append(target)
        frontier = following
    raise ValueError(f"{component} is not a cycle")


def test_no_import_cycles():
    graph = import_graph()
    missing = sorted(edge for edge in KNOWN_CYCLE_EDGES if edge[1] not in graph.get(edge[0], ()))
    assert not missing, f"these imports are gone: remove them from KNOWN_CYCLE_EDGES: {missing}"
    allowed = {module: targets - {b for a, b in KNOWN_CYCLE_EDGES if a == module}
               for module, targets in graph.items()}
    cycles = [shortest_cycle(component, allowed) for component in find_cycles(allowed)]
    assert not cycles, ("import cycles (a function-level import counts too; move what both sides "
                        "need into a module of its own):\n  " + "\n  ".join(cycles))


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import(tmp_path, monkeypatch):
    package = tmp_path / "research"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from research import b\n")
    (package / "b.py").write_text("def f():\n    from . import c\n")
    (package / "c.py").write_text("import research.a\nimport os\n")
    (package / "d.py").write_text("from research.a import something\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", str(tmp_path))
    monkeypatch.setattr(sys.modules[__name__], "PACKAGES", ("research",))
    graph = import_graph()
    assert graph["research.d"] == {"research.a"}
    assert find_cycles(graph) == [("research.a", "research.b", "research.c")]
    assert shortest_cycle(("research.a", "research.b", "research.c"), graph) == \
        "research.a -> research.b -> research.c -> research.a"


def function_lengths(path):
    """[(name, first line, lines, lines of its code without the docstring)] of every
    function and method in `path` (nested ones too)."""
    found = []
    for node in ast.walk(_parse(path)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body[1:] if ast.get_docstring(node) is not None else node.body
            code = body[-1].end_lineno - body[0].lineno + 1 if body else 0
            found.append((node.name, node.lineno, node.end_lineno - node.lineno + 1, code))
    return found


def long_functions():
    """{(path, name): "path:line name is N lines (limit L)"} of functions over a limit:
    their whole length, or their code without the docstring."""
    found = {}
    for path in python_files(SHAPE_CHECKED).values():
        key = path.replace(os.sep, "/")
        limit = LIMITS.get(key, LIMIT)
        for name, line, length, code in function_lengths(path):
            if length > limit:
                found[(key, name)] = f"{key}:{line} {name} is {length} lines (limit {limit})"
            elif code > BODY_LIMIT:
                found[(key, name)] = f"{key}:{line} {name} has {code} lines of code (limit {BODY_LIMIT})"
    return found


def test_functions_are_short():
    found = long_functions()
    new = [found[key] for key in sorted(found) if key not in KNOWN_LONG]
    assert not new, "functions over the limit (split them into named steps):\n  " + "\n  ".join(new)
    fixed = sorted(KNOWN_LONG - set(found))
    assert not fixed, f"these functions now fit: remove them from KNOWN_LONG: {fixed}"


@pytest.mark.parametrize("doc_lines, code_lines, over", [
    (2, 45, False), (2, 46, True),         # the code alone
    (54, 45, False), (55, 45, True),       # the whole: def + docstring + code, limit 100
])
def test_the_length_check_counts_code_and_whole_functions(tmp_path, monkeypatch, doc_lines, code_lines, over):
    package = tmp_path / "scripts"
    package.mkdir()
    doc = "    '''doc\n" + "    more\n" * (doc_lines - 2) + "    '''\n"
    code = "".join(f"    x{i} = {i}\n" for i in range(code_lines))
    (package / "long.py").write_text(f"def f():\n{doc}{code}")
    monkeypatch.setattr(sys.modules[__name__], "REPO", str(tmp_path))
    monkeypatch.setattr(sys.modules[__name__], "SHAPE_CHECKED", ("scripts",))
    assert function_lengths("scripts/long.py") == [("f", 1, 1 + doc_lines + code_lines, code_lines)]
    assert bool(long_functions()) == over


def test_no_test_runs_a_script_with_runpy():
    """Scripts are thin command lines; what a test needs lives in an importable module."""
    found = []
    for folder, _, files in os.walk(os.path.join(REPO, "tests")):
        for name in sorted(files):
            path = os.path.relpath(os.path.join(folder, name), REPO)
            if not name.endswith(".py") or os.path.join(REPO, path) == os.path.abspath(__file__):
                continue
            for node in ast.walk(_parse(path)):
                modules = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                           else [node.module] if isinstance(node, ast.ImportFrom) else [])
                if "runpy" in modules:
                    found.append(f"{path}:{node.lineno}")
    assert not found, "tests importing runpy (import the function from its module instead): " + ", ".join(found)


def functions_traced_with_autograph(packages=None):
    """["path:line"] of every `tf.function` in `packages` (default PACKAGES) that does not
    pass `autograph=False`: bare `@tf.function` and `tf.function(...)` calls without it."""
    found = []
    for path in python_files(packages).values():
        tree = _parse(path)
        compliant = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)
                     and any(k.arg == "autograph" and isinstance(k.value, ast.Constant) and k.value.value is False
                             for k in node.keywords)}
        found += [f"{path}:{node.lineno}" for node in ast.walk(tree)
                  if isinstance(node, ast.Attribute) and node.attr == "function"
                  and isinstance(node.value, ast.Name) and node.value.id == "tf" and id(node) not in compliant]
    return found


def test_every_tf_function_is_traced_without_autograph():
    """research/training/steps.py: the project's control flow on tensors is explicit, and
    AutoGraph's source rewriting cost about 3 s of each training process's start."""
    found = functions_traced_with_autograph()
    assert not found, "tf.function without autograph=False: " + ", ".join(found)


def test_the_autograph_check_finds_bare_and_called_tf_functions(tmp_path, monkeypatch):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "m.py").write_text(
        "import tensorflow as tf\n"
        "@tf.function\ndef a(x):\n    return x\n"
        "@tf.function(jit_compile=True)\ndef b(x):\n    return x\n"
        "@tf.function(autograph=False)\ndef c(x):\n    return x\n"
        "d = tf.function(lambda: 1, autograph=False)\n"
        "e = tf.function(lambda: 1)\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", str(tmp_path))
    assert functions_traced_with_autograph(("pkg",)) == ["pkg/m.py:2", "pkg/m.py:5", "pkg/m.py:12"]
