"""Nothing dies on bad or huge input: printing, feeds, the GradBench tool and the CLI.

Printing must stay linear however much a graph shares (its text is checked by
running it as Python against closed forms and against the reference
interpreter); feeds of ndarray subclasses are converted or refused, never
reinterpreted; the GradBench tool answers every line in strict JSON and keeps
serving; the CLI refuses bad arguments in one line before any long work.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import symnum
import symsym
from benchmarks import cli
from benchmarks.gradbench import tool as gb
from common import FeedError, api, debugprint, evaluate, pprint, to_dot, toposort
from common.evaluate import as_feed_array, check_value

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------ printing

def _run_text(text: str, env: dict) -> list:
    """Execute pprint's text as Python: binding lines assign, each other line is an output's value."""
    scope = {"sin": np.sin, "cos": np.cos, "exp": np.exp, **env}
    values = []
    for line in text.splitlines():
        name, eq, rest = line.partition(" = ")
        if eq and re.fullmatch(r"[A-Za-z_]\w*", name):
            scope[name] = eval(rest, scope)  # our own printer's text over our own scope
        else:
            values.append(eval(line, scope))
    return values


def test_forty_doublings_print_in_linear_size_and_mean_the_same():
    x = api.var("x", ())
    y = x
    for _ in range(40):
        y = y + y
    text = pprint(y)
    assert len(text.splitlines()) <= 41 and len(text) < 60 * 41
    assert _run_text(text, {"x": 1.5}) == [1.5 * 2.0 ** 40]  # closed form


def test_sixteen_doublings_are_not_written_out_term_by_term():
    x = api.var("x", ())
    y = x
    for _ in range(16):
        y = y + y
    assert len(pprint(y)) < 2000          # written out, it is 2**16 terms (~330k characters)
    assert len(debugprint(y).splitlines()) <= 2 * 17


def _random_dag(rng, n: int, share: bool):
    """A random scalar expression over x, y; with ``share``, inputs are drawn from every earlier node."""
    x, y = api.var("x", ()), api.var("y", ())
    nodes = [x, y]
    for _ in range(n):
        pick = (lambda: nodes[rng.integers(len(nodes))]) if share else (lambda: nodes.pop(rng.integers(len(nodes))))
        kind = rng.integers(6)
        if kind < 4 and (share or len(nodes) >= 2):
            a, b = pick(), pick()
            node = [a + b, a - b, a * b, a * 0.5 - b][kind]
        elif kind == 4:
            node = -pick()
        else:
            node = api.sin(pick())
        nodes.append(node)
    return x, y, nodes


@pytest.mark.parametrize("share", [False, True])
def test_pprint_text_computes_what_the_graph_computes(rng, share):
    bound = 0
    for _ in range(20):
        x, y, nodes = _random_dag(rng, 60, share)
        outs = nodes[-3:]
        text = pprint(outs)
        got = _run_text(text, {"x": 0.3, "y": -0.7})
        used = {id(n) for n in toposort(outs)}
        want = evaluate(outs, {v: np.array(a) for v, a in ((x, 0.3), (y, -0.7)) if id(v) in used})
        np.testing.assert_allclose(got, [float(w) for w in want], rtol=1e-12, err_msg=text)
        if not share:
            assert len(text.splitlines()) == len(outs)  # no sharing, no bindings: one formula per output
        bound += len(text.splitlines()) > len(outs)
    assert bound > 0 if share else bound == 0


def test_small_shared_subexpressions_stay_inline_and_names_still_read_as_the_book():
    w = api.var("w", ())
    x = api.sin(w).renamed("x")
    y = api.sin(x).renamed("y")
    d = api.cos(y) * api.cos(x) * api.cos(w)
    assert pprint(d) == "cos(sin(sin(w))) * cos(sin(w)) * cos(w)"
    assert pprint(d, names=True) == "cos(y) * cos(x) * cos(w)"


def test_a_long_shared_subexpression_is_bound_under_its_own_name():
    a, b = api.var("a", ()), api.var("b", ())
    s = (api.sin(a) * api.cos(b) + api.exp(a) * b).renamed("s")
    text = pprint(s * s)
    assert text.splitlines() == ["s = sin(a) * cos(b) + exp(a) * b", "s * s"]


def test_a_hundred_thousand_node_chain_prints_without_recursion():
    n = 100_000
    w = api.var("w", ())
    z = w
    for _ in range(n):
        z = api.sin(z)
    text = pprint(z)
    assert text == "sin(" * n + "w" + ")" * n
    tree = debugprint(z, show_types=False)
    assert len(tree) < 60 * n  # indentation is capped: not quadratic in the depth
    assert len(re.findall(r"^[ |]*sin \[id \w+\]$", tree, flags=re.M)) == n  # each node defined once
    assert to_dot(z).count("->") == n


def test_debugprint_of_a_deep_chain_is_linear_and_continues_below():
    n = 2000
    w = api.var("w", ())
    z = w
    for _ in range(n):
        z = api.exp(z)
    lines = debugprint(z).splitlines()
    assert max(len(line) for line in lines) < 200
    assert sum(1 for line in lines if line.endswith("(continued below)")) >= n // 50


def test_explain_of_repeated_doubling_is_linear():
    x = api.var("x", ())
    y = x
    for _ in range(20):
        y = y + y
    text = str(symsym.explain(y, x))
    assert len(text) < 400 * 60  # per-step summaries are bounded; 2**20 terms are never written
    assert "result: x ->" in text
    # the gradient text, run as Python, is d(2**20 x)/dx
    result = text[text.index("result: x -> ") + len("result: x -> "):]
    lines = [line.strip() for line in result.splitlines()]
    assert _run_text("\n".join(lines), {"x": 1.0}) == [2.0 ** 20]


def test_explain_of_a_long_chain_names_each_step_briefly():
    w = api.var("w", ())
    z = w
    for _ in range(3000):
        z = api.tanh(z)
    e = symsym.explain(z, w)
    assert len(e.steps) == 3000
    assert all(len(line) < 400 for line in str(e).splitlines()[:-1] if not line.startswith(("t", "    t")))


# -------------------------------------------------------------------- to_dot

def _dot_quoted(text: str, start: int) -> tuple[str, int]:
    """Graphviz's reading of the quoted string at ``text[start]``: (its value, the index after it)."""
    assert text[start] == '"'
    out, k = [], start + 1
    while True:
        ch = text[k]
        assert ch != "\n", "a raw newline inside a DOT string"
        if ch == '"':
            return "".join(out), k + 1
        if ch == "\\":
            nxt = text[k + 1]
            out.append({"n": "\n", '"': '"', "\\": "\\"}.get(nxt, "\\" + nxt))
            k += 2
        else:
            out.append(ch)
            k += 1


