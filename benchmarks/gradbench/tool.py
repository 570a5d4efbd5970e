"""The GradBench tool: JSON messages in on stdin, JSON replies out on stdout.

GradBench's harness (an "eval") drives a tool process one line at a time:
``start``, then ``define`` of a module, then ``evaluate`` of its functions on
inputs, each followed by an ``analysis`` of the output. Every message carries
an ``id`` that its reply repeats. Only replies go to stdout, one per line and
flushed; everything else, including anything a library prints, goes to
stderr. A bad message or a failing function is answered with
``success: false`` and an ``error``: the tool never stops for it.

Timings follow the protocol: one ``evaluate`` entry per run of the function,
repeated until the input's ``min_runs`` and ``min_seconds`` are both met.
Reading the JSON input into arrays is not timed. Building the IR graph
(``build``) and symsym's grad-and-compile (``compile``) happen once per
module, function and input shapes, are cached, and are reported under their
own names on the run that paid for them.

Whatever arrives, every line gets one reply and the tool keeps serving: bytes
that are not UTF-8 are replaced, JSON nested too deeply for the parser, a
field of the wrong type all become ``success: false``. Inputs are read as the
graph builders read params and constants (:mod:`.functions`): a size past
``MAX_DIM``, an integer past ``MAX_INT`` or a number past float64's range
(``m: 1e308``, a 400-digit JSON integer), a non-finite ``gamma``, strings,
booleans or nulls in an array, or an empty array where data is needed are
answered with a ``FeedError`` naming the field, as any other bad field is. Replies are strict
JSON: a non-finite number in an output is written as the string
``"Infinity"``, ``"-Infinity"`` or ``"NaN"`` (the convention of protobuf's
JSON mapping, which Python's ``float()`` and pydantic read back), so
``lse([inf, 1])`` answers ``"Infinity"`` instead of a bare token that a strict
reader refuses.
``min_runs`` and ``min_seconds`` are capped (:data:`MAX_RUNS`,
:data:`MAX_SECONDS`), with a note on stderr, so one message cannot hold the
tool for hours or fill memory with timings.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from collections import OrderedDict
from collections.abc import Iterable
from typing import IO, Any

import numpy as np

from common.errors import FeedError, TwogradError
from common.ops.params import shown

from .engines import ENGINES
from .functions import MODULES, Function

CACHE_SIZE = 4  # prepared programs kept: an unrolled lstm graph is large
MAX_RUNS = 10_000
"""The most ``min_runs`` honoured; a larger request is capped (and said so on stderr)."""
MAX_SECONDS = 60.0
"""The most ``min_seconds`` honoured; a larger request is capped (and said so on stderr)."""
RUN_LIMIT = 100_000
"""Runs of one message at most, whatever ``min_seconds`` asks: each run is a timing in the reply."""


class Tool:
    """One tool session over one backend: answers messages, caches prepared programs."""

    def __init__(self, backend: str):
        self.engine = ENGINES[backend]()
        self.name = f"twograd-{backend}"
        self.programs: OrderedDict[tuple, Any] = OrderedDict()

    def reply(self, message: Any) -> dict:
        """The reply to one decoded message (never raises for a bad message)."""
        if not isinstance(message, dict):
            return {"id": None, "success": False,
                    "error": f"a message must be a JSON object, got {message!r}"}
        mid = message.get("id")
        kind = message.get("kind")
        try:
            if kind == "start":
                return {"id": mid, "tool": self.name, "config": {"backend": self.engine.name}}
            if kind == "define":
                return self.define(mid, message)
            if kind == "evaluate":
                return self.evaluate(mid, message)
            if kind is None:
                return {"id": mid, "success": False, "error": "message has no 'kind'"}
            return {"id": mid}
        except Exception as e:  # a tool answers every message, whatever went wrong
            if isinstance(e, TwogradError):
                print(f"{self.name}: message {mid}: {e}", file=sys.stderr)
            else:
                traceback.print_exc(file=sys.stderr)
            return {"id": mid, "success": False, "error": f"{type(e).__name__}: {e}"}

    def define(self, mid, message: dict) -> dict:
        module = message.get("module")
        if isinstance(module, str) and module in MODULES:
            return {"id": mid, "success": True}
        return {"id": mid, "success": False,
                "error": f"unknown module {module!r}; {self.name} defines {', '.join(sorted(MODULES))}"}

    def evaluate(self, mid, message: dict) -> dict:
        module, name = message.get("module"), message.get("function")
        if not isinstance(module, str) or module not in MODULES:
            return {"id": mid, "success": False, "error": f"unknown module {module!r}"}
        function = MODULES[module].get(name) if isinstance(name, str) else None
        if function is None:
            return {"id": mid, "success": False,
                    "error": f"unknown function {name!r} of module {module!r}; "
                             f"it has {', '.join(sorted(MODULES[module]))}"}
        if "input" not in message:
            return {"id": mid, "success": False, "error": "evaluate message has no 'input'"}
        input = message["input"]
        arrays, statics = function.parse(input)
        timings: list[dict] = []
        run = self.program(module, name, function, arrays, statics, timings)
        values = list(arrays.values())
        min_runs, min_seconds = runs_wanted(input)
        results, times = repeat(run, values, min_runs, min_seconds)
        timings.extend({"name": "evaluate", "nanoseconds": ns} for ns in times)
        return {"id": mid, "success": True, "output": function.write(results), "timings": timings}

    def program(self, module: str, name: str, function: Function, arrays: dict, statics: tuple,
                timings: list):
        """The prepared run for these shapes, made (and timed) on first use."""
        key = (module, name, tuple((k, v.shape) for k, v in arrays.items()), statics)
        run = self.programs.get(key)
        if run is not None:
            self.programs.move_to_end(key)
            return run
        run, one_off = self.engine.prepare(function, {k: v.shape for k, v in arrays.items()}, statics)
        if function.assemble is not None:
            run = (lambda run, assemble: lambda values: assemble(run(values), statics))(run, function.assemble)
        timings.extend(one_off)
        self.programs[key] = run
        while len(self.programs) > CACHE_SIZE:
            self.programs.popitem(last=False)
        return run


def _bounded(value: Any, name: str, cap: float) -> float:
    """A finite, non-negative ``min_runs``/``min_seconds``, at most ``cap`` (a note on stderr if capped)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:  # (NaN; a big int is fine)
        raise FeedError(f"{name} must be a number, got {shown(value)}")
    if value > cap:
        print(f"twograd gradbench: {name} {shown(value)} capped to {cap:g}", file=sys.stderr)
        return cap
    return max(0.0, float(value))


