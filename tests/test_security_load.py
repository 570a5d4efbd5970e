"""A graph file is data, never code: hostile files are refused at ``load`` and run nothing.

The corpus is generated from tables: for every op with params, a valid base
record (which must load and agree with numpy), and for each of its params a
list of payloads (Python source, objects, huge ints, bools where ints go,
nested tuples, NaN, negative dims, out-of-range axes, ...). Every payload that
Python code would run tries to create a marker file in ``tmp_path``. Each file
must be refused by ``load`` with a :class:`SerializationError` naming the node
and the param; should one load anyway, it is compiled, called, evaluated and
differentiated, and the marker must still not appear.
"""

from __future__ import annotations

import contextlib
import json
import math
import re

import numpy as np
import pytest
from opcases import BODIED

import symnum
import symsym
from common import OPS, SerializationError, TwogradError, api, evaluate, load, save, toposort
from common.graph import Node
from symnum import tape


def T(*items):
    """A tuple as the file spells it."""
    return {"tuple": list(items)}


def py(marker) -> str:
    """Python source that creates ``marker`` if anything ever runs it (an expression anywhere)."""
    return f"__import__('pathlib').Path({str(marker)!r}).touch() or 0"


#: graph inputs the base records use: name -> (shape, dtype)
VARS = {"x": ([2, 3], "float64"), "xu": ([None, 3], "float64"), "x1": ([1, 3], "float64"),
        "y": ([3, 4], "float64"), "g": ([3], "float64"), "g4": ([4, 3], "float64"),
        "i": ([2], "int64"), "t": ([2, 3], "float64"), "sq": ([3, 3], "float64"),
        "img": ([2, 2, 5, 5], "float64"), "ker": ([4, 1, 3, 3], "float64"), "cot": ([2, 4, 3, 3], "float64"),
        "win": ([2, 2, 3, 3, 3, 3], "float64")}

_REDUCE = (["x"], {"axis": T(1), "keepdims": False})
_GRID = {"stride": T(1, 1), "padding": T(0, 0), "dilation": T(1, 1)}
#: a valid record for every op with params: (input variables, params as the file spells them)
BASES = {
    "cast": (["x"], {"dtype": "float32"}),
    "reshape": (["x"], {"shape": T(3, 2)}),
    "broadcast_to": (["x"], {"shape": T(4, 2, 3)}),
    "sum_to": (["x"], {"shape": T(1, 3)}),
    "expand_dims": (["x"], {"axis": T(0)}),
    "squeeze": (["x1"], {"axis": T(0)}),
    "transpose": (["x"], {"axes": T(1, 0)}),
    "getitem": (["xu", "i"], {"index": T(T("slice", 0, 1, None), T("array", 0))}),
    "scatter_add": (["g", "xu"], {"index": T(T("int", 0))}),
    "concatenate": (["x", "x"], {"axis": 0}),
    "concat_part": (["g4", "x", "x"], {"axis": 0, "part": 1}),
    "stack": (["x", "x"], {"axis": 0}),
    "tril": (["x"], {"k": 0}),
    "triu": (["x"], {"k": 1}),
    "zeros_like": (["x"], {"dtype": "float32"}),
    "ones_like": (["x"], {"dtype": "float32"}),
    "full_like": (["x"], {"value": 1.5, "dtype": "float32"}),
    "full": ([], {"shape": T(2, 3), "value": 1.5, "dtype": "float64"}),
    "einsum": (["x", "y"], {"spec": "ij,jk->ik"}),
    "softmax": (["x"], {"axis": 1}),
    "log_softmax": (["x"], {"axis": 1}),
    "softmax_cross_entropy": (["x", "t"], {"axis": 1}),
    **{name: _REDUCE for name in ("sum", "mean", "count", "max", "min", "prod", "logsumexp")},
    **{name: (["x"], {"axis": 1}) for name in ("cumsum", "cumprod", "logcumsumexp", "argsort")},
    **{name: (["x"], {"axis": 1, "keepdims": False}) for name in ("argmax", "argmin")},
    "cumprod_grad": (["t", "x"], {"axis": 1}),
    "sparse_softmax_cross_entropy": (["x", "i"], {"axis": 1}),
    "solve_triangular": (["sq", "sq"], {"lower": True}),
    **{name: (["x"], {"full_matrices": False}) for name in ("svd_u", "svd_s", "svd_vh")},
    "conv": (["img", "ker"], {**_GRID, "groups": 2}),
    "conv_transpose": (["cot", "ker"], {**_GRID, "groups": 2, "size": T(5, 5)}),
    "conv_weight": (["img", "cot"], {**_GRID, "groups": 2, "ksize": T(3, 3)}),
    "windows": (["img"], {**_GRID, "ksize": T(3, 3)}),
    "unwindows": (["win"], {**_GRID, "ksize": T(3, 3), "size": T(5, 5)}),
}
#: ops whose single axis may also be None (numpy's "the flattened input")
AXIS_OR_NONE = frozenset({"cumsum", "cumprod", "logcumsumexp", "argsort", "argmax", "argmin"})


