"""pprint, debugprint and to_dot on the book's Figure 6.10 chain and friends."""

from __future__ import annotations

import re

from common import api, debugprint, pprint, to_dot


def test_pprint_is_infix_with_minimal_parentheses():
    x, y = api.var("x", ()), api.var("y", ())
    assert pprint((x + y) * y) == "(x + y) * y"
    assert pprint(x - (y - x)) == "x - (y - x)"
    assert pprint(x * y + x) == "x * y + x"
    assert pprint(-api.sin(x) ** 2) == "-sin(x) ** 2"  # Python: -(sin(x) ** 2)
    assert pprint((-x) ** 2) == "(-x) ** 2"
    assert pprint(x ** y ** x) == "x ** y ** x"


def test_pprint_shows_params_and_indexing():
    m = api.var("m", (3, 4))
    assert pprint(api.sum(m, axis=1)) == "sum(m, axis=(1,), keepdims=False)"
    assert pprint(m[1:, 0]) == "m[1:, 0]"


def test_pprint_of_the_chain():
    w = api.var("w", ())
    z = api.sin(api.sin(api.sin(w)))
    assert pprint(z) == "sin(sin(sin(w)))"


def test_pprint_can_show_named_intermediates_by_name():
    w = api.var("w", ())
    x = api.sin(w).renamed("x")
    y = api.sin(x).renamed("y")
    z = api.sin(y).renamed("z")
    d = api.cos(y) * api.cos(x) * api.cos(w)
    assert pprint(d, names=True) == "cos(y) * cos(x) * cos(w)"
    assert pprint(z, names=True) == "sin(y)"  # an output shows its own expression
    assert pprint(d) == "cos(sin(sin(w))) * cos(sin(w)) * cos(w)"


def test_debugprint_shows_shared_subgraphs_once():
    w = api.var("w", ())
    x = api.sin(w)
    out = x * x
    text = debugprint(out)
    lines = text.splitlines()
    assert lines[0].startswith("mul [id A]")
    assert sum(1 for line in lines if "sin" in line) == 2
    assert sum(1 for line in lines if line.strip(" |").startswith("w ")) == 1  # w under the first sin only
    assert re.search(r"sin \[id B\].*\.\.\.$", lines[-1])


def test_to_dot_lists_every_node_and_edge_and_marks_highlights():
    w = api.var("w", ())
    x = api.sin(w)
    y = api.cos(x)
    dot = to_dot(y, highlight=[y])
    assert dot.startswith("digraph") and dot.rstrip().endswith("}")
    assert dot.count("->") == 2
    assert dot.count("fillcolor") == 1 and 'label="cos"' in dot
