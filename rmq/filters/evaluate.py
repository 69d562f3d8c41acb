"""A parsed selector compiled into closures that evaluate it (three-valued logic).

The closures never raise, whatever the properties hold: a value that is not a string (a
number, a list, a nested object from an entry written by another client) compares by its type
(numbers as numbers), and anything it cannot be compared as is unknown. (Consumers dead-letter
entries whose properties are not all strings before filtering; this is the second line.)
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

from .nodes import (
    _ORDER_OPS,
    TAGS,
    And,
    Between,
    CompareOp,
    Comparison,
    Condition,
    Constant,
    In,
    IsNull,
    Not,
    Null,
    Number,
    Or,
    Property,
    String,
    TextMatch,
    Value,
)

# ---------------------------------------------------------------------------------------------
# Evaluation: the AST compiled to closures
# ---------------------------------------------------------------------------------------------
#
# Every condition is compiled twice over, by polarity: `_compile(node, True)` returns a
# predicate that holds when the node is TRUE, `_compile(node, False)` one that holds when it is
# FALSE; when neither holds the node is unknown. This gives exact three-valued logic with
# closures that only ever return bool: NOT swaps the polarity, and AND/OR swap into each other
# (De Morgan) when asked for FALSE.

Tag: TypeAlias = str | None
Props: TypeAlias = Mapping[str, str]
Pred: TypeAlias = Callable[[Tag, Props], bool]
_Scalar: TypeAlias = str | int | float | bool | None
_Getter: TypeAlias = Callable[[Tag, Props], _Scalar]

_NUMBER_CHARS = "0123456789+-.eE"
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "<>": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_NEGATED: dict[str, CompareOp] = {"=": "<>", "<>": "=", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}
_SWAPPED: dict[str, CompareOp] = {"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _to_number(text: str) -> int | float | None:
    """The number a property value spells, or None (no spaces, `_`, hex, NaN or Infinity).

    `[+-]?([0-9]+(.[0-9]*)?|.[0-9]+)([eE][+-]?[0-9]+)?`; integers stay exact. Restricted to
    those characters, `float()` accepts exactly that grammar, which is cheaper than a regex.
    """
    if text.isdigit() and text.isascii():
        try:
            return int(text)
        except ValueError:  # longer than sys.get_int_max_str_digits()
            return float(text)
    if not text or text.lstrip(_NUMBER_CHARS):
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    if text[0] in "+-" and text[1:].isdigit():  # a signed integer: keep it exact
        try:
            return int(text)
        except ValueError:
            return number
    return number


def _numeric(value: _Scalar) -> int | float | None:
    if type(value) is str:
        return _to_number(value)
    if type(value) is int or type(value) is float:
        return value
    return None  # NULL or a boolean


def _boolean(text: str) -> bool | None:
    lowered = text.lower()
    return True if lowered == "true" else False if lowered == "false" else None


def _compare(op: str, left: _Scalar, right: _Scalar) -> bool | None:
    """`left op right` in three-valued logic (None = unknown)."""
    if left is None or right is None:
        return None
    a: object = left
    b: object = right
    if op in _ORDER_OPS:
        a, b = _numeric(left), _numeric(right)
    elif type(left) is str and type(right) is not str:
        a = _boolean(left) if type(right) is bool else _to_number(left)
    elif type(right) is str and type(left) is not str:
        b = _boolean(right) if type(left) is bool else _to_number(right)
    elif (type(left) is bool) != (type(right) is bool):
        return None  # a boolean and a number
    if a is None or b is None:
        return None
    return _OPS[op](a, b)


def _getter(node: Value) -> _Getter:
    if isinstance(node, Property):
        name = node.name
        if name == TAGS:
            return lambda tag, props: tag
        return lambda tag, props: props.get(name)
    constant: _Scalar = None if isinstance(node, Null) else node.value
    return lambda tag, props: constant


def _const(result: bool) -> Pred:
    return (lambda tag, props: True) if result else (lambda tag, props: False)


def _compile(node: Condition, want: bool) -> Pred:
    if isinstance(node, Not):
        return _compile(node.operand, not want)
    if isinstance(node, And | Or):
        parts = tuple(_compile(operand, want) for operand in node.operands)
        return _all(parts) if isinstance(node, And) == want else _any(parts)
    if isinstance(node, Constant):
        return _const(node.value is want)
    if isinstance(node, Comparison):
        return _comparison(node.op if want else _NEGATED[node.op], node.left, node.right)
    if isinstance(node, Between):
        fast = _between(node, want)
        if fast is not None:
            return fast
        # x BETWEEN a AND b  ==  x >= a AND x <= b;  NOT BETWEEN == NOT (...) == x < a OR x > b
        both = And(
            (Comparison(">=", node.value, node.low), Comparison("<=", node.value, node.high))
        )
        return _compile(Not(both) if node.negated else both, want)
    if isinstance(node, In):
        return _in(node.prop, frozenset(node.items), want != node.negated)
    if isinstance(node, IsNull):
        get = _getter(node.value)
        if want != node.negated:
            return lambda tag, props: get(tag, props) is None
        return lambda tag, props: get(tag, props) is not None
    return _text(node, want != node.negated)


def _all(parts: tuple[Pred, ...]) -> Pred:
    if len(parts) == 2:
        a, b = parts
        return lambda tag, props: a(tag, props) and b(tag, props)

    def every(tag: Tag, props: Props) -> bool:
        for part in parts:
            if not part(tag, props):
                return False
        return True

    return every


def _any(parts: tuple[Pred, ...]) -> Pred:
    if len(parts) == 2:
        a, b = parts
        return lambda tag, props: a(tag, props) or b(tag, props)

    def some(tag: Tag, props: Props) -> bool:
        for part in parts:
            if part(tag, props):
                return True
        return False

    return some


def _comparison(op: CompareOp, left: Value, right: Value) -> Pred:
    """A predicate true when `left op right` is TRUE (unknown counts as not true)."""
    if isinstance(left, Number | String) and _is_plain(right):
        op, left, right = _SWAPPED[op], right, left
    if _is_plain(left) and isinstance(left, Property):
        name = left.name
        if isinstance(right, Number):
            return _property_vs_number(name, _OPS[op], right.value)
        if isinstance(right, String) and op in ("=", "<>"):
            text = right.value
            if op == "=":
                return lambda tag, props: props.get(name) == text
            return lambda tag, props: (v := props.get(name)).__class__ is str and v != text
    get_left, get_right = _getter(left), _getter(right)
    return lambda tag, props: _compare(op, get_left(tag, props), get_right(tag, props)) is True


def _is_plain(node: Value) -> bool:
    """A property read straight from the properties dict (not the tag)."""
    return isinstance(node, Property) and node.name != TAGS


def _property_vs_number(name: str, op: Callable[[Any, Any], bool], number: float) -> Pred:
    def check(tag: Tag, props: Props) -> bool:
        text = props.get(name)
        if text.__class__ is not str:
            value = _numeric(text)  # None (missing), a number, or anything else: unknown
            return value is not None and op(value, number)
        if text.isdigit() and text.isascii() and len(text) < 19:  # the common case, inlined
            return op(int(text), number)
        value = _to_number(text)
        return value is not None and op(value, number)

    return check


def _between(node: Between, want: bool) -> Pred | None:
    """The fast path for `property [NOT] BETWEEN number AND number`."""
    if not (_is_plain(node.value) and isinstance(node.low, Number)):
        return None
    if not isinstance(node.high, Number):
        return None
    assert isinstance(node.value, Property)
    name, low, high = node.value.name, node.low.value, node.high.value
    inside = want != node.negated

    def check(tag: Tag, props: Props) -> bool:
        text = props.get(name)
        value = _to_number(text) if text.__class__ is str else _numeric(text)
        return value is not None and (low <= value <= high) == inside

    return check


def _in(prop: Property, items: frozenset[str], inside: bool) -> Pred:
    if _is_plain(prop):
        name = prop.name
        if inside:
            return lambda tag, props: (v := props.get(name)).__class__ is str and v in items
        return lambda tag, props: (v := props.get(name)).__class__ is str and v not in items
    get = _getter(prop)
    if inside:
        return lambda tag, props: (v := get(tag, props)).__class__ is str and v in items
    return lambda tag, props: (v := get(tag, props)).__class__ is str and v not in items


def _text(node: TextMatch, holds: bool) -> Pred:
    pattern = node.pattern
    if not pattern:
        return _const(False)  # unknown either way (RocketMQ: false)
    test: Callable[[str, str], bool] = (
        operator.contains
        if node.op == "CONTAINS"
        else str.startswith
        if node.op == "STARTSWITH"
        else str.endswith
    )
    if _is_plain(node.value):
        assert isinstance(node.value, Property)
        name = node.value.name

        def check_property(tag: Tag, props: Props) -> bool:
            value = props.get(name)
            return value.__class__ is str and test(value, pattern) is holds

        return check_property
    get = _getter(node.value)

    def check(tag: Tag, props: Props) -> bool:
        value = get(tag, props)
        return type(value) is str and test(value, pattern) is holds

    return check
