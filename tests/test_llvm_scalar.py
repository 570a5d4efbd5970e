"""0-d regions of the numba linker as LLVM functions written from the scalar forms (symsym.linkers.llvm.chains).

Every reference is independent of the code under test: each op's numpy impl
(on a grid of edge values: signed zeros, subnormals, overflow, inf, NaN,
both sides of every branch), the numpy linker on the same graph, central
finite differences in float64, numpy's own arithmetic. Kernels go to a cache
folder under the test's tmp folder; the disk cache is checked from fresh
processes.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from scalarcases import EDGES, input_kinds

from common import api as T
from common.ops import OPS, Kind
from common.ops.table import Op
from symsym import function, grad
from symsym.linkers.llvm import chains as llvm_scalar
from symsym.linkers.llvm import jit as llvm_jit
from symsym.linkers.llvm.forms import BOOL, DOUBLE, template

pytest.importorskip("llvmlite")

pytestmark = pytest.mark.usefixtures("module_kernel_cache")


def llvm_functions(f) -> int:
    return f.source.count("\ndefine ptr @twograd_")


def mismatches(got, ref, rtol=1e-12):
    """Where ``got`` differs from ``ref``: NaN matches NaN, a zero's sign counts, else ``rtol`` relative."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    both_nan = np.isnan(got) & np.isnan(ref)
    same = (got == ref) & (np.signbit(got) == np.signbit(ref))
    finite = np.isfinite(got) & np.isfinite(ref) & (got != 0) & (ref != 0)
    with np.errstate(invalid="ignore", over="ignore"):
        close = finite & (np.abs(got - ref) <= rtol * np.abs(ref))
    return ~(both_nan | same | close)


def agree(inputs, outputs, arrays, rtol=1e-12):
    """Compile with the numba linker and the numpy linker; same types, values to ``rtol``. Returns both."""
    fast, ref = function(inputs, outputs, linker="numba"), function(inputs, outputs)
    got, want = fast(*arrays), ref(*arrays)
    for g, w in zip(got, want):
        assert type(g) is type(w) and g.shape == w.shape and g.dtype == w.dtype
        assert not mismatches(g, w, rtol).any(), (g, w)
    return fast, ref


# ---------------------------------------------------------------------------- every form, edge values


def _grid(kinds: list[str]) -> list[np.ndarray]:
    """Every pairing of the edge values (each one, for one float input) and random normals; a third float
    is the first reversed; a condition alternates, so both branches of every conditional are taken."""
    a = np.array(EDGES)
    rng = np.random.default_rng(0)
    if kinds.count("f") == 1:
        floats = [np.concatenate([a, rng.standard_normal(40) * 3])]
    else:
        x = np.concatenate([np.repeat(a, len(a)), rng.standard_normal(60)])
        floats = [x, np.concatenate([np.tile(a, len(a)), rng.standard_normal(60)]), x[::-1].copy()]
    size = floats[0].size
    columns = []
    for k in kinds:
        columns.append(np.arange(size) % 3 == 0 if k == "b" else floats.pop(0))
    return columns


FORMS = sorted(name for name, op in OPS.items() if op.kind is Kind.ELEMENTWISE and op.scalar is not None)


@pytest.mark.parametrize("name", FORMS)
def test_every_scalar_form_equals_the_numpy_impl_on_edge_values(name):
    op = OPS[name]
    kinds = input_kinds(op)
    xs = [T.var(f"x{k}", (), "bool" if kind == "b" else "float64") for k, kind in enumerate(kinds)]
    node = T.apply(op, xs, {})
    k = llvm_scalar.scalar_kernel([node], [node])
    assert k is not None, f"{name}: the scalar form {op.scalar!r} has no LLVM translation"
    columns = _grid(kinds)
    got = np.array([k.fn(*[v.item() for v in point]) for point in zip(*columns)], dtype=np.float64)
    with np.errstate(all="ignore"):
        want = np.asarray(op.impl(*columns), dtype=np.float64)
    bad = np.flatnonzero(mismatches(got, want))
    assert not bad.size, [(tuple(float(c[i]) for c in columns), got[i], want[i]) for i in bad[:5]]


def test_the_mismatch_check_can_fail():
    got = np.array([0.0, np.nan, 1.0 + 1e-11, 2.0, np.inf])
    ref = np.array([-0.0, 1.0, 1.0, 2.0, -np.inf])
    assert mismatches(got, ref).tolist() == [True, True, True, False, True]


