"""An op's scalar form (a Python expression, the op table's ``scalar`` trait) as a template of LLVM IR.

The forms are small pure expressions over float64 and bool operands
(``math.sin({0})``, ``({0} * {1})``, ``({1} if {0} else {2})``). Each is
parsed with :mod:`ast` once per operand types (:func:`template`, cached) and
written as LLVM IR lines with holes: ``{0}``, ``{1}``... for the operands
(an SSA name or a literal) and ``{p}`` for the node, so the statement of
node 12 is ``template.text.format(a, b, p=12)`` and its temporaries are
``%n12.0``, ``%n12.1``.

The translation keeps Python's (and numpy's) float semantics exactly, with
no fast-math flag: ``fadd``/``fsub``/``fmul``/``fdiv`` are IEEE (1/0 = inf,
no exception), ``-x`` is ``fneg`` (it flips the sign of 0 and NaN), ``<``
``<=`` ``>`` ``>=`` ``==`` are ordered comparisons (false on NaN) and ``!=``
is unordered (true on NaN), a float's truth is ``x != 0`` (NaN is true), and
a conditional expression is a ``select`` (the forms are pure, so computing
both sides changes nothing but time). ``math.<f>`` is an LLVM intrinsic
where LLVM has one (which lowers to the same libm call numba makes, and lets
LLVM merge ``sin(x)`` and ``cos(x)`` into one ``sincos``), else the libm
function itself. Anything else (an int result such as ``math.floor``,
Python's ``%``, a float used as ``and``'s operand, a name the form does not
own) has no template: the region stays on numba's path, never a guess.
"""

from __future__ import annotations

import ast
import functools
import struct

__all__ = ["DOUBLE", "BOOL", "Template", "double_literal", "template"]

DOUBLE = "double"
BOOL = "i1"

#: ``math.<f>`` -> (LLVM function, arity), for functions with an LLVM intrinsic of the same meaning
_INTRINSICS = {"sin": ("llvm.sin.f64", 1), "cos": ("llvm.cos.f64", 1), "exp": ("llvm.exp.f64", 1),
               "log": ("llvm.log.f64", 1), "sqrt": ("llvm.sqrt.f64", 1), "fabs": ("llvm.fabs.f64", 1),
               "pow": ("llvm.pow.f64", 2), "exp2": ("llvm.exp2.f64", 1), "log2": ("llvm.log2.f64", 1),
               "log10": ("llvm.log10.f64", 1), "copysign": ("llvm.copysign.f64", 2)}
#: ``math.<f>`` that are libm functions of doubles returning a double (``math.asin`` is C's ``asin``)
_LIBM = {"tan": 1, "tanh": 1, "sinh": 1, "cosh": 1, "asin": 1, "acos": 1, "atan": 1, "asinh": 1, "acosh": 1,
         "atanh": 1, "log1p": 1, "expm1": 1, "erf": 1, "erfc": 1, "cbrt": 1, "atan2": 2, "hypot": 2}
_ARITH = {ast.Add: "fadd", ast.Sub: "fsub", ast.Mult: "fmul", ast.Div: "fdiv"}
#: Python's comparison of floats: ordered (false on NaN), except ``!=`` (true on NaN)
_FCMP = {ast.Lt: "olt", ast.LtE: "ole", ast.Gt: "ogt", ast.GtE: "oge", ast.Eq: "oeq", ast.NotEq: "une"}
_ICMP = {ast.Eq: "eq", ast.NotEq: "ne"}


class Template:
    """One form for given operand types: ``text`` (IR lines with holes), ``result`` (the value's text,
    with holes), ``type`` (``double`` or ``i1``) and ``declares`` (the functions it calls)."""

    __slots__ = ("text", "result", "type", "declares")

    def __init__(self, text: str, result: str, type_: str, declares: frozenset):
        self.text, self.result, self.type, self.declares = text, result, type_, declares


def double_literal(v: float) -> str:
    """A float64 as LLVM's exact hex literal (every bit kept: signed zeros, inf, NaN)."""
    return f"0x{struct.unpack('<Q', struct.pack('<d', float(v)))[0]:016X}"


class _Unsupported(Exception):
    """A part of a form this translator does not know: the form has no template."""


@functools.lru_cache(maxsize=1024)
def template(form: str, types: tuple[str, ...]) -> Template | None:
    """The template of scalar form ``form`` for operands of ``types``, or None where the form uses
    anything the translator does not know."""
    try:
        source = form.format(*[f"_{k}" for k in range(len(types))])
        tree = ast.parse(source.strip(), mode="eval")
        w = _Writer(types)
        value, type_ = w.expr(tree.body)
    except (_Unsupported, SyntaxError, IndexError, KeyError, ValueError, RecursionError):
        return None
    return Template("".join(w.lines), value, type_, frozenset(w.declares))


