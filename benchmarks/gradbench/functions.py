"""GradBench's modules and functions: how to read each input, build its graph, write its output.

A :class:`Function` is data: what the eval's JSON ``input`` becomes (arrays
plus static parameters), which graph computes it (:mod:`.models`), which of
its inputs to differentiate (none: the value itself), and how the resulting
arrays are written back as JSON. The tool and the tests enumerate
:data:`MODULES`; nothing here knows about a backend.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from common.errors import FeedError
from common.ops.params import MAX_DIM, MAX_INT, is_int, shown

from . import models


@dataclass(frozen=True)
class Function:
    """One ``(module, function)`` pair of the protocol.

    ``parse(input) -> (arrays, statics)``: named float64 arrays (the graph's
    variables, fed on every run) and hashable static parameters (baked into
    the graph). ``model(ns, vars, statics)`` computes the output in the
    namespace ``ns`` (``common.api`` on variable nodes: the IR graph;
    ``symnum`` on tensors: the tape). ``wrt``: names of the variables to
    differentiate, in output order (empty for a primal value).
    ``write(results) -> JSON`` formats the results. ``derive`` says what the
    engine computes: ``"value"`` (the output), ``"grad"`` (the scalar
    output's gradients in ``wrt`` order) or ``"grad_hdiag"`` (the gradient
    with respect to the one ``wrt`` and the Hessian times ones, forward over
    reverse: the Hessian's diagonal when the Hessian is diagonal), ``"jvp"``
    (the Jacobian along each of ``seeds(shapes, statics)``, a list with one
    tangent per ``wrt`` each: a sparse Jacobian's compressed columns) or
    ``"nested"`` (:class:`Nested`); by default ``"grad"`` when ``wrt`` is
    given, else ``"value"``. A ``wrt`` name the parsed input lacks is not
    differentiated (ht's ``us``, absent in its simple variant). ``assemble(results, statics)``, part of each
    timed run, turns the engine's results into what ``write`` reads.
    """

    parse: Callable[[Any], tuple[dict[str, np.ndarray], tuple]]
    model: Callable[..., Any]
    wrt: tuple[str, ...]
    write: Callable[[list[np.ndarray]], Any]
    derivative: str = ""
    seeds: Callable | None = None
    assemble: Callable | None = None

    @property
    def derive(self) -> str:
        return self.derivative or ("grad" if self.wrt else "value")

    def differentiated(self, names) -> list[str]:
        """The ``wrt`` names among the input's variables ``names``, in ``wrt`` order."""
        return [w for w in self.wrt if w in names]


MAX_ELEMENTS = 10**9
"""The most elements an input may make a model hold in one array (llsq's powers, kmeans' distances)."""


# ------------------------------------------------------------ reading inputs

def field(input: Any, name: str) -> Any:
    if not isinstance(input, dict):
        raise FeedError(f"input must be a JSON object with {name!r}, got {type(input).__name__}")
    if name not in input:
        raise FeedError(f"input has no field {name!r} (fields: {sorted(input)})")
    return input[name]


def array(input: Any, name: str, shape: tuple) -> np.ndarray:
    """Field ``name`` as a float64 array of ``shape`` (None: any size), or a FeedError."""
    arr = _numbers(field(input, name), name)
    if arr.ndim != len(shape) and not (arr.size == 0 and arr.ndim < len(shape)):
        raise FeedError(f"field {name!r} has {arr.ndim} dimensions, expected {len(shape)}")
    if arr.ndim != len(shape):  # an empty list of rows: numpy cannot see the row length
        want = tuple(0 if d is None else d for d in shape)
        if math.prod(want):
            raise FeedError(f"field {name!r} is empty, expected shape {want}")
        arr = arr.reshape(want)
    for axis, (want, got) in enumerate(zip(shape, arr.shape, strict=True)):
        if want is not None and want != got:
            raise FeedError(f"field {name!r} has shape {arr.shape}, expected size {want} on axis {axis}")
    return arr


def _numbers(value: Any, name: str) -> np.ndarray:
    """``value`` as a float64 array, read as the graph builders read a constant: JSON numbers only (no
    strings, booleans or nulls that numpy would convert), each within float64's range."""
    try:
        raw = np.array(value)
    except (TypeError, ValueError, OverflowError, RecursionError) as e:  # ragged, too deep
        raise FeedError(f"field {name!r} is not a rectangular array of numbers: {e}") from None
    if raw.dtype.kind == "O" and all(is_int(v) or v.__class__ is float for v in raw.flat):  # ints past int64
        try:
            return raw.astype(np.float64)
        except OverflowError:
            raise FeedError(f"field {name!r} has a number past float64's range") from None
    if raw.size and raw.dtype.kind not in "iuf":
        held = {"U": "strings", "b": "booleans"}.get(raw.dtype.kind, "nulls or objects")
        raise FeedError(f"field {name!r} holds {held}, not numbers only")
    return raw.astype(np.float64, copy=False)


def integer(input: Any, name: str, low: int = 0, high: int = MAX_INT) -> int:
    """Field ``name`` as an int in ``[low, high]`` (a float with an integer value is one too)."""
    value = field(input, name)
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or (isinstance(value, float) and not value.is_integer()) or not low <= value <= high):
        raise FeedError(f"field {name!r} must be an integer from {low} to {high}, got {shown(value)}")
    return int(value)


def number(input: Any, name: str) -> float:
    """Field ``name`` as a float64, or a FeedError (an int past float64's range is one)."""
    return _float(field(input, name), f"field {name!r}")


def _float(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FeedError(f"{what} must be a number, got {shown(value)}")
    try:
        return float(value)
    except OverflowError:
        raise FeedError(f"{what} is past float64's range: {shown(value)}") from None


# --------------------------------------------------------------------- hello

def parse_hello(input: Any):
    return {"x": np.asarray(_float(input, "hello's input"))}, ()


def scalar(results: list[np.ndarray]) -> float:
    return float(results[0])


# ----------------------------------------------------------------------- lse

def parse_lse(input: Any):
    x = array(input, "x", (None,))
    if x.size == 0:
        raise FeedError("field 'x' must not be empty (the logsumexp of nothing is -inf)")
    return {"x": x}, ()


def vector(results: list[np.ndarray]) -> list:
    return results[0].tolist()


# ----------------------------------------------------------------------- gmm

GMM_PARAMS = ("alpha", "mu", "q", "l")


def parse_gmm(input: Any):
    d, k, n = (integer(input, name, 1, MAX_DIM) for name in ("d", "k", "n"))
    arrays = {
        "alpha": array(input, "alpha", (k,)),
        "mu": array(input, "mu", (k, d)),
        "q": array(input, "q", (k, d)),
        "l": array(input, "l", (k, d * (d - 1) // 2)),
        "x": array(input, "x", (n, d)),
    }
    gamma = number(input, "gamma")
    if not (math.isfinite(gamma) and gamma > 0):
        raise FeedError(f"field 'gamma' must be a positive finite number, got {gamma}")
    return arrays, (integer(input, "m"), gamma)


def model_gmm(ns, v, statics):
    return models.gmm(ns, v["alpha"], v["mu"], v["q"], v["l"], v["x"], *statics)


def write_gmm_gradient(results: list[np.ndarray]) -> dict:
    return {name: g.tolist() for name, g in zip(GMM_PARAMS, results, strict=True)}


# ---------------------------------------------------------------------- lstm

def parse_lstm(input: Any):
    main = array(input, "main_params", (None, None))
    layers2, b4 = main.shape
    if layers2 == 0 or layers2 % 2 or b4 == 0 or b4 % 4:
        raise FeedError(f"field 'main_params' has shape {main.shape}: expected (2 * layers, 4 * b)")
    b = b4 // 4
    arrays = {
        "main_params": main,
        "extra_params": array(input, "extra_params", (3, b)),
        "state": array(input, "state", (layers2, b)),
        "sequence": array(input, "sequence", (None, b)),
    }
    if arrays["sequence"].shape[0] < 2:
        raise FeedError("field 'sequence' needs at least 2 characters (each step predicts the next)")
    return arrays, ()


def model_lstm(ns, v, statics):
    """The recurrence as one scan: the graph, and symsym's one-off, do not grow with the sequence."""
    return models.lstm_scan(ns, v["main_params"], v["extra_params"], v["state"], v["sequence"])


def write_flat(results: list[np.ndarray]) -> list:
    return np.concatenate([g.ravel() for g in results]).tolist()


# ---------------------------------------------------------------------- llsq

def parse_llsq(input: Any):
    x = array(input, "x", (None,))
    if x.size == 0:
        raise FeedError("field 'x' must not be empty (it holds the polynomial's coefficients)")
    n = integer(input, "n", 2, MAX_DIM)
    if n * x.size > MAX_ELEMENTS:
        raise FeedError(f"fields 'n' and 'x': n * len(x) = {n * x.size} powers, more than {MAX_ELEMENTS}")
    return {"x": x}, (n,)


def model_llsq(ns, v, statics):
    return models.llsq(ns, v["x"], *statics)


# ----------------------------------------------------------------------- ode

def parse_ode(input: Any):
    x = array(input, "x", (None,))
    if x.size == 0:
        raise FeedError("field 'x' must not be empty (it has one coefficient per equation)")
    return {"x": x}, (integer(input, "s", 1, MAX_DIM),)


def model_ode(ns, v, statics):
    return models.ode(ns, v["x"], *statics)


def model_ode_last(ns, v, statics):
    """The last component of the solution: its gradient is what ``gradient`` asks for."""
    return models.ode(ns, v["x"], *statics)[-1]


# ----------------------------------------------------------------------- det

MAX_ELL = 16
"""The largest matrix ``det`` answers: its minors take ell 2^(ell-1) products (ell = 16: half a million);
the recursive expansion's ell! (16! = 2 10^13) would not finish at all."""


def parse_det(input: Any):
    ell = integer(input, "ell", 1, MAX_ELL)
    return {"A": array(input, "A", (ell * ell,))}, (ell,)


def model_det(ns, v, statics):
    return models.det(ns, v["A"], *statics)


# -------------------------------------------------------------------- kmeans

def parse_kmeans(input: Any):
    points = array(input, "points", (None, None))
    n, d = points.shape
    if n == 0 or d == 0:
        raise FeedError(f"field 'points' has shape {points.shape}: it needs at least one point of one coordinate")
    centroids = array(input, "centroids", (None, d))
    if centroids.shape[0] == 0:
        raise FeedError("field 'centroids' must not be empty")
    if n * centroids.shape[0] > MAX_ELEMENTS:
        raise FeedError(f"fields 'points' and 'centroids': {n} x {centroids.shape[0]} distances, "
                        f"more than {MAX_ELEMENTS}")
    return {"points": points, "centroids": centroids}, ()


def model_kmeans(ns, v, statics):
    return models.kmeans(ns, v["points"], v["centroids"])


def write_newton_direction(results: list[np.ndarray]) -> list:
    """The Newton step J H^-1, with H diagonal: the gradient over the Hessian's diagonal, per centroid."""
    gradient, diagonal = results
    return (gradient / diagonal).tolist()


# ---------------------------------------------------- saddle and particle

@dataclass(frozen=True)
class Nested:
    """A nested-optimisation function: its differentiated programs, and the driver that uses them.

    ``programs``: ``(fn, shapes)`` pairs, ``fn(ns, d, x, *others)`` a scalar
    whose inner derivatives are ``d(f, x)`` (taken by ``inner`` mode, ``"r"``
    or ``"f"``), differentiated with respect to its first argument by
    ``outer`` mode. The engine makes each a ``arrays -> (value, gradient)``
    once; ``drive(programs, arrays)`` runs the gradient descents on numbers
    and returns the results.
    """

    programs: tuple
    drive: Callable
    inner: str
    outer: str


class _Host:
    """Numbers as a namespace for :func:`models.argmin`: numpy's functions and a Python while loop."""

    where, sqrt, sum, zeros_like = staticmethod(np.where), staticmethod(np.sqrt), staticmethod(np.sum), \
        staticmethod(np.zeros_like)

    @staticmethod
    def while_loop(cond, body, state):
        while cond(state):
            state = body(state)
        return state


def parse_saddle(input: Any):
    return {"start": array(input, "start", (2,))}, ()


def drive_saddle(programs, arrays):
    """Step 1: argmin over x of max over y of f(x, y) (the max itself a descent inside the objective);
    step 2: argmax over y of f(x, y); the answer is x then y."""
    outer, second = programs
    start = arrays[0]
    x = models.argmin(_Host, lambda p: outer([p, start]), start)
    y = models.argmax(_Host, lambda q: second([q, x]), start)
    return [np.concatenate([x, y])]


def saddle_function(modes: str) -> Function:
    programs = ((models.saddle_outer, ((2,), (2,))), (models.saddle_inner, ((2,), (2,))))
    return Function(parse_saddle, Nested(programs, drive_saddle, modes[1], modes[0]), (), vector, "nested")


def parse_particle(input: Any):
    return {"w": np.array([number(input, "w")])}, ()


def drive_particle(programs, arrays):
    """argmin over w of the squared miss, from the given w."""
    (miss,) = programs
    return models.argmin(_Host, lambda w: miss([w]), arrays[0])


def particle_function(modes: str) -> Function:
    nested = Nested(((models.particle, ((1,),)),), drive_particle, modes[1], modes[0])
    return Function(parse_particle, nested, (), scalar, "nested")


# ------------------------------------------------------------------------ ba

BA_CAMERA = 11


def parse_ba(input: Any):
    n, m, p = (integer(input, name, 1, MAX_DIM) for name in ("n", "m", "p"))
    if 31 * p > MAX_ELEMENTS:
        raise FeedError(f"field 'p': {p} observations make a Jacobian of more than {MAX_ELEMENTS} entries")
    camera, point, feat = array(input, "cam", (BA_CAMERA,)), array(input, "x", (3,)), array(input, "feat", (2,))
    arrays = {"cams": np.tile(camera, (n, 1)), "points": np.tile(point, (m, 1)),
              "w": np.full(p, number(input, "w")), "feats": np.tile(feat, (p, 1))}
    return arrays, (n, m, p)


@functools.lru_cache(maxsize=4)
def ba_observations(n: int, m: int, p: int) -> tuple[np.ndarray, np.ndarray]:
    """Which camera and which point observation i sees: i mod n and i mod m, as the eval lays them out."""
    return np.arange(p) % n, np.arange(p) % m


def model_ba(ns, v, statics):
    return models.ba(ns, v["cams"], v["points"], v["w"], v["feats"], *ba_observations(*statics))


def ba_colours(shapes, statics) -> list[list[np.ndarray]]:
    """The Jacobian's columns in 15 colours: parameter k of every camera (no observation sees two cameras),
    coordinate k of every point, and every weight (each is its own observation's): 15 forward passes."""
    n, m, p = statics
    colours = []
    for var, width in ((0, BA_CAMERA), (1, 3)):
        for k in range(width):
            seed = [np.zeros((n, BA_CAMERA)), np.zeros((m, 3)), np.zeros(p)]
            seed[var][:, k] = 1.0
            colours.append(seed)
    colours.append([np.zeros((n, BA_CAMERA)), np.zeros((m, 3)), np.ones(p)])
    return colours


def ba_sparse(results: list[np.ndarray], statics) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The whole Jacobian in the eval's layout from its 15 compressed columns: row pointers, columns, values.

    Rows 2i and 2i+1 (observation i's x and y) hold camera i mod n's 11
    parameters, point i mod m's 3 coordinates and weight i; row 2p + i holds
    weight i alone.
    """
    n, m, p = statics
    cam_of, point_of = ba_observations(n, m, p)
    compressed = np.stack(results, axis=1)                                  # (3p, 15)
    per_obs = np.concatenate([BA_CAMERA * cam_of[:, None] + np.arange(BA_CAMERA),
                              BA_CAMERA * n + 3 * point_of[:, None] + np.arange(3),
                              (BA_CAMERA * n + 3 * m + np.arange(p))[:, None]], axis=1)   # (p, 15)
    cols = np.concatenate([np.repeat(per_obs, 2, axis=0).ravel(), BA_CAMERA * n + 3 * m + np.arange(p)])
    vals = np.concatenate([compressed[:2 * p].ravel(), compressed[2 * p:, -1]])
    rows = np.concatenate([np.arange(2 * p + 1) * 15, 30 * p + 1 + np.arange(p)])
    return rows, cols, vals


def write_ba_objective(results: list[np.ndarray]) -> dict:
    """The eval's summary of the residuals: the first observation's two errors and the first weight error,
    each with how many there are."""
    (residuals,) = results
    p = residuals.size // 3
    return {"reproj_error": {"elements": residuals[:2].tolist(), "repeated": p},
            "w_err": {"element": float(residuals[2 * p]), "repeated": p}}


def write_ba_jacobian(results) -> dict:
    """The eval's summary of the sparse Jacobian: the first 30 entries of each list and the last."""
    return {name: [*part[:30].tolist(), part[-1].item()] for name, part in zip(("rows", "cols", "vals"), results)}


# ------------------------------------------------------------------------ ht

HT_THETA = 26
"""The pose: global rotation (angle-axis) and translation, then four angles for each of five fingers."""
HT_BONES = 21
"""The fewest bones the pose can move: the fingers' angles reach bone 20 (the little finger's last joint)."""


class Indices:
    """A read-only integer array that can be a static parameter: hashed once by its bytes, equal by value."""

    def __init__(self, values: np.ndarray):
        self.array = np.array(values, dtype=np.int64)
        self.array.flags.writeable = False
        self._hash = hash((self.array.shape, self.array.tobytes()))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Indices) and self._hash == other._hash and np.array_equal(self.array, other.array)


def indices(input: Any, name: str, shape: tuple, low: int, high: int) -> np.ndarray:
    """Field ``name`` as an int64 array of ``shape`` (None: any size), every entry from ``low`` to ``high``."""
    raw = field(input, name)
    try:
        arr = np.array(raw)
    except (TypeError, ValueError, OverflowError, RecursionError) as e:
        raise FeedError(f"field {name!r} is not a rectangular array of integers: {e}") from None
    if arr.size and arr.dtype.kind not in "iu":
        raise FeedError(f"field {name!r} must hold integers only, got {arr.dtype.kind!r}-kind values")
    arr = array({name: raw}, name, shape).astype(np.int64)
    if arr.size and not (low <= arr.min() and arr.max() <= high):
        raise FeedError(f"field {name!r} must hold integers from {low} to {high}, got {arr.min()} to {arr.max()}")
    return arr


def parse_ht(input: Any):
    """The hand model, the data points and their correspondences; ``us`` empty (the simple variant: point i
    matches vertex ``correspondences[i]``) or (n, 2) (the complicated one: a point on triangle
    ``correspondences[i]``). Statics: the bone tree, the mirroring, the vertices the residuals read and
    where each point reads their coordinates."""
    theta = array(input, "theta", (HT_THETA,))
    data = field(input, "data")
    model = field(data, "model")
    bones = integer(model, "bone_count", HT_BONES, MAX_DIM)
    names = field(model, "bone_names")
    if not isinstance(names, list) or len(names) != bones or not all(isinstance(b, str) for b in names):
        raise FeedError(f"field 'bone_names' must be a list of {bones} strings (bone_count)")
    parents = indices(model, "parents", (bones,), -1, bones - 1)
    if np.any(parents >= np.arange(bones)):
        raise FeedError("field 'parents': each bone's parent must come before it (or be -1)")
    mirrored = field(model, "is_mirrored")
    if not isinstance(mirrored, bool):
        raise FeedError(f"field 'is_mirrored' must be true or false, got {shown(mirrored)}")
    base_positions = array(model, "base_positions", (None, 4))
    v = base_positions.shape[0]
    if v == 0:
        raise FeedError("field 'base_positions' must not be empty")
    us = array(input, "us", (None, 2))
    arrays = {"theta": theta, **({"us": us} if us.shape[0] else {}),
              "base_relatives": array(model, "base_relatives", (bones, 4, 4)),
              "inverse_base_absolutes": array(model, "inverse_base_absolutes", (bones, 4, 4)),
              "base_positions": base_positions, "weights": array(model, "weights", (v, bones))}
    triangles = indices(model, "triangles", (None, 3), 0, v - 1)
    complicated = us.shape[0] > 0
    high = len(triangles) - 1 if complicated else v - 1
    correspondences = indices(data, "correspondences", (None,), 0, high)
    n = len(correspondences)
    if n == 0:
        raise FeedError("field 'correspondences' must not be empty")
    arrays["points"] = array(data, "points", (n, 3))
    if complicated and us.shape[0] != n:
        raise FeedError(f"field 'us' has {us.shape[0]} rows, expected none or one per point ({n})")
    needed = triangles[correspondences] if complicated else correspondences
    used, corners = np.unique(needed, return_inverse=True)
    reads = 3 * corners.reshape(*needed.shape, 1) + np.arange(3)          # each corner's x, y, z among the used
    if complicated:
        reads = reads.transpose(1, 0, 2)                                   # corner by corner: (3, n, 3)
    return arrays, (tuple(parents.tolist()), mirrored, Indices(used), Indices(reads))


def model_ht(ns, v, statics):
    parents, mirrored, used, reads = statics
    return models.ht(ns, v["theta"], v.get("us"), v["base_relatives"], v["inverse_base_absolutes"], v["base_positions"],
                     v["weights"], v["points"], parents, mirrored, used.array, reads.array)


def ht_seeds(shapes, statics) -> list[list[np.ndarray]]:
    """The Jacobian's columns in as many passes: in the complicated variant first u_0 of every point, then
    u_1 of every point (each point's residuals read its own us only, so two passes give those columns),
    then each of the 26 pose parameters. Each seed is a tangent for theta, then for us where there are us."""
    if "us" not in shapes:
        return [[e] for e in np.eye(HT_THETA)]
    us = np.zeros((2, *shapes["us"]))
    us[0, :, 0] = us[1, :, 1] = 1.0
    return [[np.zeros(HT_THETA), u] for u in us] + [[e, np.zeros(shapes["us"])] for e in np.eye(HT_THETA)]


def ht_jacobian(results: list[np.ndarray], statics) -> list[np.ndarray]:
    """The (3n, 28 or 26) Jacobian as the eval lays it out: the compressed us columns, then theta's."""
    return [np.stack(results, axis=1)]


MODULES: dict[str, dict[str, Function]] = {
    "hello": {
        "square": Function(parse_hello, lambda ns, v, s: models.square(ns, v["x"]), (), scalar),
        "double": Function(parse_hello, lambda ns, v, s: models.square(ns, v["x"]), ("x",), scalar),
    },
    "lse": {
        "primal": Function(parse_lse, lambda ns, v, s: models.lse(ns, v["x"]), (), scalar),
        "gradient": Function(parse_lse, lambda ns, v, s: models.lse(ns, v["x"]), ("x",), vector),
    },
    "gmm": {
        "objective": Function(parse_gmm, model_gmm, (), scalar),
        "jacobian": Function(parse_gmm, model_gmm, GMM_PARAMS, write_gmm_gradient),
    },
    "lstm": {
        "objective": Function(parse_lstm, model_lstm, (), scalar),
        "jacobian": Function(parse_lstm, model_lstm, ("main_params", "extra_params"), write_flat),
    },
    "llsq": {
        "primal": Function(parse_llsq, model_llsq, (), scalar),
        "gradient": Function(parse_llsq, model_llsq, ("x",), vector),
    },
    "ode": {
        "primal": Function(parse_ode, model_ode, (), vector),
        "gradient": Function(parse_ode, model_ode_last, ("x",), vector),
    },
    "det": {
        "primal": Function(parse_det, model_det, (), scalar),
        "gradient": Function(parse_det, model_det, ("A",), vector),
    },
    "kmeans": {
        "cost": Function(parse_kmeans, model_kmeans, (), scalar),
        "dir": Function(parse_kmeans, model_kmeans, ("centroids",), write_newton_direction, "grad_hdiag"),
    },
    "ba": {
        "objective": Function(parse_ba, model_ba, (), write_ba_objective),
        "jacobian": Function(parse_ba, model_ba, ("cams", "points", "w"), write_ba_jacobian, "jvp",
                             seeds=ba_colours, assemble=ba_sparse),
    },
    "ht": {
        "objective": Function(parse_ht, model_ht, (), vector),
        "jacobian": Function(parse_ht, model_ht, ("theta", "us"), vector, "jvp", seeds=ht_seeds,
                             assemble=ht_jacobian),
    },
    "saddle": {modes: saddle_function(modes) for modes in ("ff", "fr", "rf", "rr")},
    "particle": {modes: particle_function(modes) for modes in ("ff", "fr", "rf", "rr")},
}
"""Every module twograd answers, by name, then every function by name."""
