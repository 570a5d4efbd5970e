"""Each trait of each op (see :class:`common.ops.Op`) checked against the op's own impl.

Backends trust the traits blindly: sparsity calls an entry zero because an op
keeps zeros, codegen overwrites a buffer because an op's output is fresh,
batched numbers move a factor through an op because it is linear. So every
trait an op declares is tested here on the op cases of ``tests/opcases.py``,
with numpy as the oracle, and the guards at the end fail when an op lacks a
trait a backend needs (a kind, a batching rule) or a case to test it on.
"""

from __future__ import annotations

import numpy as np
import pytest
from opcases import CASES, input_values

from common import api
from common.errors import TwogradError
from common.graph import toposort
from common.ops import NO_GRAD, OPS, Kind, numeric
from common.ops.batching import apply_batched

RNG_SEED = 7


def _applications(case, rng):
    """Every (op, inputs as arrays, params) of the case's own op: the case is built as a graph (so that
    ``x[1:]`` and ``x ** 3`` are ops too) and each input of each such node evaluated."""
    arrays = case.inputs(rng)
    xs = [api.var(f"x{i}", a.shape, a.dtype) for i, a in enumerate(arrays)]
    feed = dict(zip(xs, arrays))
    out = case.fn(api.symbolic, *xs)
    mine = [n for n in toposort([out]) if n.op is not None and n.op.name == case.op]
    return [(n.op, input_values(n, feed), n.params) for n in mine]


def _calls(trait_holds):
    """(case id, op, inputs, params) for every application, in the cases, of an op with the trait."""
    rng = np.random.default_rng(RNG_SEED)
    out = []
    for case in CASES:
        if trait_holds(OPS[case.op]):
            out.extend((case.id, *a) for a in _applications(case, rng))
    return out


def _ids(calls):
    return [c[0] for c in calls]


def _like(rng, x):
    """Random values of ``x``'s shape and dtype."""
    return rng.standard_normal(x.shape).astype(x.dtype) if x.dtype.kind == "f" else x


def _close(a, b, rtol=1e-9, atol=1e-12):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol)


def _is_value(op, i: int, x) -> bool:
    """Whether input ``i`` is a float value (not an index array, a reference shape or a condition)."""
    return i not in op.index and i not in op.shape_only and x.dtype.kind == "f"


# ------------------------------------------------------------------- zero

ZERO = _calls(lambda op: op.zero)


@pytest.mark.parametrize("cid, op, inputs, params", ZERO, ids=_ids(ZERO))
def test_zero_in_zero_out(cid, op, inputs, params):
    zeros = [np.zeros_like(x) if _is_value(op, i, x) else x for i, x in enumerate(inputs)]
    out = np.asarray(op.impl(*zeros, **params))
    assert not out.any(), f"{op.name} is marked zero-keeping but maps zeros to {out}"


# ----------------------------------------------------------------- linear

LINEAR = _calls(lambda op: op.linear or op.linear_together)


@pytest.mark.parametrize("cid, op, inputs, params", LINEAR, ids=_ids(LINEAR))
def test_linear_in_its_linear_inputs(cid, op, inputs, params):
    """f(a*u + b*v) = a*f(u) + b*f(v) in each input on its own (``linear``) and in the group (``linear_together``)."""
    rng = np.random.default_rng(1)
    n = len(inputs)
    groups = [(i,) for i in op.linear.of(n)] + ([op.linear_together.of(n)] if op.linear_together else [])
    assert groups, f"{op.name}: no linear input among this application's {n}"
    for group in groups:
        a, b = rng.uniform(-2, 2, 2)
        v = {i: _like(rng, inputs[i]) for i in group}
        mixed = [a * x + b * v[i] if i in group else x for i, x in enumerate(inputs)]
        other = [v[i] if i in group else x for i, x in enumerate(inputs)]
        expected = a * np.asarray(op.impl(*inputs, **params)) + b * np.asarray(op.impl(*other, **params))
        _close(op.impl(*mixed, **params), expected)


