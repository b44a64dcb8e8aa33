"""The built-in tools: functions inside Agent Mesh that need no network.

| name             | arguments                                              | output                          |
|------------------|--------------------------------------------------------|---------------------------------|
| `echo`           | anything                                               | the arguments, unchanged        |
| `json_transform` | `data` (any JSON), `expression` (JMESPath)             | `{"result": ...}`               |
| `math`           | `expression` ("2 * (x + 1)"), optional `variables`     | `{"result": number}`            |
| `current_time`   | optional `timezone` (IANA name, default UTC)           | `{"iso", "unix", "timezone"}`   |

`echo` and `current_time` cost no more than copying their arguments and run where they are
called (`INLINE`); `json_transform` and `math` can be written to run for minutes, so the tools
service runs them in the sandbox (`mesh.runtime.sandbox`), where the tool's deadline kills them.

`json_transform` takes its expression from the arguments or, when absent, from the tool's
`config.expression`. `math` parses the expression with `ast` and evaluates only numbers, names
from `variables`, + - * / // % **, unary minus and a few functions (abs, round, min, max, sqrt,
floor, ceil, log, exp, sin, cos, tan); it never calls `eval`. A result a JSON number cannot be
(infinite, complex, past a double's range) is the caller's mistake: 400
`RESULT_NOT_REPRESENTABLE` naming `arguments.expression` (the execution is recorded as failed).
"""

from __future__ import annotations

import ast
import math as _math
import operator
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jmespath
from jmespath.exceptions import JMESPathError

from mesh.runtime.sandbox_worker import passable


@passable
class BuiltinError(Exception):
    """A built-in tool could not do what it was asked; the message is the execution's error."""


@passable
class ResultNotRepresentable(BuiltinError):
    """The arguments ask for a result no answer can carry (an infinite or complex number): the
    caller's mistake, answered 400 naming the argument (`field`; `math`'s expression, the one
    argument whose result can be such a number, so the sandbox can rebuild it from the message)."""

    def __init__(self, message: str, field: str = "arguments.expression") -> None:
        super().__init__(message)
        self.field = field


def echo(arguments: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    return dict(arguments)


def json_transform(arguments: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    expression = arguments.get("expression") or config.get("expression")
    if not expression:
        raise BuiltinError("json_transform needs an `expression` (JMESPath)")
    try:
        return {"result": jmespath.search(expression, arguments.get("data"))}
    except JMESPathError as exc:
        raise BuiltinError(f"invalid JMESPath expression {expression!r}: {exc}") from None


_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs, "round": round, "min": min, "max": max, "sqrt": _math.sqrt,
    "floor": _math.floor, "ceil": _math.ceil, "log": _math.log, "exp": _math.exp,
    "sin": _math.sin, "cos": _math.cos, "tan": _math.tan}
_CONSTANTS = {"pi": _math.pi, "e": _math.e}
_MAX_EXPRESSION = 500
_MAX_POWER = 1000
_LARGEST = sys.float_info.max
# Integers past this many bits are refused where they would be made, not after: a JSON number
# cannot carry them anyway (a double ends near 2**1024), and `((9**1000)**1000)**10` would
# otherwise spend seconds of CPU building a 31-million-bit number only to be refused.
_MAX_BITS = 4096


def _bits(value: Any) -> int:
    return value.bit_length() if isinstance(value, int) else 0


def _bounded(op: ast.operator, left: Any, right: Any) -> None:
    """Refuses an integer power or product whose result would pass _MAX_BITS, before it is
    computed (its size is known from the operands')."""
    if isinstance(op, ast.Pow) and isinstance(left, int) and isinstance(right, int) \
            and right > 0 and abs(left) > 1:
        bits = _bits(left) * right
    elif isinstance(op, ast.Mult):
        bits = _bits(left) + _bits(right)
    else:
        return
    if bits > _MAX_BITS:
        raise ResultNotRepresentable(
            f"the expression makes a number of about {int(bits * 0.30103)} digits, past the "
            "range of a JSON number")


def _evaluate(node: ast.AST, names: dict[str, float]) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body, names)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) \
            and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        raise BuiltinError(f"unknown name {node.id!r}; pass it in `variables`")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left, names), _evaluate(node.right, names)
        if isinstance(node.op, ast.Pow) and abs(right) > _MAX_POWER:
            raise BuiltinError(f"exponent {right} is too large")
        _bounded(node.op, left, right)
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand, names))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
            and node.func.id in _FUNCTIONS and not node.keywords:
        return _FUNCTIONS[node.func.id](*(_evaluate(a, names) for a in node.args))
    raise BuiltinError(f"unsupported expression element: {ast.dump(node)[:60]}")


