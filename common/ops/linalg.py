"""Linear algebra: matmul (numpy semantics, batched, 1-D operands) and einsum.

Both are multilinear, so their JVP rule is the product rule (:func:`jvp_product`):
the op once per operand that has a tangent, that operand replaced by it.
"""

from __future__ import annotations

import math
import string

import numpy as np

from ..errors import GradError, ShapeError
from . import batching
from .params import einsum_param, shown
from .rules import expand_to, jvp_product, unbroadcast
from .shape import swap_last
from .shapes import broadcast_shapes, result_dtype, shape_str
from .table import defop
from .traits import Kind


def _matmul_infer(a, b):
    if not a.shape or not b.shape:
        raise ShapeError("matmul needs at least 1-d operands (use mul for scalars)")
    sa = (1,) + a.shape if len(a.shape) == 1 else a.shape
    sb = b.shape + (1,) if len(b.shape) == 1 else b.shape
    k1, k2 = sa[-1], sb[-2]
    if k1 is not None and k2 is not None and k1 != k2:
        raise ShapeError(f"contracted dims differ: {shape_str(a.shape)} @ {shape_str(b.shape)}")
    try:
        batch = broadcast_shapes(sa[:-2], sb[:-2])
    except ShapeError:
        raise ShapeError(f"batch dims do not broadcast: {shape_str(a.shape)} @ {shape_str(b.shape)}") from None
    shape = batch + (sa[-2],) * (len(a.shape) > 1) + (sb[-1],) * (len(b.shape) > 1)
    return shape, result_dtype(a, b)


def _matmul_da(ns, g, out, a, b):
    if a.ndim == 1 and b.ndim == 1:
        return g * b
    if b.ndim == 1:  # (..., m, k) @ (k,) -> (..., m)
        return unbroadcast(ns, ns.expand_dims(g, -1) * b, a)
    if a.ndim == 1:  # (k,) @ (..., k, n) -> (..., n)
        return unbroadcast(ns, ns.squeeze(ns.matmul(b, ns.expand_dims(g, -1)), -1), a)
    return unbroadcast(ns, ns.matmul(g, swap_last(ns, b)), a)


def _matmul_db(ns, g, out, a, b):
    if a.ndim == 1 and b.ndim == 1:
        return g * a
    if a.ndim == 1:  # (k,) @ (..., k, n) -> (..., n)
        return unbroadcast(ns, ns.expand_dims(a, -1) * ns.expand_dims(g, -2), b)
    if b.ndim == 1:  # (..., m, k) @ (k,) -> (..., m)
        return unbroadcast(ns, ns.squeeze(ns.matmul(swap_last(ns, a), ns.expand_dims(g, -1)), -1), b)
    if b.ndim == 2 and a.ndim > 2 and None not in a.shape and None not in g.shape:
        # (..., m, k) @ (k, n), a layer's weight: every row at once, one (k, rows) @ (rows, n) product,
        # rather than a product per batch and a sum over them (a batch of (k, n) blocks made, then reduced)
        rows = math.prod(a.shape[:-1])
        return ns.matmul(swap_last(ns, ns.reshape(a, (rows, a.shape[-1]))), ns.reshape(g, (rows, g.shape[-1])))
    return unbroadcast(ns, ns.matmul(swap_last(ns, a), g), b)


defop("matmul", _matmul_infer, np.matmul, _matmul_da, _matmul_db, jvp=jvp_product("matmul"), code="({0} @ {1})",
      kind=Kind.LINALG,
      linear=(0, 1), fresh=True, infix="@", batch=batching.matmul,
      doc="Matrix product with numpy's semantics: batched over leading dims, 1-d operands "
          "promoted and the added dim removed. VJPs: g @ b.T and a.T @ g, summed over broadcast batches.")


# --- einsum ----------------------------------------------------------------

def _parse_einsum(subscripts: str, ndims) -> tuple[list[str], str]:
    """Subscripts in explicit form, with each ellipsis spelled out in fresh letters."""
    subscripts = subscripts.replace(" ", "")
    if "->" in subscripts:
        lhs, rhs = subscripts.split("->")
    else:
        lhs, rhs = subscripts, None
    terms = lhs.split(",")
    if len(terms) != len(ndims):
        raise ShapeError(f"einsum {subscripts!r} names {len(terms)} operands, got {len(ndims)}")
    used = set(subscripts) - set(",->.")
    fresh = [c for c in string.ascii_letters if c not in used]
    n_ell = max((nd - len(t.replace("...", "")) for t, nd in zip(terms, ndims) if "..." in t), default=0)
    ell = "".join(fresh[:n_ell])
    out_terms = []
    for t, nd in zip(terms, ndims):
        if "..." in t:
            k = nd - len(t.replace("...", ""))
            t = t.replace("...", ell[n_ell - k:] if k else "")
        if len(t) != nd:
            raise ShapeError(f"einsum term {t!r} does not match a {nd}-d operand")
        out_terms.append(t)
    if rhs is None:
        counts = {}
        for c in "".join(out_terms):
            counts[c] = counts.get(c, 0) + 1
        rhs = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    else:
        rhs = rhs.replace("...", ell)
    for c in rhs:
        if c not in "".join(out_terms):
            raise ShapeError(f"einsum output letter {c!r} is not in any operand")
    return out_terms, rhs


def _einsum_bind(subscripts, *operands):
    if not isinstance(subscripts, str):
        raise ShapeError(f"param 'spec' must be a string of subscripts, got {shown(subscripts)}")
    ndims = [x.ndim if hasattr(x, "ndim") else np.ndim(x) for x in operands]
    terms, rhs = _parse_einsum(subscripts, ndims)
    return operands, {"spec": ",".join(terms) + "->" + rhs}


def _einsum_infer(*xs, spec):
    terms, rhs = einsum_param(spec, [len(x.shape) for x in xs])
    dims: dict[str, int | None] = {}
    for term, x in zip(terms, xs):
        for c, d in zip(term, x.shape):
            have = dims.get(c)
            if have is not None and d is not None and have != d and 1 not in (have, d):
                raise ShapeError(f"einsum {spec!r}: letter {c!r} has sizes {have} and {d}")
            if have is None or have == 1:
                dims[c] = d
    return tuple(dims[c] for c in rhs), result_dtype(*xs)


def _einsum_vjp(ns, i, g, out, *xs, spec):
    lhs, rhs = spec.split("->")
    terms = lhs.split(",")
    mine = terms[i]
    if len(set(mine)) != len(mine):
        raise GradError(f"einsum {spec!r}: no gradient for operand {i} with a repeated index")
    others = [t for j, t in enumerate(terms) if j != i]
    reach = set(rhs).union(*others)
    target = "".join(c for c in mine if c in reach)
    r = ns.einsum(",".join([rhs, *others]) + "->" + target, g, *[x for j, x in enumerate(xs) if j != i])
    missing = tuple(k for k, c in enumerate(mine) if c not in reach)
    if missing:
        r = expand_to(ns, ns.expand_dims(r, missing), xs[i])
    return unbroadcast(ns, r, xs[i])


defop("einsum", _einsum_infer, lambda *xs, spec: np.einsum(spec, *xs), vjp_n=_einsum_vjp, jvp=jvp_product("einsum"),
      bind=_einsum_bind, code="np.einsum({spec!r}, {args})", kind=Kind.LINALG, linear=True, batch=batching.einsum,
      doc="Einstein summation; an operand's cotangent is another einsum of g with the others.")