def _reads_patterns(op) -> bool:
    """Ops whose zeros symsym's sparsity finds by running the impl on 0/1 patterns (every input linear,
    shape-only or an index; elementwise ops have a rule of their own)."""
    if op.kind is Kind.ELEMENTWISE or op.nin == 0:
        return False
    n = op.nin or 4
    return all(i in op.linear or i in op.linear_together or i in op.shape_only or i in op.index for i in range(n))


PATTERNS = _calls(_reads_patterns)


@pytest.mark.parametrize("cid, op, inputs, params", PATTERNS, ids=_ids(PATTERNS))
def test_pattern_ops_have_no_negative_coefficients(cid, op, inputs, params):
    """On 0/1 patterns the impl says zero only where no nonzero entry reaches; a linear op that subtracts
    (1 - 1 = 0) would make that unsound, and shows itself by a negative output for nonnegative inputs."""
    rng = np.random.default_rng(2)
    for _ in range(3):
        pos = [np.abs(_like(rng, x)) if _is_value(op, i, x) else x for i, x in enumerate(inputs)]
        assert np.all(np.asarray(op.impl(*pos, **params)) >= 0), op.name


# ------------------------------------------------------------------ fresh

FRESH = _calls(lambda op: op.fresh)


@pytest.mark.parametrize("cid, op, inputs, params", FRESH, ids=_ids(FRESH))
def test_fresh_output_shares_no_memory(cid, op, inputs, params):
    out = op.impl(*inputs, **params)
    assert isinstance(out, np.ndarray) or np.ndim(out) == 0
    for x in inputs:
        assert not np.shares_memory(out, x), f"{op.name}'s output is a view of an input"


# ------------------------------------------------------------- shape-only

SHAPE_ONLY = _calls(lambda op: op.shape_only)


@pytest.mark.parametrize("cid, op, inputs, params", SHAPE_ONLY, ids=_ids(SHAPE_ONLY))
def test_shape_only_inputs_values_do_not_matter(cid, op, inputs, params):
    rng = np.random.default_rng(3)
    before = np.asarray(op.impl(*inputs, **params))
    positions = op.shape_only.of(len(inputs))
    assert positions
    changed = [rng.standard_normal(x.shape).astype(x.dtype) * 7 + 3 if i in positions else x
               for i, x in enumerate(inputs)]
    after = np.asarray(op.impl(*changed, **params))
    np.testing.assert_array_equal(after, before)


# ------------------------------------------------------------------ index

INDEX = [c for c in _calls(lambda op: op.index) if c[1].index.of(len(c[2]))]  # x[1:] has no index array


@pytest.mark.parametrize("cid, op, inputs, params", INDEX, ids=_ids(INDEX))
def test_index_inputs_are_integer_arrays_without_gradient(cid, op, inputs, params):
    out = op.impl(*inputs, **params)
    positions = op.index.of(len(inputs))
    assert positions
    for i in positions:
        assert inputs[i].dtype.kind in "iu"
        assert op.vjp(numeric, i, np.ones_like(out), out, inputs, params) is NO_GRAD


# ------------------------------------------------------------------ ufunc

UFUNC = [c for c in CASES if OPS[c.op].ufunc is not None]


def _with_the_ufunc(case, arrays):
    """The case's graph evaluated with its op's ufunc called where the op is applied (every other node by
    its impl), as generated code calls it, and whether the ufunc ran."""
    xs = [api.var(f"x{i}", a.shape, a.dtype) for i, a in enumerate(arrays)]
    out = case.fn(api.symbolic, *xs)
    values = {id(x): a for x, a in zip(xs, arrays)}
    ran = False
    for n in toposort([out]):
        if id(n) in values:
            continue
        if n.op is None:
            values[id(n)] = n.value
            continue
        ins = [values[id(x)] for x in n.inputs]
        ran = ran or n.op.name == case.op
        values[id(n)] = n.op.ufunc(*ins) if n.op.name == case.op else n.op.impl(*ins, **n.params)
    return values[id(out)], ran


