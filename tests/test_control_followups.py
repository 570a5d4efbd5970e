"""Loops: deterministic printouts, numeric residuals for the reverse sweep, one forward loop for value and gradient."""

from __future__ import annotations

from common import api as T
from common import debugprint, pprint, to_dot

# ------------------------------------------------------------------ printed body names

def _nested_loops():
    """A scan whose body holds another scan, then a cond on the result: three bodies, one nested."""
    x, w = T.var("x", (3, 2)), T.var("w", ())
    final, ys = T.scan(lambda c, row: (c * w + T.scan(lambda d, v: (d * v, None), 1.0, row)[0], T.sin(c)), 0.0, x)
    return T.cond(final > 0.0, lambda a: a * 2.0, lambda a: a - 1.0, T.sum(ys))


def test_the_same_graph_prints_the_same_text_whatever_was_made_before():
    first = _nested_loops()
    texts = pprint(first), debugprint(first), to_dot(first)
    for _ in range(3):  # other loops made in between: bodies with their own (process-wide) labels
        T.scan(lambda c, xi: (c + xi, None), 0.0, T.var("z", (2,)))
    second = _nested_loops()
    assert (pprint(second), debugprint(second), to_dot(second)) == texts


def test_bodies_are_numbered_from_one_in_each_printout():
    text = pprint(_nested_loops())
    headers = sorted(line.strip().split("(")[0] for line in text.splitlines()
                     if line.lstrip().startswith("body") and line.endswith(":"))
    assert headers == ["body1", "body2", "body3", "body4"]  # the two branches, the outer and the inner scan
    assert "body1" in debugprint(_nested_loops()) and 'label="body1"' in to_dot(_nested_loops())