def kind(op: str, param: str) -> str:
    """What a param is, which decides the payloads that go in it."""
    if param == "axis":
        if op in AXIS_OR_NONE:
            return "axis_or_none"
        return "axes" if isinstance(BASES[op][1]["axis"], dict) else "axis"
    return {"axes": "perm", "keepdims": "bool", "k": "int", "value": "float", "lower": "bool",
            "full_matrices": "bool", "groups": "int", **dict.fromkeys(("stride", "padding", "dilation", "ksize",
                                                                        "size"), "dims")}.get(param, param)


def payloads(k: str, m) -> list[tuple[str, object]]:
    """(id, value) pairs that are wrong for a param of kind ``k``; ``m`` is the marker path."""
    src = py(m)
    common = [("python", src), ("object", {"py/object": "os.system"}), ("hugeint", 2 ** 100),
              ("true", True), ("nan", math.nan), ("none", None), ("list", [0]), ("nested", T(T(src))),
              ("deep", json.loads('{"tuple": [' * 40 + "0" + "]}" * 40)), ("float", 1.5), ("text", "1")]
    valid = {"float": {"nan", "float"}, "bool": {"true"}, "axis_or_none": {"none"}}.get(k, set())
    extra = {
        "axes": [("out", T(7)), ("negative", T(-1)), ("unsorted", T(1, 0)), ("repeated", T(0, 0)),
                 ("booltuple", T(True)), ("bare", 0), ("pyitem", T(src)), ("hugeitem", T(2 ** 70))],
        "axis": [("out", 7), ("negative", -1), ("huge", 2 ** 70), ("tuple", T(0))],
        "axis_or_none": [("out", 7), ("negative", -1), ("huge", 2 ** 70), ("tuple", T(0))],
        "perm": [("repeated", T(0, 0)), ("long", T(1, 0, 2)), ("bools", T(True, False)),
                 ("negative", T(-1, 0)), ("pyitem", T(src, 0))],
        "shape": [("negative", T(-5, 3)), ("bigdim", T(2 ** 41)), ("booldim", T(True, 3)),
                  ("pydim", T(src)), ("nonedim", T(None, 3)), ("floatdim", T(1.5)),
                  ("huge", T(2 ** 30, 2 ** 30, 2 ** 30))],
        "index": [("pyint", T(T("int", src))), ("pyslice", T(T("slice", src, None, None))),
                  ("zerostep", T(T("slice", 0, 1, 0))), ("array", T(T("array", 5))),
                  ("boolint", T(T("int", True))), ("kind", T(T("eval", 0))), ("pyentry", T(src)),
                  ("hugebound", T(T("slice", 0, 2 ** 70, None))), ("hugeint", T(T("int", 2 ** 70))),
                  ("ellipses", T(T("ellipsis"), T("ellipsis"))), ("extra", T(T("int", 0, 1))),
                  ("pynew", T(T("new", src)))],
        "spec": [("quote", "ij,jk->ik'"), ("escape", "ij,jk->ik');" + src + "#"),
                 ("short", "i,jk->ik"), ("letter", "ij,jk->iz"), ("implicit", "ij,jk"),
                 ("ellipsis", "...j,jk->ik"), ("twice", "ij,jk->ii"), ("number", 5)],
        "int": [("huge", 2 ** 70), ("tuple", T(0))],
        "part": [("out", 3), ("negative", -1)],
        "bool": [("one", 1), ("zero", 0), ("word", "true")],
        "dtype": [("object", "object"), ("O", "O"), ("struct", "float64,int32"), ("void", "V8"),
                  ("alias", "<f8"), ("complex", "complex128"), ("number", 5), ("str", "str")],
        "float": [("int", 1), ("tuple", T(1.0))],
        "dims": [("negative", T(-1, 1)), ("short", T(1)), ("huge", T(2 ** 40, 1)), ("booldim", T(True, 1))],
    }[k]
    return [p for p in common if p[0] not in valid] + extra


