"""The package's floors (issue 13): every module imports only downwards.

Each module of ``python/bptt`` is parsed (not imported) and every ``import``
and ``from ... import`` in it is collected, at any depth (a lazy import
inside a function counts as much as one at the top), together with
``importlib.import_module("bptt...")`` calls on a constant name. A module
may import only modules on a lower floor of :data:`FLOORS`; the compiled
kernels (the extension modules built from ``src/``) are loaded by name by
``bptt._kernels`` and must import nothing of the package themselves.
"""

import ast
import importlib.util
import re
from pathlib import Path

import pytest

import bptt

PACKAGE = "bptt"
PACKAGE_DIR = Path(bptt.__file__).resolve().parent
# the repository's src/, beside tests/ (the package may be installed elsewhere)
SRC_DIR = Path(__file__).resolve().parents[1] / "src"

# Bottom to top. A new module gets a floor here (the test fails until it has
# one); a module may import only from floors below its own.
FLOORS = {
    # the reference package
    "bptt.reference": 0,
    # the NumPy reference kernels, every module of the reference package (the
    # compiled ones import nothing of bptt): a new cell's needs no line here
    **{f"bptt.reference.{path.stem}": 1
       for path in sorted((PACKAGE_DIR / "reference").glob("*.py")) if path.stem != "__init__"},
    # kernel-variant selection and loading; thread and BLAS control
    "bptt._kernels": 2,
    "bptt._threads": 2,
    # input validation
    "bptt._validation": 3,
    # the cells (over their kernels); the optimizers' steps
    "bptt._cells": 4,
    "bptt.optimizers": 4,
    # PyTorch interop (a function of the network object it is given)
    "bptt.interop": 5,
    # the BPTT driver: threads and BLAS, chunks, slabs, workspaces
    "bptt._bptt": 5,
    # the network
    "bptt.rnn": 6,
    # saving and loading (the estimators register their classes)
    "bptt.persistence": 7,
    # what users call
    "bptt.estimators": 8,
    "bptt.gradcheck": 8,
    "bptt.plot": 8,
    "bptt.preprocessing": 8,
    "bptt": 9,
    # the gradients demo (python -m bptt demo gradients)
    "bptt._gradient_demo": 9,
    "bptt.__main__": 10,
}


def package_modules(root=PACKAGE_DIR, package=PACKAGE):
    """{dotted module name: path} of every .py file under ``root``."""
    modules = {}
    for path in sorted(Path(root).rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_extension(name):
    """Whether ``name`` is a module of the installed package that is not
    Python source: a compiled kernel module."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.origin is not None and not spec.origin.endswith(".py")


def _imported_names(name, path):
    """The absolute names of what module ``name`` (at ``path``) imports:
    (name, lineno) pairs, ``from X import a`` giving X.a when that is a
    module (else X)."""
    tree = ast.parse(Path(path).read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [alias.name], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module
            for alias in node.names:
                yield base, [f"{base}.{alias.name}", base], node.lineno
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            arg = node.args[0]
            if (called in ("import_module", "__import__") and isinstance(arg, ast.Constant)
                    and isinstance(arg.value, str)):
                yield arg.value, [arg.value], node.lineno


def import_graph(root=PACKAGE_DIR, package=PACKAGE):
    """{module: {imported module of the package: first line}} for the .py
    modules under ``root``; compiled modules appear as themselves, names
    that resolve to nothing as "?name"."""
    modules = package_modules(root, package)
    graph = {}
    for name, path in modules.items():
        edges = graph.setdefault(name, {})
        for base, candidates, line in _imported_names(name, path):
            if base != package and not base.startswith(package + "."):
                continue
            target = next((c for c in candidates if c in modules or _is_extension(c)),
                          None)
            if target is None:
                target = "?" + candidates[0]
            if target != name:
                edges.setdefault(target, line)
    return graph


def floor_violations(graph, floors=FLOORS):
    """Messages for every import that does not go to a lower floor."""
    problems = []
    for module, edges in sorted(graph.items()):
        for target, line in sorted(edges.items()):
            if target.startswith("?"):
                problems.append(f"{module}:{line} imports {target[1:]}, which is no module")
            elif target in graph and floors[target] >= floors[module]:
                problems.append(f"{module}:{line} imports {target} (floor {floors[target]}) "
                                f"from floor {floors[module]}")
    return problems


def find_cycle(graph):
    """One import cycle among the package's .py modules, as a list of names
    (the first repeated at the end), or None."""
    state = {}
    stack = []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for target in graph.get(module, ()):
            if target not in graph:
                continue
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def test_every_module_has_a_floor():
    modules = set(package_modules())
    assert modules - set(FLOORS) == set(), "give these modules a floor in FLOORS"
    assert set(FLOORS) - modules == set(), "FLOORS names modules that do not exist"


def test_imports_only_go_down():
    graph = import_graph()
    assert set(graph) <= set(FLOORS)
    assert floor_violations(graph) == []


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_compiled_kernels_import_nothing_of_the_package():
    if not SRC_DIR.is_dir():
        pytest.skip("the Cython sources are not beside the package")
    pattern = re.compile(r"^\s*(from\s+bptt[\s.]|import\s+bptt\b)", re.MULTILINE)
    found = [f"{path.name}:{source[:m.start()].count(chr(10)) + 1}"
             for path in sorted(SRC_DIR.glob("*.p[yx][xid]"))
             for source in [path.read_text()]
             for m in pattern.finditer(source)]
    assert found == []


# The checker itself, on small made-up packages: a test that cannot fail is
# a defect.
def _write_package(root, files):
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_checker_sees_lazy_relative_and_absolute_imports(tmp_path):
    root = _write_package(tmp_path, {
        "__init__.py": "",
        "low.py": "def f():\n    from .high import g\n    return g\n",
        "high.py": "import pkg.low\nfrom . import low\n",
        "sub/__init__.py": "",
        "sub/leaf.py": "from ..low import f\nfrom .. import high\n",
    })
    graph = import_graph(root, "pkg")
    assert graph["pkg.low"] == {"pkg.high": 2}
    assert graph["pkg.high"] == {"pkg.low": 1}
    assert graph["pkg.sub.leaf"] == {"pkg.low": 1, "pkg.high": 2}
    floors = {"pkg": 0, "pkg.sub": 0, "pkg.low": 1, "pkg.high": 2, "pkg.sub.leaf": 3}
    assert floor_violations(graph, floors) == [
        "pkg.low:2 imports pkg.high (floor 2) from floor 1"]
    assert find_cycle(graph) in (["pkg.high", "pkg.low", "pkg.high"],
                                 ["pkg.low", "pkg.high", "pkg.low"])
    del graph["pkg.low"]["pkg.high"]
    assert floor_violations(graph, floors) == [] and find_cycle(graph) is None


def test_checker_sees_import_module_and_same_floor_imports(tmp_path):
    root = _write_package(tmp_path, {
        "__init__.py": "",
        "a.py": "import importlib\nm = importlib.import_module('pkg.b')\n",
        "b.py": "from .nothing import x\n",
    })
    graph = import_graph(root, "pkg")
    assert graph["pkg.a"] == {"pkg.b": 2}
    assert floor_violations(graph, {"pkg": 0, "pkg.a": 1, "pkg.b": 1}) == [
        "pkg.a:2 imports pkg.b (floor 1) from floor 1",
        "pkg.b:1 imports pkg.nothing.x, which is no module"]
