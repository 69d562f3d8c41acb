"""Message filters: RocketMQ tag expressions and SQL92 selectors, compiled once, run per message.

```python
f = compile_filter(tag="TagA || TagB", sql="region = 'eu' AND amount > 100")
f.matches(msg.tag, msg.properties)  # -> bool
```

Both parts are optional; when both are given a message must satisfy both.

Tag expressions
---------------
`None`, `""` or `"*"` select every message. Otherwise the expression is split on `||` and each
part is trimmed: `"TagA || TagB"` selects messages tagged exactly `TagA` or `TagB`. A message
without a tag is selected only by `*`. An empty part (`"TagA ||"`), `*` combined with other tags
and a part containing whitespace (`"TagA | TagB"`) are `FilterSyntaxError`s.

SQL92 selectors
---------------
A hand-written tokenizer and recursive-descent parser (no `eval`, no parser generator) turn the
text into a small AST (`Condition` / `Value` nodes below), which is compiled into a tree of
closures. The grammar follows apache/rocketmq `filter/.../parser/SelectorParser.jj`::

    selector   := or_expr EOF
    or_expr    := and_expr ( OR and_expr )*
    and_expr   := not_expr ( AND not_expr )*
    not_expr   := NOT not_expr | predicate
    predicate  := operand
                | operand ( "=" | "<>" | "<" | "<=" | ">" | ">=" ) operand
                | operand [NOT] BETWEEN operand AND operand
                | property [NOT] IN "(" string ( "," string )* ")"
                | operand IS [NOT] NULL
                | operand [NOT] ( CONTAINS | STARTSWITH | ENDSWITH ) string
    operand    := property | literal | ( "+" | "-" )+ number | "(" or_expr ")"
    literal    := string | number | TRUE | FALSE | NULL

Precedence, loosest first: OR, AND, NOT, then the predicates. NOT negates a whole predicate
(`NOT a = 1` is `NOT (a = 1)`).

Lexical rules:

- keywords (`AND OR NOT BETWEEN IN IS NULL TRUE FALSE CONTAINS STARTSWITH ENDSWITH`) are
  case-insensitive and reserved;
- a property is `[A-Za-z_$][A-Za-z0-9_$]*`, case-sensitive; ASCII only, and no `.` or `-`
  (RocketMQ's `ID` token); `TAGS` is the message's tag (None when it has none);
- integers: `0` or `[1-9][0-9]*` with an optional `L`/`l` suffix, within Java's long range;
- floats: `1.5`, `1.`, `.5`, `1e10`, `1.5E-3` (finite);
- strings: single quotes, `''` for a quote inside (`'it''s'`), may span lines;
- whitespace is space, tab, CR, LF, FF; comments are `-- to end of line` and `/* ... */`.

Semantics
---------
Property values are strings and a missing property is NULL. Logic is three-valued (Kleene):
a comparison with NULL is unknown, NOT unknown is unknown, `unknown AND FALSE` is FALSE,
`unknown OR TRUE` is TRUE, and a message is selected only when the selector is TRUE.

- `=` / `<>` between strings compare the text. Against a number, the property is parsed as a
  number (`[+-]?` digits, optional fraction and exponent; no spaces, `_`, hex, NaN or Infinity);
  a value that does not parse makes the comparison unknown. Against TRUE/FALSE the property must
  read `true` or `false` (any case), otherwise unknown.
- `<`, `<=`, `>`, `>=` and BETWEEN compare numbers only: string, boolean and NULL literals are
  rejected when parsing, and properties are parsed as above. `x BETWEEN a AND b` is
  `x >= a AND x <= b`; `x NOT BETWEEN a AND b` is `x < a OR x > b`; literal bounds must satisfy
  a <= b.
- `IN` compares the text of a property with a list of string literals.
- `CONTAINS`, `STARTSWITH`, `ENDSWITH` test the text; on NULL, a number or an empty pattern the
  result is unknown.
- `IS NULL` / `IS NOT NULL` are never unknown. `= NULL` is rejected: write `IS NULL`.
- TRUE, FALSE and NULL may stand as conditions (`NULL` is unknown); a bare property may not.

Where this differs from RocketMQ 5.x (on purpose):

- NOT binds looser than comparisons (RocketMQ's `NOT a = 1` means `(NOT a) = 1`, which never
  matches); comparing two conditions (`(a = 1) = TRUE`), chaining comparisons (`a = b = c`),
  a bare property as a condition, `IS NULL` on a condition and unary minus on a property are
  syntax errors instead of expressions that never (or always) match.
- A value that cannot be converted makes only its own comparison unknown; RocketMQ aborts the
  whole evaluation, so `amount > 1 OR region = 'eu'` fails there when `amount` is not a number.
- Numbers are parsed whatever the literal's type (`'1.5' > 1` holds; RocketMQ converts the
  property to the literal's Java type and fails). `0.0` is accepted (RocketMQ rejects
  non-negative floats below Double.MIN_VALUE).
- A missing property makes CONTAINS/STARTSWITH/ENDSWITH unknown (RocketMQ: false, so
  `NOT (a CONTAINS 'x')` would select messages without `a`); `'a' = missing` is unknown on both
  sides (RocketMQ's equality is asymmetric there).
- A property compared with TRUE/FALSE must read true/false (RocketMQ: anything else is false).
- Reversed literal bounds are rejected for NOT BETWEEN too; a line comment may end the input.
- Nesting (parentheses and NOT) is limited to 64 levels, so no input can exhaust the stack.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, TypeAlias, cast

from .errors import FilterSyntaxError

__all__ = [
    "MAX_DEPTH",
    "And",
    "Between",
    "Boolean",
    "Comparison",
    "Condition",
    "Constant",
    "In",
    "IsNull",
    "MessageFilter",
    "Not",
    "Null",
    "Number",
    "Or",
    "Property",
    "String",
    "TextMatch",
    "Value",
    "compile_filter",
    "parse_sql",
    "parse_tags",
]

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

# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

_WINDOW = 72


def _error(kind: str, reason: str, expression: str, pos: int) -> FilterSyntaxError:
    """A FilterSyntaxError naming the 1-based column, with a caret under position `pos`."""
    column = pos + 1
    shown = "".join(c if c.isprintable() else " " for c in expression)
    start = 0
    if len(shown) > _WINDOW:
        start = max(0, min(pos - _WINDOW // 2, len(shown) - _WINDOW))
        end = start + _WINDOW
        shown = (
            ("..." if start else "") + shown[start:end] + ("..." if end < len(expression) else "")
        )
        start -= 3 if start else 0
    message = f"{kind} error at column {column}: {reason}\n  {shown}\n  {' ' * (pos - start)}^"
    return FilterSyntaxError(message, reason=reason, expression=expression, column=column)


# ---------------------------------------------------------------------------------------------
# Tag expressions
# ---------------------------------------------------------------------------------------------


def parse_tags(expression: str | None) -> frozenset[str] | None:
    """The tags a tag expression selects, or None for every message (`None`, `""`, `"*"`)."""
    if expression is None or expression.strip() in ("", "*"):
        return None
    tags: list[str] = []
    offset = 0
    parts = expression.split("||")
    for i, part in enumerate(parts):
        tag = part.strip()
        lead = offset + len(part) - len(part.lstrip())
        if not tag:
            # Point at the `||` with nothing on one side.
            at = offset - 2 if i else offset + len(part)
            raise _error("tag filter", "empty tag next to '||'", expression, at)
        if tag == "*":
            raise _error("tag filter", "'*' selects every tag: use it alone", expression, lead)
        if any(c.isspace() for c in tag):
            raise _error(
                "tag filter",
                f"tag {tag!r} contains whitespace: separate tags with '||'",
                expression,
                lead,
            )
        tags.append(tag)
        offset += len(part) + 2
    return frozenset(tags)


# ---------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------

_KEYWORDS = frozenset(
    "AND OR NOT BETWEEN IN IS NULL TRUE FALSE CONTAINS STARTSWITH ENDSWITH".split()
)
_IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_NUMBER_TOKEN = re.compile(
    r"(?P<int>[0-9]+)(?P<frac>\.[0-9]*)?(?P<exp>[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?"
)
_SPACE = " \t\r\n\f"
_OPERATORS = ("<>", "<=", ">=", "=", "<", ">", "(", ")", ",", "+", "-")
_HINTS = {
    "!=": "use <> for 'not equal'",
    "==": "use = for equality",
    "&&": "use AND",
    "||": "use OR",
    '"': "strings use single quotes: 'text'",
    "!": "use NOT",
}


class _Token(NamedTuple):
    kind: Literal["num", "str", "id", "kw", "op", "eof"]
    value: str | int | float
    pos: int
    text: str


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _SPACE:
            i += 1
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise _error("SQL92 filter", "unterminated /* comment", text, i)
            i = end + 2
        elif c == "'":
            chunks: list[str] = []
            j = i + 1
            while True:
                end = text.find("'", j)
                if end < 0:
                    raise _error(
                        "SQL92 filter",
                        "unterminated string literal (write '' for a quote inside a string)",
                        text,
                        i,
                    )
                chunks.append(text[j:end])
                if text.startswith("''", end):
                    chunks.append("'")
                    j = end + 2
                else:
                    break
            tokens.append(_Token("str", "".join(chunks), i, text[i : end + 1]))
            i = end + 1
        elif (m := _NUMBER_TOKEN.match(text, i)) is not None:
            i = _number(text, m, tokens)
        elif (m := _IDENT.match(text, i)) is not None:
            word = m.group()
            upper = word.upper()
            if upper in _KEYWORDS:
                tokens.append(_Token("kw", upper, i, word))
            else:
                tokens.append(_Token("id", word, i, word))
            i = m.end()
        else:
            for hint, why in _HINTS.items():
                if text.startswith(hint, i):
                    raise _error("SQL92 filter", f"unexpected {hint!r}: {why}", text, i)
            for op in _OPERATORS:
                if text.startswith(op, i):
                    tokens.append(_Token("op", op, i, op))
                    i += len(op)
                    break
            else:
                raise _error("SQL92 filter", f"unexpected character {c!r}", text, i)
    tokens.append(_Token("eof", "", n, "end of expression"))
    return tokens


def _number(text: str, m: re.Match[str], tokens: list[_Token]) -> int:
    # Like RocketMQ's lexer, a number ends where its pattern ends: `5AND` is `5 AND`, and
    # `5abc` fails in the parser (a property cannot follow a number).
    i, end = m.start(), m.end()
    is_int = m.group("int") is not None and not m.group("frac") and not m.group("exp")
    if is_int and text[end : end + 1] in ("l", "L"):
        end += 1
    literal = text[i:end]
    value: int | float
    if is_int:
        digits = literal.rstrip("lL")
        if len(digits) > 1 and digits[0] == "0":
            raise _error("SQL92 filter", f"integer {literal!r} has a leading zero", text, i)
        if len(digits) > 19 or int(digits) > _LONG_MAX:
            raise _error(
                "SQL92 filter",
                f"integer {literal!r} is out of range (at most {_LONG_MAX}; use a float)",
                text,
                i,
            )
        value = int(digits)
    else:
        value = float(literal)
        if math.isinf(value):
            raise _error("SQL92 filter", f"float {literal!r} is out of range", text, i)
    tokens.append(_Token("num", value, i, literal))
    return end


# ---------------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------------

_COMPARE_OPS: frozenset[str] = frozenset(("=", "<>", "<", "<=", ">", ">="))
_ORDER_OPS: frozenset[str] = frozenset(("<", "<=", ">", ">="))
_TEXT_OPS: frozenset[str] = frozenset(("CONTAINS", "STARTSWITH", "ENDSWITH"))
_AFTER_NOT = "BETWEEN, IN, CONTAINS, STARTSWITH or ENDSWITH"


def _describe(tok: _Token) -> str:
    if tok.kind == "eof":
        return "end of expression"
    if tok.kind == "kw":
        return tok.text.upper()
    return repr(tok.text) if len(tok.text) <= 30 else repr(tok.text[:27] + "...")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0

    # -- token helpers ------------------------------------------------------------------------

    @property
    def peek(self) -> _Token:
        return self.tokens[self.i]

    def advance(self) -> _Token:
        tok = self.tokens[self.i]
        if tok.kind != "eof":
            self.i += 1
        return tok

    def at_kw(self, *words: str) -> bool:
        tok = self.tokens[self.i]
        return tok.kind == "kw" and tok.value in words

    def at_op(self, op: str) -> bool:
        tok = self.tokens[self.i]
        return tok.kind == "op" and tok.value == op

    def fail(self, reason: str, pos: int) -> FilterSyntaxError:
        return _error("SQL92 filter", reason, self.text, pos)

    def expected(self, what: str, tok: _Token | None = None) -> FilterSyntaxError:
        tok = tok or self.peek
        return self.fail(f"expected {what}, found {_describe(tok)}", tok.pos)

    def nest(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"nested deeper than {MAX_DEPTH} levels", pos)

    # -- type checks --------------------------------------------------------------------------

    def condition(self, node: _Node, pos: int) -> Condition:
        if isinstance(node, _CONDITIONS):
            return node
        if isinstance(node, Boolean):
            return Constant(node.value)
        if isinstance(node, Null):
            return Constant(None)
        if isinstance(node, Property):
            raise self.fail(
                f"property {node.name!r} alone is not a condition: compare it, "
                f"e.g. {node.name} = 'x' or {node.name} IS NOT NULL",
                pos,
            )
        raise self.fail("a literal alone is not a condition", pos)

    def value(self, node: _Node, pos: int, where: str) -> Value:
        if isinstance(node, _CONDITIONS):
            raise self.fail(f"expected a property or literal {where}, found a condition", pos)
        return node

    def ordered(self, node: Value, pos: int, op: str) -> Value:
        if isinstance(node, String | Boolean | Null):
            kind = {String: "a string", Boolean: "a boolean", Null: "NULL"}[type(node)]
            raise self.fail(f"{op} compares numbers only, not {kind}", pos)
        return node

    # -- grammar ------------------------------------------------------------------------------

    def parse(self) -> Condition:
        if self.tokens[0].kind == "eof":
            raise self.fail(
                "empty expression: write a condition such as region = 'eu' "
                "(or pass sql=None to select every message)",
                self.tokens[0].pos,
            )
        node, pos = self.or_expr()
        if self.tokens[self.i].kind != "eof":
            raise self.expected("AND, OR or end of expression")
        return self.condition(node, pos)

    def or_expr(self) -> tuple[_Node, int]:
        first, pos = self.and_expr()
        if not self.at_kw("OR"):
            return first, pos
        operands = [self.condition(first, pos)]
        while self.at_kw("OR"):
            self.advance()
            node, at = self.and_expr()
            operands.append(self.condition(node, at))
        return Or(tuple(operands)), pos

    def and_expr(self) -> tuple[_Node, int]:
        first, pos = self.not_expr()
        if not self.at_kw("AND"):
            return first, pos
        operands = [self.condition(first, pos)]
        while self.at_kw("AND"):
            self.advance()
            node, at = self.not_expr()
            operands.append(self.condition(node, at))
        return And(tuple(operands)), pos

    def not_expr(self) -> tuple[_Node, int]:
        if not self.at_kw("NOT"):
            return self.predicate()
        tok = self.advance()
        self.nest(tok.pos)
        node, pos = self.not_expr()
        self.depth -= 1
        return Not(self.condition(node, pos)), tok.pos

    def predicate(self) -> tuple[_Node, int]:
        left, pos = self.operand()
        tok = self.peek
        if tok.kind == "op" and tok.value in _COMPARE_OPS:
            return self.comparison(left, pos), pos
        negated = False
        if tok.kind == "kw" and tok.value == "NOT":
            nxt = self.tokens[self.i + 1]
            if not (
                nxt.kind == "kw" and (nxt.value in _TEXT_OPS or nxt.value in ("BETWEEN", "IN"))
            ):
                raise self.expected(f"{_AFTER_NOT} after NOT", nxt)
            self.advance()
            negated = True
            tok = self.peek
        if tok.kind != "kw":
            return left, pos
        word = tok.value
        if word == "BETWEEN":
            return self.between(left, pos, negated), pos
        if word == "IN":
            return self.in_list(left, pos, negated), pos
        if word in _TEXT_OPS:
            self.advance()
            value = self.value(left, pos, f"before {word}")
            pattern = self.advance()
            if pattern.kind != "str":
                raise self.expected(f"a string literal after {word}", pattern)
            assert isinstance(pattern.value, str)
            return TextMatch(cast(TextOp, word), value, pattern.value, negated), pos
        if word == "IS":
            self.advance()
            value = self.value(left, pos, "before IS")
            is_not = False
            if self.at_kw("NOT"):
                self.advance()
                is_not = True
            if not self.at_kw("NULL"):
                raise self.expected("NULL after IS" if not is_not else "NULL after IS NOT")
            self.advance()
            return IsNull(value, is_not), pos
        return left, pos

    def comparison(self, left: _Node, pos: int) -> Comparison:
        tok = self.advance()
        op = str(tok.value)
        lhs = self.value(left, pos, f"before {op}")
        node, at = self.operand()
        rhs = self.value(node, at, f"after {op}")
        if op in _ORDER_OPS:
            self.ordered(lhs, pos, op)
            self.ordered(rhs, at, op)
        else:
            for side, where in ((lhs, pos), (rhs, at)):
                if isinstance(side, Null):
                    hint = "IS NULL" if op == "=" else "IS NOT NULL"
                    raise self.fail(f"{op} NULL is never true: use {hint}", where)
        return Comparison(cast(CompareOp, op), lhs, rhs)

    def between(self, left: _Node, pos: int, negated: bool) -> Between:
        word = "NOT BETWEEN" if negated else "BETWEEN"
        self.advance()
        value = self.ordered(self.value(left, pos, f"before {word}"), pos, word)
        node, low_at = self.operand()
        low = self.ordered(self.value(node, low_at, f"after {word}"), low_at, word)
        if not self.at_kw("AND"):
            raise self.expected(f"AND in {word} low AND high")
        self.advance()
        node, high_at = self.operand()
        high = self.ordered(self.value(node, high_at, f"after {word} ... AND"), high_at, word)
        if isinstance(low, Number) and isinstance(high, Number) and low.value > high.value:
            raise self.fail(
                f"{word} bounds are reversed ({low.value} > {high.value}): "
                "write the low bound first",
                low_at,
            )
        return Between(value, low, high, negated)

    def in_list(self, left: _Node, pos: int, negated: bool) -> In:
        word = "NOT IN" if negated else "IN"
        self.advance()
        if not isinstance(left, Property):
            raise self.fail(f"{word} needs a property on its left", pos)
        if not self.at_op("("):
            raise self.expected(f"'(' after {word}")
        self.advance()
        items: list[str] = []
        while True:
            tok = self.advance()
            if tok.kind != "str":
                what = "a string literal" + (
                    " (IN lists hold strings only)" if items or tok.kind == "num" else ""
                )
                raise self.expected(what, tok)
            assert isinstance(tok.value, str)
            items.append(tok.value)
            if self.at_op(","):
                self.advance()
                continue
            if self.at_op(")"):
                self.advance()
                return In(left, tuple(items), negated)
            raise self.expected(f"',' or ')' in the {word} list")

    def operand(self) -> tuple[_Node, int]:
        tok = self.advance()
        if tok.kind == "op":
            if tok.value == "(":
                self.nest(tok.pos)
                node, _ = self.or_expr()
                if not self.at_op(")"):
                    raise self.expected(f"')' to close the '(' at column {tok.pos + 1}")
                self.advance()
                self.depth -= 1
                return node, tok.pos
            if tok.value in ("+", "-"):
                sign = 1
                nxt = tok
                while nxt.kind == "op" and nxt.value in ("+", "-"):
                    sign = -sign if nxt.value == "-" else sign
                    nxt = self.advance()
                if nxt.kind != "num":
                    raise self.fail(
                        f"a sign must be followed by a number, found {_describe(nxt)}",
                        nxt.pos,
                    )
                assert isinstance(nxt.value, int | float)
                return Number(sign * nxt.value), tok.pos
        elif tok.kind == "num":
            assert isinstance(tok.value, int | float)
            return Number(tok.value), tok.pos
        elif tok.kind == "str":
            assert isinstance(tok.value, str)
            return String(tok.value), tok.pos
        elif tok.kind == "id":
            assert isinstance(tok.value, str)
            return Property(tok.value), tok.pos
        elif tok.kind == "kw":
            if tok.value in ("TRUE", "FALSE"):
                return Boolean(tok.value == "TRUE"), tok.pos
            if tok.value == "NULL":
                return Null(), tok.pos
        raise self.expected("a property, a literal or '('", tok)


def parse_sql(expression: str) -> Condition:
    """Parse a SQL92 selector into its AST; raise `FilterSyntaxError` if it is malformed."""
    return _Parser(expression).parse()


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
            return lambda tag, props: (v := props.get(name)) is not None and v != text
    get_left, get_right = _getter(left), _getter(right)
    return lambda tag, props: _compare(op, get_left(tag, props), get_right(tag, props)) is True


def _is_plain(node: Value) -> bool:
    """A property read straight from the properties dict (not the tag)."""
    return isinstance(node, Property) and node.name != TAGS


def _property_vs_number(name: str, op: Callable[[Any, Any], bool], number: float) -> Pred:
    def check(tag: Tag, props: Props) -> bool:
        text = props.get(name)
        if text is None:
            return False
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
        if text is None:
            return False
        value = _to_number(text)
        return value is not None and (low <= value <= high) == inside

    return check


def _in(prop: Property, items: frozenset[str], inside: bool) -> Pred:
    if _is_plain(prop):
        name = prop.name
        if inside:
            return lambda tag, props: props.get(name) in items
        return lambda tag, props: (v := props.get(name)) is not None and v not in items
    get = _getter(prop)
    if inside:
        return lambda tag, props: get(tag, props) in items
    return lambda tag, props: (v := get(tag, props)) is not None and v not in items


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
            return value is not None and test(value, pattern) is holds

        return check_property
    get = _getter(node.value)

    def check(tag: Tag, props: Props) -> bool:
        value = get(tag, props)
        return type(value) is str and test(value, pattern) is holds

    return check


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


class MessageFilter:
    """A compiled tag expression and/or SQL92 selector; `matches(tag, properties)` per message.

    `tags` is the set of selected tags (None: any tag, or none), `condition` the parsed SQL92
    AST (None: no selector) and `match_all` says whether the filter lets everything through.
    """

    __slots__ = ("condition", "match_all", "matches", "sql", "tag_expression", "tags")

    matches: Callable[[Tag, Props], bool]
    """`matches(tag, properties) -> bool`: whether a message passes (tag and selector)."""

    def __init__(self, tag: str | None = None, sql: str | None = None) -> None:
        self.tags = parse_tags(tag)
        self.tag_expression = (
            None if self.tags is None else " || ".join(t.strip() for t in (tag or "").split("||"))
        )
        self.sql = sql
        self.condition = None if sql is None else parse_sql(sql)
        self.match_all = self.tags is None and self.condition is None
        self.matches = self._build()

    def _build(self) -> Pred:
        tags = self.tags
        if self.condition is None:
            if tags is None:
                return _const(True)
            return lambda tag, props: tag in tags
        selector = _compile(self.condition, True)
        if tags is None:
            return selector
        return lambda tag, props: tag in tags and selector(tag, props)

    @property
    def expression(self) -> str:
        """A one-line description for logs: `*`, `tags: A || B`, `sql: ...`, or both."""
        parts = []
        if self.tag_expression is not None:
            parts.append(f"tags: {self.tag_expression}")
        if self.sql is not None:
            parts.append("sql: " + " ".join(self.sql.split()))
        return "; ".join(parts) or "*"

    def __repr__(self) -> str:
        return f"MessageFilter(tag={self.tag_expression or '*'!r}, sql={self.sql!r})"


def compile_filter(tag: str | None = None, sql: str | None = None) -> MessageFilter:
    """Compile a tag expression and/or a SQL92 selector into a `MessageFilter`.

    Raises `FilterSyntaxError` (naming the column, with a caret under the offending token) when
    either expression is malformed.
    """
    return MessageFilter(tag, sql)