CORPUS = [(op, param, pid) for op, (_, params) in BASES.items() for param in params
          for pid, _ in payloads(kind(op, param), "m")]


def graph(op: str, params: dict) -> tuple[dict, int]:
    """A one-op file over the base record's variables, and the index of the op's node."""
    names, _ = BASES[op]
    order = list(dict.fromkeys(names))
    nodes = [{"kind": "var", "name": v, "shape": VARS[v][0], "dtype": VARS[v][1]} for v in order]
    nodes.append({"kind": "apply", "op": op, "inputs": [order.index(v) for v in names], "params": params})
    return {"format": "twograd-graph", "version": 1, "single": True, "nodes": nodes,
            "outputs": [len(order)]}, len(order)


def feed(node: Node) -> dict:
    rng = np.random.default_rng(0)
    return {v.name: (np.zeros(2, v.dtype) if v.dtype.kind == "i" else
                     rng.standard_normal(tuple(2 if d is None else d for d in v.shape)))
            for v in toposort(node) if v.is_var}


def exercise(out: Node) -> None:
    """Everything that could run what a loaded graph holds: compile, call, evaluate, differentiate."""
    values = feed(out)
    variables = [v for v in toposort(out) if v.is_var]
    arrays = [values[v.name] for v in variables]
    for optimize in (True, False):
        with contextlib.suppress(Exception):
            f = symsym.function(variables, out, optimize=optimize)
            f(*arrays)
    with contextlib.suppress(Exception):
        evaluate(out, values)
    with contextlib.suppress(Exception):
        floats = [v for v in variables if v.dtype.kind == "f"]
        symnum.gradients(api.sum(api.cast(out, "float64")), floats, values)


def attempt(path) -> SerializationError | None:
    """The error ``load`` refuses ``path`` with, or None after exercising what it loaded."""
    try:
        out = load(path)
    except SerializationError as e:
        return e
    exercise(out)
    return None


def test_every_op_with_params_is_in_the_corpus():
    """A new op with params (its type rule's keyword params) must get a base record here. Ops that run
    bodies (and item) have their hostile files in tests/test_control_serialize.py."""
    with_params = {name: set(op.params) for name, op in OPS.items() if op.params and name not in BODIED}
    assert with_params == {op: set(params) for op, (_, params) in BASES.items()}


@pytest.mark.parametrize("op", sorted(BASES))
def test_base_records_load_and_run(op, tmp_path):
    """The corpus starts from valid records: a refusal below is the payload's doing."""
    data, _ = graph(op, BASES[op][1])
    (tmp_path / "g.json").write_text(json.dumps(data))
    out = load(tmp_path / "g.json")
    values = feed(out)
    got = evaluate(out, values)
    f = symsym.function([v for v in toposort(out) if v.is_var], out)
    np.testing.assert_allclose(f(*[values[v.name] for v in toposort(out) if v.is_var]), got)
    assert len(got.shape) == len(out.shape) and all(d in (None, g) for d, g in zip(out.shape, got.shape))


