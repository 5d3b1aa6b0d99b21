"""A study's derived columns: small arithmetic expressions over a point's columns.

``max(stage0_ms, stage1_ms)``, ``period_ms / bottleneck_ms``, ``(policy.stages - 1) /
(policy.items + policy.stages - 1)``: numbers, names (a column of the point, or a dotted
scenario field such as ``policy.items``), ``+ - * / **``, unary minus, the functions
of :data:`FUNCTIONS` and ``first(a, b)`` (the first that is not missing). Nothing
else parses (no attribute access beyond dotted names, no calls of anything else), so a
study file cannot run code. A missing operand (a metric
the point could not compute, a field its policy lacks) or a division by zero makes the
value missing (None), never 0.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

FUNCTIONS: dict[str, Callable[..., float]] = {"max": max, "min": min, "abs": abs}
#: ``first(a, b, ...)``: the first argument that is not missing (a metric only some
#: points have, such as aggregate_fps, with a fallback)
FIRST = "first"
_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.Pow: operator.pow,
}


class ExprError(ValueError):
    """An expression that does not parse or uses something not allowed."""


@dataclass(frozen=True)
class Expr:
    """A parsed expression and the names it reads (columns or dotted fields)."""

    text: str
    tree: ast.expr
    names: tuple[str, ...]

    def __call__(self, lookup: Callable[[str], Any]) -> float | None:
        try:
            value = _eval(self.tree, lookup)
        except (ZeroDivisionError, OverflowError):
            return None
        return None if value is None or not math.isfinite(value) else float(value)


def parse(text: str) -> Expr:
    """Parse ``text``; :class:`ExprError` says what is wrong."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ExprError(f"{text!r} does not parse ({exc.msg})") from None
    names: list[str] = []
    _check(tree, names)
    return Expr(text, tree, tuple(dict.fromkeys(names)))


def dotted(node: ast.expr) -> str | None:
    """``policy.items`` for the attribute chain ``policy.items``; None for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = dotted(node.value)
        return f"{head}.{node.attr}" if head is not None else None
    return None


def _check(node: ast.expr, names: list[str]) -> None:
    name = dotted(node)
    if name is not None:
        names.append(name)
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ExprError(f"only numbers are allowed, not {node.value!r}")
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        _check(node.left, names)
        _check(node.right, names)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        _check(node.operand, names)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
            and node.func.id in (*FUNCTIONS, FIRST) and node.args and not node.keywords:
        for arg in node.args:
            _check(arg, names)
    else:
        raise ExprError(f"{ast.unparse(node)!r} is not allowed (numbers, column names, "
                        f"+ - * / **, {', '.join((*FUNCTIONS, FIRST))})")


def _eval(node: ast.expr, lookup: Callable[[str], Any]) -> float | None:
    name = dotted(node)
    if name is not None:
        return _number(lookup(name))
    if isinstance(node, ast.Constant):
        assert isinstance(node.value, int | float)  # _check allows only numbers
        return float(node.value)
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, lookup), _eval(node.right, lookup)
        return None if left is None or right is None else _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, lookup)
        return None if value is None else (-value if isinstance(node.op, ast.USub) else value)
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    args = [_eval(a, lookup) for a in node.args]
    if node.func.id == FIRST:
        return next((a for a in args if a is not None), None)
    return None if any(a is None for a in args) else FUNCTIONS[node.func.id](*args)


def _number(value: Any) -> float | None:
    """A column's value as a number: None for missing (None, NaN) or non-numbers."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def evaluate_all(exprs: Mapping[str, Expr], row: dict[str, Any],
                 fallback: Callable[[str], Any]) -> dict[str, float | None]:
    """Each expression in order on ``row`` (a later one may read an earlier one); a
    name the row lacks is asked of ``fallback`` (a dotted scenario field)."""
    out: dict[str, float | None] = {}

    def lookup(name: str) -> Any:
        if name in out:
            return out[name]
        return row[name] if name in row else fallback(name)

    for key, expr in exprs.items():
        out[key] = expr(lookup)
    return out
