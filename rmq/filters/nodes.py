"""The AST of a SQL92 selector: frozen dataclasses (values and conditions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

MAX_DEPTH = 64
"""Deepest nesting of parentheses and NOTs a selector may use."""

TAGS = "TAGS"
"""The property name under which a selector sees the message's tag (as in RocketMQ)."""

_LONG_MAX = 2**63 - 1

# ---------------------------------------------------------------------------------------------
# AST
# ---------------------------------------------------------------------------------------------

CompareOp: TypeAlias = Literal["=", "<>", "<", "<=", ">", ">="]
TextOp: TypeAlias = Literal["CONTAINS", "STARTSWITH", "ENDSWITH"]


@dataclass(frozen=True, slots=True)
class Property:
    """A message property (`TAGS` is the tag); its value is a str, or None when missing."""

    name: str


@dataclass(frozen=True, slots=True)
class String:
    """A string literal."""

    value: str


@dataclass(frozen=True, slots=True)
class Number:
    """An integer or float literal (a leading sign is folded in)."""

    value: int | float


@dataclass(frozen=True, slots=True)
class Boolean:
    """TRUE or FALSE used as a value (`flag = TRUE`)."""

    value: bool


@dataclass(frozen=True, slots=True)
class Null:
    """The NULL literal used as a value (`NULL IS NULL`)."""


Value: TypeAlias = Property | String | Number | Boolean | Null


@dataclass(frozen=True, slots=True)
class Comparison:
    """`left op right`."""

    op: CompareOp
    left: Value
    right: Value


@dataclass(frozen=True, slots=True)
class Between:
    """`value [NOT] BETWEEN low AND high`."""

    value: Value
    low: Value
    high: Value
    negated: bool = False


@dataclass(frozen=True, slots=True)
class In:
    """`prop [NOT] IN ('a', 'b', ...)`."""

    prop: Property
    items: tuple[str, ...]
    negated: bool = False


@dataclass(frozen=True, slots=True)
class IsNull:
    """`value IS [NOT] NULL`."""

    value: Value
    negated: bool = False


@dataclass(frozen=True, slots=True)
class TextMatch:
    """`value [NOT] CONTAINS | STARTSWITH | ENDSWITH 'pattern'`."""

    op: TextOp
    value: Value
    pattern: str
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Not:
    """`NOT operand`."""

    operand: Condition


@dataclass(frozen=True, slots=True)
class And:
    """`a AND b AND ...` (two or more operands, as written: parentheses are kept)."""

    operands: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """`a OR b OR ...` (two or more operands)."""

    operands: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Constant:
    """TRUE, FALSE or NULL standing as a condition (NULL is unknown)."""

    value: bool | None


Condition: TypeAlias = Comparison | Between | In | IsNull | TextMatch | Not | And | Or | Constant
_Node: TypeAlias = Value | Condition
_CONDITIONS = (Comparison, Between, In, IsNull, TextMatch, Not, And, Or, Constant)

_ORDER_OPS: frozenset[str] = frozenset(("<", "<=", ">", ">="))
