"""Parameters as pytrees (dicts, nested lists and tuples, namedtuples, None as an empty subtree) through
every transform of both backends, against central differences of a numpy twin (and PyTorch's
``torch.func`` for second derivatives), and the errors a mismatched structure or a non-array leaf gets.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
import pytest

import symnum as S
import symsym
from benchmarks.finite import central_differences
from common import api as T
from common.errors import TreeError, TwogradError
from common.tree import (
    broadcast_prefix,
    register_pytree_node,
    tree_flatten,
    tree_leaves,
    tree_map,
    tree_structure,
    tree_unflatten,
)

Layer = namedtuple("Layer", "w c")

HERE = "test_pytrees.py"


def make_params(rng):
    return {"W": rng.normal(size=(3, 2)), "b": rng.normal(size=2),
            "extra": [Layer(rng.normal(size=2), (rng.normal(size=()),)), None]}


def loss(ns, p, x):
    """The model on any namespace (symnum, numpy): every leaf of the tree reaches the value."""
    h = ns.tanh(x @ p["W"] + p["b"])
    layer = p["extra"][0]
    return ns.sum(h * h * layer.w) + ns.sum(ns.sin(layer.c[0] * h))


def fd_tree(fn, tree, h=1e-6):
    """d fn / d each leaf of ``tree`` by central differences of the numpy twin, in ``tree``'s structure."""
    leaves, treedef = tree_flatten(tree)

    def at(i):
        def g(v):
            return fn(tree_unflatten(treedef, [v if j == i else leaf for j, leaf in enumerate(leaves)]))
        return g

    return tree_unflatten(treedef, [central_differences(at(i), np.asarray(leaf, float), h)
                                    for i, leaf in enumerate(leaves)])


def assert_tree_close(got, want, rtol=1e-6, atol=1e-7):
    assert tree_structure(got) == tree_structure(want), (tree_structure(got), tree_structure(want))
    for g, w in zip(tree_leaves(got), tree_leaves(want)):
        np.testing.assert_allclose(np.asarray(g), w, rtol=rtol, atol=atol)


@pytest.fixture
def params(rng):
    return make_params(rng)


@pytest.fixture
def x(rng):
    return rng.normal(size=(4, 3))


# ------------------------------------------------------------------ the tree module


def test_flatten_unflatten_keeps_every_container_and_none():
    tree = {"b": [1.0, (2.0, None)], "a": Layer(np.ones(2), {"z": 3.0, "y": 4.0})}
    leaves, treedef = tree_flatten(tree)
    assert [np.asarray(v).tolist() for v in leaves] == [[1.0, 1.0], 4.0, 3.0, 1.0, 2.0]  # dict keys sorted
    back = tree_unflatten(treedef, leaves)
    assert type(back["a"]) is Layer and back["b"][1][1] is None and isinstance(back["b"][1], tuple)
    assert tree_structure({"a": 1, "b": 2}) == tree_structure({"b": 0, "a": 0})
    assert tree_structure([1, 2]) != tree_structure((1, 2))
    assert tree_map(lambda a, b: a * b, [1.0, {"k": 2.0}], [3.0, {"k": 4.0}]) == [3.0, {"k": 8.0}]


def test_registered_node_type():
    class Pair:
        def __init__(self, a, b):
            self.a, self.b = a, b

    register_pytree_node(Pair, lambda p: ((p.a, p.b), None), lambda _, kids: Pair(*kids))
    out = tree_map(lambda v: v + 1, Pair(1.0, [2.0]))
    assert isinstance(out, Pair) and out.a == 2.0 and out.b == [3.0]


def test_tree_errors_name_the_structures():
    with pytest.raises(TreeError, match=r"has 2 leaves, got 3"):
        tree_unflatten(tree_structure([1, 2]), [1, 2, 3])
    with pytest.raises(TreeError, match=r"tree_map: tree 1 has structure \[\*\].*\(\*, \*\)"):
        tree_map(lambda a, b: a, (1, 2), [1])
    with pytest.raises(TreeError, match=r"not a prefix"):
        broadcast_prefix({"a": 0}, {"b": 1.0}, "vmap")


# ------------------------------------------------------------------ symnum


def test_grad_of_a_dict_of_parameters(params, x):
    got = S.grad(lambda p, x: loss(S, p, x))(params, x)
    assert_tree_close(got, fd_tree(lambda p: loss(np, p, x), params))


def test_value_and_grad_with_a_tree_and_an_array(params, x):
    value, (gp, gx) = S.value_and_grad(lambda p, x: loss(S, p, x), argnums=(0, 1))(params, x)
    np.testing.assert_allclose(value, loss(np, params, x), rtol=1e-12)
    assert_tree_close(gp, fd_tree(lambda p: loss(np, p, x), params))
    np.testing.assert_allclose(gx, central_differences(lambda v: loss(np, params, v), x), rtol=1e-6, atol=1e-7)


