"""The house's import order, asserted by reading the code (an ``ast`` walk: nothing is imported).

``common`` stands in layers, bottom-up as a reader meets them: the base
(errors, sites, kernels, pytrees, optimisers), ``graph`` (nodes and node construction),
``body`` (closed subgraphs), ``ops/`` (the op table), the sweeps, evaluation,
printing and serialisation, ``control/`` (the loop and branch ops) and ``api``.
A module imports only its own layer and those below, counting imports made
inside functions, so there is no import circle in ``common``; neither backend
imports the other, and ``common`` imports neither. No module imports one of
the project's own inside a function (a lazy load of an optional third-party
package, numba or torch, is fine: it is not the project's).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("common", "symnum", "symsym", "benchmarks")

COMMON_LAYERS = [
    {"errors", "site", "sentinel", "gcpause", "kernels", "tree", "optim"},
    {"graph"},
    {"body"},
    {"ops"},
    {"forward_sweeps", "backward", "evaluate", "printing", "serialize", "overloads", "linalg_nn"},
    {"control"},
    {"api", "__init__"},
]
"""``common``'s layers, bottom-up: each module's name under ``common`` (a package is one layer)."""

INNER_ORDER = {
    "common.ops": ["params", "shapes", "traits", "index", "batching", "table", "rules",
                   {"elementwise", "linalg", "nn", "reduce", "shape", "conv", "matrix", "spectral", "scans", "ordering",
                    "composed"}, "__init__"],
    "common.control": ["checks", "item_op", "bodies", "trace", {"scan_op", "while_op", "cond_op", "checkpoint_op"},
                       "__init__"],
}
"""The order inside ``common``'s two packages, bottom-up (a set: modules that may import one another)."""

LATE_IMPORTS = {
    ("symnum.tensor", "symnum.engine"):
        "Tensor.backward calls the engine, which is built on Tensor (torch.Tensor.backward imports "
        "torch.autograd the same way)",
}
"""The function-level imports of the project's own modules that stay, each with why."""

NOT_CHECKED = ("symsym/linkers/", "benchmarks/")
"""Left out of the function-level rule: the linkers' own layering comes with their folder layout (one folder
per lowering path), and the benchmark CLI loads each subcommand's modules when that subcommand runs."""


def _modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _target(module: str) -> str | None:
    """The module file a dotted name refers to (a package's ``__init__``), or None if not the project's."""
    if module in MODULES:
        return module
    if module + ".__init__" in MODULES:
        return module + ".__init__"
    return None


