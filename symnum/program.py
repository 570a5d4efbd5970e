"""Symbol-to-number on the shared IR: a ``common`` graph plus numbers in, numbers out.

This is the Caffe-style entry point of §6.5.5 (a graph and values for its
inputs; return the gradient's values). The graph is known before any number
is, so the bookkeeping a define-by-run tape does per call is done once per
(graph, wrt) and cached as a :class:`Program`:

* every node gets a slot in a flat list (the tape is that list of values);
* the forward is a loop over ``(impl, input slots, params, output slot)``;
* the backward is a loop, in reverse topological order, over only the nodes
  a requested input's influence reaches, each with the VJP rules of just the
  inputs that take a gradient: no dependency counting, since a static reverse
  order already completes each node's gradient before its rules run;
* each value is dropped after its last use (in the forward when the backward
  never reads it, else after the last backward step that does), so the peak
  holds what a hand-written backward would;
* a gradient does not return the outputs' values, so for :func:`gradients`
  the forward runs only the steps whose values some rule reads, and what
  those are computed from (a loss's own value is usually not among them, as
  in a hand-written backward); the rules get the static shapes of the rest.

The rules are the op table's, run on numbers by :data:`common.numeric`;
nothing here knows any calculus of its own.
"""

from __future__ import annotations

import math

import numpy as np

from common import api as T
from common.errors import GradError
from common.evaluate import resolve_feed
from common.gcpause import paused_gc
from common.graph import Node, run_op, toposort
from common.ops import NO_GRAD, numeric
from common.sentinel import Sentinel
from common.site import user_site

from .engine import add_owned, disconnection_policy

_PROGRAMS: dict = {}  # (ids of outputs, ids of wrt, values wanted) -> Program; a few recent graphs
_PROGRAMS_KEPT = 8

# step kinds: param-free one- and two-input ops are called without building lists; a backward step of an
# op whose cotangents come from one computation (a loop's ``vjp_all``) asks its pullback once
_GENERAL, _UNARY, _BINARY, _JOINT = 0, 1, 2, 3
_MEASURE = Sentinel("MEASURE")  # a value shrunk to its shape, known only once it is computed


class _Step:
    """What a node's forward and backward steps share: how its op is called, and where its value lives.

    ``ins`` are the input slots. A ``_UNARY``/``_BINARY`` step's ``a``/``b``
    are its first/last input slot, so the hot loops index the value list
    without building argument lists; a ``_GENERAL`` step's ``a`` is ``ins``.
    A class with ``__slots__`` because the loops read only the fields a kind
    needs, which is as fast as unpacking a tuple and names what it reads.
    """

    __slots__ = ("kind", "ins", "a", "b", "params", "out")

    def __init__(self, kind: int, ins: tuple, params: dict, out: int):
        self.kind, self.ins, self.params, self.out = kind, ins, params, out
        self.a, self.b = (ins, -1) if kind == _GENERAL else (ins[0], ins[-1])


class ForwardStep(_Step):
    """``env[out] = impl(inputs, **params)``, then ``after``: ``(slot, replacement)`` for the values whose
    last forward reader this is (None drops a value the backward never sees; a :class:`ShapeOnly`, or
    ``_MEASURE`` when the shape is known only once computed, stands in for one the backward only measures)."""

    __slots__ = ("impl", "after")

    def __init__(self, kind: int, impl, ins: tuple, params: dict, out: int):
        super().__init__(kind, ins, params, out)
        self.impl = impl
        self.after: tuple = ()


class BackwardStep(_Step):
    """Push the cotangent of slot ``out`` to the inputs that take a gradient, then drop ``free``.

    ``calls`` lists ``(rule, input index, target slot)`` for those inputs (the
    rule is the op itself for a ``_GENERAL`` step, run through ``op.vjp``, and
    for a ``_JOINT`` step, whose one :meth:`~common.ops.Op.pullback` call
    answers the inputs of ``wanted``);
    ``keep`` marks a requested intermediate, whose gradient is an answer;
    ``free`` lists the slots whose last reader this step is.
    """

    __slots__ = ("calls", "keep", "free", "fwd", "wanted")

    def __init__(self, fwd: ForwardStep, calls: tuple, keep: bool):
        super().__init__(fwd.kind, fwd.ins, fwd.params, fwd.out)
        self.calls, self.keep, self.fwd = calls, keep, fwd
        self.free: tuple = ()
        self.wanted = tuple([i for _, i, _ in calls])