@pytest.mark.parametrize("case", UFUNC, ids=[c.id for c in UFUNC])
def test_the_ufunc_gives_the_case_reference(case):
    """What generated code calls (``np.<ufunc>(x, out=x)``) computes the case's plain-numpy reference."""
    arrays = case.inputs(np.random.default_rng(RNG_SEED))
    got, ran = _with_the_ufunc(case, arrays)
    want = case.ref(*arrays)
    assert ran
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    assert np.asarray(got).dtype == np.asarray(want).dtype


INFIX = _calls(lambda op: op.infix is not None)


@pytest.mark.parametrize("cid, op, inputs, params", INFIX, ids=_ids(INFIX))
def test_infix_operator_is_the_impl(cid, op, inputs, params):
    """What the printer writes (``x + y``, ``-x``) means, in Python on numpy arrays, what the op computes."""
    names = {f"x{i}": x for i, x in enumerate(inputs)}
    text = f"{op.infix}x0" if len(inputs) == 1 else f" {op.infix} ".join(names)
    np.testing.assert_array_equal(eval(text, {}, names), op.impl(*inputs, **params))


# ------------------------------------------------------------------- kind

ELEMENTWISE = _calls(lambda op: op.kind is Kind.ELEMENTWISE)


@pytest.mark.parametrize("cid, op, inputs, params", ELEMENTWISE, ids=_ids(ELEMENTWISE))
def test_elementwise_output_has_the_broadcast_shape(cid, op, inputs, params):
    out = np.asarray(op.impl(*inputs, **params))
    assert out.shape == np.broadcast_shapes(*[x.shape for x in inputs])


@pytest.mark.parametrize("cid, op, inputs, params", ELEMENTWISE, ids=_ids(ELEMENTWISE))
def test_elementwise_works_element_by_element(cid, op, inputs, params):
    """Each output element is the op on the inputs' elements at that position (checked on one of them)."""
    shape = np.broadcast_shapes(*[x.shape for x in inputs])
    if not shape:
        return
    out = np.asarray(op.impl(*inputs, **params))
    at = tuple(d - 1 for d in shape)
    one = [np.asarray(np.broadcast_to(x, shape)[at]) for x in inputs]
    np.testing.assert_array_equal(np.asarray(op.impl(*one, **params)), out[at])


CONSTANT = _calls(lambda op: op.kind is Kind.CONSTANT)


@pytest.mark.parametrize("cid, op, inputs, params", CONSTANT, ids=_ids(CONSTANT))
def test_constant_reads_no_input_value(cid, op, inputs, params):
    assert op.shape_only.of(len(inputs)) == tuple(range(len(inputs)))


# ------------------------------------------------------------- same type

def _same_type_calls():
    """For ops marked ``noop_on_same_type``: each case's op applied again to its own output (where the
    params then keep the type), and with an empty ``axis`` (expand_dims and squeeze of nothing)."""
    out = []
    for cid, op, inputs, params in _calls(lambda op: op.noop_on_same_type):
        tries = [(op.impl(*inputs, **params), *inputs[1:])]
        for args in tries:
            arr = np.asarray(args[0])
            for p in (params, {**params, "axis": ()} if "axis" in params else None):
                if p is None:
                    continue
                try:
                    shape, dtype = op.infer(*args, **p)
                except TwogradError:
                    continue
                if tuple(shape) == arr.shape and np.dtype(dtype) == arr.dtype:
                    out.append((cid, op, (arr, *args[1:]), p))
    return out


SAME_TYPE = _same_type_calls()


@pytest.mark.parametrize("cid, op, inputs, params", SAME_TYPE, ids=_ids(SAME_TYPE))
def test_noop_on_same_type(cid, op, inputs, params):
    np.testing.assert_array_equal(op.impl(*inputs, **params), inputs[0])


# ----------------------------------------------------------------- guards

def test_every_op_has_a_kind_and_a_batching_rule():
    """A batching rule comes with the kind (elementwise, reduction) or is named in the defop; per_element's
    fallback is always right, but an op must say so (``batch=batching.one_at_a_time``) rather than forget."""
    for name, op in OPS.items():
        assert isinstance(op.kind, Kind), name
        assert callable(op.batch), f"{name} has no batching rule: give its defop batch=..."


