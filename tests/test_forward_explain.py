"""Forward mode narrated and drawn: ``symsym.explain_jvp``, ``draw_jvp``, ``draw_panels`` and the
``--forward`` options of ``twograd explain`` and ``twograd show`` on the book's chain (Figure 6.10).

Values are checked against reverse mode (``symsym.grad``) and central finite differences in float64.
"""

import numpy as np
import pytest

import symsym
from benchmarks.cli import main
from benchmarks.figure import chain_example
from common import api as T
from common import evaluate


def _fd(f, w: float, h: float = 1e-6) -> float:
    return (f(w + h) - f(w - h)) / (2 * h)


@pytest.mark.parametrize("f", ["sin", "tanh", "exp"])
def test_explain_jvp_narrates_one_rule_per_node_input_first_and_its_result_is_the_derivative(f):
    z, w = chain_example(f, 3)
    e = symsym.explain_jvp(z, w)
    assert [s.node.name for s in e.steps] == ["x", "y", "z"]
    assert [[i.name for i in s.fed] for s in e.steps] == [["w"], ["x"], ["y"]]
    assert all(s.added for s in e.steps)
    text = str(e)
    assert text.index("tangent[x]") < text.index("tangent[y]") < text.index("tangent[z]")
    assert f"{f}.jvp(w; tangent[w])" in text and "(the seed)" in text
    w0, dw0 = 0.3, 1.7
    got = float(evaluate(e.tangent, {w: w0, e.seed: dw0}))
    (g,) = symsym.grad(z, [w])
    reverse = float(evaluate(g, {w: w0}))
    g_np = getattr(np, f)
    assert got == pytest.approx(dw0 * reverse, rel=1e-12)
    assert got == pytest.approx(dw0 * _fd(lambda v: g_np(g_np(g_np(v))), w0), rel=1e-8)


def test_explain_jvp_with_two_paths_feeds_both_tangents_into_the_product():
    w = T.var("w", ())
    s = T.sin(w).renamed("s")
    y = (s * w).renamed("y")
    e = symsym.explain_jvp(y, w)
    step = e.steps[-1]
    assert step.node is y and [i.name for i in step.fed] == ["s", "w"]
    got = float(evaluate(e.tangent, {w: 0.8, e.seed: 1.0}))
    assert got == pytest.approx(_fd(lambda v: np.sin(v) * v, 0.8), rel=1e-8)


def test_explain_jvp_of_an_output_that_does_not_depend_on_the_input_has_no_steps_and_zero_tangent():
    w, u = T.var("w", (3,)), T.var("u", (3,))
    y = T.sin(u)
    e = symsym.explain_jvp(y, w)
    assert e.steps == []
    np.testing.assert_array_equal(evaluate(e.tangent, {u: np.ones(3)}),
                                  np.zeros(3))


def test_draw_jvp_marks_the_tangent_nodes_and_gives_dot_text():
    z, w = chain_example("sin", 3)
    dot = symsym.draw_jvp(z, w, dot=True)
    assert "dw" in dot and "cos" in dot
    fig = symsym.draw_jvp(z, w)
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert labels.count("cos") == 3 and labels.count("mul") == 3 and "dw" in labels
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_draw_panels_puts_each_graph_on_its_own_axes():
    z, w = chain_example("sin", 2)
    (g,) = symsym.grad(z, [w])
    fig = symsym.draw_panels([([z], [], "forward"), ([z, g], symsym.added_nodes([z], [z, g]), "grad")], title="t")
    assert [ax.get_title() for ax in fig.axes] == ["forward", "grad"]
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_cli_explain_forward_prints_both_sweeps_and_the_chain_costs(capsys):
    assert main(["explain", "chain", "--forward", "--depth", "4"]) == 0
    out = capsys.readouterr().out
    assert out.index("build_grad for z") < out.index("forward mode (jvp) for z")
    for name in ("grad_table[w]", "tangent[x]", "tangent[y]", "tangent[z3]", "tangent[z]", "cheapest order"):
        assert name in out


def test_cli_explain_without_forward_prints_the_reverse_sweep_only(capsys):
    assert main(["explain", "chain"]) == 0
    assert "tangent[" not in capsys.readouterr().out


def test_cli_show_forward_draws_both_modes_side_by_side(tmp_path, capsys):
    png = tmp_path / "both.png"
    assert main(["show", "chain", "--forward", "--out", str(png)]) == 0
    out = capsys.readouterr().out
    assert "dz = dw * f'(w) * f'(x) * f'(y)" in out  # multiplied from w up
    assert "dz/dw = f'(y) * f'(x) * f'(w)" in out      # multiplied from z down
    assert png.stat().st_size > 1000 and (tmp_path / "both.svg").stat().st_size > 1000


def test_cli_show_forward_refuses_higher_orders_before_drawing(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["show", "chain", "--forward", "--order", "2", "--out", str(tmp_path / "x.png")])
    assert e.value.code == 2
    assert "--order 2" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_draw_panels_with_nothing_to_draw_is_a_twograd_error():
    from common.errors import TwogradError

    with pytest.raises(TwogradError, match="no panels"):
        symsym.draw_panels([])
