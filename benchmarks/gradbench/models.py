"""The GradBench functions, written once against a namespace of ops.

Each function takes ``ns`` first, then its inputs, and returns a scalar. With
``ns = common.api`` and variable nodes it builds the ``common`` IR graph that
the tool hands to either backend: symnum evaluates and differentiates that very
graph on numbers, symsym adds its derivative nodes and compiles it. The
``twograd bench`` workloads time the same functions. The formulas follow
GradBench's ``evals/<name>`` definitions (themselves Microsoft ADBench's),
expressed with whole-array ops so that the graphs stay small where the maths
is data-parallel (gmm) and linear in the sequence length where it is not
(lstm).
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np


def square(ns, x):
    """``hello``'s function: x * x (its derivative is left to the backend)."""
    return x * x


def lse(ns, x):
    """log(sum(exp(x))) from primitives: max, exp, sum, log.

    The shift by the max keeps exp from overflowing; it is a constant for
    differentiation (``stop_gradient``) because the result does not depend on
    it, so its derivative is exactly zero and need not be computed. A max that
    is not finite shifts by 0 instead (as scipy's ``logsumexp`` does), so
    ``[inf, 1]`` gives inf and ``[-inf, -inf]`` gives -inf, not ``inf - inf``.
    """
    m = ns.max(x)
    a = ns.stop_gradient(ns.where(ns.abs(m) < np.inf, m, 0.0))
    return a + ns.log(ns.sum(ns.exp(x - a)))


# ------------------------------------------------------------------------ gmm

def multigammaln(a: float, p: int) -> float:
    """log of the multivariate gamma function Gamma_p(a) (the Wishart normaliser)."""
    return 0.25 * p * (p - 1) * math.log(math.pi) + sum(math.lgamma(a + 0.5 * (1 - j))
                                                        for j in range(1, p + 1))


def lower_index(d: int) -> np.ndarray:
    """Where each entry of a d x d matrix comes from in ``[0, l_1, l_2, ...]``.

    GradBench fills the strictly lower triangle of Q_k column by column from
    l_k (for column i, rows i+1..d-1); everything else reads the leading 0.
    """
    idx = np.zeros((d, d), dtype=np.int64)
    rows, cols = np.tril_indices(d, -1)
    order = np.lexsort((rows, cols))  # column-major over the strict lower triangle
    idx[rows[order], cols[order]] = np.arange(1, len(order) + 1)
    return idx


def factor_index(d: int) -> np.ndarray:
    """Where each entry of Q_k comes from in ``[0, l_1, l_2, ..., exp(q_1), ..., exp(q_d)]``.

    With the diagonal in the same table, Q_k is one gather (an op every peer
    library has too), not a gather plus a product with a numpy identity.
    """
    idx = lower_index(d)
    diag = np.arange(d)
    idx[diag, diag] = 1 + d * (d - 1) // 2 + diag
    return idx


def gmm(ns, alpha, mu, q, l, x, m: int, gamma: float):
    """Log-posterior of a Gaussian mixture with a Wishart prior on the precisions.

    Shapes: alpha (k,), mu (k, d), q (k, d), l (k, d(d-1)/2), x (n, d). The
    precision factor of component k is Q_k = diag(exp(q_k)) + L_k with L_k the
    strict lower triangle from l_k; the likelihood term is, per point,
    logsumexp_k(alpha_k + sum(q_k) - |Q_k (x_i - mu_k)|^2 / 2). The work is laid
    out as (k, n, d) so the products with the Q_k are one batched matmul.
    """
    k, d = mu.shape
    n = x.shape[0]
    qdiag = ns.exp(q)
    sum_q = ns.sum(q, axis=1)
    entries = ns.concatenate([ns.full((k, 1), 0.0, dtype=l.dtype), l, qdiag], axis=1)
    factor = entries[:, factor_index(d)]                        # Q_k, (k, d, d)
    xc = ns.expand_dims(x, 0) - ns.expand_dims(mu, 1)          # (k, n, d)
    qx = ns.matmul(xc, ns.transpose(factor, (0, 2, 1)))        # Q_k (x_i - mu_k)
    main = ns.expand_dims(alpha + sum_q, 1) - 0.5 * ns.sum(qx * qx, axis=2)   # (k, n)
    slse = ns.sum(ns.logsumexp(main, axis=0))
    constant = -n * d * 0.5 * math.log(2 * math.pi)
    likelihood = constant + slse - n * ns.logsumexp(alpha, axis=0)
    dof = d + m + 1
    c = dof * d * (math.log(gamma) - 0.5 * math.log(2)) - multigammaln(0.5 * dof, d)
    frobenius = ns.sum(qdiag * qdiag, axis=1) + ns.sum(l * l, axis=1)
    prior = k * c - ns.sum(0.5 * gamma * gamma * frobenius - m * sum_q)
    return likelihood + prior


