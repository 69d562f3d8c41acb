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

from collections.abc import Callable

from .evaluate import Pred, Props, Tag, _compile, _const
from .nodes import (
    MAX_DEPTH,
    And,
    Between,
    Boolean,
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
from .parser import parse_sql, parse_tags

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