def test_grad_of_a_list_is_a_list_not_a_stacked_array(rng):
    a, b = rng.normal(size=3), rng.normal(size=3)
    got = S.grad(lambda p: S.sum(p[0] * S.exp(p[1])))([a, b])
    assert isinstance(got, list) and len(got) == 2
    np.testing.assert_allclose(got[0], np.exp(b), rtol=1e-12)
    np.testing.assert_allclose(got[1], a * np.exp(b), rtol=1e-12)


def _model_out(ns, p):
    return {"y": ns.tanh(p["W"] @ p["b"]), "s": ns.sum(p["b"] ** 2) * p["c"]}


@pytest.mark.parametrize("transform", ["jacobian", "jacrev", "jacfwd", "forward"])
def test_jacobian_of_a_tree_to_a_tree(rng, transform):
    p = {"W": rng.normal(size=(3, 2)), "b": rng.normal(size=2), "c": rng.normal(size=())}
    f = lambda q: _model_out(S, q)
    jac = {"jacobian": S.jacobian(f), "jacrev": S.jacrev(f), "jacfwd": S.jacfwd(f),
           "forward": S.jacobian(f, mode="forward")}[transform](p)
    for out_key in ("y", "s"):
        want = fd_tree(lambda q, k=out_key: _model_out(np, q)[k], p)
        assert_tree_close(jac[out_key], want)


NAMES = {"W": ("W",), "b": ("b",), "w": ("extra", 0, "w"), "c": ("extra", 0, "c", 0)}
"""Where each parameter sits in :func:`make_params`' tree."""


def _pick(tree, path):
    for k in path:
        tree = getattr(tree, k) if isinstance(k, str) and hasattr(tree, "_fields") else tree[k]
    return tree


def assert_hessian_matches_torch(got, params, x):
    """``got`` (the params' structure of the params' structure of blocks) against torch.func.hessian."""
    torch = pytest.importorskip("torch")

    def loss_t(p, xt):  # the model on torch, its parameters in one flat dict
        h = torch.tanh(xt @ p["W"] + p["b"])
        return torch.sum(h * h * p["w"]) + torch.sum(torch.sin(p["c"] * h))

    flat = {k: torch.tensor(np.asarray(_pick(params, path), float)) for k, path in NAMES.items()}
    want = torch.func.hessian(loss_t)(flat, torch.tensor(x))
    assert tree_structure(got) == tree_structure(tree_map(lambda _: params, params))
    for i, pi in NAMES.items():
        for j, pj in NAMES.items():
            np.testing.assert_allclose(_pick(_pick(got, pi), pj), want[i][j].numpy(), rtol=1e-9, atol=1e-12)


def test_hessian_of_a_dict_against_torch(params, x):
    assert_hessian_matches_torch(S.hessian(lambda p, x: loss(S, p, x))(params, x), params, x)


def assert_hvp_matches_torch(got, params, v, x):
    """``got`` (H v in the params' structure) against torch.func's jvp of its grad."""
    torch = pytest.importorskip("torch")

    def loss_t(p):
        h = torch.tanh(torch.tensor(x) @ p["W"] + p["b"])
        return torch.sum(h * h * p["w"]) + torch.sum(torch.sin(p["c"] * h))

    flat = {k: torch.tensor(np.asarray(_pick(params, path), float)) for k, path in NAMES.items()}
    flat_v = {k: torch.tensor(np.asarray(_pick(v, path), float)) for k, path in NAMES.items()}
    want = torch.func.jvp(torch.func.grad(loss_t), (flat,), (flat_v,))[1]
    assert tree_structure(got) == tree_structure(params)
    for k, path in NAMES.items():
        np.testing.assert_allclose(_pick(got, path), want[k].numpy(), rtol=1e-9, atol=1e-12)


def test_hvp_of_a_dict_against_torch(params, x, rng):
    v = tree_map(lambda a: rng.normal(size=np.shape(a)), params)
    assert_hvp_matches_torch(S.hvp(lambda p: loss(S, p, x), params, v), params, v, x)


def test_vjp_with_tree_primals_and_a_tree_cotangent(rng):
    p = {"W": rng.normal(size=(3, 2)), "b": rng.normal(size=2), "c": rng.normal(size=())}
    out, vjp_fn = S.vjp(lambda q: _model_out(S, q), p)
    want_out = _model_out(np, p)
    np.testing.assert_allclose(out["y"], want_out["y"], rtol=1e-12)
    ct = {"y": rng.normal(size=3), "s": rng.normal(size=())}
    (got,) = vjp_fn(ct)
    want = fd_tree(lambda q: np.sum(_model_out(np, q)["y"] * ct["y"]) + _model_out(np, q)["s"] * ct["s"], p)
    assert_tree_close(got, want)


