"""Run a GradBench eval against a tool without GradBench's harness: two processes piped into each other.

GradBench's harness is a Rust program; its evals are Python programs that
write messages on stdout and read the replies on stdin, and they send the
``analysis`` of every answer (``valid`` or not, from the eval's own
reference) as a message too. This passes each of the eval's lines to the
tool and each reply back, as the harness does, and tallies the analyses::

    python -m benchmarks.gradbench.pipe \\
        --eval "python -m gradbench.evals.llsq.run --min-seconds 0.3" --eval-dir ~/gradbench \\
        --tool "python -m benchmarks.gradbench --backend symsym"

Each answered evaluation prints one row (function, the eval's description,
VALID or invalid, the fastest ``evaluate`` timing and the one-off timings);
the last line counts them. The exit status is 0 when every evaluation was
answered and judged valid. The eval runs in ``--eval-dir`` (GradBench's
checkout: the evals that compare with its C++ reference find
``tools/manual/bin`` there, built with ``make -C tools/manual``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from typing import IO


def relay(eval_out: IO[str], eval_in: IO[str], tool_out: IO[str], tool_in: IO[str], report: IO[str]) -> dict:
    """Pass messages until the eval ends; one row per evaluation on ``report``; the counts."""
    asked: dict = {}
    counts = {"valid": 0, "invalid": 0, "failed": 0}
    for line in eval_out:
        message = json.loads(line)
        tool_in.write(line if line.endswith("\n") else line + "\n")
        tool_in.flush()
        if message.get("kind") == "end":
            break
        answer = tool_out.readline()
        if not answer:
            report.write("the tool stopped answering\n")
            counts["failed"] += 1
            break
        reply = json.loads(answer)
        if message.get("kind") == "evaluate":
            asked[message["id"]] = (message.get("function"), message.get("description"), reply)
            if not reply.get("success"):
                counts["failed"] += 1
                report.write(f"{message.get('function')}\t{message.get('description')}\tFAILED\t"
                             f"{reply.get('error')}\n")
        elif message.get("kind") == "analysis" and message.get("of") in asked:
            function, description, answered = asked[message["of"]]
            valid = bool(message.get("valid"))
            counts["valid" if valid else "invalid"] += 1
            runs = [t["nanoseconds"] for t in answered.get("timings", []) if t["name"] == "evaluate"]
            once = {t["name"]: t["nanoseconds"] for t in answered.get("timings", []) if t["name"] != "evaluate"}
            fastest = f"{min(runs) / 1e6:.3f} ms" if runs else "-"
            one_off = " ".join(f"{k} {v / 1e6:.1f} ms" for k, v in once.items())
            report.write(f"{function}\t{description}\t{'VALID' if valid else 'invalid'}\t{fastest}\t{one_off}"
                         + ("" if valid else f"\t{message.get('error')}") + "\n")
        eval_in.write(answer)
        eval_in.flush()
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gradbench.pipe", description=__doc__.split("\n")[0])
    parser.add_argument("--eval", required=True, help="the eval's command line")
    parser.add_argument("--tool", required=True, help="the tool's command line")
    parser.add_argument("--eval-dir", default=None, help="where the eval runs (GradBench's checkout)")
    args = parser.parse_args(argv)
    ev = subprocess.Popen(shlex.split(args.eval), cwd=args.eval_dir, stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True)
    tool = subprocess.Popen(shlex.split(args.tool), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        counts = relay(ev.stdout, ev.stdin, tool.stdout, tool.stdin, sys.stdout)
    finally:
        for proc in (ev, tool):
            proc.stdin.close()
        ev.wait()
        tool.wait()
    print(f"{counts['valid']} VALID, {counts['invalid']} invalid, {counts['failed']} failed")
    return 0 if counts["invalid"] == counts["failed"] == 0 and counts["valid"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
