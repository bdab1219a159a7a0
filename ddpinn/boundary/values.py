"""Values of boundary conditions: numbers, closed-form expressions, the exact solution, or a
function of a Python module.

A case file gives each constrained output a value (``values = { u = "sin(pi*x)", v = 0.0 }``):

- a number;
- a closed-form expression in the axis names (x, y, z, t), the constants ``pi`` and ``E``, the
  PDE's parameter names and the functions of :data:`FUNCTIONS`, parsed with sympy (never
  ``eval``: every name is checked against that list first) and compiled to numpy;
- ``"exact"``: the condition's operator applied to the PDE's exact solution (computed where the
  rows are built, :func:`ddpinn.boundary.conditions.condition_rows`);
- ``"package.module:function"``: ``function(x, params)`` with ``x`` an ``(n, d)`` float64
  array (columns: the axes) and ``params`` a dict of floats, returning ``(n,)`` values
  (trusted code, imported like a PDE plugin);
- ``{ data = "name" }``: interpolated from the file of the ``[[data]]`` table ``name`` (its
  column for the same output, or ``{ data = "name", field = "u" }`` for another output's);
  ``values = { data = "name" }`` gives every constrained output its own column.
"""
from __future__ import annotations

import importlib
import io
import math
import re
import tokenize

import numpy as np
import sympy
from sympy.parsing.sympy_parser import auto_number, convert_xor, parse_expr

# Function names an expression may call, with their sympy counterparts.
FUNCTIONS = {
    "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "asin": sympy.asin,
    "acos": sympy.acos, "atan": sympy.atan, "atan2": sympy.atan2, "sinh": sympy.sinh,
    "cosh": sympy.cosh, "tanh": sympy.tanh, "exp": sympy.exp, "log": sympy.log,
    "sqrt": sympy.sqrt, "abs": sympy.Abs, "sign": sympy.sign, "min": sympy.Min,
    "max": sympy.Max, "heaviside": sympy.Heaviside,
}
CONSTANTS = {"pi": sympy.pi, "E": sympy.E}
_OPERATORS = {"+", "-", "*", "/", "**", "^", "(", ")", ","}
_SKIP = {tokenize.ENDMARKER, tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT}
_PLUGIN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def float_params(params: dict) -> dict:
    """Parameters as plain floats (inverse unknowns arrive as shared scalar tensors)."""
    out = {}
    for key, value in params.items():
        if hasattr(value, "detach"):
            value = value.detach().reshape(-1)[0].item()
        out[key] = float(value)
    return out


class Value:
    """One output's value on boundary points. ``field`` names it in messages."""

    def __init__(self, field: str):
        self.field = field

    def evaluate(self, x: np.ndarray, params: dict) -> np.ndarray:
        """x: (n, d) float64 -> (n,) float64."""
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}({self.field!r}, {self!s})"

    def _finite(self, out: np.ndarray, x: np.ndarray) -> np.ndarray:
        bad = ~np.isfinite(out)
        if bad.any():
            at = x[int(np.argmax(bad))].tolist()
            raise ValueError(f"field '{self.field}' = {self!s} is not a finite number at "
                             f"the boundary point {at}")
        return out


class Constant(Value):
    def __init__(self, field: str, value: float):
        super().__init__(field)
        self.value = float(value)

    def evaluate(self, x, params):
        return np.full(len(x), self.value)

    def __str__(self):
        return repr(self.value)


class Exact(Value):
    """The PDE's exact solution, through the condition's operator (no values of its own)."""

    def evaluate(self, x, params):
        raise TypeError("'exact' values are computed by condition_rows, with the operator")

    def __str__(self):
        return "'exact'"