def test_jvp_with_tree_primals_and_tangents(rng):
    p = {"W": rng.normal(size=(3, 2)), "b": rng.normal(size=2), "c": rng.normal(size=())}
    t = tree_map(lambda v: rng.normal(size=np.shape(v)), p)
    out, tangent = S.jvp(lambda q: _model_out(S, q), [p], [t])
    h = 1e-6
    up = _model_out(np, tree_map(lambda a, b: a + h * b, p, t))
    down = _model_out(np, tree_map(lambda a, b: a - h * b, p, t))
    assert_tree_close(tangent, tree_map(lambda a, b: (a - b) / (2 * h), up, down))
    assert_tree_close(out, _model_out(np, p), rtol=1e-12)


def test_vmap_over_trees_with_prefix_in_axes(params, rng):
    xs = rng.normal(size=(5, 4, 3))
    bs = rng.normal(size=(5, 2))
    batch_params = {**params, "b": bs}
    in_axes = ({"W": None, "b": 0, "extra": None}, 0)
    got = S.vmap(lambda p, x: {"loss": loss(S, p, x), "first": (x[0], None)}, in_axes=in_axes)(batch_params, xs)
    want = [loss(np, {**params, "b": bs[i]}, xs[i]) for i in range(5)]
    np.testing.assert_allclose(got["loss"], want, rtol=1e-12)
    np.testing.assert_allclose(got["first"][0], xs[:, 0], rtol=0)
    assert got["first"][1] is None


def test_vmap_out_axes_as_a_prefix_of_the_result(rng):
    xs = rng.normal(size=(5, 3))
    got = S.vmap(lambda v: {"a": S.sin(v), "b": [v * 2.0, S.sum(v)]}, out_axes={"a": 0, "b": [1, 0]})(xs)
    np.testing.assert_allclose(got["a"], np.sin(xs), rtol=1e-14)
    np.testing.assert_allclose(got["b"][0], (xs * 2.0).T, rtol=1e-14)
    np.testing.assert_allclose(got["b"][1], xs.sum(axis=1), rtol=1e-14)


def test_vmap_of_grad_gives_per_example_trees(params, rng):
    xs = rng.normal(size=(3, 4, 3))
    got = S.vmap(S.grad(lambda p, x: loss(S, p, x)), in_axes=(None, 0))(params, xs)
    for i in range(3):
        assert_tree_close(tree_map(lambda g: g[i], got), fd_tree(lambda p: loss(np, p, xs[i]), params))


# ------------------------------------------------------------------ symsym


def _graph(params, x):
    leaves, treedef = tree_flatten(params)
    names = iter("abcdefgh")
    p = tree_unflatten(treedef, [T.var(next(names), np.shape(v)) for v in leaves])
    xv = T.var("x", x.shape)
    return p, xv, loss(T, p, xv)


@pytest.mark.parametrize("linker", ["numpy", "numba"])
def test_symsym_grad_and_function_over_trees(params, x, linker):
    if linker == "numba":
        pytest.importorskip("numba")
    p, xv, cost = _graph(params, x)
    grads = symsym.grad(cost, p)
    assert tree_structure(grads) == tree_structure(params)
    fn = symsym.function([p, xv], {"loss": cost, "grads": grads}, linker=linker)
    out = fn(params, x)
    np.testing.assert_allclose(out["loss"], loss(np, params, x), rtol=1e-12)
    assert_tree_close(out["grads"], fd_tree(lambda q: loss(np, q, x), params))


def test_symsym_jacobian_of_a_list_of_variables(rng):
    W, b, x = T.var("W", (3, 2)), T.var("b", (2,)), T.var("x", (4, 3))
    y = T.tanh(x @ W + b)
    jac = symsym.jacobian(y, [W, b])
    assert isinstance(jac, list) and [j.shape for j in jac] == [(4, 2, 3, 2), (4, 2, 2)]
    fwd = symsym.jacfwd(y, (W, b))
    vals = {"W": rng.normal(size=(3, 2)), "b": rng.normal(size=2), "x": rng.normal(size=(4, 3))}
    got = symsym.function([W, b, x], [*jac, *fwd])(vals["W"], vals["b"], vals["x"])
    ref = lambda q: np.tanh(vals["x"] @ q["W"] + q["b"])
    want = fd_tree(ref, {"W": vals["W"], "b": vals["b"]})
    for k, name in enumerate(["W", "b", "W", "b"]):
        np.testing.assert_allclose(got[k], want[name], rtol=1e-6, atol=1e-8)


