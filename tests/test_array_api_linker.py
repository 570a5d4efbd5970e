"""The Array-API linker (symsym.function(..., linker="array_api")) on numpy, array_api_strict and PyTorch CPU.

Every op case the linker spells, random graphs and every workload's gradient (at its check size)
are compiled once with the Array-API linker and once with the numpy linker; on numpy arrays, on
array_api_strict (so nothing numpy-specific slips through) and on PyTorch tensors the results must
equal the numpy linker's to 1e-12 in float64 (an engine check of the spellings: tests/test_symsym_ops.py
checks the rules against numpy references and finite differences), in the library and dtype given;
float32 op cases on torch within float32 rounding. What is refused (an unspelled op, an op spelled for
other libraries, mixed libraries, a wrong dtype) is refused by name before anything runs. A CUDA test
runs where a GPU is.
"""

from __future__ import annotations

import contextlib
import re

import numpy as np
import pytest
from opcases import CASES
from test_numba_agreement import _random_graph

from common import api as T
from common.errors import DTypeError, FeedError, TwogradError
from common.graph import toposort
from common.ops import OPS, Kind
from symsym import function, grad

pytest.importorskip("array_api_compat")

UNSPELLED = {"conv", "conv_transpose", "conv_weight", "windows", "unwindows", "cholesky_grad"}
"""The ops of the op cases with no Array-API spelling (the table in symsym/linkers/array_api)."""
BODIED = {"scan", "while_loop", "cond", "item", "checkpoint"}
"""The loop and branch ops, which have none either."""


def _host(a) -> np.ndarray:
    return a.cpu().numpy() if hasattr(a, "cpu") else np.asarray(a)


def _refused_by_name(err: TwogradError, lib: str) -> None:
    """A refusal must name the library (an op spelled for others) or an op documented as unspelled."""
    text = str(err)
    if "no Array-API spelling for op" in text:
        named = set(re.findall(r"'(\w+)' \(made at", text))
        assert named and named <= UNSPELLED | BODIED, text
    else:
        assert f"no spelling for {lib} arrays" in text, text


def _libraries():
    out = ["numpy"]
    for name in ("array_api_strict", "torch"):
        out.append(pytest.param(name, marks=pytest.mark.skipif(
            __import__("importlib").util.find_spec(name) is None, reason=f"{name} is not installed")))
    return out


LIBRARIES = _libraries()


def _convert(lib: str, a, device=None):
    if lib == "numpy":
        return np.array(a)
    if lib == "torch":
        import torch
        return torch.asarray(np.array(a), device=device)
    import array_api_strict
    return array_api_strict.asarray(np.array(a))


def _agree(lib, inputs, outputs, arrays, rtol=1e-12):
    want = function(inputs, outputs)(*arrays)
    got = function(inputs, outputs, linker="array_api")(*[_convert(lib, a) for a in arrays])
    for g, w in zip(got, want):
        if arrays:  # with no array to take a library from, the function's are numpy's
            assert type(g).__module__.split(".")[0] == lib.split(".")[0], type(g)
        assert tuple(g.shape) == w.shape and str(g.dtype).split(".")[-1] == w.dtype.name
        np.testing.assert_allclose(_host(g), w, rtol=rtol, atol=1e-13,
                                   equal_nan=True)


def _case_graph(case):
    arrays = [np.asarray(a) for a in case.inputs(np.random.default_rng(3))]
    xs = [T.var(f"x{k}", a.shape, a.dtype) for k, a in enumerate(arrays)]
    out = case.fn(T.symbolic, *xs)
    outs = [out]
    if case.wrt and out.dtype.kind == "f":
        weights = T.const(np.random.default_rng(4).standard_normal(np.shape(case.ref(*arrays))))
        outs += list(grad(T.sum(out * weights), [xs[k] for k in case.wrt]))
    return xs, outs, arrays


SPELLED = [c for c in CASES if c.op not in UNSPELLED]


