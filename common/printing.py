"""Three views of a graph: infix (``pprint``), a tree (``debugprint``), DOT.

All three are linear in the number of nodes, however much the graph shares:
a subexpression reached twice is written once (``pprint`` binds it to a name,
as a jaxpr does; ``debugprint`` refers back to its id), and text is built as
pieces joined once at the end, by explicit stacks, so a chain of 10^6 nodes
prints without recursion and without copying its text at every level.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from .body import Body, bodies_of
from .graph import Node, toposort
from .ops.index import view

#: how tightly each Python operator binds (Python's own precedence); an op spelled by one has an ``infix`` trait
_BINDING = {"+": 1, "-": 1, "*": 2, "/": 2, "@": 2, "**": 4, "<": 0, "<=": 0, ">": 0, ">=": 0, "==": 0, "!=": 0}
_NEG = 3  # a one-input operator (``-x``)
_ATOM = 9
INLINE_SHARED = 24
"""A subexpression used more than once is repeated inline while its text is at most this many
characters (``sin(w)`` reads better than a name for it) and bound to a name once it is longer:
so the text stays linear in the graph, and small examples read as plain formulas."""
DEBUG_DEPTH = 40
"""debugprint indents at most this deep; a deeper subtree is continued as a block of its own below,
so that a long chain costs lines, not indentation quadratic in its length."""

Piece = str | Node


class BodyNames:
    """``body1``, ``body2``, ... for the bodies one printout shows, numbered in the order it meets them.

    Printed names come from the printout, not from the bodies (whose
    ``label`` counts every body the process ever made), so the same graph
    prints the same text whatever ran before it.
    """

    def __init__(self) -> None:
        self._names: dict[int, str] = {}
        self._keep: list[Body] = []  # the named bodies stay alive, so their ids stay theirs

    def __call__(self, body: Body) -> str:
        name = self._names.get(id(body))
        if name is None:
            name = self._names[id(body)] = f"body{len(self._names) + 1}"
            self._keep.append(body)
        return name


def _param_text(params: dict, body_name: Callable[[Body], str] | None = None) -> str:
    """``k=v, ...``; a body shows as ``body_name(body)`` (its own label without one)."""
    return ", ".join(f"{k}={body_name(v) if body_name is not None and isinstance(v, Body) else repr(v)}"
                     for k, v in params.items())


def _precedence(n: Node) -> int:
    """How tightly ``n``'s own expression binds: an infix op's level, ``neg``'s, or an atom's."""
    op = n.op
    if op is None or op.infix is None:
        return _ATOM
    return _NEG if op.nin == 1 else _BINDING[op.infix]


def _wrapped(i: Node, bare: bool) -> list[Piece]:
    return [i] if bare else ["(", i, ")"]


def _index_pieces(spec, args: tuple) -> list[Piece]:
    """``x[...]``'s inside: the entries' text, an array entry as its input node."""
    out: list[Piece] = []
    for k, part in enumerate(view(spec).parts(args)):
        if k:
            out.append(", ")
        out.append(part)
    return out


def _pieces(n: Node, prec: Callable[[Node], int], body_name: Callable[[Body], str] | None = None) -> list[Piece]:
    """``n``'s expression as text pieces and input nodes; ``prec(i)`` is how tightly input ``i`` shows."""
    op = n.op
    name = op.name
    ins = n.inputs
    sym = op.infix
    if sym is not None and len(ins) == 2:
        p = _BINDING[sym]
        a, b = ins
        pa, pb = prec(a), prec(b)
        right_assoc = sym == "**"
        return [*_wrapped(a, pa > p or (pa == p and not right_assoc)), f" {sym} ",
                *_wrapped(b, pb > p or (pb == p and right_assoc))]
    if sym is not None and len(ins) == 1:
        return [sym, *_wrapped(ins[0], prec(ins[0]) >= _NEG)]
    if op.picks:  # one output of a loop or branch
        return [f"{name}(", ins[0], f", {n.params['index']})"]
    if name == "getitem":
        return [*_wrapped(ins[0], prec(ins[0]) == _ATOM), "[", *_index_pieces(n.params["index"], ins[1:]), "]"]
    out: list[Piece] = [f"{name}("]
    for k, i in enumerate(ins):
        if k:
            out.append(", ")
        out.append(i)
    params = {k: v for k, v in n.params.items() if k != "index"}
    if params:
        out.append((", " if ins else "") + _param_text(params, body_name))
    out.append(")")
    return out