# ----------------------------------------------------------------------- lstm

def lstm(ns, main_params, extra_params, state, sequence):
    """Mean negative log-likelihood of an ADBench LSTM predicting each next character.

    Shapes: main_params (2 layers, 4b): per layer a row of weights then a row
    of biases, each the forget/input/output/change gates' b entries; weights
    are diagonal (elementwise). extra_params (3, b): input weight, output
    weight, output bias. state (2 layers, b): per layer hidden then cell.
    sequence (c, b): one bit vector per character. The quirks are ADBench's:
    the forget and output gates read the layer input, the input gate and the
    candidate read the hidden state, and the softmax normaliser has an extra
    +2 (a constant log 2 logit here, so the logsumexp stays stable).

    The recurrence unrolls one step at a time (c - 1 steps of ~17 nodes per
    layer); the prediction and the loss are computed once on the stacked
    outputs.
    """
    gates, hidden, cell = _lstm_unpack(main_params, state)
    in_weight = extra_params[0]
    outputs = [_lstm_step(ns, gates, hidden, cell, sequence[t] * in_weight) for t in range(sequence.shape[0] - 1)]
    return _lstm_loss(ns, ns.stack(outputs), extra_params, sequence)


def lstm_scan(ns, main_params, extra_params, state, sequence, checkpoint: bool = False):
    """:func:`lstm` with the recurrence as one ``ns.scan`` over the characters instead of unrolled.

    The same cost to the last bit (the same step, the same loss), but on a
    graph the step is a loop body traced once: symsym's graph and one-off no
    longer grow with the sequence length, and its gradient is a reverse scan.
    On the tape (``ns = symnum``) the scan is the same Python loop as
    :func:`lstm`'s. With ``checkpoint`` each step is ``ns.checkpoint``-ed: a
    gradient keeps the carries only and runs each step again backwards (the
    weights are the step's arguments, as the tape's checkpoint requires).
    """
    gates, hidden, cell = _lstm_unpack(main_params, state)
    in_weight = extra_params[0]

    def one_step(gates, in_weight, hidden, cell, char):
        hidden, cell = list(hidden), list(cell)
        top = _lstm_step(ns, gates, hidden, cell, char * in_weight)
        return tuple(hidden), tuple(cell), top

    run = ns.checkpoint(one_step) if checkpoint else one_step

    def step(carry, char):
        hidden, cell, top = run(gates, in_weight, carry[0], carry[1], char)
        return (hidden, cell), top

    _, outputs = ns.scan(step, (tuple(hidden), tuple(cell)), sequence[:-1])
    return _lstm_loss(ns, outputs, extra_params, sequence)


def _lstm_unpack(main_params, state) -> tuple[list, list, list]:
    """Per layer: the four gates' (weight, bias) slices, the initial hidden and cell states."""
    layers = main_params.shape[0] // 2
    b = main_params.shape[1] // 4
    gates = [[(main_params[2 * i, g * b:(g + 1) * b], main_params[2 * i + 1, g * b:(g + 1) * b])
              for g in range(4)] for i in range(layers)]
    return gates, [state[2 * i] for i in range(layers)], [state[2 * i + 1] for i in range(layers)]