def test_symsym_hessian_of_a_dict_against_torch(params, x):
    p, xv, cost = _graph(params, x)
    assert_hessian_matches_torch(symsym.function([p, xv], symsym.hessian(cost, p))(params, x), params, x)


def test_symsym_jvp_and_hvp_over_trees(params, x, rng):
    p, xv, cost = _graph(params, x)
    leaves, treedef = tree_flatten(p)
    vs = tree_unflatten(treedef, [T.var(f"v{k}", n.shape) for k, n in enumerate(leaves)])
    out = {"h": T.tanh(xv @ p["W"] + p["b"]), "cost": cost}
    fn = symsym.function([p, xv, vs], {"jvp": symsym.jvp(out, p, vs), "hvp": symsym.hvp(cost, p, vs)})
    v = tree_map(lambda a: rng.normal(size=np.shape(a)), params)
    got = fn(params, x, v)
    h = 1e-6
    moved = lambda s: tree_map(lambda a, b: a + s * h * b, params, v)
    want_cost = (loss(np, moved(1), x) - loss(np, moved(-1), x)) / (2 * h)
    want_h = (np.tanh(x @ moved(1)["W"] + moved(1)["b"]) - np.tanh(x @ moved(-1)["W"] + moved(-1)["b"])) / (2 * h)
    np.testing.assert_allclose(got["jvp"]["cost"], want_cost, rtol=1e-6)
    np.testing.assert_allclose(got["jvp"]["h"], want_h, rtol=1e-6, atol=1e-8)
    assert_hvp_matches_torch(got["hvp"], params, v, x)


# ------------------------------------------------------------------ bad input


def test_vjp_cotangent_of_another_structure_is_named(rng):
    p = {"W": rng.normal(size=(3, 2)), "b": rng.normal(size=2), "c": rng.normal(size=())}
    _, vjp_fn = S.vjp(lambda q: _model_out(S, q), p)
    with pytest.raises(TreeError, match=rf"vjp: the cotangent has structure \[\*, \*\], but the function's "
                                        rf"result has {{'s': \*, 'y': \*}}.*{HERE}:\d+"):
        vjp_fn([np.ones(3), 1.0])
    with pytest.raises(TreeError, match=rf"vjp: cotangent leaf 0 has shape \(2,\).*{HERE}:\d+"):
        vjp_fn({"y": np.ones(3), "s": np.ones(2)})


def test_a_non_array_leaf_is_named(params, x):
    bad = {**params, "b": "two"}
    with pytest.raises(TreeError, match=rf"grad: argument 0 is a tree .* whose leaf \d is a str, not an "
                                        rf"array.*{HERE}:\d+"):
        S.grad(lambda p, x: loss(S, p, x))(bad, x)
    with pytest.raises(TreeError, match=rf"jacobian: argument 0 .*leaf \d is a str.*{HERE}:\d+"):
        S.jacobian(lambda p: p["W"])(bad)
    W = T.var("W", (2,))
    with pytest.raises(TreeError, match=rf"grad: wrt is a tree \{{'W': \*, 'k': \*\}} whose leaf 1 is a "
                                        rf"ndarray, not a graph node.*{HERE}:\d+"):
        symsym.grad(T.sum(W), {"W": W, "k": np.ones(2)})
    with pytest.raises(TreeError, match=rf"jacobian: the input is a tree .*leaf 1 is a float.*{HERE}:\d+"):
        symsym.jacobian(W, [W, 1.0])


def test_jvp_tangent_of_another_structure_is_named(rng):
    p = {"a": rng.normal(size=2), "b": rng.normal(size=2)}
    with pytest.raises(TreeError, match=rf"jvp: tangent 0 has structure \[\*, \*\], but its primal has "
                                        rf"{{'a': \*, 'b': \*}}.*{HERE}:\d+"):
        S.jvp(lambda q: q["a"] * q["b"], [p], [[np.ones(2), np.ones(2)]])


def test_compiled_function_refuses_an_argument_of_another_structure(params, x):
    p, xv, cost = _graph(params, x)
    fn = symsym.function([p, xv], cost)
    with pytest.raises(TreeError, match=rf"function: argument 0 has structure .*, but the input has .*{HERE}:\d+"):
        fn({"W": params["W"], "b": params["b"]}, x)
    with pytest.raises(TwogradError, match=r"function takes 2 arguments"):
        fn(params)


def test_vmap_in_axes_that_is_not_a_prefix_is_named(params, x):
    with pytest.raises(TreeError, match=r"vmap: in_axes for argument 0: \{'W': \*\} is not a prefix"):
        S.vmap(lambda p: p["W"], in_axes=({"W": 0},))(params)