@pytest.mark.parametrize("op, param, pid", CORPUS, ids=[f"{o}-{p}-{i}" for o, p, i in CORPUS])
def test_hostile_param_is_refused_and_runs_nothing(op, param, pid, tmp_path):
    marker = tmp_path / "ran"
    value = dict(payloads(kind(op, param), marker))[pid]
    data, index = graph(op, {**BASES[op][1], param: value})
    path = tmp_path / "g.json"
    path.write_text(json.dumps(data))
    err = attempt(path)
    assert not marker.exists(), "a graph file ran code"
    assert err is not None, "a hostile file loaded"
    assert re.search(rf"\bnode {index}\b", str(err)) and re.search(rf"\b{param}\b", str(err)), str(err)


@pytest.mark.parametrize("op", sorted(BASES))
def test_unknown_and_missing_params_are_refused(op, tmp_path):
    data, index = graph(op, {**BASES[op][1], "x=__import__('os')": 1})
    (tmp_path / "g.json").write_text(json.dumps(data))
    with pytest.raises(SerializationError, match=rf"node {index}\b.*param .x=__import__"):
        load(tmp_path / "g.json")
    required = [p for p in BASES[op][1] if p != "dtype" or op == "full"]
    for p in required:
        data, index = graph(op, {k: v for k, v in BASES[op][1].items() if k != p})
        (tmp_path / "g.json").write_text(json.dumps(data))
        with pytest.raises(SerializationError, match=rf"node {index}\b.*'{p}'"):
            load(tmp_path / "g.json")


# ------------------------------------------------------------- node records

def _var_graph(**var):
    return {"format": "twograd-graph", "version": 1, "single": True, "outputs": [1], "nodes": [
        {"kind": "var", "name": "x", "shape": [2], "dtype": "float64", **var},
        {"kind": "apply", "op": "sin", "inputs": [0], "params": {}}]}


def _const_graph(value, dtype, shape):
    return {"format": "twograd-graph", "version": 1, "single": True, "outputs": [0], "nodes": [
        {"kind": "const", "dtype": dtype, "shape": shape, "value": value}]}


def _refused(tmp_path, data, *words, raw=None):
    path = tmp_path / "g.json"
    if raw is None:
        path.write_text(json.dumps(data))
    else:
        path.write_bytes(raw if isinstance(raw, bytes) else raw.encode())
    with pytest.raises(SerializationError) as info:
        load(path)
    for w in words:
        assert re.search(w, str(info.value)), str(info.value)
    return info.value


@pytest.mark.parametrize("shape", [[-1], [2 ** 41], [True], [1.5], ["2"], [2 ** 30, 2 ** 30, 2 ** 30],
                                   [1] * 65, "22", None, [[2]]])
def test_bad_variable_shapes_are_refused(tmp_path, shape):
    _refused(tmp_path, _var_graph(shape=shape), r"node 0\b", "shape")


@pytest.mark.parametrize("value, dtype, shape", [
    ([300], "uint8", [1]), ([-1], "uint32", [1]), ([2 ** 70], "int64", [1]), ([1.5], "int64", [1]),
    ([1e300], "float32", [1]), ([1], "bool", [1]), (["1"], "float64", [1]), ([None], "float64", [1]),
    ([[1], [1, 2]], "float64", [2]), ([{"a": 1}], "float64", [1]), ([1.0], "float64", [2]),
    ([True], "float64", [1]),
])
def test_constants_that_do_not_fit_their_dtype_are_refused(tmp_path, value, dtype, shape):
    _refused(tmp_path, _const_graph(value, dtype, shape), r"node 0\b")


def test_float_literal_overflow_is_refused(tmp_path):
    raw = json.dumps(_const_graph([0.5], "float64", [1])).replace("0.5", "1e400")
    _refused(tmp_path, None, r"node 0\b", raw=raw)


def test_special_floats_saved_by_twograd_still_load(tmp_path):
    c = api.const(np.array([np.inf, -np.inf, np.nan, 1e300]))
    save(c, tmp_path / "g.json")
    np.testing.assert_array_equal(evaluate(load(tmp_path / "g.json")), c.value)