def _lstm_step(ns, gates, hidden: list, cell: list, inp):
    """One character through every layer: ``hidden`` and ``cell`` updated in place; the top output."""
    for i, ((wf, bf), (wi, bi), (wo, bo), (wc, bc)) in enumerate(gates):
        forget = ns.sigmoid(inp * wf + bf)
        ingate = ns.sigmoid(hidden[i] * wi + bi)
        outgate = ns.sigmoid(inp * wo + bo)
        change = ns.tanh(hidden[i] * wc + bc)
        cell[i] = cell[i] * forget + ingate * change
        hidden[i] = outgate * ns.tanh(cell[i])
        inp = hidden[i]
    return inp


def _lstm_loss(ns, outputs, extra_params, sequence):
    """The mean negative log-likelihood of the next characters given the stacked top outputs (c-1, b)."""
    c, b = sequence.shape
    ypred = outputs * extra_params[1] + extra_params[2]                    # (c-1, b)
    log2 = ns.full((c - 1, 1), math.log(2.0), dtype=ypred.dtype)
    lse_ = ns.logsumexp(ns.concatenate([ypred, log2], axis=1), axis=1, keepdims=True)
    gold = sequence[1:]
    return -ns.sum(gold * (ypred - lse_)) / ((c - 1) * b)


# ----------------------------------------------------------------------- llsq