def runs_wanted(input: Any) -> tuple[int, float]:
    """The input's ``min_runs`` and ``min_seconds`` (one run when absent), capped at
    :data:`MAX_RUNS` and :data:`MAX_SECONDS`."""
    if not isinstance(input, dict):
        return 1, 0.0
    runs = _bounded(input.get("min_runs", 1), "min_runs", MAX_RUNS)
    return max(1, int(runs)), _bounded(input.get("min_seconds", 0.0), "min_seconds", MAX_SECONDS)


def repeat(run, values: list[np.ndarray], min_runs: int, min_seconds: float, limit: int = RUN_LIMIT):
    """Run (at least once) until both minimums are met, or ``limit`` runs; the last results and every
    run's nanoseconds."""
    times: list[int] = []
    total, budget = 0, min_seconds * 1e9
    results = None
    while not times or len(times) < min_runs or total < budget:
        if len(times) >= limit:
            print(f"twograd gradbench: stopped after {limit} runs ({total / 1e9:.3g} s of {min_seconds:g})",
                  file=sys.stderr)
            break
        start = time.perf_counter_ns()
        results = run(values)
        elapsed = time.perf_counter_ns() - start
        times.append(elapsed)
        total += elapsed
    return results, times


def decode(line: bytes | str) -> str:
    """A line as text: bytes that are not UTF-8 become U+FFFD (then, at worst, a JSON error reply)."""
    return line.decode("utf-8", errors="replace") if isinstance(line, bytes) else line


def answer(tool: Tool, text: str) -> tuple[dict, Any]:
    """The reply to one line of text and the decoded message (None when it did not decode)."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError, as is a too-long int
        kind = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        return {"id": None, "success": False, "error": f"not a JSON message: {kind}"}, None
    return tool.reply(message), message


_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def _spelled(value: Any) -> Any:
    """``value`` with each non-finite float spelled as a string; our own replies nest only as deep as an array."""
    if isinstance(value, float) and not math.isfinite(value):
        return _NON_FINITE.get(value, "NaN")
    if isinstance(value, dict):
        return {k: _spelled(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_spelled(v) for v in value]
    return value


def encode(response: dict) -> str:
    """``response`` as one line of strict JSON (non-finite numbers spelled as strings); what cannot be
    encoded becomes an error reply."""
    try:
        return json.dumps(response, allow_nan=False)
    except ValueError:  # a non-finite float somewhere: the rare path pays for a second walk
        try:
            return json.dumps(_spelled(response), allow_nan=False)
        except (ValueError, TypeError, RecursionError) as e:
            error = f"the reply cannot be written as JSON: {type(e).__name__}"
    except (TypeError, RecursionError) as e:
        error = f"the reply cannot be written as JSON: {type(e).__name__}"
    mid = response.get("id")
    try:
        json.dumps(mid, allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        mid = None
    return json.dumps({"id": mid, "success": False, "error": error})


def serve(tool: Tool, lines: Iterable[bytes | str], out: IO[str]) -> None:
    """Answer each line of ``lines`` (text, or bytes as from ``sys.stdin.buffer``) on ``out``
    until end of input or an ``end`` message."""
    for line in lines:
        text = decode(line)
        if not text.strip():
            continue
        response, message = answer(tool, text)
        out.write(encode(response) + "\n")
        out.flush()
        if isinstance(message, dict) and message.get("kind") == "end":
            return


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``twograd gradbench`` options."""
    parser.add_argument("--backend", choices=list(ENGINES), default="symnum",
                        help="which backpropagation answers the harness, as the benchmark's columns: "
                             "symnum: define-by-run, a tape recorded on every run (the default); "
                             "symnum-static: the IR graph built once, run by symnum.gradients' cached program; "
                             "symsym: the derivative's nodes added to the graph once and compiled to numpy code; "
                             "symsym-numba: the same through the numba linker (listed when numba is installed)")


def run(args: argparse.Namespace) -> int:
    """Serve stdin to stdout; stray prints from anywhere go to stderr, not the protocol."""
    out = sys.stdout
    sys.stdout = sys.stderr
    try:
        serve(Tool(args.backend), sys.stdin.buffer, out)
    except (BrokenPipeError, KeyboardInterrupt):
        pass
    finally:
        sys.stdout = out
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gradbench",
                                     description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