def _imports(name: str) -> list[tuple[str, bool, int]]:
    """``(imported module, inside a function, line)`` for every import of the project's own modules."""
    tree = ast.parse(MODULES[name].read_text())
    here = name.split(".")[:-1]  # the package a relative import starts from (an __init__'s own)
    inside: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            inside.update(id(n) for n in ast.walk(fn) if n is not fn)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bases = [a.name for a in node.names]
            names: list[str] = [""] * len(bases)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = here[:len(here) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            bases, names = [base] * len(node.names), [a.name for a in node.names]
        else:
            continue
        for base, sub in zip(bases, names):
            target = (_target(f"{base}.{sub}") if sub else None) or _target(base)
            if target is not None and target != name:
                out.append((target, id(node) in inside, node.lineno))
    return out


EDGES = {name: _imports(name) for name in MODULES}


def _common_rank(name: str) -> int:
    top = name.split(".")[1]
    return next(k for k, layer in enumerate(COMMON_LAYERS) if top in layer)


def _inner_rank(name: str) -> tuple[str, int] | None:
    pkg = name.rsplit(".", 1)[0]
    order = INNER_ORDER.get(pkg)
    if order is None:
        return None
    leaf = name.rsplit(".", 1)[1]
    return pkg, next(k for k, entry in enumerate(order) if leaf == entry or (isinstance(entry, set) and leaf in entry))


def test_every_common_module_has_a_layer():
    for name in MODULES:
        if name.startswith("common.") and name != "common.__init__":
            _common_rank(name)
            if name.startswith(("common.ops.", "common.control.")):
                assert _inner_rank(name) is not None, name


def test_common_imports_only_its_own_layer_and_below():
    wrong = []
    for name, edges in EDGES.items():
        if not name.startswith("common."):
            continue
        for target, _, line in edges:
            if not target.startswith("common."):
                wrong.append(f"{name}:{line} imports {target}, outside common")
            elif target != "common.__init__" and _common_rank(target) > _common_rank(name):
                wrong.append(f"{name}:{line} imports {target}, a higher layer")
            else:
                mine, theirs = _inner_rank(name), _inner_rank(target)
                if mine and theirs and mine[0] == theirs[0] and theirs[1] > mine[1]:
                    wrong.append(f"{name}:{line} imports {target}, above it in {mine[0]}")
    assert not wrong, "\n".join(wrong)


def test_nothing_below_control_names_a_loop_op():
    """The loop ops are known by their traits below ``common.control``, never by name."""
    named = []
    for name, path in MODULES.items():
        if name.startswith("common.") and _common_rank(name) < _common_rank("common.control"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and node.value in ("scan", "while_loop", "cond"):
                    named.append(f"{name}:{node.lineno} names {node.value!r}")
    assert not named, "\n".join(named)


SAME_WORD = {"benchmarks.cli": "its figure's two examples are called 'chain' and 'scan' (a recurrence as one loop)"}
"""Modules where a loop op's name is another thing's name, with what it names there."""


def _loop_op_names() -> set[str]:
    """The ops of ``common.control`` (the loops, the branch and ``item``), read from the op table."""
    import common.control  # noqa: F401  (registers them)
    from common.ops import OPS, Kind

    return {name for name, op in OPS.items() if op.kind is Kind.CONTROL}


def _names_a_loop_op(node: ast.AST, names: set[str]) -> bool:
    """Whether ``node`` finds a loop op by its name: compares a string to one (``op.name == "scan"``, ``in
    ("scan", ...)``), looks one up (``OPS["item"]``) or registers a spelling under one."""
    def named(x) -> bool:
        if isinstance(x, ast.Constant):
            return x.value in names
        if isinstance(x, (ast.Tuple, ast.List, ast.Set)):
            return any(named(e) for e in x.elts)
        return False

    if isinstance(node, ast.Compare):
        return any(named(x) for x in (node.left, *node.comparators))
    if isinstance(node, ast.Subscript):
        return named(node.slice)
    if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "register_lowering":
        return bool(node.args) and named(node.args[0])
    return False


def test_no_loop_op_is_found_by_name_outside_control():
    """What the house asks of a loop op is a trait or param of the op, declared in its own module under
    ``common.control``, so a new loop op needs no edit anywhere else (the strings may still appear in
    messages and builders' names)."""
    names = _loop_op_names()
    found = []
    for name, path in MODULES.items():
        if name.startswith("common.control.") or name in SAME_WORD:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if _names_a_loop_op(node, names):
                found.append(f"{name}:{node.lineno}: {ast.unparse(node)[:80]}")
    assert not found, "\n".join(found)


def test_neither_backend_imports_the_other():
    allowed = {"common": {"common"}, "symnum": {"common", "symnum"}, "symsym": {"common", "symsym"}}
    wrong = [f"{name}:{line} imports {target}" for name, edges in EDGES.items() for target, _, line in edges
             if name.split(".")[0] in allowed and target.split(".")[0] not in allowed[name.split(".")[0]]]
    assert not wrong, "\n".join(wrong)


def test_no_function_level_imports_of_the_project():
    late = []
    for name, edges in EDGES.items():
        path = str(MODULES[name].relative_to(ROOT))
        if path.startswith(NOT_CHECKED):
            continue
        for target, inside, line in edges:
            if inside and (name, target) not in LATE_IMPORTS:
                late.append(f"{name}:{line} imports {target} inside a function")
    assert not late, "\n".join(late)


def _circles(names: set[str], skip: frozenset = frozenset()) -> list[list[str]]:
    """The import circles (strongly connected components of two modules or more) among ``names``, counting
    function-level imports but the ``(importer, imported)`` pairs in ``skip``; iterative Tarjan."""
    graph = {n: sorted({t for t, _, _ in EDGES[n] if t in names and (n, t) not in skip}) for n in sorted(names)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = len(index)
                stack.append(v)
                on_stack.add(v)
            if i < len(graph[v]):
                work.append((v, i + 1))
                w = graph[v][i]
                if w not in index:
                    work.append((w, 0))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            for w in graph[v]:
                if w in on_stack:
                    low[v] = min(low[v], low[w])
            if low[v] == index[v]:
                part = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    part.append(w)
                    if w == v:
                        break
                if len(part) > 1:
                    found.append(sorted(part))
    return found


def test_no_import_circle_in_common():
    assert _circles({n for n in MODULES if n.startswith("common.")}) == []


def _faces() -> set[str]:
    """The packages' ``__init__`` modules that only hand names on (a reader skips them, and so do circles)."""
    return {n for n in MODULES if n.endswith("__init__") and not any(
        isinstance(s, (ast.FunctionDef, ast.ClassDef)) for s in ast.parse(MODULES[n].read_text()).body)}


def test_the_only_import_circle_in_the_house_is_a_documented_late_import():
    """Every circle left is closed by one of :data:`LATE_IMPORTS` (a function-level import that says why):
    without those imports the house has none, so a new circle anywhere fails here."""
    names = set(MODULES) - _faces()
    assert _circles(names, frozenset(LATE_IMPORTS)) == []
    assert len(_circles(names)) <= len(LATE_IMPORTS)