@functools.lru_cache(maxsize=8)
def llsq_data(n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The eval's fixed data: the powers t_i^j (n, m) of t_i = -1 + 2i/(n-1), and s_i = sign(t_i).

    The powers are running products (t^j = t^(j-1) * t), rounded as the
    definition's loop rounds them; the arrays are read-only, shared by runs.
    """
    t = -1.0 + np.arange(n, dtype=np.float64) * 2.0 / (n - 1)
    powers = np.cumprod(np.concatenate([np.ones((n, 1)), np.repeat(t[:, None], m - 1, axis=1)], axis=1), axis=1)
    s = np.sign(t)
    powers.flags.writeable = s.flags.writeable = False
    return powers, s


def llsq(ns, x, n: int):
    """cmpad's llsq_obj: half the squared residual of fitting sign(t) by a polynomial with coefficients x."""
    powers, s = llsq_data(n, x.shape[0])
    r = s - ns.matmul(powers, x)
    return 0.5 * ns.sum(r * r)


# ------------------------------------------------------------------------ ode

def ode(ns, x, steps: int):
    """cmpad's an_ode: y' = (x_0, x_1 y_0, ..., x_{n-1} y_{n-2}), y(0) = 0, by ``steps`` RK4 steps to t = 2.

    The steps are one ``ns.scan`` (its body traced once, its gradient a
    reverse scan), so the graph does not grow with ``steps``.
    """
    h = 2.0 / steps
    head = x[:1]
    rest = x[1:]

    def rate(y):
        return ns.concatenate([head, rest * y[:-1]])

    def step(y, _):
        k1 = rate(y)
        k2 = rate(y + h * k1 / 2.0)
        k3 = rate(y + h * k2 / 2.0)
        k4 = rate(y + h * k3)
        return y + h * (k1 + 2.0 * k2 + 2.0 * k3 + k4) / 6.0, None

    y, _ = ns.scan(step, ns.zeros_like(x), None, length=steps)
    return y


# ------------------------------------------------------------------------ det

@functools.lru_cache(maxsize=32)
def minor_tables(ell: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """For each row r from the last up: which entries and which smaller minors its expansion reads.

    The minors of rows r..ell-1 are indexed by their column sets S (|S| =
    ell - r, in ``itertools.combinations`` order). Expanding minor S along its
    first row (row r), term p is (-1)^p A[r, S_p] det(S without S_p), with
    the minor of S without S_p one level down. Per row: the flat indices
    r*ell + S_p (sets, p), the positions of the sets without S_p in the level
    below (sets, p), and the signs (p,).
    """
    levels = []
    below = {(): 0}
    for r in range(ell - 1, -1, -1):
        sets = list(itertools.combinations(range(ell), ell - r))
        entries = np.array([[r * ell + c for c in cols] for cols in sets], dtype=np.int64)
        minors = np.array([[below[cols[:p] + cols[p + 1:]] for p in range(len(cols))] for cols in sets],
                          dtype=np.int64)
        signs = np.array([(-1.0) ** p for p in range(ell - r)])
        levels.append((entries, minors, signs))
        below = {cols: i for i, cols in enumerate(sets)}
    return levels


def det(ns, a, ell: int):
    """The determinant of the row-major ell x ell matrix ``a`` by expansion by minors.

    Each minor is expanded along its first row, as cmpad's det_by_minor does,
    but a minor that many expansions share (the same rows, the same columns)
    is computed once: row by row from the bottom, each level is one gather,
    one product and one sum over every minor of that size. The sum has the
    same terms as the recursive expansion; the work is ell 2^(ell-1) products
    instead of ell!, and the graph has a few nodes per row.
    """
    minors = ns.full((1,), 1.0, dtype=a.dtype)
    for entries, below, signs in minor_tables(ell):
        minors = ns.sum(a[entries] * minors[below] * signs, axis=1)
    return minors[0]


# --------------------------------------------------------------------- kmeans

def kmeans(ns, points, centroids):
    """The sum over points of the squared distance to the nearest centroid.

    The (n, k) squared distances are |p|^2 - 2 p.c + |c|^2: one matmul, not an
    (n, k, d) difference array.
    """
    near = ns.sum(points * points, axis=1, keepdims=True) - 2.0 * ns.matmul(points, ns.transpose(centroids)) \
        + ns.sum(centroids * centroids, axis=1)
    return ns.sum(ns.min(near, axis=1))


# ------------------------------------------------------- saddle and particle

GD_TOLERANCE = 1e-5
GD_ETA = 1e-5


def argmin(ns, value_and_grad, x0):
    """Pearlmutter and Siskind's gradient descent, as the evals define it, as one ``ns.while_loop``.

    From ``x0`` with step eta = 1e-5: stop when |g| <= 1e-5; after 10
    accepted steps double eta; stop when the step moves x by <= 1e-5; accept
    x - eta g when it lowers f, else halve eta. The branches are selections
    on the carried state (x, f, g, eta, accepted steps, done), so the loop is
    one op on a graph, whose derivative (forward or reverse) is the loop's
    own, and a Python loop on the tape or on numbers. ``value_and_grad(x) ->
    (f(x), grad f(x))`` is how the caller differentiates.
    """
    fx, gx = value_and_grad(x0)

    def flag(pred):
        return ns.where(pred, 1.0, 0.0)

    def step(state):
        x, fx, gx, eta, accepted, _ = state
        xp = x - eta * gx
        fxp, gxp = value_and_grad(xp)
        small = flag(ns.sqrt(ns.sum(gx * gx)) <= GD_TOLERANCE)
        double = (1.0 - small) * flag(accepted > 9.5)
        still = (1.0 - small) * (1.0 - double) * flag(ns.sqrt(ns.sum((x - xp) * (x - xp))) <= GD_TOLERANCE)
        rest = (1.0 - small) * (1.0 - double) * (1.0 - still)
        accept = rest * flag(fxp < fx)
        reject = rest - accept
        take = accept > 0.5
        return (ns.where(take, xp, x), ns.where(take, fxp, fx), ns.where(take, gxp, gx),
                eta * (1.0 + double) * (1.0 - 0.5 * reject), accepted * (1.0 - double - reject) + accept,
                small + still)

    zero = ns.zeros_like(fx)
    state = (x0, fx, gx, zero + GD_ETA, zero, zero)
    return ns.while_loop(lambda state: state[5] < 0.5, step, state)[0]


def argmax(ns, value_and_grad, x0):
    """:func:`argmin` of -f."""
    def negated(x):
        fx, gx = value_and_grad(x)
        return -fx, -gx
    return argmin(ns, negated, x0)


def saddle_f(ns, p1, p2):
    """The saddle eval's function: (p1_0^2 + p1_1^2) - (p2_0^2 + p2_1^2)."""
    return ns.sum(p1 * p1) - ns.sum(p2 * p2)


def saddle_outer(ns, d, p1, start):
    """max over p2 of f(p1, p2), by :func:`argmax` from ``start`` with the gradient ``d`` takes inside."""
    def inner(p2):
        f = lambda p2: saddle_f(ns, p1, p2)
        return f(p2), d(f, p2)
    return saddle_f(ns, p1, argmax(ns, inner, start))


def saddle_inner(ns, d, p2, p1):
    """f(p1, p2) as a function of p2 (the second, plain argmax)."""
    return saddle_f(ns, p1, p2)


PARTICLE_DT = 1e-1


def particle(ns, d, w):
    """The particle's squared x at the x-axis crossing, for charges at (10, 10 - w) and (10, 0).

    Naive Euler from x = (0, 8), x' = (0.75, 0), steps of 0.1 while the next
    position stays above the axis, with x'' = -grad_x p(x) taken by ``d``
    inside the loop (p closes over w: the derivative the caller takes of this
    with respect to w is the one the perturbation-confusion literature is
    about); then the linear interpolation to y = 0.
    """
    charges = ns.stack([ns.concatenate([ns.full((1,), 10.0, dtype=w.dtype), 10.0 - w]),
                        ns.full((2,), 0.0, dtype=w.dtype) + np.array([10.0, 0.0])])

    def potential(x):
        diff = charges - x
        return ns.sum(1.0 / ns.sqrt(ns.sum(diff * diff, axis=1)))

    def step(state):
        x, xdot = state
        return x + PARTICLE_DT * xdot, xdot - PARTICLE_DT * d(potential, x)

    x0 = ns.full((2,), 0.0, dtype=w.dtype) + np.array([0.0, 8.0])
    xdot0 = ns.full((2,), 0.0, dtype=w.dtype) + np.array([0.75, 0.0])
    x, xdot = ns.while_loop(lambda s: (s[0] + PARTICLE_DT * s[1])[1] > 0.0, step, (x0, xdot0))
    t_f = -x[1] / xdot[1]
    landing = x + t_f * xdot
    return landing[0] * landing[0]


# ------------------------------------------------------------------------- ba

def _cross(ns, a, b):
    """Row-wise cross products of (p, 3) arrays."""
    return ns.stack([a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1], a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2],
                     a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]], axis=1)


