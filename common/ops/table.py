"""The op table: what an op is, the registry of every op (:data:`OPS`), and the namespaces rules run in.

An :class:`Op` is data: a name, a type rule, a numpy implementation and one
VJP rule per input. A VJP rule is written *once* against a namespace ``ns``
of op functions plus the operators ``+ - * / **`` and is never told what it is
running on:

* :data:`numeric` applies each op's numpy impl: rules compute numbers (symnum's
  backward sweep);
* a tape namespace records each op as it runs: rules build a differentiable
  backward (symnum with ``create_graph=True``);
* :data:`symbolic` adds nodes (:func:`common.graph.apply`): rules extend the
  graph (symsym's ``build_grad``).

Each op also has one JVP rule (forward mode), written the same way:
``jvp(ns, tangents, out, *inputs, **params) -> output tangent``, where
``tangents[i]`` is input ``i``'s tangent or :data:`ZERO` when it has none (a
constant, an index array, an integer). A rule returns ZERO when no tangent
reaches the output; it is never called when every tangent is ZERO
(:meth:`Op.tangent`), so a one-input rule never sees ZERO, and a rule with
several inputs skips the ZERO terms instead of multiplying zeros. Most rules
are made by the helpers of :mod:`common.ops.rules` from facts already said:
an op linear in an input applies itself to the tangent, a multilinear op
(mul, matmul, einsum) sums the op with one input replaced by its tangent,
and an elementwise unary op, whose Jacobian is diagonal and so its own
transpose, runs its VJP rule on the tangent (the calculus is written once).

So the two backends share their calculus and can differ only in paradigm.
"""


from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import TwogradError, op_error
from ..graph import apply
from ..sentinel import Sentinel
from ..site import user_site
from .batching import default_rule
from .traits import NONE, Inputs, Kind, as_inputs

NO_GRAD = Sentinel("NO_GRAD")
"""What a VJP rule returns for an input that gets no gradient through this op."""

ZERO = Sentinel("ZERO")
"""A tangent that is zero everywhere, without the array: the input has no tangent (JVP rules skip it),
or the output gets none (what a JVP rule returns for a constant, integer or boolean output)."""

OPS: dict[str, Op] = {}
EMPTY: dict = {}