def test_constants_are_written_bit_for_bit():
    """0-d constants become IR literals: NaN, infinities, -0.0, a subnormal and 0.1 keep every bit."""
    x = T.var("x", ())
    outs = [x * T.const(-0.0), x + T.const(np.inf), x - T.const(-np.inf), T.maximum(x, T.const(np.nan)),
            x * T.const(5e-324) * 1e300, x + 0.1, T.where(T.const(np.bool_(True)), x, -x) * 3.0]
    for v in (0.75, -2.5):
        with np.errstate(invalid="ignore"):
            f, _ = agree([x], [T.sin(o) * o for o in outs], [np.asarray(v)])
    assert llvm_functions(f) >= 1 and "def kernel(" not in f.source


# ---------------------------------------------------------------------------- graphs and gradients

SMOOTH = ["sin", "cos", "tanh", "sigmoid", "softplus", "arctan", "square", "exp_tanh", "log_sq", "sqrt_sq"]
ROUGH = ["abs", "relu", "sign", "maximum", "minimum", "where"]


def _random_graph(rng, n_ops: int, rough: bool):
    """A random 0-d graph of three scalars; ``rough`` adds kinks and branches (not for finite differences)."""
    xs = [T.var(f"x{k}", ()) for k in range(3)]
    pool = list(xs)
    unary = SMOOTH + (ROUGH[:3] if rough else [])
    for _ in range(n_ops):
        a, b = pool[rng.integers(len(pool))], pool[rng.integers(len(pool))]
        pick = rng.integers(10)
        if pick < 5:
            f = unary[rng.integers(len(unary))]
            v = {"exp_tanh": lambda: T.exp(T.tanh(a)), "log_sq": lambda: T.log(a * a + 1.0),
                 "sqrt_sq": lambda: T.sqrt(a * a + 0.5)}.get(f, lambda: getattr(T, f)(a))()
        elif pick < 9 or not rough:
            op = ["add", "sub", "mul", "div"][rng.integers(4)]
            v = a / (b * b + 1.0) if op == "div" else getattr(T, op)(a, b)
        else:
            op = ROUGH[3 + rng.integers(3)]
            v = T.where(a > b, a * 2.0, T.sin(b)) if op == "where" else getattr(T, op)(a, b)
        pool.append(v)
    return xs, pool[-1] + pool[-2] * 0.5 + T.tanh(pool[-3]) + T.sin(xs[0] + xs[1] * xs[2])


@pytest.mark.parametrize("seed", range(6))
def test_random_scalar_graphs_and_their_gradients_agree_with_numpy_and_finite_differences(seed):
    rng = np.random.default_rng(seed)
    xs, cost = _random_graph(rng, 25, rough=False)
    outs = [cost, *grad(cost, xs)]
    point = [np.asarray(v) for v in rng.uniform(-1.5, 1.5, 3)]
    f, _ = agree(xs, outs, point)
    assert llvm_functions(f) >= 1 and "def kernel(" not in f.source
    value, *grads = f(*point)
    h = 1e-6
    for k in range(3):
        up = [np.asarray(v + h) if j == k else v for j, v in enumerate(point)]
        down = [np.asarray(v - h) if j == k else v for j, v in enumerate(point)]
        fd = (f(*up)[0] - f(*down)[0]) / (2 * h)
        assert abs(fd - grads[k]) <= 1e-6 * max(1.0, abs(fd)), (k, fd, grads[k])


@pytest.mark.parametrize("seed", range(4))
def test_random_graphs_with_kinks_and_branches_agree_with_numpy_on_edge_values(seed):
    rng = np.random.default_rng(100 + seed)
    xs, cost = _random_graph(rng, 30, rough=True)
    outs = [cost, *grad(cost, xs)]
    fast, ref = function(xs, outs, linker="numba"), function(xs, outs)
    picks = [*EDGES, *rng.standard_normal(6)]
    for _ in range(40):
        point = [np.asarray(picks[rng.integers(len(picks))]) for _ in range(3)]
        with np.errstate(all="ignore"):
            got, want = fast(*point), ref(*point)
        for g, w in zip(got, want):
            assert not mismatches(g, w).any(), (point, g, w)