def _emit(pieces: list[Piece], expand: Callable[[Node], list[Piece]], out: list[str],
          budget: int | None = None) -> bool:
    """Append the text of ``pieces`` to ``out``, expanding input nodes by an explicit stack.

    With a ``budget``, stop once that many characters and expansions are spent
    (a summary of a huge expression then costs its width, not the expression);
    returns whether the text is complete.
    """
    stack: list[Iterator[Piece]] = [iter(pieces)]
    while stack:
        for p in stack[-1]:
            if budget is not None:
                budget -= len(p) if p.__class__ is str else 1
                if budget < 0:
                    return False
            if p.__class__ is str:
                out.append(p)
            else:
                stack.append(iter(expand(p)))
                break
        else:
            stack.pop()
    return True


def _printed(outs: list[Node], atom: Callable[[Node], bool]) -> tuple[list[Node], dict[int, int]]:
    """The nodes the text shows, inputs first, and how often each is referred to (an output counts once).

    Consumers come before their inputs in reversed topological order, so one
    sweep counts the uses by shown nodes only (not those hidden under an atom).
    """
    uses: dict[int, int] = {}
    for o in outs:
        uses[id(o)] = uses.get(id(o), 0) + 1
    order = toposort(outs)
    for n in reversed(order):
        if id(n) in uses and not atom(n):
            for i in n.inputs:
                uses[id(i)] = uses.get(id(i), 0) + 1
    return [n for n in order if id(n) in uses], uses


def _fresh_names(taken: set[str]) -> Iterator[str]:
    k = 0
    while True:
        k += 1
        if f"t{k}" not in taken:
            yield f"t{k}"


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_']*\Z")


def pprint(outputs: Node | Iterable[Node], names: bool = False) -> str:
    """Infix text of each output, one per line (like Theano's ``pp``).

    A subexpression used more than once and longer than :data:`INLINE_SHARED`
    characters is written once, as a binding line ``t1 = ...`` (or under the
    node's own name) before the outputs' lines, and referred to by name, as a
    jaxpr does: 40 doublings ``y = y + y`` print in 40 lines, not 2**40 terms.
    A graph without such sharing prints as one plain formula per output.

    With ``names``, a named intermediate node is shown by its name instead of
    its expression, so a derivative reads in the forward graph's own terms
    (``cos(y) * cos(x) * cos(w)`` for the book's chain).
    """
    outs = [outputs] if isinstance(outputs, Node) else list(outputs)
    body_name = BodyNames()
    lines, printed = _pprint_lines(outs, names, body_name)
    return "\n".join(lines + _body_blocks(printed, lambda b: _pprint_lines(list(b.outputs), names, body_name),
                                          body_name))


def _pprint_lines(outs: list[Node], names: bool, body_name: BodyNames) -> tuple[list[str], list[Node]]:
    """pprint's lines for ``outs``, and the nodes they show."""
    roots = {id(o) for o in outs}

    def atom(n: Node) -> bool:
        return n.op is None or bool(names and n.name and id(n) not in roots)

    printed, uses = _printed(outs, atom)
    taken = {n.label() for n in printed if atom(n)}
    fresh = _fresh_names(taken)
    bound: dict[int, str] = {}
    pieces: dict[int, list[Piece]] = {}
    length: dict[int, int] = {}

    def prec(i: Node) -> int:
        return _ATOM if id(i) in bound or atom(i) else _precedence(i)

    for n in printed:
        if atom(n):
            length[id(n)] = len(n.label())
            continue
        ps = pieces[id(n)] = _pieces(n, prec, body_name)
        size = sum(len(p) if p.__class__ is str else length[id(p)] for p in ps)
        if uses[id(n)] > 1 and size > INLINE_SHARED:
            name = n.name if n.name and _IDENT.match(n.name) and n.name not in taken else next(fresh)
            taken.add(name)
            bound[id(n)] = name
            size = len(name)
        length[id(n)] = size

    def expand(n: Node) -> list[Piece]:
        if id(n) in bound:
            return [bound[id(n)]]
        return [n.label()] if atom(n) else pieces[id(n)]

    lines = []
    for n in printed:
        if id(n) in bound:
            out = [bound[id(n)], " = "]
            _emit(pieces[id(n)], expand, out)
            lines.append("".join(out))
    for o in outs:
        out = []
        _emit(expand(o), expand, out)
        lines.append("".join(out))
    return lines, printed