def _dot_nodes(dot: str) -> dict[str, dict[str, str]]:
    """Each ``nK [key=value, ...];`` line read as Graphviz would; fails on anything malformed."""
    nodes = {}
    for line in dot.splitlines()[2:-1]:
        line = line.strip()
        if "->" in line:
            assert re.fullmatch(r"n\d+ -> n\d+;", line), line
            continue
        if line.startswith("label="):
            value, end = _dot_quoted(line, len("label="))
            assert line[end:] == ";", line
            nodes["graph"] = {"label": value}
            continue
        m = re.match(r"(n\d+) \[", line)
        assert m, line
        attrs, k = {}, m.end()
        while line[k] != "]":
            key = re.match(r"\w+=", line[k:])
            assert key, line[k:]
            k += key.end()
            if line[k] == '"':
                value, k = _dot_quoted(line, k)
            else:
                value = re.match(r"[\w#]+", line[k:]).group()
                k += len(value)
            attrs[key.group()[:-1]] = value
            if line[k] == ",":
                k += 2
        assert line[k:] == "];", line
        nodes[m.group(1)] = attrs
    return nodes


NASTY = ['say "hi"', "back\\slash", "two\nlines", "<b>{x}|y</b>", 'end\\"', "\\n literal", "cr\rlf"]