@dataclass(eq=False)
class Op:
    """One entry of the op table.

    ``infer(*inputs, **params) -> (shape, dtype)`` sees anything with
    ``.shape``/``.dtype`` (nodes, arrays) and raises ShapeError/DTypeError with
    a plain message; the caller adds the op name, shapes and site.
    ``impl(*arrays, **params)`` is the numpy implementation. ``vjps[i]`` is the
    rule ``(ns, g, out, *inputs, **params) -> cotangent`` for input ``i``, or
    None for an input that never gets a gradient; a variadic op gives one rule
    ``vjp_n(ns, i, g, out, *inputs, **params)`` instead. ``bind`` turns the
    user's call (``sum(x, axis=1)``) into normalised (inputs, params).
    ``code`` is an optional Python expression template for generated code,
    with ``{0} {1} ...`` for inputs and ``{name}`` for params. ``params`` are
    the names of the op's params; the type rule checks their values (see
    :mod:`common.ops.params`), which is what makes a loaded graph safe.

    **Traits** are the other facts about an op, said once here so that no
    backend keeps its own list of op names. Each is checked against the impl
    by ``tests/test_op_traits.py``. A trait left at its default only costs a
    backend an optimisation; a wrong one gives wrong answers, hence the tests.

    ``kind`` (a :class:`Kind`): elementwise ops share one batching rule and one
    sparsity rule, reductions another; the tests check that an elementwise op's
    output has the broadcast shape of its inputs.

    ``zero``: f(0, ..., 0) = 0, elementwise (for a reduction: an all-zero slice
    gives 0). Read by symsym's sparsity analysis: the output can be nonzero
    only where some input is (sin, relu, maximum, sum, max).

    ``linear``: the inputs the op is linear in, each on its own, the others
    held fixed: f(a*u + b*v, y) = a*f(u, y) + b*f(v, y) (mul in both inputs,
    matmul, div in its numerator, reshape). ``linear_together``: the inputs it
    is linear in taken together (add and sub in both, where in its two value
    inputs, concatenate in all). Sparsity reads both (an output is zero where a
    linear input is; a shape op's zeros are found by running its impl on the
    zero pattern), and symnum's batched numbers carry a constant factor
    through an op linear in input 0 instead of applying it to the whole batch.

    ``fresh``: the output is always a newly allocated array, never a view of
    an input (ufunc calls, matmul). symsym's code generator may then overwrite
    it in place once it is dead; an op not marked fresh is assumed to alias
    its inputs, which is always safe. Defaults to True for an op with a ufunc.

    ``shape_only``: inputs of which only the shape and dtype are read
    (``like`` in ``zeros_like(like)``, the reference of ``sum_like``). The
    algebra rewrite replaces a computed one by a free placeholder, so what
    made it can become dead code; batching rules need not batch them.

    ``index``: integer index-array inputs (getitem's keys): their values
    choose elements, they are never differentiated, and the sparsity analysis
    needs them as constants.

    ``ufunc``: the numpy ufunc the op *is* (its impl on arrays): generated code
    writes ``np.<ufunc>(x, out=x)`` to reuse a dying input's buffer, and an op
    with a ufunc needs no ``code`` template (comparisons leave it unset: their bool result can
    never overwrite a float input). ``infix``: the Python operator
    that spells the op (``"+"``; ``"-"`` for the one-input neg), for printing.
    ``noop_on_same_type``: the op returns input 0 itself whenever its output
    has input 0's shape and dtype (reshape, broadcast_to, sum_to, squeeze,
    cast), so the algebra rewrite drops such a node.

    ``batch``: the op's batching rule (see :mod:`common.ops.batching`), by
    default the one its kind implies.

    ``scalar``: the elementwise op's *scalar form*, a Python expression over
    scalar operands ``{0} {1} ...`` (each a plain name) that numba can compile
    (``math.sin({0})``, ``({0} + {1})``), equal to the numpy impl element by
    element on float64 operands, NaN, inf and signed zeros included. A native
    linker (:mod:`symsym.linkers.numba`) writes a fused loop from these forms
    alone; an op without one runs its numpy impl between fused loops.
    ``tests/test_numba_scalar_forms.py`` checks every form against the impl.

    ``outputs``: for an op whose value is a tuple (a loop or branch: see
    :mod:`common.body`), ``node -> [(shape, dtype), ...]``, the types of its
    outputs, which ``item`` reads; None for an op with one array value.

    ``saving``: for an op whose VJP reads values its forward can stack as it
    runs (a loop's carry-ins: param ``save``), the impl to run, with
    ``save=True``, in a forward that a reverse sweep will follow (it may keep
    more, as a scan keeps its body's residuals); None for any other op.
    symnum's program and symsym's loop rewrites read it, never an op's name.

    The loop rewrites (:mod:`symsym.rewrite.control`) ask a loop op three
    more questions, each a trait its own module answers. ``picks``: the op
    reads one output (param ``index``) of a tuple-valued node (``item``).
    ``invariant_from``: for a loop, ``params -> k``, the position of its first
    loop-invariant input: its bodies (every :class:`~common.body.Body` param)
    run once per step and read inputs ``k:`` unchanged at every step, so what
    depends on them alone may be computed once outside; None for an op whose
    bodies may not run (a branch). ``prune``: ``(node, inputs, used) -> (new
    node, old output index -> new) | None``, the node reduced to the outputs
    in ``used`` (the carries, sequences and invariants they need). ``residuals``:
    for a loop whose reverse loop may read the values its forward computes
    instead of computing them again, the rules that move them (see
    :mod:`symsym.rewrite.residuals`); None for any other op.

    ``jvp`` is the op's forward-mode rule ``(ns, tangents, out, *inputs,
    **params) -> tangent`` (see the module docstring and :meth:`tangent`);
    every op has one, which ``tests/test_jvp_rules.py`` checks against its
    VJP rules (the transpose identity) and against finite differences.
    """

    name: str
    infer: Callable
    impl: Callable
    vjps: tuple = ()
    vjp_n: Callable | None = None
    vjp_all: Callable | None = None
    bind: Callable | None = None
    jvp: Callable | None = None
    code: str | None = None
    doc: str = ""
    nin: int | None = None  # None: variadic
    params: tuple = field(default_factory=tuple)
    kind: Kind = Kind.ELEMENTWISE
    zero: bool = False
    linear: Inputs = NONE
    linear_together: Inputs = NONE
    fresh: bool = False
    shape_only: Inputs = NONE
    index: Inputs = NONE
    ufunc: np.ufunc | None = None
    infix: str | None = None
    noop_on_same_type: bool = False
    batch: Callable | None = None
    scalar: str | None = None
    outputs: Callable | None = None
    saving: Callable | None = None
    picks: bool = False
    invariant_from: Callable | None = None
    prune: Callable | None = None
    residuals: object | None = None

    def differentiable(self, i: int) -> bool:
        """Whether input ``i`` can receive a gradient through this op."""
        if self.vjp_n is not None or self.vjp_all is not None:
            return True
        return i < len(self.vjps) and self.vjps[i] is not None

    def pullback(self, ns, g, out, inputs, params, wanted) -> list:
        """The cotangents of the inputs at positions ``wanted`` given cotangent ``g`` of the output: one
        entry per input, :data:`NO_GRAD` for an input not wanted or that gets no gradient (PyTensor's
        ``L_op``, autodidax's transpose rule). Every sweep calls this once per node."""
        if self.vjp_all is not None:
            return self.vjp_all(ns, g, out, inputs, params, wanted)
        cts = [NO_GRAD] * len(inputs)
        for i in wanted:
            cts[i] = self.vjp(ns, i, g, out, inputs, params)
        return cts

    def vjp(self, ns, i: int, g, out, inputs, params):
        """Cotangent for input ``i`` alone given cotangent ``g`` of the output (a per-input rule; for an
        op with ``vjp_all``, its :meth:`pullback` asked for ``i`` only)."""
        if self.vjp_n is not None:
            return self.vjp_n(ns, i, g, out, *inputs, **params)
        rule = self.vjps[i] if i < len(self.vjps) else None
        if rule is None:
            if self.vjp_all is not None:
                return self.vjp_all(ns, g, out, inputs, params, (i,))[i]
            return NO_GRAD
        return rule(ns, g, out, *inputs, **params)

    def tangent(self, ns, tangents, out, inputs, params):
        """The output's tangent given the inputs' (:data:`ZERO` for none): ZERO if every one is ZERO."""
        for t in tangents:
            if t is not ZERO:
                return self.jvp(ns, tangents, out, *inputs, **params)
        return ZERO

    def __repr__(self):
        return f"<Op {self.name}>"


