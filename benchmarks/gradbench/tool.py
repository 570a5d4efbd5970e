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
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections import OrderedDict
from typing import IO, Any

import numpy as np

from common import api as T
from common.errors import TwogradError

from .engines import ENGINES
from .functions import MODULES, Function

CACHE_SIZE = 4  # prepared programs kept: an unrolled lstm graph is large


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
        if module in MODULES:
            return {"id": mid, "success": True}
        return {"id": mid, "success": False,
                "error": f"unknown module {module!r}; {self.name} defines {', '.join(sorted(MODULES))}"}

    def evaluate(self, mid, message: dict) -> dict:
        module, name = message.get("module"), message.get("function")
        if module not in MODULES:
            return {"id": mid, "success": False, "error": f"unknown module {module!r}"}
        function = MODULES[module].get(name)
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
        start = time.perf_counter_ns()
        variables = {k: T.var(k, v.shape) for k, v in arrays.items()}
        cost = function.build(variables, statics)
        built = time.perf_counter_ns()
        run = self.engine.prepare(cost, list(variables.values()), [variables[w] for w in function.wrt])
        done = time.perf_counter_ns()
        timings.append({"name": "build", "nanoseconds": built - start})
        if self.engine.compiles:
            timings.append({"name": "compile", "nanoseconds": done - built})
        self.programs[key] = run
        while len(self.programs) > CACHE_SIZE:
            self.programs.popitem(last=False)
        return run


def runs_wanted(input: Any) -> tuple[int, float]:
    """The input's ``min_runs`` and ``min_seconds`` (one run when absent)."""
    if not isinstance(input, dict):
        return 1, 0.0
    runs, seconds = input.get("min_runs", 1), input.get("min_seconds", 0.0)
    if isinstance(runs, bool) or not isinstance(runs, (int, float)) or \
            isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"min_runs and min_seconds must be numbers, got {runs!r} and {seconds!r}")
    return max(1, int(runs)), float(seconds)


def repeat(run, values: list[np.ndarray], min_runs: int, min_seconds: float):
    """Run (at least once) until both minimums are met; the last results and every run's nanoseconds."""
    times: list[int] = []
    total, budget = 0, min_seconds * 1e9
    results = None
    while not times or len(times) < min_runs or total < budget:
        start = time.perf_counter_ns()
        results = run(values)
        elapsed = time.perf_counter_ns() - start
        times.append(elapsed)
        total += elapsed
    return results, times


def serve(tool: Tool, lines: IO[str], out: IO[str]) -> None:
    """Answer each line of ``lines`` on ``out`` until end of input or an ``end`` message."""
    for line in lines:
        if not line.strip():
            continue
        try:
            message = json.loads(line)
        except json.JSONDecodeError as e:
            response = {"id": None, "success": False, "error": f"not a JSON message: {e}"}
            message = None
        else:
            response = tool.reply(message)
        out.write(json.dumps(response) + "\n")
        out.flush()
        if isinstance(message, dict) and message.get("kind") == "end":
            return


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``twograd gradbench`` options."""
    parser.add_argument("--backend", choices=sorted(ENGINES), default="symnum",
                        help="which backpropagation answers the harness (default: symnum)")


def run(args: argparse.Namespace) -> int:
    """Serve stdin to stdout; stray prints from anywhere go to stderr, not the protocol."""
    out = sys.stdout
    sys.stdout = sys.stderr
    try:
        serve(Tool(args.backend), sys.stdin, out)
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