def test_to_dot_escapes_every_special_character_in_names_and_title():
    nodes = [api.var(name, ()) for name in NASTY]
    total = nodes[0]
    for v in nodes[1:]:
        total = total + v
    total = api.sin(total).renamed('out "final"\\')
    parsed = _dot_nodes(to_dot(total, title='a "title"\nwith \\ and |'))
    labels = sorted(a["label"] for k, a in parsed.items() if k != "graph")
    expect = [n.replace("\r", "\n") for n in NASTY] + ["add"] * (len(NASTY) - 1) + ['sin\nout "final"\\']
    assert labels == sorted(expect)
    assert parsed["graph"]["label"] == 'a "title"\nwith \\ and |'


def test_draw_shows_dollar_signs_instead_of_parsing_them():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    x = api.var("price $", ())
    y = api.sin(x).renamed("$\\frac{$")
    fig = symsym.draw(y)
    fig.savefig(io.BytesIO(), format="png")  # mathtext would raise on "$\frac{$"
    labels = [t.get_text() for ax in fig.axes for t in ax.texts]
    plt.close(fig)
    assert any(label.endswith("price \\$") for label in labels), labels
    assert any(label.endswith("\\$\\frac{\\$") for label in labels), labels  # each dollar escaped: drawn as is


# --------------------------------------------------------------------- feeds

def _feeders():
    """Every way a user feeds values: the reference interpreter, symnum's program, symsym.function."""
    def by_evaluate(x, y, value):
        return evaluate(y, {x: value})

    def by_symnum(x, y, value):
        return symnum.evaluate(y, {x: value})

    def by_symnum_gradients(x, y, value):
        return symnum.gradients(y, [x], {x: value})[0]

    def by_function(x, y, value):
        return symsym.function([x], [y])(value)

    return [by_evaluate, by_symnum, by_symnum_gradients, by_function]


@pytest.mark.parametrize("feed", _feeders(), ids=lambda f: f.__name__)
def test_a_matrix_is_fed_as_the_plain_array_it_holds(feed):
    x = api.var("x", (2, 2))
    y = api.sum(x * x)
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    got = feed(x, y, np.matrix(a))
    want = 2 * a if feed.__name__ == "by_symnum_gradients" else np.sum(a * a)  # elementwise, not a @ a
    np.testing.assert_allclose(got, want, rtol=0)
    assert type(np.asarray(got)) is np.ndarray


@pytest.mark.parametrize("feed", _feeders(), ids=lambda f: f.__name__)
def test_a_matrix_of_the_wrong_rank_is_refused_not_reshaped(feed):
    x = api.var("x", (3,))
    with pytest.raises(FeedError, match=r"shape \(1, 3\)"):
        feed(x, api.sum(x * x), np.matrix([1.0, 2.0, 3.0]))


@pytest.mark.parametrize("feed", _feeders(), ids=lambda f: f.__name__)
def test_a_masked_array_is_refused(feed):
    x = api.var("x", (3,))
    value = np.ma.masked_array([1.0, 2.0, 3.0], mask=[False, True, False])
    with pytest.raises(FeedError, match="masked"):
        feed(x, api.sum(x), value)


def test_other_subclasses_become_plain_arrays_and_plain_arrays_pass_untouched():
    class Tagged(np.ndarray):
        pass

    x = api.var("x", (3,))
    a = np.arange(3.0)
    assert as_feed_array(x, a) is a and check_value(x, a) is a
    fed = check_value(x, a.view(Tagged))
    assert type(fed) is np.ndarray
    np.testing.assert_array_equal(fed, a)


# ---------------------------------------------------------- the GradBench tool

def _serve(lines, backend="symnum"):
    out = io.StringIO()
    gb.serve(gb.Tool(backend), lines, out)
    text = out.getvalue()
    return [json.loads(line, parse_constant=_no_constant) for line in text.splitlines()]


def _no_constant(name):
    raise AssertionError(f"reply is not strict JSON: {name}")