@pytest.mark.parametrize("raw", [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"format": "twograd-graph", "version": 1, "nodes": ' + b"[" * 100_000 + b"]" * 100_000 + b', "outputs": []}',
    b"1" * 10_000,
    b'{"format": "twograd-graph\xff\xfe"}',
], ids=["deep-list", "deep-nodes", "long-int", "not-utf8"])
def test_deep_huge_or_garbled_json_is_refused(tmp_path, raw):
    _refused(tmp_path, None, raw=raw)


def test_a_declared_shape_or_dtype_must_be_what_the_type_rule_infers(tmp_path):
    data = _var_graph()
    data["nodes"][1].update(shape=[3], dtype="float64")
    _refused(tmp_path, data, r"node 1\b", "shape")
    data["nodes"][1].update(shape=[2], dtype="float32")
    _refused(tmp_path, data, r"node 1\b", "dtype")


def test_saved_files_declare_shapes_and_dtypes_and_old_files_still_load(tmp_path):
    x = api.var("x", (None, 3), "float32")
    save(api.sum(api.exp(x), axis=1), tmp_path / "g.json")
    data = json.loads((tmp_path / "g.json").read_text())
    assert [n["shape"] for n in data["nodes"]] == [[None, 3], [None, 3], [None]]
    assert {n["dtype"] for n in data["nodes"]} == {"float32"}
    for n in data["nodes"][1:]:
        del n["shape"], n["dtype"]  # as version 1 wrote them
    (tmp_path / "g.json").write_text(json.dumps(data))
    assert load(tmp_path / "g.json").shape == (None,)


@pytest.mark.parametrize("field, value", [("inputs", [True]), ("inputs", [0.0]), ("inputs", "0"),
                                          ("inputs", [0, 0]), ("op", "sum")])
def test_malformed_apply_records_are_refused(tmp_path, field, value):
    data = _var_graph()
    data["nodes"][1][field] = value
    _refused(tmp_path, data, r"node 1\b")


def test_a_node_without_a_site_is_reported_as_coming_from_the_file(tmp_path):
    x, y = api.var("x", (None,)), api.var("y", (None,))
    save(x + y, tmp_path / "g.json")
    data = json.loads((tmp_path / "g.json").read_text())
    for n in data["nodes"]:
        n["site"] = None
    path = tmp_path / "g.json"
    path.write_text(json.dumps(data))
    out = load(path)
    with pytest.raises(TwogradError, match=rf"{re.escape(str(path))}:node 2\b"):
        evaluate(out, {"x": np.zeros(2), "y": np.zeros(3)})


# ------------------------------------------------ one validation path, and the code generator

@pytest.mark.parametrize("build", [
    lambda ns, x, s: ns.sum(x, axis=s), lambda ns, x, s: ns.softmax(x, axis=s),
    lambda ns, x, s: ns.sum(x, keepdims=s), lambda ns, x, s: ns.tril(x, s), lambda ns, x, s: ns.reshape(x, (s,)),
    lambda ns, x, s: ns.cast(x, s), lambda ns, x, s: ns.concatenate([x, x], axis=s), lambda ns, x, s: x[s:],
    lambda ns, x, s: ns.full((s,), 1.0), lambda ns, x, s: ns.transpose(x, (s, 0)),
])
@pytest.mark.parametrize("backend", ["symbolic", "tape"])
def test_builders_refuse_the_same_payloads(tmp_path, build, backend):
    """Building from Python goes through the same checks as loading: a string of Python is refused."""
    marker = tmp_path / "ran"
    ns, x = (api.symbolic, api.var("x", (2, 3))) if backend == "symbolic" else (tape, symnum.tensor(np.ones((2, 3))))
    with pytest.raises(TwogradError, match="param"):
        build(ns, x, py(marker))
    assert not marker.exists()


def test_generated_code_writes_params_as_literals_only(tmp_path):
    """A node made around the builders (no type rule) still cannot put source into the function."""
    marker = tmp_path / "ran"
    for n in hostile_nodes(marker):
        with contextlib.suppress(Exception):
            f = symsym.function([v for v in toposort(n) if v.is_var], n, optimize=False)
            f(*[np.ones(v.shape) for v in toposort(n) if v.is_var])
    assert not marker.exists()