class Program:
    """What evaluating ``outs`` (and differentiating with respect to ``wrt``) takes, computed once.

    ``forward`` is a list of :class:`ForwardStep`, ``backward`` of
    :class:`BackwardStep` in the order they run; ``preset`` holds
    ``(slot, value)`` for constants and for the values the backward only
    needs the static shape of (:class:`ShapeOnly`); ``taped[slot]`` says
    whether a gradient reaches that slot.
    """

    __slots__ = ("outs", "wrt", "values", "nodes", "slot", "variables", "var_slots", "preset", "forward",
                 "backward", "taped", "wrt_slots")

    def __init__(self, outs: list[Node], wrt: list[Node], values: bool = True):
        for w in wrt:
            if w.dtype.kind != "f":
                raise GradError(f"gradients: {w!r} has dtype {w.dtype}; only floating inputs have gradients "
                                f"(made at {w.site})")
        self.outs, self.wrt, self.values = outs, wrt, values
        with paused_gc():
            self._build(outs, wrt, values)

    def _build(self, outs: list[Node], wrt: list[Node], values: bool) -> None:
        """The build's phases, each a function: slots, the steps, what runs, when each value goes."""
        order = self.nodes = toposort(outs)
        slot = self.slot = {n: k for k, n in enumerate(order)}  # nodes hash by identity
        self.variables = [n for n in order if n.is_var]
        self.var_slots = {v: slot[v] for v in self.variables}
        self.wrt_slots = [slot.get(w) for w in wrt]
        self.preset = [(slot[n], n.value) for n in order if n.is_const]
        protected = {slot[o] for o in outs}

        forward = _schedule_forward(order, slot)
        self.taped, backward = _schedule_backward(order, forward, set(wrt))
        _save_loop_carries(backward)
        read = _values_read(backward, order)
        last_back = _last_readers(backward, outputs=True)
        # only what is asked for runs: the outputs' values (unless only their gradients are), the values
        # the rules read, and what those are computed from; of the rest the backward gets static shapes
        shaped = {s: n.shape for s in [*last_back, *protected] if (n := order[s]).op is not None}
        need = read | {s for s, shape in shaped.items() if None in shape}
        need |= {slot[o] for o in outs if values or None in o.shape}
        forward = _prune_forward(forward, order, need)
        self.preset += [(s, ShapeOnly(order[s])) for s in shaped if s not in need]
        _plan_frees(forward, backward, order, read, last_back, protected)
        self.forward, self.backward = forward, backward

    def run_forward(self, env: list) -> None:
        """Fill ``env`` (inputs and constants already in place) with every value, dropping dead ones."""
        try:
            for step in self.forward:
                kind = step.kind
                if kind == _UNARY:
                    env[step.out] = step.impl(env[step.a])
                elif kind == _BINARY:
                    env[step.out] = step.impl(env[step.a], env[step.b])
                else:
                    env[step.out] = step.impl(*[env[i] for i in step.a], **step.params)
                for s, shrunk in step.after:
                    env[s] = ShapeOnly(env[s]) if shrunk is _MEASURE else shrunk
        except Exception:  # the reference interpreter words the error
            node = self.nodes[step.out]
            run_op(node, [env[self.slot[x]] for x in node.inputs])
            raise

    def run_backward(self, env: list, grads: list) -> dict[int, object]:
        """Push the cotangents in ``grads`` (seeded at the outputs) back to every taped slot.

        Returns the gradients of requested intermediates by slot; those of
        requested variables are left in ``grads``. Fan-out is summed in place
        once a slot holds a sum this loop made (nobody else can see it).
        """
        ns = numeric
        owned: set[int] = set()
        kept: dict[int, object] = {}
        for step in self.backward:
            o = step.out
            g = grads[o]
            if g is not None:
                grads[o] = None
                if step.keep:
                    kept[o] = g
                out = env[o]
                kind = step.kind
                if kind == _UNARY:
                    x = env[step.a]
                    for rule, _, t in step.calls:
                        gi = rule(ns, g, out, x)
                        if gi is not NO_GRAD:
                            old = grads[t]
                            grads[t] = gi if old is None else add_owned(owned, t, old, gi)
                elif kind == _BINARY:
                    x, y = env[step.a], env[step.b]
                    for rule, _, t in step.calls:
                        gi = rule(ns, g, out, x, y)
                        if gi is not NO_GRAD:
                            old = grads[t]
                            grads[t] = gi if old is None else add_owned(owned, t, old, gi)
                elif kind == _GENERAL:
                    args, params = [env[i] for i in step.a], step.params
                    for op, i, t in step.calls:
                        gi = op.vjp(ns, i, g, out, args, params)
                        if gi is not NO_GRAD:
                            old = grads[t]
                            grads[t] = gi if old is None else add_owned(owned, t, old, gi)
                else:
                    op = step.calls[0][0]
                    cts = op.pullback(ns, g, out, [env[i] for i in step.a], step.params, step.wanted)
                    for _, i, t in step.calls:
                        gi = cts[i]
                        if gi is not NO_GRAD:
                            old = grads[t]
                            grads[t] = gi if old is None else add_owned(owned, t, old, gi)
            for s in step.free:
                env[s] = None
        return kept


