"""GradBench's hand tracking (ht): the residuals against a plain numpy model, the Jacobian against central
differences of it, and bad inputs answered with an error while the tool keeps serving.

The reference below is written from the eval's definition with loops and 4x4 matrix products, one bone
and one point at a time, sharing nothing with :mod:`benchmarks.gradbench.models`.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from test_gradbench_models import BACKENDS, answer, rel

from benchmarks.finite import central_differences
from benchmarks.gradbench.functions import MODULES
from benchmarks.gradbench.tool import Tool

HAND_PARENTS = [-1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19, 0]


def rotation_about(axis: int, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def pose_matrix(theta, bones):
    """The 3 x (bones + 3) pose parameters: rotation, scale 1, translation, then a column per bone."""
    pose = np.zeros((3, bones + 3))
    pose[:, 0], pose[:, 1], pose[:, 2] = theta[0:3], 1.0, theta[3:6]
    t, col = 6, 5
    for _finger in range(5):
        for joint in (2, 3, 4):
            pose[0, col] = theta[t]
            t += 1
            if joint == 2:
                pose[1, col] = theta[t]
                t += 1
            col += 1
        col += 1
    return pose


def residuals_reference(input) -> np.ndarray:
    """The residuals, bone by bone and point by point."""
    model, data = input["data"]["model"], input["data"]
    theta = np.asarray(input["theta"])
    bones = model["bone_count"]
    pose = pose_matrix(theta, bones)
    absolutes = []
    for b in range(bones):
        tx, tz, ty = pose[:, b + 3]
        posed = np.eye(4)
        posed[:3, :3] = rotation_about(2, tz) @ rotation_about(1, ty) @ rotation_about(0, tx)
        relative = np.asarray(model["base_relatives"][b]) @ posed
        parent = model["parents"][b]
        absolutes.append(relative if parent == -1 else absolutes[parent] @ relative)
    base = np.asarray(model["base_positions"]).T                      # (4, v)
    weights = np.asarray(model["weights"])                             # (v, bones)
    positions = np.zeros((3, base.shape[1]))
    for b in range(bones):
        moved = absolutes[b] @ np.asarray(model["inverse_base_absolutes"][b]) @ base
        positions += moved[:3] * weights[:, b]
    if model["is_mirrored"]:
        positions[0] *= -1
    r = theta[0:3]
    angle = np.linalg.norm(r)
    rot = np.eye(3)
    if angle >= 1e-4:
        k = r / angle
        cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        rot = np.cos(angle) * np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * np.outer(k, k)
    positions = rot @ positions + theta[3:6, None]
    out = []
    for i, c in enumerate(data["correspondences"]):
        if len(input["us"]):
            u0, u1 = input["us"][i]
            a, b_, c_ = model["triangles"][c]
            hand = u0 * positions[:, a] + u1 * positions[:, b_] + (1 - u0 - u1) * positions[:, c_]
        else:
            hand = positions[:, c]
        out.extend(np.asarray(data["points"][i]) - hand)
    return np.array(out)


def hand_input(rng, complicated: bool, mirrored: bool = False, n: int = 5, v: int = 9) -> dict:
    """A small random hand in the eval's JSON layout: 22 bones in the hand's tree, v vertices, n points."""
    def transform():
        m = np.eye(4)
        m[:3, :3] = rotation_about(0, rng.normal()) @ rotation_about(1, rng.normal()) @ rotation_about(2, rng.normal())
        m[:3, 3] = rng.normal(size=3) * 0.3
        return m.tolist()

    bones = len(HAND_PARENTS)
    weights = rng.random((v, bones)) * (rng.random((v, bones)) < 0.3)
    weights[:, 0] += 0.1
    triangles = rng.integers(0, v, size=(7, 3))
    return {
        "theta": (rng.normal(size=26) * 0.7).tolist(),
        "us": rng.random((n, 2)).tolist() if complicated else [],
        "data": {
            "correspondences": rng.integers(0, 7 if complicated else v, size=n).tolist(),
            "points": rng.normal(size=(n, 3)).tolist(),
            "model": {
                "bone_count": bones, "bone_names": [f"b{k}" for k in range(bones)], "parents": HAND_PARENTS,
                "base_relatives": [transform() for _ in range(bones)],
                "inverse_base_absolutes": [transform() for _ in range(bones)],
                "base_positions": np.concatenate([rng.normal(size=(v, 3)), np.ones((v, 1))], axis=1).tolist(),
                "weights": (weights / weights.sum(axis=1, keepdims=True)).tolist(),
                "triangles": triangles.tolist(), "is_mirrored": mirrored,
            },
        },
    }


CASES = {
    "simple": dict(complicated=False),
    "complicated": dict(complicated=True),
    "mirrored": dict(complicated=True, mirrored=True),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_residuals_match_the_plain_model(rng, backend, case):
    input = hand_input(rng, **CASES[case])
    (got,) = answer(backend, "ht", "objective", input)
    assert rel(got, residuals_reference(input)) < 1e-12


def jacobian_reference(input) -> np.ndarray:
    """Central differences: the us columns compressed (point i's row reads its own u_0, u_1), then theta's."""
    def at(theta, us):
        return residuals_reference({**input, "theta": theta.tolist(), "us": us.tolist()})

    theta, us = np.asarray(input["theta"]), np.asarray(input["us"])
    columns = []
    if us.size:
        for k in range(2):
            seed = np.zeros_like(us)
            seed[:, k] = 1.0                      # each point's residuals read its own us only
            columns.append(central_differences(lambda t: at(theta, us + t[0] * seed), np.zeros(1), 1e-6)[:, 0])
    full = central_differences(lambda t: at(t, us), theta, 1e-6)      # (3n, 26)
    return np.concatenate([np.stack(columns, axis=1), full], axis=1) if columns else full


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_jacobian_matches_central_differences(rng, backend, case):
    input = hand_input(rng, **CASES[case])
    (got,) = MODULES["ht"]["jacobian"].assemble(answer(backend, "ht", "jacobian", input), None)
    want = jacobian_reference(input)
    assert got.shape == want.shape == (15, 28 if input["us"] else 26)
    assert rel(got, want) < 1e-7


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_global_rotation_is_the_identity_with_finite_derivatives(rng, backend):
    """Below an angle of 1e-4 the rotation is the identity (as the reference has it), its derivative 0, not NaN."""
    input = hand_input(rng, complicated=True)
    input["theta"][0:3] = [0.0, 0.0, 0.0]
    (got,) = answer(backend, "ht", "objective", input)
    assert rel(got, residuals_reference(input)) < 1e-12
    (jac,) = MODULES["ht"]["jacobian"].assemble(answer(backend, "ht", "jacobian", input), None)
    assert np.all(jac[:, 2:5] == 0.0) and rel(jac, jacobian_reference(input)) < 1e-7


def broken(input: dict, path: tuple, value) -> dict:
    out = copy.deepcopy(input)
    place = out
    for key in path[:-1]:
        place = place[key]
    place[path[-1]] = value
    return out


@pytest.mark.parametrize("backend", ["symnum", "symsym"])
def test_bad_inputs_get_an_error_naming_the_field_and_the_tool_keeps_serving(rng, backend):
    good = hand_input(rng, complicated=True)
    model = ("data", "model")
    bad = [
        (broken(good, ("theta",), [0.1] * 25), "'theta'"),
        (broken(good, ("us",), [[0.5, 0.5]] * 4), "'us'"),
        (broken(good, (*model, "parents"), [0] * 22), "'parents'"),
        (broken(good, (*model, "triangles"), [[0, 1, 99]] * 7), "'triangles'"),
        (broken(good, ("data", "correspondences"), [0, 1, 2, 3, 7]), "'correspondences'"),
        (broken(good, ("data", "correspondences"), [0.5, 1, 2, 3, 4]), "'correspondences'"),
        (broken(good, (*model, "weights"), [[1.0] * 21] * 9), "'weights'"),
        (broken(good, (*model, "is_mirrored"), 0), "'is_mirrored'"),
        (broken(good, (*model, "bone_count"), 4), "'bone_count'"),
        (broken(good, ("data",), {"points": []}), "'model'"),
    ]
    tool = Tool(backend)
    for k, (input, named) in enumerate(bad):
        reply = tool.reply({"id": k, "kind": "evaluate", "module": "ht", "function": "jacobian", "input": input})
        assert reply["id"] == k and reply["success"] is False and named in reply["error"], reply
    reply = tool.reply({"id": 99, "kind": "evaluate", "module": "ht", "function": "objective", "input": good})
    assert reply["success"] is True and rel(np.array(reply["output"]), residuals_reference(good)) < 1e-12