def ba_project(ns, cams, points):
    """ADBench's camera model for each observation's (camera, point) row pair: (p, 11), (p, 3) -> (p, 2).

    A camera is an angle-axis rotation (3), a centre (3), a focal length, a
    principal point (2) and two radial distortion terms. The rotation is
    Rodrigues' formula, or its first order where the angle is exactly 0 (the
    angle's square root is taken of 1 there, so that neither side of the
    selection makes a NaN).
    """
    rot, centre = cams[:, 0:3], cams[:, 3:6]
    x = points - centre
    sq = ns.sum(rot * rot, axis=1, keepdims=True)
    turning = sq != 0.0
    theta = ns.sqrt(ns.where(turning, sq, 1.0))
    axis = rot / theta
    cos, sin = ns.cos(theta), ns.sin(theta)
    rodrigues = x * cos + _cross(ns, axis, x) * sin + axis * (ns.sum(axis * x, axis=1, keepdims=True) * (1.0 - cos))
    xcam = ns.where(turning, rodrigues, x + _cross(ns, rot, x))
    proj = xcam[:, 0:2] / xcam[:, 2:3]
    rsq = ns.sum(proj * proj, axis=1, keepdims=True)
    proj = proj * (1.0 + cams[:, 9:10] * rsq + cams[:, 10:11] * rsq * rsq)
    return proj * cams[:, 6:7] + cams[:, 7:9]