class Expression(Value):
    """A closed-form expression compiled to numpy.

    Parameters
    ----------
    field : str
    text : str -- the expression as written
    axes : tuple of str -- names of the columns of x
    params : iterable of str -- parameter names the expression may use
    """

    def __init__(self, field: str, text: str, axes: tuple, params):
        super().__init__(field)
        self.text = text
        self.expr = parse_expression(text, axes, params, field)
        by_name = {str(s): s for s in self.expr.free_symbols}
        self.columns = [(i, a) for i, a in enumerate(axes) if a in by_name]
        self.params = sorted(n for n in by_name if n not in axes)
        order = [a for _, a in self.columns] + self.params
        self.fn = sympy.lambdify([by_name[n] for n in order], self.expr, modules="numpy")

    def evaluate(self, x, params):
        x = np.asarray(x, dtype=np.float64)
        p = float_params({k: params[k] for k in self.params})
        args = [x[:, i] for i, _ in self.columns] + [p[k] for k in self.params]
        with np.errstate(all="ignore"):
            out = np.asarray(self.fn(*args), dtype=np.float64)
        return self._finite(np.broadcast_to(out, (len(x),)).copy(), x)

    def __str__(self):
        return repr(self.text)


class DataValue(Value):
    """Values interpolated from a ``[[data]]`` file (:class:`ddpinn.data.inputs.DataInput`);
    each rank reads the part of the file its boundary points need."""

    def __init__(self, field: str, source, output: str):
        super().__init__(field)
        self.source, self.output = source, output

    def evaluate(self, x, params):
        x = np.asarray(x, dtype=np.float64)
        return self._finite(self.source.values_at(x, self.output), x)

    def __str__(self):
        return repr({"data": self.source.name, "field": self.output})


class Function(Value):
    """``package.module:function``, called as ``function(x (n, d), params dict)``."""

    def __init__(self, field: str, path: str):
        super().__init__(field)
        self.path = path
        module, _, attr = path.partition(":")
        try:
            self.fn = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"field '{field}' = {path!r} cannot be imported: {exc}") from None
        if not callable(self.fn):
            raise ValueError(f"field '{field}' = {path!r} is not a function")

    def evaluate(self, x, params):
        x = np.array(x, dtype=np.float64)
        out = np.asarray(self.fn(x.copy(), float_params(params)), dtype=np.float64)
        if out.size != len(x) or out.ndim > 2:
            raise ValueError(f"field '{self.field}' = {self.path!r} returned shape "
                             f"{out.shape} for {len(x)} points; expected ({len(x)},)")
        return self._finite(out.reshape(len(x)), x)

    def __str__(self):
        return repr(self.path)


def _allowed(axes, params) -> str:
    return (f"the axes {', '.join(axes)}, the constants pi, E, "
            f"the parameters {', '.join(params) or '(none)'} "
            f"and the functions {', '.join(FUNCTIONS)}")