def test_outputs_are_numpy_values_of_the_numpy_linkers_types(rng):
    """Floats and a comparison's bool come back as the numpy linker gives them, also when numpy code after
    the kernel reads them (an array scaled by a 0-d result)."""
    s, c, v = T.var("s", ()), T.var("c", (), "bool"), T.var("v", (3,))
    t = T.sin(T.sin(s) * 2.0)
    outs = [t, t > 0.5, T.where(c, T.cos(t), -t) * 3.0, T.sum(v * (t * t + 1.0))]
    for cond in (np.asarray(True), np.asarray(False)):
        f, _ = agree([s, c, v], outs, [np.asarray(0.4), cond, rng.standard_normal(3)])
    assert llvm_functions(f) == 1


def test_a_bool_argument_is_read_as_numpy_truth():
    x, c = T.var("x", ()), T.var("c", (), "bool")
    node = T.where(c, T.sin(x), T.cos(x))
    k = llvm_scalar.scalar_kernel([*node.inputs[1:], node], [node])
    assert [a.name for a in k.args] == ["x", "c"]
    for cond in (True, False, np.bool_(True), np.asarray(False), np.asarray(True)):
        assert k.fn(0.3, cond) == (math.sin(0.3) if cond else math.cos(0.3))


def test_wrong_arguments_raise_instead_of_reading_memory():
    x = T.var("x", ())
    node = T.sin(x) * 2.0
    k = llvm_scalar.scalar_kernel([node.inputs[0], node], [node])
    assert k.fn(np.asarray(0.5)) == math.sin(0.5) * 2.0 and k.fn(-1.0) == math.sin(-1.0) * 2.0
    for bad in [(), (1.0, 2.0)]:
        with pytest.raises(TypeError):
            k.fn(*bad)
    with pytest.raises(TypeError):
        k.fn("0.5")


def test_threads_calling_one_kernel_each_get_their_own_results():
    w = T.var("w", ())
    z = w
    for _ in range(50):
        z = T.sin(z) * 1.1
    f = function([w], [z, grad(z, w)], linker="numba")
    ref = function([w], [z, grad(z, w)])
    points = [np.asarray(v) for v in np.linspace(-2, 2, 400)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(f, points))
    for p, g in zip(points, got):
        want = ref(p)
        assert not mismatches(g[0], want[0]).any() and not mismatches(g[1], want[1]).any()


def _cycle_pattern():
    """sin(x) > y leaves region A through a cast (no scalar form) into region B; w reads A and B."""
    x, y = T.var("x", ()), T.var("y", ())
    p = T.sin(x)
    q = T.cast(p > y, "float64") * 2.0
    s = T.tanh(y)
    v = s * 3.0
    return [x, y], [p + v, q * s]


def test_a_node_reading_two_regions_never_joins_one_the_other_reads_from():
    """w may not join A: B reads A (through the cast), so A's kernel would have to run before and after B's."""
    xs, outs = _cycle_pattern()
    for v in (0.3, -0.4):
        f, _ = agree(xs, outs, [np.asarray(v), np.asarray(0.1)])
    assert llvm_functions(f) == 2


def test_kernels_left_on_a_cycle_run_as_numpy_calls(monkeypatch):
    """Should fusion ever make a cycle of kernels, those kernels run as numpy calls, with the same values."""
    from symsym.linkers.numba import fuse

    def blind(n, mask, member, deps, *inside):  # the merge test without the regions' own reads
        return not any(deps[id(i)] & mask for i in n.inputs
                       if member.get(id(i)) is None or member[id(i)].root() not in inside)

    monkeypatch.setattr(fuse, "_outside_free_of", blind)
    xs, outs = _cycle_pattern()
    f, _ = agree(xs, outs, [np.asarray(0.3), np.asarray(0.1)])
    assert llvm_functions(f) == 0


# ---------------------------------------------------------------------------- long chains, source


def test_a_30000_node_chain_and_its_gradient_are_one_function():
    w = T.var("w", ())
    z = w
    for _ in range(10_000):
        z = T.sin(z)
    f, _ = agree([w], [z, grad(z, w)], [np.asarray(0.7)])
    assert llvm_functions(f) == 1
    head = f.source[f.source.index("# kernel0:"):].splitlines()[0]
    nodes = int(head.split()[2])
    assert nodes >= 29_999 and "LLVM IR, cache key" in head


