"""GradBench's (and ADBench's) diagonal LSTM over a character sequence: a long, thin graph.

The cost is :func:`benchmarks.gradbench.models.lstm`, the very function the
GradBench tool answers with, differentiated with respect to the main and extra
parameters. Unlike gmm it is sequential: c - 1 steps of tiny (b-wide) ops, so
the graph has ~17 nodes per layer and character and the per-node overhead of
each backend is what gets measured. The hand-written gradient is plain
backpropagation through time.

``lstm-scan`` is the same cost, inputs and hand gradient with the recurrence
written as one ``ns.scan`` (:func:`benchmarks.gradbench.models.lstm_scan`):
on the tape the same Python loop, on a graph one loop op whose body is a
step, so symsym's graph and one-off stop growing with the sequence length.
"""

from __future__ import annotations

import numpy as np

from benchmarks.gradbench.models import lstm as lstm_fn
from benchmarks.gradbench.models import lstm_scan as lstm_scan_fn

from . import Problem, seeded, workload

SIZES = ("l1-c6-b3", "l2-c128-b7", "l2-c1024-b7", "l4-c1024-b7", "l4-c4096-b7")


def _sigmoid(z):
    return 0.5 * (np.tanh(0.5 * z) + 1.0)


def _forward(main_params, extra_params, state, sequence):
    """Every step's per-layer values (for the backward sweep) and the predictions."""
    layers = main_params.shape[0] // 2
    b = main_params.shape[1] // 4
    w = main_params[0::2].reshape(layers, 4, b)
    bias = main_params[1::2].reshape(layers, 4, b)
    hidden = [state[2 * i].copy() for i in range(layers)]
    cell = [state[2 * i + 1].copy() for i in range(layers)]
    steps, tops = [], []
    for t in range(sequence.shape[0] - 1):
        x = sequence[t] * extra_params[0]
        saved = []
        for i in range(layers):
            hp, cp = hidden[i], cell[i]
            f = _sigmoid(x * w[i, 0] + bias[i, 0])
            ig = _sigmoid(hp * w[i, 1] + bias[i, 1])
            o = _sigmoid(x * w[i, 2] + bias[i, 2])
            ch = np.tanh(hp * w[i, 3] + bias[i, 3])
            cell[i] = cp * f + ig * ch
            tc = np.tanh(cell[i])
            hidden[i] = o * tc
            saved.append((x, hp, cp, f, ig, o, ch, tc))
            x = hidden[i]
        steps.append(saved)
        tops.append(x)
    top = np.array(tops)
    return steps, top, top * extra_params[1] + extra_params[2]


def _normaliser(y):
    """log(sum(exp(y)) + 2) per row, without overflow (ADBench's "+2")."""
    big = np.maximum(np.max(y, axis=1, keepdims=True), np.log(2.0))
    return big + np.log(np.sum(np.exp(y - big), axis=1, keepdims=True) + 2.0 * np.exp(-big))


def hand_forward(main_params, extra_params, state, sequence):
    """The mean negative log-likelihood in plain numpy."""
    _, _, y = _forward(main_params, extra_params, state, sequence)
    gold = sequence[1:]
    return -np.sum(gold * (y - _normaliser(y))) / gold.size


def hand_grad(main_params, extra_params, state, sequence):
    """Backpropagation through time by hand: the gradients for main_params and extra_params."""
    layers = main_params.shape[0] // 2
    b = main_params.shape[1] // 4
    w = main_params[0::2].reshape(layers, 4, b)
    steps, top, y = _forward(main_params, extra_params, state, sequence)
    gold = sequence[1:]
    p = np.exp(y - _normaliser(y))
    dy = -(gold - gold.sum(axis=1, keepdims=True) * p) / gold.size
    g_w = np.zeros((layers, 4, b))
    g_b = np.zeros((layers, 4, b))
    g_extra = np.stack([np.zeros(b), np.sum(dy * top, axis=0), np.sum(dy, axis=0)])
    dh = [np.zeros(b) for _ in range(layers)]
    dc = [np.zeros(b) for _ in range(layers)]
    for t in range(len(steps) - 1, -1, -1):
        below = dy[t] * extra_params[1]
        for i in range(layers - 1, -1, -1):
            x, hp, cp, f, ig, o, ch, tc = steps[t][i]
            dhn = dh[i] + below
            dcn = dc[i] + dhn * o * (1.0 - tc * tc)
            pre = np.stack([dcn * cp * f * (1.0 - f), dcn * ch * ig * (1.0 - ig),
                            dhn * tc * o * (1.0 - o), dcn * ig * (1.0 - ch * ch)])
            g_b[i] += pre
            g_w[i] += pre * np.stack([x, hp, x, hp])
            dc[i] = dcn * f
            dh[i] = pre[1] * w[i, 1] + pre[3] * w[i, 3]
            below = pre[0] * w[i, 0] + pre[2] * w[i, 2]
        g_extra[0] += below * sequence[t]
    g_main = np.empty_like(main_params)
    g_main[0::2] = g_w.reshape(layers, 4 * b)
    g_main[1::2] = g_b.reshape(layers, 4 * b)
    return [g_main, g_extra]


@workload("lstm", sizes=SIZES, default=SIZES[:3], check=SIZES[:1], rtol=1e-9, fd_rtol=1e-6,
          doc="GradBench lstm: a diagonal LSTM unrolled over a character sequence")
def lstm(size: str) -> Problem:
    return _problem(size, lstm_fn, "")


@workload("lstm-scan", sizes=SIZES, default=SIZES[:3], check=SIZES[:1], rtol=1e-9, fd_rtol=1e-6,
          doc="GradBench lstm with its recurrence as one scan: the graph no longer grows with the sequence")
def lstm_scan(size: str) -> Problem:
    return _problem(size, lstm_scan_fn, "-scan")


def _problem(size: str, fn, suffix: str) -> Problem:
    """One size of the lstm, unrolled or scanned (``fn``): the same seeded inputs and hand gradient."""
    layers, c, b = (int(part[1:]) for part in size.split("-"))
    rng = seeded("lstm", size)
    # ADBench's generator: uniform [0, 1) parameters and state, one bit vector per character
    args = {"main_params": rng.random((2 * layers, 4 * b)), "extra_params": rng.random((3, b)),
            "state": rng.random((2 * layers, b)),
            "sequence": rng.integers(0, 2, size=(c, b)).astype(np.float64)}
    return Problem(fn, args, ("main_params", "extra_params"), hand_grad=hand_grad,
                   hand_forward=hand_forward, scale=layers * c, family=f"lstm{suffix}-l{layers}",
                   label=f"{layers} layers, {c} characters, {b} bits")