def parse_expression(text: str, axes: tuple, params, field: str) -> sympy.Expr:
    """Parse ``text`` into a real sympy expression of the axes and parameters.

    Every token is checked before sympy sees the text: numbers, the allowed names (axes,
    ``pi``, ``E``, parameters, :data:`FUNCTIONS`), ``+ - * / ** ^`` (power), parentheses and
    commas; anything else (attributes, strings, brackets, unknown names) is a ValueError
    naming ``field``. The result may use only the axes and parameters.
    """
    params = [p for p in params if p not in axes]
    symbols = {n: sympy.Symbol(n, real=True) for n in list(axes) + params}
    known = {**FUNCTIONS, **CONSTANTS, **symbols}
    head = f"field '{field}' = {text!r}"
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError) as exc:
        raise ValueError(f"{head} is not a valid expression: {exc}") from None
    for tok in tokens:
        if tok.type in _SKIP:
            continue
        if tok.type == tokenize.NAME:
            if tok.string not in known:
                raise ValueError(f"{head}: unknown name {tok.string!r}; an expression may use "
                                 f"{_allowed(axes, params)}")
        elif tok.type == tokenize.NUMBER:
            if tok.string[-1] in "jJ":
                raise ValueError(f"{head}: imaginary number {tok.string!r} is not allowed")
        elif not (tok.type == tokenize.OP and tok.string in _OPERATORS):
            raise ValueError(f"{head}: {tok.string!r} is not allowed in an expression "
                             f"(numbers, names, + - * / ** ^, parentheses and commas only)")
    if not text.strip():
        raise ValueError(f"{head} is empty")
    safe_globals = {"__builtins__": {}, "Integer": sympy.Integer, "Float": sympy.Float,
                    "Rational": sympy.Rational, **FUNCTIONS, **CONSTANTS}
    try:
        expr = parse_expr(text, local_dict=dict(symbols), global_dict=safe_globals,
                          transformations=(auto_number, convert_xor))
        expr = sympy.sympify(expr)
    except Exception as exc:  # sympy raises many kinds: all mean a malformed expression
        raise ValueError(f"{head} is not a valid expression: {exc}") from None
    if not isinstance(expr, sympy.Expr):
        raise ValueError(f"{head} is not a number-valued expression")
    unknown = sorted(str(s) for s in expr.free_symbols if str(s) not in symbols)
    if unknown:
        raise ValueError(f"{head}: unknown name {unknown[0]!r}; an expression may use "
                         f"{_allowed(axes, params)}")
    if expr.has(sympy.I) or expr.has(sympy.zoo) or expr.has(sympy.nan):
        raise ValueError(f"{head} is not a real, finite expression")
    return expr


def is_data_value(raw, pde) -> bool:
    """True for a ``{ data = ... }`` table (not a table of values by output name)."""
    return isinstance(raw, dict) and "data" in raw and "data" not in pde.outputs


def _data_value(raw: dict, field: str, data) -> Value:
    """``{ data = "name", field = "u" }`` -> DataValue; ValueError naming ``field``."""
    data = data or {}
    output = field.rsplit(".", 1)[-1]
    unknown = [k for k in raw if k not in ("data", "field")]
    if unknown:
        raise ValueError(f"field '{field}.{unknown[0]}' is not a data value key; allowed: "
                         f"data, field")
    name = raw["data"]
    if name not in data:
        raise ValueError(f"field '{field}.data' = {name!r} names no [[data]] table; the "
                         f"case's tables: {', '.join(data) or '(none)'}")
    source = data[name]
    if source.spec.use != "boundary":
        raise ValueError(f"field '{field}.data' = {name!r}: that table has use = "
                         f"{source.spec.use!r}; boundary values need use = \"boundary\"")
    column = raw.get("field", output)
    if column not in source.outputs:
        raise ValueError(f"field '{field}.field' = {column!r}: the file of [[data]] table "
                         f"{name!r} has values for {', '.join(source.outputs)} only")
    return DataValue(field, source, column)


def parse_value(raw, field: str, pde, axes: tuple, data=None) -> Value:
    """One value of a case file -> :class:`Value` (see the module docstring); ``data``: the
    case's [[data]] tables (name -> DataInput) that a ``{ data = ... }`` value may name."""
    if is_data_value(raw, pde):
        return _data_value(raw, field, data)
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise ValueError(f"field '{field}' = {raw!r} must be a number, an expression in "
                         f"{', '.join(axes)}, \"exact\", \"package.module:function\" or "
                         f"{{ data = \"name\" }}")
    if isinstance(raw, (int, float)):
        if not math.isfinite(raw):
            raise ValueError(f"field '{field}' = {raw!r} must be a finite number")
        return Constant(field, raw)
    text = raw.strip()
    if text == "exact":
        if not pde.has_exact:
            raise ValueError(f"field '{field}' = 'exact': PDE {pde.name!r} has no exact "
                             f"solution; give a number, an expression or a function")
        return Exact(field)
    if _PLUGIN.match(text):
        return Function(field, text)
    return Expression(field, text, tuple(axes), list(pde.params))