def _body_blocks(printed: list[Node], lines_of: Callable, body_name: BodyNames) -> list[str]:
    """Each body that the printed nodes (and, in turn, their bodies) hold, once, as an indented block.

    A loop node shows its body by label (``body=body3``); the block below
    reads ``body3(carry, x, outer0):`` and the body's own lines, nested bodies
    indented one level deeper. A queue, not recursion: bodies nest as deep as
    the user's loops do.
    """
    out: list[str] = []
    seen: set[int] = set()
    stack = [(b, 1) for n in reversed(printed) for _, b in reversed(bodies_of(n))]
    while stack:
        body, depth = stack.pop()
        if id(body) in seen:
            continue
        seen.add(id(body))
        pad = "    " * depth
        out.append(f"{pad[4:]}{body_name(body)}({', '.join(v.label() for v in body.inputs)}):")
        lines, shown = lines_of(body)
        out.extend(pad + line for line in "\n".join(lines).split("\n"))
        stack.extend((b, depth + 1) for n in reversed(shown) for _, b in reversed(bodies_of(n)))
    return out


def summary(node: Node, width: int = 60) -> str:
    """``node``'s name, or its infix text cut to ``width`` characters (``...`` at the cut).

    Costs O(width) whatever the graph's size or sharing: the text is produced
    left to right and abandoned at the cut, so a trace can name each of a
    million nodes in linear time.
    """
    if node.name:
        text = node.name
    elif node.op is None:
        text = node.label()
    else:
        def expand(n: Node) -> list[Piece]:
            return [n.label()] if n.op is None else _pieces(n, _precedence)

        out: list[str] = []
        if not _emit(expand(node), expand, out, budget=width):
            return "".join(out)[:max(0, width - 3)] + "..."
        text = "".join(out)
    return text if len(text) <= width else text[:width - 3] + "..."


def _ids() -> Iterator[str]:
    n = 0
    while True:
        k, s = n, ""
        while True:
            s = chr(65 + k % 26) + s
            k = k // 26 - 1
            if k < 0:
                break
        yield s
        n += 1


def _describe(n: Node, body_name: BodyNames) -> str:
    if n.is_var:
        return f"{n.name or '?'}"
    if n.is_const:
        return f"const {n.label()}"
    return n.op.name + (f"{{{_param_text(n.params, body_name)}}}" if n.params else "")


def _types(n: Node) -> str:
    dims = ", ".join("?" if d is None else str(d) for d in n.shape)
    return f" <{n.dtype}, ({dims}{',' if len(n.shape) == 1 else ''})>"


def debugprint(outputs: Node | Iterable[Node], show_types: bool = True) -> str:
    """An indented tree; a subgraph reached twice is shown once, then by its id.

    Below :data:`DEBUG_DEPTH` levels a subtree is marked ``(continued below)``
    and printed afterwards as a block of its own, so deep chains stay linear.
    """
    outs = [outputs] if isinstance(outputs, Node) else list(outputs)
    fresh = _ids()
    body_name = BodyNames()
    lines, shown = _debug_lines(outs, show_types, fresh, body_name)
    return "\n".join(lines + _body_blocks(shown, lambda b: _debug_lines(list(b.outputs), show_types, fresh, body_name),
                                          body_name))