@pytest.mark.parametrize("lib", LIBRARIES)
@pytest.mark.parametrize("case", SPELLED, ids=[c.id for c in SPELLED])
def test_every_spelled_op_case_agrees_with_the_numpy_linker(case, lib):
    xs, outs, arrays = _case_graph(case)
    if any(n.op is not None and n.op.name in UNSPELLED for n in toposort(outs)):
        outs = outs[:1]  # a gradient through an unspelled op (cholesky's): the value alone
    try:
        _agree(lib, xs, outs, arrays)
    except TwogradError as err:  # spelled for other libraries only: refused by name, before anything runs
        assert lib == "array_api_strict", err  # every op case's op is spelled for numpy and torch
        _refused_by_name(err, lib)


@pytest.mark.parametrize("case", [c for c in CASES if c.op in UNSPELLED], ids=lambda c: c.id)
def test_an_unspelled_op_is_refused_at_compile_time(case):
    xs, outs, _ = _case_graph(case)
    with pytest.raises(TwogradError, match=f"no Array-API spelling for op.*'{case.op}'"):
        function(xs, outs, linker="array_api")


@pytest.mark.parametrize("lib", LIBRARIES)
@pytest.mark.parametrize("seed", range(6))
def test_random_graphs_agree_with_the_numpy_linker(seed, lib):
    inputs, cost, arrays = _random_graph(np.random.default_rng(100 + seed), 14)
    try:
        _agree(lib, inputs, [cost, *grad(cost, inputs, disconnected="zero")], arrays)
    except TwogradError as err:  # erf on array_api_strict
        _refused_by_name(err, lib)


def _workloads():
    from benchmarks import workloads
    out = []
    for w in workloads.load_all().values():
        if w.kind in ("grad", "train"):
            out.extend((w, size) for size in w.check)
    return out


WORKLOADS = _workloads()


@pytest.mark.parametrize("lib", LIBRARIES)
@pytest.mark.parametrize("w,size", WORKLOADS, ids=[f"{w.name}-{s}" for w, s in WORKLOADS])
def test_workload_gradients_agree_with_the_numpy_linker(w, size, lib):
    problem = w.make(size)
    cost, variables = problem.graph()
    wrt = [variables[k] for k in problem.wrt_index]
    try:
        _agree(lib, variables, [cost, *grad(cost, wrt)], problem.arrays, rtol=1e-11)
    except TwogradError as err:  # a loop, a convolution: refused by name at compile time
        _refused_by_name(err, lib)
        pytest.skip(str(err))


def test_float32_on_torch_is_kept_and_within_float32_rounding():
    torch = pytest.importorskip("torch")
    x, w = T.var("x", (5, 4), "float32"), T.var("w", (4, 3), "float32")
    cost = T.sum(T.logsumexp(T.tanh(x @ w), axis=1)) + T.sum(T.sigmoid(x) * x)
    outs = [cost, *grad(cost, [x, w])]
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 4)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32)
    want = function([x, w], outs)(a, b)
    got = function([x, w], outs, linker="array_api")(torch.asarray(a), torch.asarray(b))
    for g, ref in zip(got, want):
        assert g.dtype == torch.float32
        np.testing.assert_allclose(g.numpy(), ref, rtol=2e-6, atol=2e-6)


def test_one_function_runs_on_numpy_arrays_too():
    x = T.var("x", (3,))
    f = function([x], [T.sum(T.exp(x)), T.exp(x)], linker="array_api")
    a = np.array([0.0, 1.0, -2.0])
    total, each = f(a)
    assert type(total) is np.ndarray and total.shape == () and type(each) is np.ndarray
    np.testing.assert_allclose(each, np.exp(a), rtol=1e-15)
    np.testing.assert_allclose(total, np.exp(a).sum(), rtol=1e-15)


@pytest.mark.skipif(not __import__("importlib").util.find_spec("torch"), reason="torch is not installed")
def test_arrays_of_two_libraries_are_refused_before_anything_runs():
    import torch
    x, y = T.var("x", (2,)), T.var("y", (2,))
    f = function([x, y], x * y, linker="array_api")
    with pytest.raises(FeedError, match="one library"):
        f(np.ones(2), torch.ones(2, dtype=torch.float64))


def test_a_wrong_dtype_or_shape_is_refused():
    strict = pytest.importorskip("array_api_strict")
    x = T.var("x", (2,))
    f = function([x], T.sin(x), linker="array_api")
    with pytest.raises(FeedError, match="float64"):
        f(strict.asarray(np.ones(2, np.float32)))
    with pytest.raises(FeedError, match="shape"):
        f(strict.asarray(np.ones(3)))
    with pytest.raises(FeedError, match="takes an array"):
        f([1.0, 2.0])