def test_every_trait_is_tested_on_some_case():
    """Each declared trait of each op is exercised above by at least one op case."""
    tested = {
        "zero": {c[1].name for c in ZERO}, "linear": {c[1].name for c in LINEAR},
        "fresh": {c[1].name for c in FRESH}, "shape_only": {c[1].name for c in SHAPE_ONLY},
        "index": {c[1].name for c in INDEX}, "ufunc": {c.op for c in UFUNC},
        "infix": {c[1].name for c in INFIX}, "noop_on_same_type": {c[1].name for c in SAME_TYPE},
    }
    for name, op in OPS.items():
        declared = {"zero": op.zero, "linear": op.linear or op.linear_together, "fresh": op.fresh,
                    "shape_only": op.shape_only, "index": op.index, "ufunc": op.ufunc is not None,
                    "infix": op.infix is not None, "noop_on_same_type": op.noop_on_same_type}
        missing = [t for t, d in declared.items() if d and name not in tested[t]]
        assert not missing, f"{name}: traits {missing} are declared but no op case tests them"


def _zeros_call(case, rng):
    apps = _applications(case, rng)
    if not apps:
        return None
    op, inputs, params = apps[-1]
    zeros = [np.zeros_like(x) if _is_value(op, i, x) else x for i, x in enumerate(inputs)]
    if not any(_is_value(op, i, x) for i, x in enumerate(inputs)):
        return None
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0), 0/0: not zero, as they should be
        return op, np.asarray(op.impl(*zeros, **params))


@pytest.mark.parametrize("case", [c for c in CASES if OPS[c.op].kind in (Kind.ELEMENTWISE, Kind.REDUCTION)],
                         ids=[c.id for c in CASES if OPS[c.op].kind in (Kind.ELEMENTWISE, Kind.REDUCTION)])
def test_zero_is_declared_where_it_holds(case):
    """An elementwise op or reduction that maps zeros to zeros says so: sparsity would otherwise
    call its output dense (correct, but a Hessian that could be compressed is not)."""
    found = _zeros_call(case, np.random.default_rng(4))
    if found is None:
        pytest.skip("no float input to zero")
    op, out = found
    keeps = not out.any()
    assert keeps == op.zero, f"{op.name}: maps zeros to zeros: {keeps}; declared: {op.zero}"


def test_an_elementwise_ufunc_impl_declares_it():
    """An elementwise op whose impl is a numpy ufunc says so, for generated code's in-place path, unless its
    result has another dtype than its float inputs (comparisons: a bool can never overwrite a float input)."""
    for name, op in OPS.items():
        if op.kind is Kind.ELEMENTWISE and isinstance(op.impl, np.ufunc):
            keeps_dtype = np.asarray(op.impl(*[np.ones(2)] * op.impl.nin)).dtype == np.float64
            assert (op.ufunc is op.impl) == keeps_dtype, name


def test_full_batching_rule_leaves_it_unbatched():
    """``full`` has no inputs, so nothing of it is ever batched: its rule applies it as it is."""
    op = OPS["full"]
    params = {"shape": (2, 3), "value": 1.5, "dtype": "float64"}
    out, batched = op.batch(op, numeric, (), (), **params)
    assert not batched
    np.testing.assert_array_equal(out, np.full((2, 3), 1.5))
    out, batched = apply_batched(numeric, op, (), (), params)
    assert not batched and out.shape == (2, 3)


def test_new_elementwise_ops_need_no_backend_edit():
    """sinh, cosh, arcsin, arctan are one defop each: every backend table has them from their traits."""
    from symnum import batched
    from symsym import emit, sparsity  # noqa: F401

    for name in ("sinh", "cosh", "arcsin", "arctan"):
        op = OPS[name]
        assert emit.UFUNCS[name] == op.ufunc.__name__ and name in emit.FRESH
        assert op.batch is not None and op.kind is Kind.ELEMENTWISE
        assert name not in batched._CARRY_SCALE