def _msg(i, **fields) -> str:
    return json.dumps({"id": i, **fields})


def test_tool_answers_invalid_utf8_and_deep_nesting_and_keeps_serving():
    lines = [b"\xff\xfe{\"id\": 0}\n", b"[" * 200_000 + b"\n", b'{"id": ' + b"[" * 50_000 + b"]" * 50_000 + b"}\n",
             (_msg(3, kind="evaluate", module="hello", function="square", input=3.0) + "\n").encode()]
    out = _serve(lines)
    assert len(out) == 4
    assert all(r["success"] is False for r in out[:3])
    assert "nested too deeply" in out[1]["error"]
    assert out[3] == {**out[3], "id": 3, "success": True, "output": 9.0}


BAD_INPUTS = [
    {"kind": "evaluate", "module": ["lse"], "function": "primal", "input": {"x": [1.0]}},
    {"kind": "evaluate", "module": "lse", "function": {"f": 1}, "input": {"x": [1.0]}},
    {"kind": "evaluate", "module": "lse", "function": "primal", "input": {"x": ["a", 1.0]}},
    {"kind": "evaluate", "module": "lse", "function": "primal", "input": {"x": [[1.0], [2.0, 3.0]]}},
    {"kind": "evaluate", "module": "lse", "function": "primal", "input": {"x": {"a": 1}}},
    {"kind": "evaluate", "module": "lse", "function": "primal", "input": {"x": [1.0], "min_runs": "many"}},
    {"kind": "evaluate", "module": "lse", "function": "primal", "input": {"x": [1.0], "min_seconds": [1]}},
    {"kind": "evaluate", "module": "lse", "function": "primal", "input": {"y": [1.0]}},
    {"kind": "evaluate", "module": "lse", "function": "primal", "input": None},
    {"kind": "evaluate", "module": "lse", "function": "primal", "input": {"x": []}},
    {"kind": "evaluate", "module": "gmm", "function": "objective", "input": {"d": "2"}},
    {"kind": "evaluate", "module": "lstm", "function": "objective", "input": {"main_params": [[[1.0]]]}},
    {"kind": "define", "module": {"x": 1}},
    {"kind": "evaluate", "module": "lse", "function": "primal", "input": {"x": [1.0] * 3 + [[1.0]]}},
]


@pytest.mark.parametrize("backend", ["symnum", "symsym"])
def test_tool_answers_wrong_types_anywhere_and_keeps_serving(backend):
    lines = [_msg(i, **m) for i, m in enumerate(BAD_INPUTS)]
    lines.append(_msg(99, kind="evaluate", module="lse", function="primal", input={"x": [0.0, 0.0]}))
    out = _serve(lines, backend)
    assert len(out) == len(lines)
    for reply, message in zip(out, BAD_INPUTS, strict=False):
        assert reply["success"] is False and reply["error"], (message, reply)
    assert out[-1]["success"] is True and out[-1]["output"] == pytest.approx(math.log(2.0), rel=1e-15)


def test_tool_nan_in_min_runs_is_an_error_reply():
    out = _serve(['{"id": 0, "kind": "evaluate", "module": "hello", "function": "square", '
                  '"input": 2.0}', '{"id": 1, "kind": "evaluate", "module": "lse", "function": "primal", '
                  '"input": {"x": [1.0], "min_runs": NaN}}'])
    assert out[0]["success"] is True and out[1]["success"] is False


def test_min_runs_and_min_seconds_are_capped_and_said(capsys):
    assert gb.runs_wanted({"min_runs": 1e30, "min_seconds": 1e9}) == (gb.MAX_RUNS, gb.MAX_SECONDS)
    assert gb.runs_wanted({"min_runs": -5, "min_seconds": -1.0}) == (1, 0.0)
    err = capsys.readouterr().err
    assert "min_runs" in err and "min_seconds" in err and "capped" in err
    _, times = gb.repeat(lambda values: values, [np.ones(1)], 1, gb.MAX_SECONDS, limit=7)
    assert len(times) == 7  # a run limit holds even when the seconds are not yet met