def test_a_region_past_the_function_bound_is_cut_in_schedule_order(monkeypatch):
    monkeypatch.setattr(llvm_scalar, "MAX_NODES", 7)
    w = T.var("w", ())
    z = w
    for _ in range(12):
        z = T.tanh(z) * 1.25
    f, _ = agree([w], [z, grad(z, w)], [np.asarray(0.4)])
    assert llvm_functions(f) >= 5


def test_source_shows_the_ir_that_runs_and_its_cache_key():
    x = T.var("x", ())
    f, _ = agree([x], [T.exp(T.sin(x) * 2.0) + 1.0], [np.asarray(0.3)])
    (key,) = [k for k in llvm_jit.LOADED if f"LLVM IR, cache key {k}" in f.source]
    assert f"define ptr @twograd_{key}(" in f.source
    assert "call double @llvm.exp.f64(" in f.source and "call double @llvm.sin.f64(" in f.source
    assert " fast " not in f.source and "nnan" not in f.source and "ninf" not in f.source  # no fast-math flags


# ---------------------------------------------------------------------------- fallback


def _mystery(form: str) -> Op:
    """An elementwise op outside the table whose scalar form the translator does not know."""
    return Op("mystery", lambda x: (x.shape, x.dtype), lambda x: np.mod(x, 3.0), kind=Kind.ELEMENTWISE, nin=1,
              scalar=form)


@pytest.mark.parametrize("form", ["({0} % 3.0)", "math.floor({0})", "({0} or 1.0)", "int({0})", "{0}.real",
                                  "__import__('os').getpid()", "math.fmod({0}, 3.0)", "y", "({0} // 2.0)",
                                  "math.pow({0})", "max({0}, 1.0)", "({0} if {0} > 1.0 else True)", "'a'", "{0}["])
def test_forms_the_translator_does_not_know_have_no_template(form):
    assert template(form, (DOUBLE,)) is None


def test_known_forms_translate_for_their_operand_types():
    assert template("({0} * {1})", (DOUBLE, DOUBLE)).text == "  %n{p}.0 = fmul double {0}, {1}\n"
    assert template("({0} * {1})", (BOOL, DOUBLE)) is None  # arithmetic on a bool: not guessed
    assert template("{0}", (DOUBLE,)).text == "" and template("{0}", (DOUBLE,)).result == "{0}"


def test_a_region_with_an_unknown_form_takes_numbas_path_with_the_right_values(rng):
    pytest.importorskip("numba")
    x = T.var("x", ())
    a = T.sin(x) * 2.0 + 1.0
    mid = T.apply(_mystery("({0} % 3.0)"), (a,), {})
    out = T.exp(mid) * x
    f = function([x], [out], optimize=False, linker="numba")
    assert llvm_functions(f) == 0 and "\ndef kernel(" in f.source
    for v in (0.3, -2.0, 5.5):
        want = math.exp(np.mod(math.sin(v) * 2.0 + 1.0, 3.0)) * v
        assert abs(float(f(np.asarray(v))[0]) - want) <= 1e-12 * abs(want)


def test_past_the_graph_budget_regions_take_numbas_path(monkeypatch):
    pytest.importorskip("numba")
    monkeypatch.setattr(llvm_scalar, "MAX_TOTAL_NODES", 5)
    w = T.var("w", ())
    z = T.tanh(T.sin(w) * 1.5 + 0.25) * 0.5
    f, _ = agree([w], [z, grad(z, w)], [np.asarray(0.6)])
    assert llvm_functions(f) == 0 and "\ndef kernel(" in f.source


# ---------------------------------------------------------------------------- disk cache

_SCRIPT = """
import sys
import numpy as np
from common import api as T
import symsym
from symsym.linkers.llvm import jit as llvm_jit
compiled = []
real = llvm_jit._Jit.compile
llvm_jit._Jit.compile = lambda self, text: compiled.append(text) or real(self, text)
w = T.var("w", ())
z = T.tanh(T.sin(w) * 3.0 + 0.25)
f = symsym.function([w], [z, symsym.grad(z, w)], linker="numba")
v = 0.3
value, g = f(np.asarray(v))
y = np.tanh(np.sin(v) * 3.0 + 0.25)
assert abs(value - y) <= 1e-14 and abs(g - (1 - y * y) * 3.0 * np.cos(v)) <= 1e-14, (value, g)
print(len(compiled), "numba" in sys.modules)
"""


