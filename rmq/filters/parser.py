"""Tag expressions, and the tokenizer and recursive-descent parser of SQL92 selectors."""

from __future__ import annotations

import math
import re
from typing import Literal, NamedTuple, cast

from ..errors import FilterSyntaxError
from .nodes import (
    _CONDITIONS,
    _LONG_MAX,
    _ORDER_OPS,
    MAX_DEPTH,
    And,
    Between,
    Boolean,
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
    TextOp,
    Value,
    _Node,
)

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