def defop(name: str, infer: Callable, impl: Callable, *vjps, kind: Kind, vjp_n=None, vjp_all=None, bind=None,
          jvp=None, code=None, doc: str = "", nin: int | None = -1, params=(), zero: bool = False,
          linear=(), linear_together=(), fresh: bool | None = None, shape_only=(), index=(),
          ufunc: np.ufunc | None = None, infix: str | None = None, noop_on_same_type: bool = False,
          batch: Callable | None = None, scalar: str | None = None, outputs: Callable | None = None,
          saving: Callable | None = None, picks: bool = False, invariant_from: Callable | None = None,
          prune: Callable | None = None, residuals: object | None = None) -> Op:
    """Register an op in :data:`OPS` and return it (the traits are described on :class:`Op`).

    ``nin`` defaults to the number of VJP rules given (None for variadic ops).
    ``params`` defaults to the type rule's arguments after the inputs: the
    names a graph file may give (the serializer refuses any other). Input
    sets (``linear``, ...) are a tuple of positions, True for all of them, or
    :func:`inputs_from`. An op with a ufunc is fresh and gets the template
    ``np.<ufunc>(...)`` unless told otherwise; ``batch`` defaults to the rule
    the op's kind implies.
    """
    if nin == -1:
        nin = None if vjp_n is not None or vjp_all is not None else len(vjps)
    if code is None and ufunc is not None:
        code = f"np.{ufunc.__name__}({', '.join('{' + str(i) + '}' for i in range(ufunc.nin))})"
    op = Op(name, infer, impl, tuple(vjps), vjp_n, vjp_all, bind, jvp, code, doc, nin,
            tuple(params) or _param_names(infer, nin),
            Kind(kind), zero, as_inputs(linear), as_inputs(linear_together),
            ufunc is not None if fresh is None else fresh, as_inputs(shape_only), as_inputs(index), ufunc, infix,
            noop_on_same_type, batch, scalar, outputs, saving, picks, invariant_from, prune, residuals)
    if op.batch is None:
        op.batch = default_rule(op)
    if name in OPS:
        raise ValueError(f"op {name!r} defined twice")
    OPS[name] = op
    return op