def ba(ns, cams, points, w, feats, cam_of, point_of):
    """Bundle adjustment's residuals, one vector: the weighted reprojection errors of the observations (x then
    y of each, 2p), then the weights' errors 1 - w^2 (p). Observation i sees camera ``cam_of[i]`` and point
    ``point_of[i]``."""
    reproj = ns.expand_dims(w, 1) * (ba_project(ns, cams[cam_of], points[point_of]) - feats)
    return ns.concatenate([ns.reshape(reproj, (-1,)), 1.0 - w * w])


# ------------------------------------------------------------------------- ht

def _rotation(ns, entries):
    """Rotation matrices (..., 3, 3) from the nine entries, each an array (...), row by row."""
    rows = [ns.stack(entries[3 * r:3 * r + 3], axis=-1) for r in range(3)]
    return ns.stack(rows, axis=-2)


def ht_euler_rotations(ns, angles):
    """Rz(a_1) Ry(a_2) Rx(a_0) for each row (x, z, y) of ``angles`` (b, 3): the bones' rotations, (b, 3, 3).

    The product is written out entry by entry (one stack, no matrix products): angles (x, z, y) are
    ADBench's column order, the rotation about y between the other two.
    """
    cx, cz, cy = (ns.cos(angles[:, k]) for k in range(3))
    sx, sz, sy = (ns.sin(angles[:, k]) for k in range(3))
    return _rotation(ns, [cz * cy, cz * sy * sx - sz * cx, sz * sx + cz * sy * cx,
                          sz * cy, cz * cx + sz * sy * sx, sz * sy * cx - cz * sx,
                          -sy, cy * sx, cy * cx])


def ht_angle_axis_rotation(ns, r):
    """Rodrigues' rotation for the angle-axis vector ``r`` (3,), or the identity where |r| < 1e-4 (as the
    reference: the identity's derivative is 0 there). The angle is taken of 1 on the identity's side so
    that neither side of the selection divides by 0."""
    sq = ns.sum(r * r)
    turning = sq >= 1e-8
    angle = ns.sqrt(ns.where(turning, sq, 1.0))
    x, y, z = (r[k] / angle for k in range(3))
    c, s = ns.cos(angle), ns.sin(angle)
    t = 1.0 - c
    rodrigues = _rotation(ns, [c + t * x * x, t * x * y - s * z, t * x * z + s * y,
                               t * x * y + s * z, c + t * y * y, t * y * z - s * x,
                               t * x * z - s * y, t * y * z + s * x, c + t * z * z])
    return ns.where(turning, rodrigues, np.eye(3))


@functools.lru_cache(maxsize=8)
def ht_pose_index(bones: int) -> np.ndarray:
    """Where each bone's (x, z, y) angles come from in ``[0, theta_0, ..., theta_25]`` (bones, 3).

    After the 6 global parameters, each of the five fingers takes 4: two angles of its second joint
    (bone 2 + 4f), one of its third and fourth; every other bone (wrist, the fingers' first joints,
    the forearm) and every y angle stays 0.
    """
    idx = np.zeros((bones, 3), dtype=np.int64)
    for finger in range(5):
        bone, t = 2 + 4 * finger, 7 + 4 * finger
        idx[bone, 0], idx[bone, 1], idx[bone + 1, 0], idx[bone + 2, 0] = t, t + 1, t + 2, t + 3
    return idx