def _debug_lines(outs: list[Node], show_types: bool, fresh: Iterator[str],
                 body_name: BodyNames) -> tuple[list[str], list[Node]]:
    """debugprint's lines for ``outs`` (ids drawn from ``fresh``), and the nodes they show."""
    names: dict[int, str] = {}
    shown: list[Node] = []
    lines: list[str] = []
    later: deque[Node] = deque()
    stack: list[tuple[Node, int, bool]] = [(o, 0, False) for o in reversed(outs)]
    while stack or later:
        if not stack:
            stack.append((later.popleft(), 0, True))
        n, depth, resumed = stack.pop()
        seen = id(n) in names and not resumed
        if id(n) not in names:
            names[id(n)] = next(fresh)
            shown.append(n)
        deferred = not seen and not resumed and n.inputs and depth >= DEBUG_DEPTH
        line = f"{' |' * depth}{_describe(n, body_name)} [id {names[id(n)]}]"
        if n.name and not n.is_var:
            line += f" {n.name!r}"
        if show_types:
            line += _types(n)
        if seen and n.inputs:
            line += " ..."
        if deferred:
            line += " (continued below)"
            later.append(n)
        lines.append(line)
        if not seen and not deferred:
            for i in reversed(n.inputs):
                stack.append((i, depth + 1, False))
    return lines, shown


def dot_string(text: str) -> str:
    """``text`` as a DOT double-quoted string that Graphviz reads back as ``text``.

    Backslashes and quotes are escaped and line breaks become DOT's ``\\n``;
    ``<>{}|`` need no escape in a quoted label of a non-record shape (the
    shapes used here), so a node name can never end the string or the graph.
    """
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")
    return f'"{text}"'


def to_dot(outputs: Node | Iterable[Node], highlight: Iterable[Node] = (), title: str | None = None) -> str:
    """Graphviz DOT text; nodes in ``highlight`` (e.g. those grad added) are filled.

    A loop or branch node's bodies are drawn once each, as a cluster labelled
    with the body's name (numbered as the printers number them), joined to the
    node by a dashed edge.
    """
    outs = [outputs] if isinstance(outputs, Node) else list(outputs)
    marked = {id(n) for n in highlight}
    lines = ["digraph twograd {", "  rankdir=BT;"]
    if title:
        lines.append(f"  label={dot_string(title)};")
    order = toposort(outs)
    index = _dot_nodes(order, "n", marked, lines, "  ")
    pending = [(n, index, name, b) for n in order for name, b in bodies_of(n)]
    if pending:
        lines.insert(2, "  compound=true;")  # (edges from a cluster)
    done: dict[int, str] = {}
    body_name = BodyNames()
    while pending:
        owner, owner_index, param, body = pending.pop(0)
        if id(body) not in done:
            prefix = done[id(body)] = f"b{len(done)}_"
            lines.append(f"  subgraph cluster_{prefix[:-1]} {{")
            lines.append(f"    label={dot_string(body_name(body))}; style=dashed;")
            border = toposort([*body.outputs, *body.inputs])
            inner = _dot_nodes(border, prefix, set(), lines, "    ")
            lines.append("  }")
            pending.extend((n, inner, name, b) for n in border for name, b in bodies_of(n))
        first = f"{done[id(body)]}0"
        lines.append(f"  {first} -> {owner_index[id(owner)]} [style=dashed, label={dot_string(param)}, "
                     f"ltail=cluster_{done[id(body)][:-1]}];")
    lines.append("}")
    return "\n".join(lines)


def _dot_nodes(order: list[Node], prefix: str, marked: set, lines: list[str], pad: str) -> dict[int, str]:
    """The DOT statements of ``order``'s nodes and edges (ids ``prefix`` + position), and the ids by node."""
    index = {id(n): f"{prefix}{k}" for k, n in enumerate(order)}
    for n in order:
        if n.is_var:
            attrs = f"label={dot_string(n.name or '?')}, shape=box"
        elif n.is_const:
            attrs = f"label={dot_string(n.label())}, shape=plaintext"
        else:
            attrs = f"label={dot_string(n.op.name + (chr(10) + n.name if n.name else ''))}, shape=ellipse"
        if id(n) in marked:
            attrs += ', style=filled, fillcolor="#f4a261"'
        lines.append(f"{pad}{index[id(n)]} [{attrs}];")
    for n in order:
        for i in n.inputs:
            lines.append(f"{pad}{index[id(i)]} -> {index[id(n)]};")
    return index
