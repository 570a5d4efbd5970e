"""Three views of a graph: infix (``pprint``), a tree (``debugprint``), DOT."""

from __future__ import annotations

from collections.abc import Iterable

from .graph import Node, toposort

_INFIX = {"add": ("+", 1), "sub": ("-", 1), "mul": ("*", 2), "div": ("/", 2), "matmul": ("@", 2),
          "pow": ("**", 4), "lt": ("<", 0), "le": ("<=", 0), "gt": (">", 0), "ge": (">=", 0),
          "eq": ("==", 0), "ne": ("!=", 0)}
_ATOM = 9


def _param_text(params: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items())


def _index_text(spec, args) -> str:
    parts = []
    for s in spec:
        kind = s[0]
        if kind == "int":
            parts.append(str(s[1]))
        elif kind == "slice":
            a, b, c = ("" if v is None else str(v) for v in s[1:])
            parts.append(f"{a}:{b}" + (f":{c}" if c else ""))
        elif kind == "new":
            parts.append("None")
        elif kind == "ellipsis":
            parts.append("...")
        else:
            parts.append(args[s[1]])
    return ", ".join(parts)


def pprint(outputs: Node | Iterable[Node], names: bool = False) -> str:
    """Infix text of each output, one per line (like Theano's ``pp``).

    With ``names``, a named intermediate node is shown by its name instead of
    its expression, so a derivative reads in the forward graph's own terms
    (``cos(y) * cos(x) * cos(w)`` for the book's chain).
    """
    outs = [outputs] if isinstance(outputs, Node) else list(outputs)
    text: dict[int, tuple[str, int]] = {}
    roots = {id(o) for o in outs}
    for n in toposort(outs):
        if n.op is None or (names and n.name and id(n) not in roots):
            text[id(n)] = (n.label(), _ATOM)
            continue
        args = [text[id(i)] for i in n.inputs]
        name = n.op.name
        if name in _INFIX:
            sym, p = _INFIX[name]
            (a, pa), (b, pb) = args
            right_assoc = name == "pow"
            a = a if pa > p or (pa == p and not right_assoc) else f"({a})"
            b = b if pb > p or (pb == p and right_assoc) else f"({b})"
            text[id(n)] = (f"{a} {sym} {b}", p)
        elif name == "neg":
            a, pa = args[0]
            text[id(n)] = (f"-{a}" if pa >= 3 else f"-({a})", 3)
        elif name == "getitem":
            a, pa = args[0]
            a = a if pa == _ATOM else f"({a})"
            text[id(n)] = (f"{a}[{_index_text(n.params['index'], [t for t, _ in args[1:]])}]", _ATOM)
        else:
            params = {k: v for k, v in n.params.items() if k != "index"}
            inner = ", ".join([t for t, _ in args] + ([_param_text(params)] if params else []))
            text[id(n)] = (f"{name}({inner})", _ATOM)
    return "\n".join(text[id(o)][0] for o in outs)


def _ids():
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


def _describe(n: Node) -> str:
    if n.is_var:
        return f"{n.name or '?'}"
    if n.is_const:
        return f"const {n.label()}"
    params = {k: v for k, v in n.params.items()}
    return n.op.name + (f"{{{_param_text(params)}}}" if params else "")


def debugprint(outputs: Node | Iterable[Node], show_types: bool = True) -> str:
    """An indented tree; a subgraph reached twice is shown once, then by its id."""
    outs = [outputs] if isinstance(outputs, Node) else list(outputs)
    names: dict[int, str] = {}
    fresh = _ids()
    lines: list[str] = []
    stack = [(o, "") for o in reversed(outs)]
    while stack:
        n, indent = stack.pop()
        seen = id(n) in names
        if not seen:
            names[id(n)] = next(fresh)
        line = f"{indent}{_describe(n)} [id {names[id(n)]}]"
        if n.name and not n.is_var:
            line += f" {n.name!r}"
        if show_types:
            dims = ", ".join("?" if d is None else str(d) for d in n.shape)
            line += f" <{n.dtype}, ({dims}{',' if len(n.shape) == 1 else ''})>"
        if seen and n.inputs:
            line += " ..."
        lines.append(line)
        if not seen:
            child = indent + " |"
            for i in reversed(n.inputs):
                stack.append((i, child))
    return "\n".join(lines)


def to_dot(outputs: Node | Iterable[Node], highlight: Iterable[Node] = (), title: str | None = None) -> str:
    """Graphviz DOT text; nodes in ``highlight`` (e.g. those grad added) are filled."""
    outs = [outputs] if isinstance(outputs, Node) else list(outputs)
    marked = {id(n) for n in highlight}
    order = toposort(outs)
    index = {id(n): k for k, n in enumerate(order)}
    lines = ["digraph twograd {", "  rankdir=BT;"]
    if title:
        lines.append(f'  label="{title}";')
    for n in order:
        k = index[id(n)]
        if n.is_var:
            attrs = f'label="{n.name}", shape=box'
        elif n.is_const:
            attrs = f'label="{n.label()}", shape=plaintext'
        else:
            label = n.op.name + (f"\\n{n.name}" if n.name else "")
            attrs = f'label="{label}", shape=ellipse'
        if id(n) in marked:
            attrs += ', style=filled, fillcolor="#f4a261"'
        lines.append(f"  n{k} [{attrs}];")
    for n in order:
        for i in n.inputs:
            lines.append(f"  n{index[id(i)]} -> n{index[id(n)]};")
    lines.append("}")
    return "\n".join(lines)