def _schedule_forward(order: list[Node], slot: dict) -> list[ForwardStep]:
    """A step for every op node, in topological order (leaves and constants are placed, not computed)."""
    forward = []
    for k, n in enumerate(order):
        op = n.op
        if op is not None:
            ins = tuple([slot[x] for x in n.inputs])
            kind = _GENERAL if n.params or op.vjp_n is not None or len(ins) > 2 else len(ins)
            forward.append(ForwardStep(kind, op.impl, ins, n.params, k))
    return forward


def _schedule_backward(order: list[Node], forward: list[ForwardStep], wanted: set) -> tuple[list, list]:
    """Which slots a gradient reaches (``taped``), and the backward steps, in reverse topological order:
    one per floating node some input of which takes a gradient, calling the rules of just those inputs."""
    taped = [n in wanted and n.dtype.kind == "f" and n.value is None if n.op is None else False
             for n in order]
    differentiable: dict = {}  # op -> which input positions can take a gradient
    backward = []
    for step in forward:
        n = order[step.out]
        if n.dtype.kind not in "fO":  # (a loop's tuple value may hold float outputs)
            continue
        op, ins = n.op, step.ins
        diff = differentiable.get(op)
        if diff is None or len(diff) < len(ins):
            diff = differentiable[op] = tuple(op.differentiable(i) for i in range(len(ins)))
        targets = tuple([i for i, s in enumerate(ins) if taped[s] and diff[i]])
        keep = n in wanted
        taped[step.out] = keep or bool(targets)
        if targets:  # (a requested intermediate whose inputs take no gradient has nothing to push)
            rules = op.vjps if step.kind != _GENERAL else None
            calls = tuple([(op if rules is None else rules[i], i, ins[i]) for i in targets])
            back = BackwardStep(step, calls, keep)
            if op.vjp_all is not None:
                back.kind = _JOINT
            backward.append(back)
    backward.reverse()
    return taped, backward


def _save_loop_carries(backward: list[BackwardStep]) -> None:
    """A loop the backward differentiates runs in the forward with ``save=True``: it stacks the carries
    each step began with, which its VJP reads, instead of that VJP running the loop again to get them.
    Its op's ``saving`` impl runs it (a scan's also keeps the per-step values its VJP body reads, its
    residuals, so the reverse steps do not compute the forward steps again)."""
    for step in backward:
        params = step.params  # (a step with params calls its op itself: ``calls[0][0]``)
        if params and params.get("save") is False and step.calls[0][0].saving is not None:
            step.params = step.fwd.params = {**params, "save": True}
            step.fwd.impl = step.calls[0][0].saving