def test_tool_caps_a_huge_min_runs_in_a_reply():
    out = _serve([_msg(0, kind="evaluate", module="hello", function="square",
                       input=1.0)])
    assert out[0]["success"] is True
    out = _serve([_msg(0, kind="evaluate", module="lse", function="primal",
                       input={"x": [1.0], "min_runs": 10 ** 30, "min_seconds": 0})])
    assert out[0]["success"] is True
    assert len([t for t in out[0]["timings"] if t["name"] == "evaluate"]) == gb.MAX_RUNS


@pytest.mark.parametrize("backend", ["symnum", "symsym"])
@pytest.mark.parametrize("x", [[np.inf, 1.0], [-np.inf, -np.inf], [np.nan, 1.0], [1000.0, 1.0], [-1e4, -1e4, 0.0]])
def test_lse_edge_cases_match_numpy(backend, x):
    from benchmarks.gradbench.functions import MODULES

    run, _ = gb.ENGINES[backend]().prepare(MODULES["lse"]["primal"], {"x": (len(x),)}, ())
    with np.errstate(all="ignore"):
        got = float(np.asarray(run([np.array(x)])[0]))
    want = float(np.logaddexp.reduce(np.array(x)))  # numpy's own pairwise log-add
    if math.isnan(want):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(want, rel=1e-14)


def test_non_finite_outputs_are_spelled_as_strings_in_strict_json():
    lines = [_msg(0, kind="evaluate", module="lse", function="primal", input={"x": [1e308, 1e308]}),
             '{"id": 1, "kind": "evaluate", "module": "lse", "function": "primal", "input": {"x": [Infinity, 1]}}',
             '{"id": 2, "kind": "evaluate", "module": "lse", "function": "primal", "input": {"x": [NaN, 1]}}',
             '{"id": 3, "kind": "evaluate", "module": "lse", "function": "gradient", "input": {"x": [Infinity, 1]}}',
             _msg(4, kind="evaluate", module="lse", function="gradient", input={"x": [1.0, 2.0]})]
    out = _serve(lines)
    assert out[0]["success"] is True and out[0]["output"] == pytest.approx(1e308 + math.log(2.0))
    assert out[1]["success"] is True and out[1]["output"] == "Infinity" and out[1]["id"] == 1
    assert float(out[1]["output"]) == float(np.logaddexp.reduce([np.inf, 1.0]))
    assert out[2]["success"] is True and math.isnan(float(out[2]["output"]))
    with np.errstate(all="ignore"):  # the gradient at [inf, 1] is softmax: [nan, 0] in numpy's own arithmetic
        want = np.exp(np.array([np.inf, 1.0]) - np.inf)
    got = [float(v) for v in out[3]["output"]]
    assert [math.isnan(v) for v in got] == [math.isnan(v) for v in want]
    assert out[4]["success"] is True