def math(arguments: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    expression = str(arguments.get("expression", ""))
    if not expression or len(expression) > _MAX_EXPRESSION:
        raise BuiltinError(f"math needs an `expression` of 1-{_MAX_EXPRESSION} characters")
    variables = arguments.get("variables") or {}
    names = dict(_CONSTANTS)
    for key, value in variables.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise BuiltinError(f"variable {key!r} is not a number")
        names[key] = value
    try:
        tree = ast.parse(expression, mode="eval")
        result = _evaluate(tree, names)
    except SyntaxError as exc:
        raise BuiltinError(f"cannot parse {expression!r}: {exc.msg}") from None
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise BuiltinError(f"cannot evaluate {expression!r}: {exc}") from None
    _check_result(expression, result)
    if isinstance(result, float) and result.is_integer() and abs(result) < 2**53:
        result = int(result)
    return {"result": result}


def _check_result(expression: str, result: Any) -> None:
    """A JSON number is real and finite: `(-8) ** 0.5` is complex, `1e308 * 10` infinite, and
    `10 ** 1000` past any double."""
    if isinstance(result, complex):
        raise ResultNotRepresentable(
            f"the result of {expression!r} is a complex number ({result}); math answers real "
            "numbers only")
    if isinstance(result, float) and not _math.isfinite(result):
        raise ResultNotRepresentable(
            f"the result of {expression!r} is not a finite number ({result}): it is past the "
            "range of a JSON number")
    if isinstance(result, int) and abs(result) > _LARGEST:
        raise ResultNotRepresentable(
            f"the result of {expression!r} is past the range of a JSON number "
            f"(about {int(result.bit_length() * 0.30103) + 1} digits)")


def current_time(arguments: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    name = arguments.get("timezone") or config.get("timezone") or "UTC"
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BuiltinError(f"unknown time zone {name!r}") from None
    now = datetime.now(zone)
    return {"iso": now.isoformat(), "unix": time.time(), "timezone": name}


_OBJECT = {"type": "object"}
BUILTINS: dict[str, tuple[Callable[[dict, dict], dict], str, dict[str, Any]]] = {
    "echo": (echo, "Returns its arguments unchanged.", _OBJECT),
    "json_transform": (json_transform, "Applies a JMESPath expression to JSON data.", {
        "type": "object", "required": ["data"],
        "properties": {"data": {}, "expression": {"type": "string"}}}),
    "math": (math, "Evaluates an arithmetic expression safely.", {
        "type": "object", "required": ["expression"],
        "properties": {"expression": {"type": "string"},
                       "variables": {"type": "object",
                                     "additionalProperties": {"type": "number"}}}}),
    "current_time": (current_time, "The current time in a time zone.", {
        "type": "object", "properties": {"timezone": {"type": "string"}}}),
}


# Built-ins whose cost is bounded by the size of their arguments: safe on the event loop.
INLINE = frozenset({"echo", "current_time"})


def run(name: str, arguments: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    try:
        function = BUILTINS[name][0]
    except KeyError:
        raise BuiltinError(f"unknown built-in {name!r}; built-ins: {', '.join(BUILTINS)}") from None
    return function(arguments, config)