def _param_names(infer: Callable, nin: int | None) -> tuple:
    """The names of a type rule's params: its keyword-only arguments, and positional ones past ``nin``."""
    names, positional = [], 0
    for p in inspect.signature(infer).parameters.values():
        if p.kind is p.KEYWORD_ONLY:
            names.append(p.name)
        elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            positional += 1
            if nin is not None and positional > nin:
                names.append(p.name)
    return tuple(names)


class Namespace:
    """Op functions over one ``apply(op, inputs, params)``: numbers, tape or symbols.

    ``ns.sum(x, axis=1)`` runs the op's ``bind`` (shared param normalisation)
    and then the namespace's ``apply``. Functions are made once per name.
    """

    def __init__(self, apply: Callable, name: str = "namespace"):
        self._apply = apply
        self._name = name

    def apply(self, op: Op, inputs: tuple, params: dict):
        """``op`` on ``inputs`` with already normalised ``params`` (no ``bind``)."""
        return self._apply(op, inputs, params)

    def __getattr__(self, name: str):
        op = OPS.get(name)
        if op is None:
            raise AttributeError(f"{self._name} has no op {name!r}")
        fn = self._function(op)
        setattr(self, name, fn)
        return fn

    def _function(self, op: Op) -> Callable:
        return make_op_function(op, self._apply)

    def __dir__(self):
        return sorted(OPS)

    def __repr__(self):
        return f"<Namespace {self._name}>"


def make_op_function(op: Op, apply: Callable) -> Callable:
    """The user-facing function for ``op`` over one ``apply``."""
    bind = op.bind
    if bind is None:
        def fn(*inputs):
            return apply(op, inputs, EMPTY)
    else:
        def fn(*args, **kwargs):
            try:
                inputs, params = bind(*args, **kwargs)
            except TwogradError as e:
                shaped = [a for a in args if hasattr(a, "shape")]
                raise op_error(type(e), op.name, str(e), shaped, user_site(2)) from None
            return apply(op, inputs, params)
    fn.__name__ = fn.__qualname__ = op.name
    fn.__doc__ = op.doc
    return fn


def _numeric_apply(op, inputs, params):
    return op.impl(*inputs, **params)


class _Numeric(Namespace):
    """Ops on numpy arrays. A param-free op's function *is* its impl (``fn(*xs)`` would only
    call ``impl(*xs)``), and ``apply`` calls the impl itself: one Python call fewer per op a
    rule runs, in every backward sweep."""

    def _function(self, op: Op) -> Callable:
        return op.impl if op.bind is None else make_op_function(op, self._apply)

    def apply(self, op: Op, inputs: tuple, params: dict):
        return op.impl(*inputs, **params)


numeric = _Numeric(_numeric_apply, "numeric")
"""Ops on numpy arrays: each is its impl. VJP rules run here compute numbers."""


symbolic = Namespace(apply, "symbolic")
"""Ops on nodes: VJP rules run here add nodes to the graph (symsym's grad, the loops' derived bodies)."""