def test_tool_process_survives_a_hostile_stream():
    stream = b"".join([
        b"\xc3\x28 not utf-8\n",
        b"[" * 100_000 + b"\n",
        (_msg(2, kind="evaluate", module="lse", function="primal", input={"x": "nope"}) + "\n").encode(),
        (_msg(3, kind="evaluate", module="lse", function="primal", input={"x": [0.0, 0.0]}) + "\n").encode(),
    ])
    done = subprocess.run([sys.executable, "-m", "benchmarks.gradbench", "--backend", "symnum"], input=stream,
                          capture_output=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    out = [json.loads(line, parse_constant=_no_constant) for line in done.stdout.decode().splitlines()]
    assert [r.get("success") for r in out] == [False, False, False, True]
    assert out[3]["output"] == pytest.approx(math.log(2.0), rel=1e-15)


# ----------------------------------------------------------------------- CLI

@pytest.fixture
def no_run(monkeypatch):
    """Any long work started by a command under test fails the test."""
    from benchmarks import harness

    def refuse(*args, **kwargs):
        raise AssertionError("the run started before the arguments were checked")

    monkeypatch.setattr(harness, "run", refuse)


def _refused(argv, capsys, *words):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code not in (0, None)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    return err


@pytest.mark.parametrize("option", ["--min-time", "--max-time"])
@pytest.mark.parametrize("value", ["nan", "-1", "inf", "soon"])
def test_bench_time_limits_must_be_finite_and_non_negative(no_run, capsys, option, value):
    _refused(["bench", "-w", "chain:sin-d3", option, value], capsys, option)


def test_bench_refuses_min_count_zero_and_max_below_min(no_run, capsys):
    _refused(["bench", "-w", "chain:sin-d3", "--min-count", "0"], capsys, "--min-count")
    _refused(["bench", "-w", "chain:sin-d3", "--min-time", "2", "--max-time", "1"], capsys, "--max-time")


def test_bench_refuses_an_out_that_is_a_file_or_under_a_file(no_run, capsys, tmp_path):
    f = tmp_path / "results"
    f.write_text("not a folder")
    _refused(["bench", "-w", "chain:sin-d3", "--out", str(f)], capsys, "is a file")
    _refused(["bench", "-w", "chain:sin-d3", "--out", str(f / "sub")], capsys, "cannot write")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc, which no user may write to")
def test_bench_refuses_an_unwritable_out(no_run, capsys):
    """/proc refuses new files and folders to every user, root included (a folder's mode does not stop root)."""
    _refused(["bench", "-w", "chain:sin-d3", "--out", "/proc"], capsys, "cannot write")
    _refused(["bench", "-w", "chain:sin-d3", "--out", "/proc/twograd-results"], capsys, "cannot write")


@pytest.mark.parametrize("spec,word", [("", "no workload"), (",", "no workload"), ("nosuch", "unknown workload"),
                                       ("chain:nosize", "no size")])
def test_bench_and_check_refuse_bad_workloads_in_one_line(no_run, capsys, spec, word):
    for command in ("bench", "check"):
        with pytest.raises(SystemExit) as e:
            cli.main([command, "-w", spec, "--no-progress"])
        assert e.value.code not in (0, None)
        err = capsys.readouterr().err.strip() or str(e.value.code)
        assert word in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_bench_refuses_no_backend(no_run, capsys):
    _refused(["bench", "-w", "chain:sin-d3", "--backends", ","], capsys, "backend")


def test_show_caps_order_and_depth_and_picture_size(capsys, tmp_path):
    png = str(tmp_path / "f.png")
    _refused(["show", "--order", "40", "--out", png], capsys, "--order", str(cli.SHOW_MAX_ORDER))
    _refused(["show", "--depth", "0", "--out", png], capsys, "--depth")
    _refused(["show", "--order", str(cli.SHOW_MAX_ORDER), "--depth", str(cli.SHOW_MAX_DEPTH), "--out", png], capsys,
             "nodes to draw")
    _refused(["show", "--out", str(tmp_path / "f.txt")], capsys, ".png")
    assert not os.path.exists(png)


def test_explain_refuses_a_depth_beyond_its_cap(capsys):
    _refused(["explain", "--depth", str(cli.EXPLAIN_MAX_DEPTH + 1)], capsys, "--depth")


@pytest.mark.parametrize("content,word", [
    (None, "cannot read"),
    (b'{"cells": [', "not valid JSON"),
    (b"\xff\xfe\x00{", "not UTF-8"),
    (b"[1, 2]", "JSON object"),
    (b'{"cells": [{"status": "ok", "workload": "chain"}]}', "cell 0"),
    (b'{"cells": {"a": 1}}', "'cells'"),
    (b"[" * 100_000, "not valid JSON"),
])
def test_plot_refuses_missing_corrupt_and_foreign_files(capsys, tmp_path, content, word):
    path = tmp_path / "results.json"
    if content is not None:
        path.write_bytes(content)
    _refused(["plot", str(path), "--out", str(tmp_path / "plots")], capsys, word)


def test_cli_errors_are_one_line_in_a_real_process():
    done = subprocess.run([sys.executable, "-m", "benchmarks", "bench", "--min-time", "nan"], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "--min-time" in done.stderr