def _values_read(backward: list[BackwardStep], order: list[Node]) -> set[int]:
    """The slots whose numbers some backward rule reads (:func:`rule_reads`); the rest it only measures."""
    read: set[int] = set()
    for step in backward:
        out_read, ins_read = rule_reads(order[step.out], tuple([i for _, i, _ in step.calls]))
        if out_read:
            read.add(step.out)
        for i in ins_read:
            read.add(step.ins[i])
    return read


def _last_readers(steps: list[_Step], outputs: bool) -> dict[int, int]:
    """Each slot's last reader among ``steps``, by step index (a backward step also reads its output)."""
    last: dict[int, int] = {}
    for j, step in enumerate(steps):
        if outputs:
            last[step.out] = j
        for s in step.ins:
            last[s] = j
    return last


def _prune_forward(forward: list[ForwardStep], order: list[Node], need: set[int]) -> list[ForwardStep]:
    """The steps that compute a slot in ``need`` or what those read (``need`` grows to all of it), and
    those that may fail on their values (:func:`_may_fail`), in order."""
    kept = []
    for step in reversed(forward):
        if step.out in need or _may_fail(order[step.out]):
            kept.append(step)
            need.update(step.ins)
    kept.reverse()
    return kept


def _plan_frees(forward: list[ForwardStep], backward: list[BackwardStep], order: list[Node], read: set[int],
                last_back: dict[int, int], protected: set[int]) -> None:
    """Fill each step's ``free``/``after``: a value goes after its last reader (the outputs stay).

    A value the backward reads goes after its last backward reader. Any
    other goes after its last forward reader: dropped when the backward
    never sees it, else shrunk to the :class:`ShapeOnly` its rules measure.
    """
    for j, free in _by_step(last_back, protected).items():
        backward[j].free = free
    after = {s: j for s, j in _last_readers(forward, outputs=False).items() if s not in read}
    for j, dead in _by_step(after, protected).items():
        forward[j].after = tuple([(s, None if s not in last_back else _MEASURE if None in order[s].shape
                                   else ShapeOnly(order[s])) for s in dead])


def _by_step(last: dict[int, int], protected: set) -> dict[int, tuple]:
    """The slots of ``last`` (slot -> index of its last reader) grouped by that index, outputs left out."""
    frees: dict[int, list[int]] = {}
    for s, j in last.items():
        if s not in protected:
            frees.setdefault(j, []).append(s)
    return {j: tuple(free) for j, free in frees.items()}


class ShapeOnly:
    """What a step's rules get for a value they never read: its shape and dtype, no numbers.

    Any use of the numbers themselves raises (numpy refuses it), so a wrong
    read analysis fails loudly instead of computing with garbage.
    """

    __slots__ = ("shape", "dtype", "ndim", "size")
    __array_ufunc__ = None

    def __init__(self, value):
        self.shape = value.shape  # arrays, numpy scalars and nodes of static shape alike
        self.dtype = value.dtype
        self.ndim = len(self.shape)
        self.size = math.prod(self.shape)

    def __array__(self, dtype=None, copy=None):
        raise TypeError("a value the backward was found not to read was used")


_READS: dict = {}  # (op, params, input and output types, targets) -> which of (output, *inputs) rules read


def rule_reads(n: Node, targets: tuple) -> tuple[bool, tuple[int, ...]]:
    """Whether the VJP rules of input positions ``targets`` read the output's numbers, and
    the positions of the inputs whose numbers they read.

    Found once per op and types by running the rules on symbols
    (:data:`common.api.symbolic`): a value is read exactly when its symbol
    appears in the cotangents' graphs. Shapes and dtypes are static on
    symbols, so a rule that only looks at them leaves no trace. Anything the
    symbols cannot answer counts as read.
    """
    try:
        key = (n.op, n.shape, n.dtype, targets, *[(x.shape, x.dtype) for x in n.inputs])
        if n.params:
            key += tuple(sorted(n.params.items()))
        hit = _READS.get(key)
    except TypeError:  # unhashable params: ask every time
        return _probe(n, targets)
    if hit is None:
        hit = _READS[key] = _probe(n, targets)
    return hit