class _Writer:
    """Writes one form's IR lines; ``expr`` returns each subexpression's (value text, type)."""

    def __init__(self, types: tuple[str, ...]):
        self.types = types
        self.lines: list[str] = []
        self.declares: set[str] = set()

    def fresh(self, instruction: str) -> str:
        name = f"%n{{p}}.{len(self.lines)}"
        self.lines.append(f"  {name} = {instruction}\n")
        return name

    def expr(self, e: ast.expr) -> tuple[str, str]:
        method = getattr(self, "on_" + type(e).__name__, None)
        if method is None:
            raise _Unsupported(type(e).__name__)
        return method(e)

    def double(self, e: ast.expr) -> str:
        value, type_ = self.expr(e)
        if type_ != DOUBLE:
            raise _Unsupported("a bool where a float is needed")
        return value

    def truth(self, e: ast.expr) -> str:
        """An operand as a condition: a bool, or a float's truth (nonzero, NaN included)."""
        value, type_ = self.expr(e)
        return value if type_ == BOOL else self.fresh(f"fcmp une double {value}, 0x0000000000000000")

    def on_Constant(self, e: ast.Constant) -> tuple[str, str]:
        v = e.value
        if v is True or v is False:
            return ("true" if v else "false"), BOOL
        if type(v) in (int, float):
            return double_literal(v), DOUBLE
        raise _Unsupported(repr(v))

    def on_Name(self, e: ast.Name) -> tuple[str, str]:
        name = e.id
        if name.startswith("_") and name[1:].isdigit() and int(name[1:]) < len(self.types):
            k = int(name[1:])
            return f"{{{k}}}", self.types[k]
        raise _Unsupported(name)

    def on_UnaryOp(self, e: ast.UnaryOp) -> tuple[str, str]:
        if isinstance(e.op, ast.Not):
            return self.fresh(f"xor i1 {self.truth(e.operand)}, true"), BOOL
        x = self.double(e.operand)
        if isinstance(e.op, ast.USub):
            return self.fresh(f"fneg double {x}"), DOUBLE
        if isinstance(e.op, ast.UAdd):
            return x, DOUBLE
        raise _Unsupported(type(e.op).__name__)

    def on_BinOp(self, e: ast.BinOp) -> tuple[str, str]:
        x, y = self.double(e.left), self.double(e.right)
        if isinstance(e.op, ast.Pow):
            return self.call("llvm.pow.f64", [x, y]), DOUBLE
        op = _ARITH.get(type(e.op))
        if op is None:
            raise _Unsupported(type(e.op).__name__)  # % and // differ from any one IEEE instruction
        return self.fresh(f"{op} double {x}, {y}"), DOUBLE

    def on_Compare(self, e: ast.Compare) -> tuple[str, str]:
        """``a < b <= c`` is ``a < b and b <= c`` (the forms are pure, so evaluating b once is the same)."""
        left = self.expr(e.left)
        parts = []
        for op, right_e in zip(e.ops, e.comparators):
            right = self.expr(right_e)
            parts.append(self.compare(op, left, right))
            left = right
        out = parts[0]
        for p in parts[1:]:
            out = self.fresh(f"and i1 {out}, {p}")
        return out, BOOL

    def compare(self, op: ast.cmpop, left: tuple[str, str], right: tuple[str, str]) -> str:
        if left[1] == right[1] == BOOL and type(op) in _ICMP:
            return self.fresh(f"icmp {_ICMP[type(op)]} i1 {left[0]}, {right[0]}")
        if left[1] != DOUBLE or right[1] != DOUBLE or type(op) not in _FCMP:
            raise _Unsupported("comparison")
        return self.fresh(f"fcmp {_FCMP[type(op)]} double {left[0]}, {right[0]}")

    def on_BoolOp(self, e: ast.BoolOp) -> tuple[str, str]:
        """``and``/``or`` of bools is a bool (of floats Python returns an operand: not translated)."""
        values = []
        for v in e.values:
            value, type_ = self.expr(v)
            if type_ != BOOL:
                raise _Unsupported("and/or of a float")
            values.append(value)
        op = "and" if isinstance(e.op, ast.And) else "or"
        out = values[0]
        for v in values[1:]:
            out = self.fresh(f"{op} i1 {out}, {v}")
        return out, BOOL

    def on_IfExp(self, e: ast.IfExp) -> tuple[str, str]:
        cond = self.truth(e.test)
        (a, ta), (b, tb) = self.expr(e.body), self.expr(e.orelse)
        if ta != tb:
            raise _Unsupported("branches of different types")
        return self.fresh(f"select i1 {cond}, {ta} {a}, {ta} {b}"), ta

    def on_Call(self, e: ast.Call) -> tuple[str, str]:
        if e.keywords:
            raise _Unsupported("keyword arguments")
        f = e.func
        if isinstance(f, ast.Name) and f.id == "abs" and len(e.args) == 1:
            return self.call("llvm.fabs.f64", [self.double(e.args[0])]), DOUBLE
        if not (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "math"):
            raise _Unsupported("a call")
        if f.attr in _INTRINSICS:
            name, arity = _INTRINSICS[f.attr]
        elif f.attr in _LIBM:
            name, arity = f.attr, _LIBM[f.attr]
        else:
            raise _Unsupported(f"math.{f.attr}")
        if len(e.args) != arity:
            raise _Unsupported(f"math.{f.attr} with {len(e.args)} arguments")
        return self.call(name, [self.double(a) for a in e.args]), DOUBLE

    def call(self, name: str, args: list[str]) -> str:
        self.declares.add(f"declare double @{name}({', '.join(['double'] * len(args))})")
        return self.fresh(f"call double @{name}({', '.join(f'double {a}' for a in args)})")