@functools.lru_cache(maxsize=8)
def ht_levels(parents: tuple) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """The bone tree by depth: per level below the roots, (its bones, their parents' rows in the
    concatenation of the levels above), and each bone's row in the concatenation of all levels."""
    depth = [0] * len(parents)
    for i, p in enumerate(parents):
        depth[i] = 0 if p < 0 else depth[p] + 1
    order = sorted(range(len(parents)), key=lambda i: (depth[i], i))
    row = {bone: k for k, bone in enumerate(order)}
    levels = []
    for d in range(1, max(depth) + 1):
        bones = np.array([i for i in order if depth[i] == d], dtype=np.int64)
        levels.append((bones, np.array([row[parents[i]] for i in bones], dtype=np.int64)))
    roots = np.array([i for i in order if depth[i] == 0], dtype=np.int64)
    return [(roots, np.zeros(0, dtype=np.int64)), *levels], np.array([row[i] for i in range(len(parents))])


def ht_vertices(ns, theta, base_relatives, inverse_base_absolutes, base_positions, weights, parents: tuple,
                mirrored: bool):
    """The posed hand's vertices (v, 3): each bone's transform, blended by the skinning weights.

    Bone b's relative transform is its base relative times its rotation (Euler angles from ``theta``);
    its absolute transform is its parent's absolute times its relative, computed one depth of the
    tree at a time (one batched product per level); its skinning transform is the absolute times the
    inverse base absolute. A vertex moves by the weighted sum of the transforms' top three rows
    (linear blend skinning), mirrored in x if the model is, then by the global rotation (angle-axis
    ``theta[0:3]``) and translation ``theta[3:6]``.
    """
    bones = base_relatives.shape[0]
    padded = ns.concatenate([ns.full((1,), 0.0, dtype=theta.dtype), theta])
    rotations = ht_euler_rotations(ns, padded[ht_pose_index(bones)])                    # (b, 3, 3)
    relatives = ns.concatenate([ns.matmul(base_relatives[:, :, 0:3], rotations), base_relatives[:, :, 3:4]], axis=2)
    levels, rows = ht_levels(parents)
    absolutes = relatives[levels[0][0]]
    for level_bones, parent_rows in levels[1:]:
        absolutes = ns.concatenate([absolutes, ns.matmul(absolutes[parent_rows], relatives[level_bones])])
    transforms = ns.matmul(absolutes[rows], inverse_base_absolutes)[:, 0:3, :]          # (b, 3, 4)
    blended = ns.reshape(ns.matmul(weights, ns.reshape(transforms, (bones, 12))), (-1, 3, 4))
    positions = ns.sum(blended * ns.expand_dims(base_positions, 1), axis=2)               # (v, 3)
    if mirrored:
        positions = positions * np.array([-1.0, 1.0, 1.0])
    return ns.matmul(positions, ns.transpose(ht_angle_axis_rotation(ns, theta[0:3]))) + theta[3:6]


def ht(ns, theta, us, base_relatives, inverse_base_absolutes, base_positions, weights, points, parents: tuple,
       mirrored: bool, used: np.ndarray, reads: np.ndarray):
    """Hand tracking's residuals (3n,): each data point minus its point on the posed hand, x y z per point.

    Only the vertices ``used`` are posed. ``reads`` indexes their coordinates, flattened (vertex k's
    coordinate j is entry 3k + j): (n, 3), point i's vertex (the simple variant), or (3, n, 3), corner
    c of point i's triangle at [c, i] (the complicated variant), whose point on the hand is
    u_0 P_0 + u_1 P_1 + (1 - u_0 - u_1) P_2 with ``us`` (n, 2). One gather from a flat vector reads them
    all (a tangent pays for it once per pass, and a flat gather is several times faster than numpy's
    gather of rows), corner by corner so that each corner's (n, 3) is contiguous.
    """
    vertices = ht_vertices(ns, theta, base_relatives, inverse_base_absolutes, base_positions[used], weights[used],
                           parents, mirrored)
    hand = ns.reshape(vertices, (-1,))[reads]
    if reads.ndim == 3:
        u0, u1 = us[:, 0:1], us[:, 1:2]
        hand = u0 * hand[0] + u1 * hand[1] + (1.0 - u0 - u1) * hand[2]
    return ns.reshape(points - hand, (-1,))