def _probe(n: Node, targets: tuple) -> tuple:
    every = (True, tuple(range(len(n.inputs))))
    try:
        ins = [T.var(f"x{i}", x.shape, x.dtype) for i, x in enumerate(n.inputs)]
        out, g = T.var("out", n.shape, n.dtype), T.var("g", n.shape, n.dtype)
        cts = n.op.pullback(T.symbolic, g, out, ins, n.params, targets)
        grads = [cts[i] for i in targets]
    except Exception:  # a rule the symbols cannot run: keep everything
        return every
    if not all(isinstance(r, Node) or r is NO_GRAD for r in grads):
        return every
    seen = set(toposort([r for r in grads if isinstance(r, Node)]))
    return out in seen, tuple([i for i, x in enumerate(ins) if x in seen])


def _may_fail(n: Node) -> bool:
    """Whether ``n``'s op can fail on its inputs' values, not just their types: an index out of range.

    Such a node runs even when nothing reads its value, so a bad index is reported where it is made.
    """
    return any(x.dtype.kind in "iu" for x in n.inputs)


def program(outs: list[Node], wrt: list[Node], values: bool = True) -> Program:
    """The cached :class:`Program` for ``outs`` and ``wrt`` (nodes never change, so neither does it).

    Without ``values`` the outputs' own values are not computed unless their gradients need them.
    A cached program holds its nodes, so no other object can have their ids while it is cached:
    the ids alone identify it.
    """
    key = (tuple(map(id, outs)), tuple(map(id, wrt)), values)
    hit = _PROGRAMS.get(key)
    if hit is not None:
        return hit
    made = Program(outs, wrt, values)
    if len(_PROGRAMS) >= _PROGRAMS_KEPT:
        _PROGRAMS.pop(next(iter(_PROGRAMS)))
    _PROGRAMS[key] = made
    return made


def _forward(prog: Program, wrt: list[Node], values: dict):
    """Check the feed, run the forward; returns the value list and the fed values by node id
    (None for an exact feed, whose values are ``values`` itself: see :func:`_fed`)."""
    values = values or {}
    env = [None] * len(prog.nodes)
    fed = None
    if not _fed_exactly(prog, values, env):
        variables = prog.variables
        if wrt:
            seen = {id(v) for v in variables}
            # an input the outputs do not reach may still be fed: its gradient is zeros of its shape
            extra = [w for w in wrt if w.is_var and id(w) not in seen and (w in values or w.name in values)]
            if extra:
                variables = variables + extra
        fed = resolve_feed(variables, values)
        slot = prog.slot
        for v in prog.variables:
            env[slot[v]] = fed[id(v)]
    for s, value in prog.preset:
        env[s] = value
    prog.run_forward(env)
    return env, fed


def _fed_exactly(prog: Program, values: dict, env: list) -> bool:
    """Whether the feed is exactly one array of the declared dtype and shape per variable node
    (a training loop's, a benchmark's); if so its values are put in place. Anything else
    :func:`common.evaluate.resolve_feed` then checks and words."""
    slots = prog.var_slots
    if len(values) != len(slots):
        return False
    for key, value in values.items():
        s = slots.get(key) if key.__class__ is Node else None
        if s is None or value.__class__ is not np.ndarray or value.shape != key.shape or (
                value.dtype is not key.dtype and value.dtype != key.dtype):
            return False
        env[s] = value
    return True


def _fed(fed: dict | None, values: dict) -> dict:
    """The fed values by node id, from :func:`_forward`'s answer."""
    return {id(key): value for key, value in values.items()} if fed is None else fed


def evaluate(outputs, values: dict):
    """Values of ``outputs`` (a node or a list of nodes) for ``values`` (nodes or names -> arrays)."""
    single = isinstance(outputs, Node)
    outs = [outputs] if single else list(outputs)
    prog = program(outs, [])
    with paused_gc():
        env, _ = _forward(prog, [], values)
    results = [np.asarray(env[prog.slot[o]]) for o in outs]
    return results[0] if single else results