def _run(tmp_path) -> str:
    env = {**os.environ, "TWOGRAD_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([os.getcwd(), *sys.path])}
    r = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_a_second_process_loads_the_object_code_and_a_tampered_file_is_compiled_again(tmp_path):
    assert _run(tmp_path) == "1 False"   # compiled; numba itself never imported for 0-d regions
    (obj,) = (tmp_path / "cache").glob("l*.o")
    assert _run(tmp_path) == "0 False"   # loaded from disk
    data = bytearray(obj.read_bytes())
    data[-20] ^= 0x40
    obj.write_bytes(bytes(data))
    assert _run(tmp_path) == "1 False"   # a flipped bit: rejected, compiled again, rewritten
    assert _run(tmp_path) == "0 False"
    obj.write_bytes(b"")
    assert _run(tmp_path) == "1 False"


def test_a_foreign_or_torn_cache_file_is_rejected(tmp_path):
    a, b = "a" * 24, "b" * 24
    llvm_jit.write_checked(tmp_path / f"l{a}.o", a, b"\x7fELF object code of a")
    assert llvm_jit.read_checked(tmp_path / f"l{a}.o", a) == b"\x7fELF object code of a"
    (tmp_path / f"l{b}.o").write_bytes((tmp_path / f"l{a}.o").read_bytes())  # a's file under b's name
    with pytest.warns(RuntimeWarning, match="damaged"):
        assert llvm_jit.read_checked(tmp_path / f"l{b}.o", b) is None
    whole = (tmp_path / f"l{a}.o").read_bytes()
    for torn in (whole[:-1], whole[:30], whole + b"\x00", b"\n" + whole):
        (tmp_path / f"l{a}.o").write_bytes(torn)
        with pytest.warns(RuntimeWarning, match="damaged"):
            assert llvm_jit.read_checked(tmp_path / f"l{a}.o", a) is None
    assert llvm_jit.read_checked(tmp_path / "missing.o", a) is None


def test_a_cache_file_that_passes_its_digest_but_lacks_the_function_is_compiled_again(tmp_path, monkeypatch):
    """Another kernel's object code under this key, with a header made for it: the function is not there,
    so the file is treated as a miss (never a builtin with a NULL C function)."""
    assert _run(tmp_path) == "1 False"
    (mine,) = (tmp_path / "cache").glob("l*.o")
    monkeypatch.setenv("TWOGRAD_CACHE_DIR", str(tmp_path / "other"))
    v = T.var("v", ())
    function([v], [T.cos(v) * 7.0 - v], linker="numba")
    (other,) = (tmp_path / "other").glob("l*.o")
    k = mine.name[1:-2]
    llvm_jit.write_checked(mine, k, llvm_jit.read_checked(other, other.name[1:-2]))
    assert llvm_jit.read_checked(mine, k) is not None  # the digest check passes
    assert _run(tmp_path) == "1 False"   # compiled again, and the script checked its values
    assert _run(tmp_path) == "0 False"


class _Float:
    """An argument whose ``__float__`` counts its calls, or raises."""

    calls = 0

    def __init__(self, value: float | None):
        self.value = value

    def __float__(self):
        if self.value is None:
            raise ZeroDivisionError("this argument has no float")
        _Float.calls += 1
        return self.value


def test_a_failed_argument_read_returns_before_any_other_argument_runs():
    """CPython's protocol: no Python code runs while an exception is set (a later ``__float__`` would run
    with it pending, and the kernel could return a value computed from -1.0)."""
    x, y = T.var("x", ()), T.var("y", ())
    sin = T.sin(x)
    node = sin * 2.0 + y
    k = llvm_scalar.scalar_kernel([sin, node.inputs[0], node], [node])
    assert [a.name for a in k.args] == ["x", "y"]
    kernel = k.fn
    _Float.calls = 0
    with pytest.raises(ZeroDivisionError, match="no float"):
        kernel(_Float(None), _Float(0.5))
    assert _Float.calls == 0
    with pytest.raises(ZeroDivisionError):
        kernel(_Float(0.5), _Float(None))
    assert _Float.calls == 1
    assert kernel(_Float(0.5), _Float(0.25)) == np.sin(0.5) * 2.0 + 0.25
