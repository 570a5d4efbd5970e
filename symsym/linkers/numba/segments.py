"""An array loop with many vectorised math calls, cut into one loop per call over cache-sized blocks.

One fused loop through fifty elementwise ops is one long chain of dependent
instructions per element: sin's result feeds exp, whose result feeds tanh,
and so on. Once vectorised (:mod:`.vmath`), each of those calls is tens of
FMAs whose latency adds up along the chain, and one iteration's body is far
longer than the CPU's out-of-order window, so iterations no longer overlap:
the loop runs at the latency of the chain (measured: sin, exp, tanh chained
cost 1.7 times the three apart). Cutting the body after each math call into
its own loop over a block of ``BLOCK`` elements gives each loop a short chain
whose iterations do overlap; the values that cross from one piece to a later
one go through block-sized buffers, which stay in L1/L2 cache.

The pieces run in order over one block, then the next block: the same
statements on the same values, so the results are those of the single loop
bit for bit. Only the innermost dim is cut into blocks; outer dims loop as
before.
"""

from __future__ import annotations

import re

__all__ = ["BLOCK", "MIN_CALLS", "segmented_loops"]

#: elements per block: buffers of a few dozen crossing values at 2 KiB each stay in L2
BLOCK = 256
#: fewer vectorised calls than this in a loop: its chain is short enough, one loop is better
MIN_CALLS = 3

_NAME = re.compile(r"\b([tv]\d+)\b")
_DEFINES = re.compile(r"^(t\d+) = ")


def segmented_loops(bounds: list[str], loads: list[str], body: list[str], checks: list[str],
                    stores: list[str]) -> list[str]:
    """The loop nest over ``bounds`` as unindented lines: buffers, the outer loops, the block loop and one
    inner loop per piece of ``body`` (each piece ends with a ``vmath_`` call); ``checks`` (``far += ...``)
    go to the piece that has their operand, ``stores`` to the last piece."""
    pieces = _cut(body)
    pieces[-1] += stores
    defined = {m.group(1): k for k, piece in enumerate(pieces) for s in piece if (m := _DEFINES.match(s))}
    for c in checks:
        names = _NAME.findall(c)
        pieces[max([defined.get(n, 0) for n in names] or [0])].append(c)
    load_of = {s.split(" = ", 1)[0]: s for s in loads}
    crossing = sorted({n for k, piece in enumerate(pieces) for n in _reads(piece) if defined.get(n, k) != k},
                      key=lambda n: int(n[1:]))
    d = len(bounds)
    inner = f"i{d - 1}"
    lines = [f"b{n} = np.empty({BLOCK}, np.float64)" for n in crossing]
    lines += ["    " * k + f"for i{k} in range({bounds[k]}):" for k in range(d - 1)]
    pad = "    " * (d - 1)
    lines += [pad + f"for s in range(0, {bounds[-1]}, {BLOCK}):", pad + f"    e = min(s + {BLOCK}, {bounds[-1]})"]
    for k, piece in enumerate(pieces):
        pre = [load_of[n] if n in load_of else f"{n} = b{n}[{inner} - s]"
               for n in _reads(piece) if n in load_of or n in crossing]
        post = [f"b{n}[{inner} - s] = {n}" for n in crossing if defined[n] == k]
        lines.append(pad + f"    for {inner} in range(s, e):")
        lines += [pad + "        " + s for s in pre + piece + post]
    return lines


def _cut(body: list[str]) -> list[list[str]]:
    """The statements in pieces, each ending after a statement that calls vectorised math."""
    pieces: list[list[str]] = [[]]
    for s in body:
        pieces[-1].append(s)
        if "vmath_" in s:
            pieces.append([])
    if not pieces[-1] and len(pieces) > 1:
        pieces.pop()
    return pieces


def _reads(piece: list[str]) -> list[str]:
    """The value names a piece reads before (or without) defining them, in first-use order."""
    own: set[str] = set()
    out: dict[str, None] = {}
    for s in piece:
        m = _DEFINES.match(s)
        rhs = s[m.end():] if m else s
        for n in _NAME.findall(rhs):
            if n not in own:
                out[n] = None
        if m:
            own.add(m.group(1))
    return list(out)