def test_a_dtype_the_library_lacks_is_refused():
    from symsym.linkers.array_api.driver import Env
    strict = pytest.importorskip("array_api_strict")
    with pytest.raises(DTypeError, match="float16"):
        Env(strict, None).dtype("float16")


def test_an_op_spelled_for_other_libraries_is_refused_on_first_call():
    strict = pytest.importorskip("array_api_strict")
    x = T.var("x", (3,))
    f = function([x], T.erf(x), linker="array_api")
    with pytest.raises(TwogradError, match="'erf' has no spelling for array_api_strict"):
        f(strict.asarray(np.ones(3)))


@pytest.mark.cuda
def test_cuda_tensors_stay_on_the_gpu():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    x = T.var("x", (4,))
    cost = T.sum(T.tanh(x) * x)
    a = np.linspace(-1, 1, 4)
    got = function([x], [cost, *grad(cost, [x])], linker="array_api")(torch.asarray(a, device="cuda"))
    want = function([x], [cost, *grad(cost, [x])])(a)
    for g, ref in zip(got, want):
        assert g.device.type == "cuda"
        np.testing.assert_allclose(g.cpu().numpy(), ref, rtol=1e-12)


def test_generated_code_writes_params_as_literals_only(tmp_path):
    """A param that is source text stays a string value: nothing a node holds is ever run."""
    from test_security_load import hostile_nodes
    strict = pytest.importorskip("array_api_strict")
    marker = tmp_path / "ran"
    for n in hostile_nodes(marker):
        with contextlib.suppress(Exception):  # refused or failed: either way it must not have run the text
            f = function([v for v in toposort(n) if v.is_var], n, optimize=False, linker="array_api")
            f(*[strict.asarray(np.ones(v.shape)) for v in toposort(n) if v.is_var])
    assert not marker.exists()


def test_generated_code_names_only_its_arguments_and_bound_globals():
    from test_security_load import _names_outside
    x = T.var("x", (2, 3))
    out = T.sum(T.softmax(x)) + T.sum(x[None, 1]) + T.sum(x[:, ::-2] * 2.0)
    f = function([x], [out, *grad(out, [x])], linker="array_api")
    assert _names_outside(f.source, f._fn.fn.__globals__) == set()
    assert _names_outside("def fn(a0):\n    return __import__('os')._exit", {}) == {"__import__", "._exit"}


def test_the_unspelled_ops_are_the_documented_ones():
    """The ops with no spelling are exactly the ones the linker's docstring table and these tests name."""
    import symsym.linkers.array_api as linker
    from symsym.linkers.lowering import spellings
    missing = set(OPS) - set(spellings("array_api"))
    assert missing == UNSPELLED | BODIED
    table = linker.__doc__.split("Coverage")[1].split("erf, erfc")[0]
    assert missing == set(re.findall(r"\b[a-z_]+\b", table)) & set(OPS)


F32 = [c for c in SPELLED if OPS[c.op].kind in (Kind.ELEMENTWISE, Kind.REDUCTION, Kind.SHAPE, Kind.NN)]


@pytest.mark.parametrize("case", F32, ids=[c.id for c in F32])
def test_float32_op_cases_on_torch_are_within_float32_rounding(case):
    """The op cases in float32 (float inputs cast down): torch's float32 against numpy's float32, dtype kept."""
    torch = pytest.importorskip("torch")
    arrays = [np.asarray(a) for a in case.inputs(np.random.default_rng(3))]
    arrays = [a.astype(np.float32) if a.dtype == np.float64 else a for a in arrays]
    xs = [T.var(f"x{k}", a.shape, a.dtype) for k, a in enumerate(arrays)]
    out = case.fn(T.symbolic, *xs)
    outs = [out]
    if case.wrt and out.dtype.kind == "f":
        outs += list(grad(T.sum(out), [xs[k] for k in case.wrt if xs[k].dtype.kind == "f"]))
    want = function(xs, outs)(*arrays)
    got = function(xs, outs, linker="array_api")(*[torch.asarray(a) for a in arrays])
    for g, w in zip(got, want):
        assert str(g.dtype).split(".")[-1] == w.dtype.name
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-5, atol=1e-5, equal_nan=True)