def gradients(outputs, wrt, values: dict, grad_outputs=None, disconnected: str = "raise"):
    """d(outputs)/d(wrt) at ``values``, as numpy arrays (one per ``wrt``, or one if ``wrt`` is a node).

    ``grad_outputs`` (one array per output) contracts the outputs; it may be
    left out when every output has a single element. An input the outputs do
    not depend on is an error (``disconnected="raise"``, as in
    ``symsym.grad``), gets zeros (``"zero"``) or None (``"none"``). The
    outputs' own values are computed only as far as the gradients need them.
    """
    if disconnected != "raise":
        disconnected = disconnection_policy(disconnected, what="gradients")
    outs = [outputs] if isinstance(outputs, Node) else list(outputs)
    single = isinstance(wrt, Node)
    wrts = [wrt] if single else list(wrt)
    if grad_outputs is not None and not isinstance(grad_outputs, (list, tuple)):
        grad_outputs = [grad_outputs]
    prog = program(outs, wrts, values=False)
    with paused_gc():
        env, fed = _forward(prog, wrts, values)
        grads = _seeds(prog, outs, env, grad_outputs)
        kept = prog.run_backward(env, grads)

    results = []
    for w, s in zip(wrts, prog.wrt_slots):
        g = None if s is None else kept.get(s, grads[s]) if kept else grads[s]
        results.append(_own(g, results) if g is not None else _disconnected(w, fed, values, disconnected))
    return results[0] if single else results


def _disconnected(w: Node, fed: dict | None, values: dict, policy: str) -> np.ndarray | None:
    """The gradient for an input no output depends on, as ``policy`` says: an error, zeros or None."""
    if policy == "raise":
        raise GradError(f"gradients: {w!r} (made at {w.site}) is disconnected from the outputs: no "
                        "differentiable path leads from it to them; pass disconnected='zero' or 'none' to "
                        f"allow this (at {user_site()})")
    return _zeros(w, _fed(fed, values)) if policy == "zero" else None


def _seeds(prog: Program, outs: list[Node], env: list, grad_outputs) -> list:
    """The gradient list of a sweep, holding each output's cotangent: given, or 1 for one element."""
    slot, taped = prog.slot, prog.taped
    grads = [None] * len(env)
    for k, o in enumerate(outs):
        if o.dtype.kind != "f":
            raise GradError(f"gradients: output {k} {o!r} is not floating, so it has no gradient")
        s = slot[o]
        value = env[s]
        if grad_outputs is None or grad_outputs[k] is None:
            if np.size(value) != 1:
                raise GradError(f"gradients: output {k} has shape {value.shape}; grad_outputs is needed "
                                f"for outputs of more than one element (output made at {o.site})")
            g = np.ones(value.shape, value.dtype)
        else:
            g = np.array(grad_outputs[k], dtype=value.dtype)  # ours: it may be summed in place or returned
            if g.shape != np.shape(value):
                raise GradError(f"gradients: grad_outputs[{k}] has shape {g.shape}, output {k} has shape "
                                f"{np.shape(value)}")
        if taped[s]:
            grads[s] = g if grads[s] is None else grads[s] + g
    return grads


def _zeros(w: Node, fed: dict) -> np.ndarray:
    """The gradient for an input no output depends on."""
    if id(w) in fed:
        return np.zeros(np.shape(fed[id(w)]), w.dtype)
    if None in w.shape:
        raise GradError(f"gradients: the outputs do not depend on {w!r}, and its shape is unknown; "
                        "feed a value for it to get zeros")
    return np.zeros(w.shape, w.dtype)


def _own(g, given: list) -> np.ndarray:
    """A gradient the caller may keep and write to: read-only views (from broadcasting) and arrays
    already handed out for another input (a rule may pass a cotangent on unchanged) are copied."""
    if g.__class__ is not np.ndarray:
        g = np.asarray(g)
    if not g.flags.writeable:
        return g.copy()
    for r in given:
        if r is g:
            return g.copy()
    return g