def hostile_nodes(marker) -> list[Node]:
    """Nodes made around the builders (no type rule) whose params are source text that would create
    ``marker`` if it were ever run."""
    x = api.var("x", (2, 3))
    hostile = [("softmax", {"axis": py(marker)}), ("sum", {"axis": (1,), "keepdims": py(marker)}),
               ("getitem", {"index": (("int", py(marker)),)}), ("tril", {"k": py(marker)}),
               ("scatter_add", {"index": (("int", py(marker)),)})]
    return [Node(OPS[name], (x,) if name != "scatter_add" else (api.var("g", (3,)), x), params, (2, 3),
                 np.dtype("float64")) for name, params in hostile]


#: the builtins generated code names (slices in keys, the loops and their length checks, the table-driven loop)
GENERATED_BUILTINS = {"slice", "len", "list", "tuple", "range", "ValueError"}


def _names_outside(source: str, bound: dict) -> set[str]:
    """The names ``source`` reads that are neither its functions' own (arguments, assignments, loop
    targets) nor bound in its globals, with every attribute it reads that starts with ``_``."""
    import ast

    tree = ast.parse(source)
    own = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef):
            own.update(a.arg for a in fn.args.args + fn.args.kwonlyargs)
            own.update(a.arg for a in (fn.args.vararg, fn.args.kwarg) if a is not None)
    own.update(n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load))
    read = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    private = {"." + n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr.startswith("_")}
    return (read - own - set(bound)) | private


@pytest.mark.parametrize("table", [False, True], ids=["straight-line", "table-driven"])
def test_generated_code_names_only_its_bound_globals_and_a_few_builtins(table, monkeypatch):
    """Generated code runs with Python's builtins (what numpy and numba read from the calling frame), so
    what keeps a graph from running code is the text: every name it reads is its own, a global bound for
    it, or one of a few builtins, and it reads no private attribute."""
    from symsym import compile as compile_module

    if table:
        monkeypatch.setattr(compile_module, "MAX_STRAIGHT_LINE", 2)
    x, xs = api.var("x", (2, 3)), api.var("xs", (None, 3))
    c, ys = api.scan(lambda h, v: (api.tanh(h + v), api.sum(h * v)), x[0], xs)
    w = api.while_loop(lambda s: api.sum(s) < 10.0, lambda s: s * 2.0 + 1.0, api.abs(x[1]))
    b = api.cond(api.sum(x) > 0, api.exp, api.sin, x[:, ::2])
    out = api.sum(api.softmax(x)) + api.sum(c) + api.sum(ys) + api.sum(w) + api.sum(b) + api.sum(x[None, 1])
    f = symsym.function([x, xs], [out, *symsym.grad(out, [x, xs])])
    outside = _names_outside(f.source, f._fn.__globals__)
    assert outside <= GENERATED_BUILTINS, outside - GENERATED_BUILTINS
    assert _names_outside("def fn(a0):\n    return __import__('os')._exit", {}) == {"__import__", "._exit"}
    value = f(np.ones((2, 3)), np.ones((4, 3)))[0]
    want = evaluate(out, {x: np.ones((2, 3)), xs: np.ones((4, 3))})
    np.testing.assert_allclose(value, want, rtol=1e-12)


def test_compiling_a_loaded_graph_allocates_nothing_from_declared_shapes(tmp_path):
    """A file may declare a (2**20, 2**20) input: compiling its graph must not allocate 8 TiB."""
    x = api.var("x", (2 ** 20, 2 ** 20))
    e = api.exp(x)
    save(api.mean(e) + api.count(e, axis=(0, 1)), tmp_path / "g.json")
    y = load(tmp_path / "g.json")
    (x,) = [v for v in toposort(y) if v.is_var]
    f = symsym.function([x], [y, symsym.grad(y, x)])
    assert "def fn" in f.source
