"""Message filters: tag expressions and the SQL92 selector grammar, semantics and errors.

The property tests generate random ASTs, render them to text (random keyword case, spacing,
comments and redundant parentheses), parse them back, and check the compiled closures against a
reference three-valued evaluator written here, independently of the compiler.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rmq
from rmq.errors import FilterSyntaxError, RMQError
from rmq.filters import (
    MAX_DEPTH,
    And,
    Between,
    Boolean,
    Comparison,
    Condition,
    Constant,
    In,
    IsNull,
    MessageFilter,
    Not,
    Null,
    Number,
    Or,
    Property,
    String,
    TextMatch,
    Value,
    compile_filter,
    parse_sql,
    parse_tags,
)

FILTERS_PACKAGE = Path(rmq.filters.__file__).parent
KEYWORDS = {
    "AND",
    "OR",
    "NOT",
    "BETWEEN",
    "IN",
    "IS",
    "NULL",
    "TRUE",
    "FALSE",
    "CONTAINS",
    "STARTSWITH",
    "ENDSWITH",
}


def sel(sql: str, tag: str | None = None, **props: str) -> bool:
    """Whether a message with `tag` and `props` passes the selector `sql`."""
    return compile_filter(sql=sql).matches(tag, props)


def syntax_error(sql: str) -> FilterSyntaxError:
    with pytest.raises(FilterSyntaxError) as info:
        parse_sql(sql)
    return info.value


# ---------------------------------------------------------------------------------------------
# Operators and literals
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "props", "expected"),
    [
        # numeric comparisons: the property is parsed as a number
        ("a > 5", {"a": "6"}, True),
        ("a > 5", {"a": "5"}, False),
        ("a > 5", {"a": "5.5"}, True),
        ("a > 5", {"a": "x"}, False),
        ("a > 5", {}, False),
        ("a >= 5", {"a": "5"}, True),
        ("a >= 5", {"a": "4"}, False),
        ("a < 5", {"a": "4"}, True),
        ("a < 5", {"a": "-10"}, True),
        ("a < 5", {"a": "5"}, False),
        ("a <= 5", {"a": "5"}, True),
        ("a <= 5", {"a": "6"}, False),
        ("a = 5", {"a": "5"}, True),
        ("a = 5", {"a": "05"}, True),
        ("a = 5", {"a": "5.0"}, True),
        ("a = 5", {"a": "+5"}, True),
        ("a = 5", {"a": "five"}, False),
        ("a <> 5", {"a": "6"}, True),
        ("a <> 5", {"a": "5"}, False),
        ("a <> 5", {"a": "five"}, False),  # unknown, not true
        ("a <> 5", {}, False),
        ("5 < a", {"a": "6"}, True),
        ("5 < a", {"a": "4"}, False),
        ("a > b", {"a": "10", "b": "9"}, True),  # two properties: numbers, not text
        ("a > b", {"a": "10", "b": "x"}, False),
        ("1 = 1", {}, True),
        ("1 < 2", {}, True),
        # strings
        ("a = 'x'", {"a": "x"}, True),
        ("a = 'x'", {"a": "X"}, False),
        ("a = 'x'", {}, False),
        ("a <> 'x'", {"a": "y"}, True),
        ("a <> 'x'", {"a": "x"}, False),
        ("a <> 'x'", {}, False),
        ("'x' = a", {"a": "x"}, True),
        ("a = b", {"a": "x", "b": "x"}, True),
        ("a = b", {"a": "1", "b": "1.0"}, False),  # two strings compare as text
        ("a <> b", {"a": "x"}, False),
        # integer literals
        ("a = 0", {"a": "0"}, True),
        ("a = 10L", {"a": "10"}, True),
        ("a = 10l", {"a": "10"}, True),
        ("a = -5", {"a": "-5"}, True),
        ("a > - 5", {"a": "-4"}, True),
        ("a = +3", {"a": "3"}, True),
        ("a = - -3", {"a": "3"}, True),
        ("a = 9223372036854775807", {"a": "9223372036854775807"}, True),
        ("a < 9223372036854775807", {"a": "9223372036854775806"}, True),
        # float literals
        ("a > 1.5", {"a": "1.6"}, True),
        ("a > 1.5", {"a": "1.5"}, False),
        ("a > .5", {"a": "0.6"}, True),
        ("a = 5.", {"a": "5"}, True),
        ("a = 1e2", {"a": "100"}, True),
        ("a = 1E2", {"a": "100"}, True),
        ("a = 1.5e-1", {"a": "0.15"}, True),
        ("a = 1.5E+1", {"a": "15"}, True),
        ("a = 5.e1", {"a": "50"}, True),
        ("a = .5e1", {"a": "5"}, True),
        ("a = 0.0", {"a": "0"}, True),
        ("a > 1", {"a": "1e3"}, True),
        # booleans
        ("flag = TRUE", {"flag": "true"}, True),
        ("flag = TRUE", {"flag": "TRUE"}, True),
        ("flag = TRUE", {"flag": "false"}, False),
        ("flag = TRUE", {"flag": "yes"}, False),
        ("flag = FALSE", {"flag": "False"}, True),
        ("flag = FALSE", {"flag": "yes"}, False),
        ("flag <> TRUE", {"flag": "false"}, True),
        ("flag <> TRUE", {"flag": "yes"}, False),
        ("TRUE = flag", {"flag": "true"}, True),
        ("TRUE = TRUE", {}, True),
        ("TRUE = 1", {}, False),
        # TRUE, FALSE and NULL as conditions
        ("TRUE", {}, True),
        ("FALSE", {}, False),
        ("NULL", {}, False),
        ("NOT FALSE", {}, True),
        ("NOT TRUE", {}, False),
        ("NOT NULL", {}, False),
        ("(TRUE)", {}, True),
        ("a = 1 OR TRUE", {}, True),
        # BETWEEN
        ("a BETWEEN 1 AND 10", {"a": "1"}, True),
        ("a BETWEEN 1 AND 10", {"a": "10"}, True),
        ("a BETWEEN 1 AND 10", {"a": "5.5"}, True),
        ("a BETWEEN 1 AND 10", {"a": "0"}, False),
        ("a BETWEEN 1 AND 10", {"a": "11"}, False),
        ("a BETWEEN 1 AND 10", {"a": "x"}, False),
        ("a BETWEEN 1 AND 10", {}, False),
        ("a BETWEEN 5 AND 5", {"a": "5"}, True),
        ("a BETWEEN -1.5 AND 1e1", {"a": "-1"}, True),
        ("a NOT BETWEEN 1 AND 10", {"a": "0"}, True),
        ("a NOT BETWEEN 1 AND 10", {"a": "11"}, True),
        ("a NOT BETWEEN 1 AND 10", {"a": "5"}, False),
        ("a NOT BETWEEN 1 AND 10", {"a": "x"}, False),
        ("a NOT BETWEEN 1 AND 10", {}, False),
        ("a BETWEEN lo AND hi", {"a": "5", "lo": "1", "hi": "9"}, True),
        ("a BETWEEN lo AND hi", {"a": "5", "lo": "6", "hi": "9"}, False),
        ("a BETWEEN lo AND hi", {"a": "5", "hi": "9"}, False),  # unknown
        ("NOT a BETWEEN lo AND hi", {"a": "5", "hi": "4"}, True),  # unknown AND FALSE
        ("a NOT BETWEEN lo AND hi", {"a": "5", "hi": "4"}, True),
        ("3 BETWEEN 1 AND a", {"a": "4"}, True),
        # IN
        ("a IN ('x', 'y')", {"a": "y"}, True),
        ("a IN ('x', 'y')", {"a": "z"}, False),
        ("a IN ('x', 'y')", {}, False),
        ("a IN ('1')", {"a": "1.0"}, False),  # text, not numbers
        ("a IN ('x')", {"a": "x"}, True),
        ("a NOT IN ('x', 'y')", {"a": "z"}, True),
        ("a NOT IN ('x', 'y')", {"a": "x"}, False),
        ("a NOT IN ('x', 'y')", {}, False),
        # IS [NOT] NULL
        ("a IS NULL", {}, True),
        ("a IS NULL", {"a": ""}, False),
        ("a IS NOT NULL", {"a": ""}, True),
        ("a IS NOT NULL", {}, False),
        ("NOT a IS NULL", {"a": "1"}, True),
        ("NULL IS NULL", {}, True),
        ("'x' IS NOT NULL", {}, True),
        # CONTAINS, STARTSWITH, ENDSWITH
        ("a CONTAINS 'ell'", {"a": "hello"}, True),
        ("a CONTAINS 'ell'", {"a": "help"}, False),
        ("a CONTAINS 'ell'", {}, False),
        ("a NOT CONTAINS 'ell'", {"a": "help"}, True),
        ("a NOT CONTAINS 'ell'", {"a": "hello"}, False),
        ("a NOT CONTAINS 'ell'", {}, False),
        ("NOT (a CONTAINS 'ell')", {}, False),  # unknown stays unknown
        ("a STARTSWITH 'he'", {"a": "hello"}, True),
        ("a STARTSWITH 'lo'", {"a": "hello"}, False),
        ("a NOT STARTSWITH 'lo'", {"a": "hello"}, True),
        ("a NOT STARTSWITH 'he'", {}, False),
        ("a ENDSWITH 'lo'", {"a": "hello"}, True),
        ("a ENDSWITH 'he'", {"a": "hello"}, False),
        ("a NOT ENDSWITH 'he'", {"a": "hello"}, True),
        ("a NOT ENDSWITH 'lo'", {"a": "hello"}, False),
        ("a CONTAINS ''", {"a": "hello"}, False),  # empty pattern: unknown (RocketMQ: false)
        ("a NOT CONTAINS ''", {"a": "hello"}, False),
        ("a STARTSWITH ''", {"a": "hello"}, False),
        ("a CONTAINS '1'", {"a": "10"}, True),
        ("1 CONTAINS '1'", {}, False),  # a number is not text
        ("'abc' ENDSWITH 'c'", {}, True),
    ],
)
def test_operators(sql: str, props: dict[str, str], expected: bool) -> None:
    assert compile_filter(sql=sql).matches(None, props) is expected


@pytest.mark.parametrize(
    ("value", "number"),
    [
        ("1", True),
        ("-1", True),
        ("+1", True),
        ("0001", True),
        ("1.", True),
        (".5", True),
        ("-.5", True),
        ("1e3", True),
        ("1E-3", True),
        ("9" * 5000, True),  # longer than Python's int() digit limit: parsed as a float
        (" 1", False),
        ("1 ", False),
        ("1_000", False),
        ("0x10", False),
        ("NaN", False),
        ("Infinity", False),
        ("inf", False),
        ("1e", False),
        ("e1", False),
        (".", False),
        ("", False),
        ("--1", False),
        ("1.2.3", False),
        ("\u0663", False),  # an Arabic-Indic digit
        ("\uff11", False),  # a fullwidth digit
        ("1L", False),  # the L suffix is for literals only
    ],
)
def test_property_numbers(value: str, number: bool) -> None:
    """Which property values count as numbers: ASCII decimal notation, nothing else."""
    assert sel("a > -1e300", a=value) is number
    assert sel("a = a", a=value) is True  # text equality is unaffected


def test_big_numbers_compare_exactly() -> None:
    assert sel("a > 9007199254740992", a="9007199254740993")  # beyond float precision
    assert not sel("a = 9007199254740992", a="9007199254740993")
    assert sel("a > 1", a="9" * 5000)
    assert sel("a = -9007199254740993", a="-9007199254740993")  # signed integers stay exact
    assert sel("a = 9007199254740993", a="+9007199254740993")


def test_string_literals() -> None:
    assert sel("a = 'it''s'", a="it's")
    assert sel("a = ''''", a="'")
    assert sel("a = ''''''", a="''")
    assert sel("a = ''", a="")
    assert not sel("a = ''", a=" ")
    assert sel("a = 'two\nlines'", a="two\nlines")
    assert sel("a = 'AND OR -- /* */'", a="AND OR -- /* */")
    assert sel("a = 'é日本'", a="é日本")
    assert parse_sql("a = 'x''y'''") == Comparison("=", Property("a"), String("x'y'"))


def test_comments_and_whitespace() -> None:
    assert sel("a = 1 -- the rest is ignored", a="1")
    assert sel("a = 1 -- comment\nAND b = 2", a="1", b="2")
    assert not sel("a = 1 -- comment\nAND b = 2", a="1", b="3")
    assert sel("/* leading */ a /* inner */ = 1", a="1")
    assert sel("\ta\r\n=\f1\n", a="1")
    assert sel("a=1AND(b<>2)", a="1", b="3")
    assert sel("a > 5AND b = 1", a="6", b="1")  # RocketMQ's lexer splits `5AND` too


def test_keywords_are_case_insensitive() -> None:
    assert sel("a between 1 and 5 Or b Is Not Null", a="3")
    assert sel("A between 1 and 5 Or b Is Not Null", b="")
    assert sel("a not in ('x') aNd nOt b iS nUlL", a="y", b="1")
    assert sel("a Contains 'l' AND a startsWith 'h' AND a endswith 'o'", a="hello")
    assert sel("flag = true AND other = False", flag="TRUE", other="false")
    assert sel("true")
    assert not sel("null")
    assert parse_sql("a Not Between 1 And 2") == Between(
        Property("a"), Number(1), Number(2), negated=True
    )


def test_identifiers() -> None:
    assert sel("A = '1'", A="1")
    assert not sel("A = '1'", a="1")  # property names are case-sensitive
    assert sel("$x = '1' AND _y = '2' AND a1_$ = '3'", **{"$x": "1", "_y": "2", "a1_$": "3"})
    assert sel("andy = '1' AND order_ = '2'", andy="1", order_="2")  # keyword prefixes
    for bad in ("a.b = 1", "a-b = 1", "é = 1", "1a = 1", "in = 1", "Null = 1", "a b = 1"):
        with pytest.raises(FilterSyntaxError):
            parse_sql(bad)


def test_tags_property_is_the_message_tag() -> None:
    assert sel("TAGS = 'TagA'", "TagA")
    assert not sel("TAGS = 'TagA'", "TagB")
    assert not sel("TAGS = 'TagA'", None)
    assert sel("TAGS IS NULL", None)
    assert sel("TAGS IN ('TagA', 'TagB') AND a = '1'", "TagB", a="1")
    assert sel("TAGS STARTSWITH 'Tag'", "TagA")
    assert sel("TAGS NOT IN ('TagA')", "TagB")
    assert not sel("TAGS NOT IN ('TagA')", None)
    assert not sel("TAGS = 'x'", None, TAGS="x")  # a property named TAGS is not the tag
    assert not sel("tags = 'x'", "x")  # case-sensitive like any property


# ---------------------------------------------------------------------------------------------
# Structure: precedence, parentheses, three-valued logic
# ---------------------------------------------------------------------------------------------

A1 = Comparison("=", Property("a"), Number(1))
B1 = Comparison("=", Property("b"), Number(1))
C1 = Comparison("=", Property("c"), Number(1))


@pytest.mark.parametrize(
    ("sql", "tree"),
    [
        ("a = 1 OR b = 1 AND c = 1", Or((A1, And((B1, C1))))),
        ("a = 1 AND b = 1 OR c = 1", Or((And((A1, B1)), C1))),
        ("NOT a = 1 AND b = 1", And((Not(A1), B1))),
        ("NOT a = 1 OR b = 1", Or((Not(A1), B1))),
        ("NOT NOT a = 1", Not(Not(A1))),
        ("NOT (a = 1 OR b = 1)", Not(Or((A1, B1)))),
        ("(a = 1 OR b = 1) AND c = 1", And((Or((A1, B1)), C1))),
        ("a = 1 AND (b = 1 AND c = 1)", And((A1, And((B1, C1))))),
        ("a = 1 AND b = 1 AND c = 1", And((A1, B1, C1))),
        ("a = 1 OR b = 1 OR c = 1", Or((A1, B1, C1))),
        ("((a = 1))", A1),
        ("(a) = 1", A1),
        ("((a)) = (1)", A1),
        ("a = 1 AND TRUE", And((A1, Constant(True)))),
        ("NOT NULL", Not(Constant(None))),
        ("a BETWEEN 1 AND 2 AND b = 1", And((Between(Property("a"), Number(1), Number(2)), B1))),
        ("NOT a IN ('x')", Not(In(Property("a"), ("x",)))),
        ("a NOT IN ('x')", In(Property("a"), ("x",), negated=True)),
        ("a IS NOT NULL", IsNull(Property("a"), negated=True)),
        ("NOT a IS NULL", Not(IsNull(Property("a")))),
        ("a NOT ENDSWITH 'x'", TextMatch("ENDSWITH", Property("a"), "x", negated=True)),
        ("NULL IS NULL", IsNull(Null())),
        ("flag = FALSE", Comparison("=", Property("flag"), Boolean(False))),
        ("a > -2.5", Comparison(">", Property("a"), Number(-2.5))),
    ],
)
def test_structure(sql: str, tree: Condition) -> None:
    assert parse_sql(sql) == tree


def test_precedence_changes_results() -> None:
    # OR binds loosest: a OR (b AND c)
    assert sel("a = 1 OR b = 1 AND c = 1", a="1")
    assert not sel("(a = 1 OR b = 1) AND c = 1", a="1")
    # NOT negates the comparison, then AND applies (SQL, not RocketMQ's `(NOT a) = 1`)
    assert sel("NOT a = 1 AND b = 1", a="2", b="1")
    assert not sel("NOT (a = 1 AND b = 1)", a="1", b="1")
    assert sel("NOT (a = 1 AND b = 1)", a="1", b="2")


@pytest.mark.parametrize(
    ("sql", "props", "expected"),
    [
        ("NOT a = 1", {}, False),  # NOT unknown is unknown
        ("NOT a <> 1", {}, False),
        ("NOT NOT a = 1", {}, False),
        ("a = 1 OR b = 1", {"b": "1"}, True),  # unknown OR TRUE
        ("a = 1 OR b = 1", {"b": "2"}, False),  # unknown OR FALSE
        ("NOT (a = 1 OR b = 1)", {"b": "2"}, False),
        ("a = 1 AND b = 1", {"b": "2"}, False),
        ("NOT (a = 1 AND b = 1)", {"b": "2"}, True),  # unknown AND FALSE is FALSE
        ("NOT (a = 1 AND b = 1)", {"b": "1"}, False),  # unknown AND TRUE is unknown
        ("NOT (a > 1)", {"a": "x"}, False),  # a failed conversion is unknown too
        ("a > 1 OR b = 'x'", {"a": "x", "b": "x"}, True),  # ... only for its own comparison
        ("NOT (a IN ('x'))", {}, False),
        ("NOT (a BETWEEN 1 AND 2)", {}, False),
        ("NOT (a STARTSWITH 'x')", {}, False),
        ("NOT (a IS NULL)", {}, False),  # IS NULL is never unknown
        ("NOT (a IS NOT NULL)", {}, True),
        ("NOT (flag = TRUE)", {"flag": "maybe"}, False),
        ("NOT (TRUE = 1)", {}, False),  # a boolean and a number: unknown
    ],
)
def test_null_semantics(sql: str, props: dict[str, str], expected: bool) -> None:
    assert compile_filter(sql=sql).matches(None, props) is expected


def test_deep_nesting_is_bounded() -> None:
    ok = "(" * (MAX_DEPTH - 1) + "a = 1" + ")" * (MAX_DEPTH - 1)
    assert sel(ok, a="1")
    assert sel("NOT " * MAX_DEPTH + "a = 1", a="1")
    for deep in (
        "(" * 5000 + "a = 1" + ")" * 5000,
        "NOT " * 5000 + "a = 1",
        "(" * 5000,
        "-" * 3 + "(" * 5000,
    ):
        with pytest.raises(FilterSyntaxError):
            parse_sql(deep)
    assert "nested deeper than" in syntax_error("(" * (MAX_DEPTH + 1) + "a = 1").reason


def test_long_chains_do_not_recurse() -> None:
    chain = " AND ".join(f"p{i} = '{i}'" for i in range(3000))
    props = {f"p{i}": str(i) for i in range(3000)}
    f = compile_filter(sql=chain)
    assert f.matches(None, props)
    assert not f.matches(None, {**props, "p2999": "x"})
    assert compile_filter(sql=chain.replace(" AND ", " OR ")).matches(None, {"p1500": "1500"})


# ---------------------------------------------------------------------------------------------
# Syntax errors name the column
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "column", "reason"),
    [
        ("", 1, "empty expression"),
        ("  -- only a comment", 20, "empty expression"),
        ("a >", 4, "expected a property, a literal or '(', found end of expression"),
        ("a = 1 AND", 10, "found end of expression"),
        ("NOT", 4, "found end of expression"),
        ("AND = 1", 1, "found AND"),
        ("a = 'x", 5, "unterminated string literal"),
        ("a = 'it's'", 10, "unterminated string literal"),
        ("a != 1", 3, "use <> for 'not equal'"),
        ("a == 1", 3, "use = for equality"),
        ("a = 1 && b = 2", 7, "use AND"),
        ("a = 1 || b = 2", 7, "use OR"),
        ('a = "x"', 5, "strings use single quotes"),
        ("!a", 1, "use NOT"),
        ("(a = 1", 7, "expected ')' to close the '(' at column 1"),
        ("a = 1)", 6, "expected AND, OR or end of expression, found ')'"),
        ("a = 1 b = 2", 7, "expected AND, OR or end of expression, found 'b'"),
        ("a = 1 = 2", 7, "expected AND, OR or end of expression, found '='"),
        ("a NOT LIKE 'x'", 7, "expected BETWEEN, IN, CONTAINS, STARTSWITH or ENDSWITH after NOT"),
        ("a BETWEEN 10 AND 1", 11, "BETWEEN bounds are reversed (10 > 1)"),
        ("a NOT BETWEEN 2.5 AND -1", 15, "NOT BETWEEN bounds are reversed"),
        ("a BETWEEN 1 OR 2", 13, "expected AND in BETWEEN low AND high, found OR"),
        ("a BETWEEN 'x' AND 'y'", 11, "BETWEEN compares numbers only, not a string"),
        ("a IN ()", 7, "expected a string literal, found ')'"),
        ("a IN (1)", 7, "IN lists hold strings only"),
        ("a IN ('x', 2)", 12, "IN lists hold strings only"),
        ("a IN ('x' 'y')", 11, "expected ',' or ')' in the IN list"),
        ("a IN 'x'", 6, "expected '(' after IN"),
        ("'x' IN ('x')", 1, "IN needs a property on its left"),
        ("a NOT IN ('x'", 14, "expected ',' or ')' in the NOT IN list"),
        ("a > 'x'", 5, "> compares numbers only, not a string"),
        ("'x' <= a", 1, "<= compares numbers only, not a string"),
        ("a < TRUE", 5, "< compares numbers only, not a boolean"),
        ("a >= NULL", 6, ">= compares numbers only, not NULL"),
        ("a = NULL", 5, "= NULL is never true: use IS NULL"),
        ("NULL <> a", 1, "<> NULL is never true: use IS NOT NULL"),
        ("a IS 1", 6, "expected NULL after IS, found '1'"),
        ("a IS NOT 'x'", 10, "expected NULL after IS NOT"),
        ("a CONTAINS b", 12, "expected a string literal after CONTAINS, found 'b'"),
        ("a STARTSWITH 1", 14, "expected a string literal after STARTSWITH"),
        ("region", 1, "property 'region' alone is not a condition"),
        ("5", 1, "a literal alone is not a condition"),
        ("a = 1 AND 'x'", 11, "a literal alone is not a condition"),
        ("NOT b", 5, "property 'b' alone is not a condition"),
        ("(a = 1) = TRUE", 1, "expected a property or literal before =, found a condition"),
        ("a = (b = 1)", 5, "expected a property or literal after =, found a condition"),
        ("(a > 1) CONTAINS 'x'", 1, "before CONTAINS, found a condition"),
        ("(a > 1) IS NULL", 1, "before IS, found a condition"),
        ("a = -b", 6, "a sign must be followed by a number, found 'b'"),
        ("a = -", 6, "a sign must be followed by a number, found end of expression"),
        ("a = 007", 5, "integer '007' has a leading zero"),
        ("a = 9223372036854775808", 5, "is out of range"),
        ("a = -9223372036854775808", 6, "is out of range"),
        ("a = 1e999", 5, "float '1e999' is out of range"),
        ("a.b = 1", 2, "unexpected character '.'"),
        ("é = 1", 1, "unexpected character 'é'"),
        ("a = 1 /* open", 7, "unterminated /* comment"),
        ("a = 1 # x", 7, "unexpected character '#'"),
        ("a = 1\nAND b =", 14, "found end of expression"),
    ],
)
def test_syntax_errors(sql: str, column: int, reason: str) -> None:
    err = syntax_error(sql)
    assert reason in err.reason
    assert err.column == column
    assert err.expression == sql
    header, shown, caret = str(err).split("\n")
    assert header == f"SQL92 filter error at column {column}: {err.reason}"
    assert shown == "  " + "".join(c if c.isprintable() else " " for c in sql)
    assert caret == "  " + " " * (column - 1) + "^"


def test_syntax_error_class() -> None:
    assert issubclass(FilterSyntaxError, RMQError)
    assert issubclass(FilterSyntaxError, ValueError)
    assert rmq.FilterSyntaxError is FilterSyntaxError
    assert "FilterSyntaxError" in rmq.__all__
    with pytest.raises(ValueError, match="column 3"):
        compile_filter(sql="a != 1")


def test_long_expressions_show_a_window_around_the_error() -> None:
    sql = "x" * 150 + " = = 1" + " AND y = 1" * 20
    err = syntax_error(sql)
    assert err.column == 154
    _, shown, caret = str(err).split("\n")
    assert len(shown) < 90
    assert shown.startswith("  ...") and shown.endswith("...")
    assert shown[caret.index("^")] == "="
    at_end = syntax_error("y = 1 AND " * 20 + "z >")
    _, shown, caret = str(at_end).split("\n")
    assert caret.index("^") == len(shown)  # one past the last character
    assert at_end.column == len(at_end.expression) + 1


# ---------------------------------------------------------------------------------------------
# Tag expressions and the MessageFilter
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "tags"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("*", None),
        (" * ", None),
        ("TagA", {"TagA"}),
        ("TagA || TagB", {"TagA", "TagB"}),
        ("TagA||TagB||TagA", {"TagA", "TagB"}),
        ("  TagA  ||\tTagB ", {"TagA", "TagB"}),
        ("Tag|A", {"Tag|A"}),
    ],
)
def test_parse_tags(expression: str | None, tags: set[str] | None) -> None:
    assert parse_tags(expression) == (None if tags is None else frozenset(tags))


@pytest.mark.parametrize(
    ("expression", "column", "reason"),
    [
        ("TagA ||", 6, "empty tag next to '||'"),
        ("|| TagA", 1, "empty tag next to '||'"),
        ("A ||  || B", 3, "empty tag next to '||'"),
        ("||", 1, "empty tag next to '||'"),
        ("A || * ", 6, "'*' selects every tag: use it alone"),
        ("* || A", 1, "'*' selects every tag"),
        ("TagA | TagB", 1, "tag 'TagA | TagB' contains whitespace: separate tags with '||'"),
        ("A || Tag B", 6, "contains whitespace"),
    ],
)
def test_tag_syntax_errors(expression: str, column: int, reason: str) -> None:
    with pytest.raises(FilterSyntaxError) as info:
        compile_filter(tag=expression)
    err = info.value
    assert reason in err.reason
    assert err.column == column
    header, _, caret = str(err).split("\n")
    assert header.startswith(f"tag filter error at column {column}: ")
    assert caret == "  " + " " * (column - 1) + "^"


def test_tag_matching() -> None:
    f = compile_filter(tag="TagA || TagB")
    assert f.matches("TagA", {})
    assert f.matches("TagB", {"x": "1"})
    assert not f.matches("TagC", {})
    assert not f.matches("taga", {})  # exact, case-sensitive
    assert not f.matches(None, {})  # a message without a tag matches only '*'
    assert not f.matches("", {})
    for everything in (None, "", "*"):
        g = compile_filter(tag=everything)
        assert g.matches(None, {}) and g.matches("TagA", {})
        assert g.match_all


def test_tag_and_sql_must_both_match() -> None:
    f = compile_filter(tag="paid || refunded", sql="region = 'eu' AND amount > 100")
    assert f.matches("paid", {"region": "eu", "amount": "101"})
    assert not f.matches("paid", {"region": "us", "amount": "101"})
    assert not f.matches("created", {"region": "eu", "amount": "101"})
    assert not f.matches(None, {"region": "eu", "amount": "101"})
    assert not f.match_all


def test_message_filter_describes_itself() -> None:
    f = compile_filter(tag=" TagA||TagB ", sql="region = 'eu'\n  AND amount > 100")
    assert isinstance(f, MessageFilter)
    assert f.tags == frozenset({"TagA", "TagB"})
    assert f.tag_expression == "TagA || TagB"
    assert f.sql == "region = 'eu'\n  AND amount > 100"
    assert f.condition == And(
        (
            Comparison("=", Property("region"), String("eu")),
            Comparison(">", Property("amount"), Number(100)),
        )
    )
    assert f.expression == "tags: TagA || TagB; sql: region = 'eu' AND amount > 100"
    assert repr(f) == (
        "MessageFilter(tag='TagA || TagB', sql=\"region = 'eu'\\n  AND amount > 100\")"
    )
    everything = compile_filter()
    assert everything.expression == "*"
    assert repr(everything) == "MessageFilter(tag='*', sql=None)"
    assert compile_filter(sql="a = 1").expression == "sql: a = 1"
    assert compile_filter(tag="x").expression == "tags: x"


def test_matches_accepts_any_mapping() -> None:
    from types import MappingProxyType

    f = compile_filter(sql="a = '1' AND b > 1")
    assert f.matches(None, MappingProxyType({"a": "1", "b": "2"}))


def test_no_eval_or_exec_in_the_filter_module() -> None:
    source = "\n".join(p.read_text() for p in sorted(FILTERS_PACKAGE.glob("*.py")))
    assert not re.search(r"(?<![\w.])(eval|exec|compile)\s*\(", source)
    assert "__import__" not in source
    assert "import ast" not in source


# ---------------------------------------------------------------------------------------------
# Property tests: random ASTs rendered, parsed back and evaluated against a reference
# ---------------------------------------------------------------------------------------------

NAMES = ["a", "b", "c", "TAGS", "$x", "_y1"]
SAMPLES = ["0", "1", "-1", "5", "5.0", "1e3", "0.5", "", "abc", "true", "FALSE", "x'y", " 1", "NaN"]
names = st.sampled_from(NAMES) | st.from_regex(r"[A-Za-z_$][A-Za-z0-9_$]{0,6}", fullmatch=True)
properties = names.filter(lambda n: n.upper() not in KEYWORDS).map(Property)
texts = st.sampled_from(SAMPLES) | st.text(max_size=6)
strings = texts.map(String)
ints = st.integers(-(2**63) + 1, 2**63 - 1)
numbers = (
    st.sampled_from([0, 1, -1, 5, 5.0, 1000, 0.5])
    | ints
    | st.floats(allow_nan=False, allow_infinity=False)
).map(Number)
booleans = st.booleans().map(Boolean)
numeric_values = properties | numbers
equality_values = properties | numbers | strings | booleans
any_values = equality_values | st.just(Null())


@st.composite
def betweens(draw: st.DrawFn) -> Between:
    value, low, high = draw(numeric_values), draw(numeric_values), draw(numeric_values)
    if isinstance(low, Number) and isinstance(high, Number) and low.value > high.value:
        low, high = high, low
    return Between(value, low, high, draw(st.booleans()))


predicates: st.SearchStrategy[Condition] = st.one_of(
    st.builds(Comparison, st.sampled_from(["<", "<=", ">", ">="]), numeric_values, numeric_values),
    st.builds(Comparison, st.sampled_from(["=", "<>"]), equality_values, equality_values),
    betweens(),
    st.builds(
        In,
        properties,
        st.lists(texts, min_size=1, max_size=4).map(tuple),
        st.booleans(),
    ),
    st.builds(IsNull, any_values, st.booleans()),
    st.builds(
        TextMatch,
        st.sampled_from(["CONTAINS", "STARTSWITH", "ENDSWITH"]),
        any_values,
        texts,
        st.booleans(),
    ),
    st.builds(Constant, st.sampled_from([True, False, None])),
)
conditions: st.SearchStrategy[Condition] = st.recursive(
    predicates,
    lambda inner: st.one_of(
        inner.map(Not),
        st.lists(inner, min_size=2, max_size=4).map(lambda xs: And(tuple(xs))),
        st.lists(inner, min_size=2, max_size=4).map(lambda xs: Or(tuple(xs))),
    ),
    max_leaves=12,
)
tags = st.none() | st.sampled_from(["TagA", "TagB", "abc", "5"])
prop_dicts = st.dictionaries(st.sampled_from(NAMES), texts, max_size=len(NAMES))


class Renderer:
    """Condition -> SQL92 text, with random keyword case, spacing, comments and parentheses."""

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd

    def kw(self, word: str) -> str:
        return "".join(c.upper() if self.rnd.random() < 0.5 else c.lower() for c in word)

    def sp(self) -> str:
        return self.rnd.choice([" ", " ", "  ", "\n", "\t", " /* c */ ", " -- c\n"])

    def paren(self, text: str, needed: bool = False) -> str:
        if needed or self.rnd.random() < 0.15:
            return f"({self.sp()}{text}{self.sp()})"
        return text

    def value(self, node: Value) -> str:
        if isinstance(node, Property):
            text = node.name
        elif isinstance(node, String):
            text = "'" + node.value.replace("'", "''") + "'"
        elif isinstance(node, Number):
            text = repr(node.value)
            if isinstance(node.value, int) and self.rnd.random() < 0.2:
                text += self.rnd.choice("lL")
        elif isinstance(node, Boolean):
            text = self.kw("TRUE" if node.value else "FALSE")
        else:
            text = self.kw("NULL")
        return self.paren(text)

    def negation(self, negated: bool) -> str:
        return self.kw("NOT") + self.sp() if negated else ""

    def cond(self, node: Condition) -> str:
        s = self.sp
        if isinstance(node, Comparison):
            text = f"{self.value(node.left)}{s()}{node.op}{s()}{self.value(node.right)}"
        elif isinstance(node, Between):
            text = (
                f"{self.value(node.value)}{s()}{self.negation(node.negated)}{self.kw('BETWEEN')}"
                f"{s()}{self.value(node.low)}{s()}{self.kw('AND')}{s()}{self.value(node.high)}"
            )
        elif isinstance(node, In):
            items = ("," + s()).join("'" + i.replace("'", "''") + "'" for i in node.items)
            text = (
                f"{self.value(node.prop)}{s()}{self.negation(node.negated)}{self.kw('IN')}{s()}"
                f"({items})"
            )
        elif isinstance(node, IsNull):
            text = (
                f"{self.value(node.value)}{s()}{self.kw('IS')}{s()}"
                f"{self.negation(node.negated)}{self.kw('NULL')}"
            )
        elif isinstance(node, TextMatch):
            pattern = "'" + node.pattern.replace("'", "''") + "'"
            text = (
                f"{self.value(node.value)}{s()}{self.negation(node.negated)}"
                f"{self.kw(node.op)}{s()}{pattern}"
            )
        elif isinstance(node, Constant):
            text = self.kw({True: "TRUE", False: "FALSE", None: "NULL"}[node.value])
        elif isinstance(node, Not):
            operand = self.cond(node.operand)
            text = self.kw("NOT") + s() + self.paren(operand, isinstance(node.operand, And | Or))
        else:
            word = "AND" if isinstance(node, And) else "OR"
            # An operand of the same kind needs parentheses to stay nested; an AND inside an
            # OR does not (AND binds tighter), an OR inside an AND does.
            parts = [
                self.paren(self.cond(op), isinstance(op, Or) or type(op) is type(node))
                for op in node.operands
            ]
            text = (s() + self.kw(word) + s()).join(parts)
        return self.paren(text)


NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def ref_number(x: object) -> int | float | None:
    if isinstance(x, bool) or x is None:
        return None
    if isinstance(x, int | float):
        return x
    assert isinstance(x, str)
    if not NUMBER_TEXT.fullmatch(x):
        return None
    if re.fullmatch(r"[+-]?[0-9]+", x):
        return int(x) if len(x) < 4000 else float(x)
    return float(x)


def ref_value(node: Value, tag: str | None, props: dict[str, str]) -> object:
    if isinstance(node, Property):
        return tag if node.name == "TAGS" else props.get(node.name)
    if isinstance(node, Null):
        return None
    return node.value


def ref_and(values: list[bool | None]) -> bool | None:
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


def ref_or(values: list[bool | None]) -> bool | None:
    if any(v is True for v in values):
        return True
    return None if any(v is None for v in values) else False


def ref_not(v: bool | None) -> bool | None:
    return None if v is None else not v


def ref_compare(op: str, left: object, right: object) -> bool | None:
    if left is None or right is None:
        return None
    a: object
    b: object
    if op in ("<", "<=", ">", ">="):
        a, b = ref_number(left), ref_number(right)
    elif isinstance(left, str) and isinstance(right, str):
        a, b = left, right
    elif isinstance(left, str) or isinstance(right, str):
        text, other = (left, right) if isinstance(left, str) else (right, left)
        assert isinstance(text, str)
        if isinstance(other, bool):
            parsed: object = {"true": True, "false": False}.get(text.lower())
        else:
            parsed = ref_number(text)
        a, b = parsed, other
    elif isinstance(left, bool) != isinstance(right, bool):
        return None
    else:
        a, b = left, right
    if a is None or b is None:
        return None
    results = {"=": a == b, "<>": a != b}
    if op in results:
        return results[op]
    assert isinstance(a, int | float) and isinstance(b, int | float)
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def reference(node: Condition, tag: str | None, props: dict[str, str]) -> bool | None:
    """Three-valued evaluation, straight from the module docstring's semantics."""
    if isinstance(node, Comparison):
        return ref_compare(
            node.op, ref_value(node.left, tag, props), ref_value(node.right, tag, props)
        )
    if isinstance(node, Between):
        v, lo, hi = (ref_value(n, tag, props) for n in (node.value, node.low, node.high))
        if node.negated:
            return ref_or([ref_compare("<", v, lo), ref_compare(">", v, hi)])
        return ref_and([ref_compare(">=", v, lo), ref_compare("<=", v, hi)])
    if isinstance(node, In):
        v = ref_value(node.prop, tag, props)
        return None if v is None else (v in node.items) != node.negated
    if isinstance(node, IsNull):
        return (ref_value(node.value, tag, props) is None) != node.negated
    if isinstance(node, TextMatch):
        v = ref_value(node.value, tag, props)
        if not isinstance(v, str) or not node.pattern:
            return None
        found = {
            "CONTAINS": node.pattern in v,
            "STARTSWITH": v.startswith(node.pattern),
            "ENDSWITH": v.endswith(node.pattern),
        }[node.op]
        return found != node.negated
    if isinstance(node, Not):
        return ref_not(reference(node.operand, tag, props))
    if isinstance(node, And):
        return ref_and([reference(op, tag, props) for op in node.operands])
    if isinstance(node, Or):
        return ref_or([reference(op, tag, props) for op in node.operands])
    return node.value


@settings(max_examples=400, deadline=None)
@given(tree=conditions, rnd=st.randoms(use_true_random=False))
def test_round_trip(tree: Condition, rnd: random.Random) -> None:
    text = Renderer(rnd).cond(tree)
    assert parse_sql(text) == tree, text


@settings(max_examples=400, deadline=None)
@given(
    tree=conditions,
    rnd=st.randoms(use_true_random=False),
    samples=st.lists(st.tuples(tags, prop_dicts), min_size=1, max_size=8),
)
def test_compiled_filter_agrees_with_the_reference(
    tree: Condition, rnd: random.Random, samples: list[tuple[str | None, dict[str, str]]]
) -> None:
    text = Renderer(rnd).cond(tree)
    positive = compile_filter(sql=text)
    negative = compile_filter(sql=f"NOT ({text})")
    for tag, props in samples:
        expected = reference(tree, tag, props)
        assert positive.matches(tag, props) is (expected is True), (text, tag, props)
        assert negative.matches(tag, props) is (expected is False), (text, tag, props)


TOKENS = [
    "a", "b", "TAGS", "AND", "or", "NOT", "between", "IN", "IS", "NULL", "TRUE", "false",
    "contains", "STARTSWITH", "EndsWith", "(", ")", ",", "=", "<>", "<", "<=", ">", ">=", "+",
    "-", "0", "1", "1.5", ".5", "1e3", "10L", "007", "99999999999999999999", "'x'", "'it''s'",
    "'", "--", "/*", "*/", "\n", "!", "!=", '"', "$", "é", ".", "||", "&&", "*",
]  # fmt: skip


@settings(max_examples=1000, deadline=None)
@given(
    text=st.text()
    | st.lists(st.tuples(st.sampled_from(TOKENS), st.sampled_from(["", " "])), max_size=14).map(
        lambda parts: "".join(t + sep for t, sep in parts)
    ),
    samples=st.lists(st.tuples(tags, prop_dicts), max_size=3),
)
def test_parser_raises_only_filter_syntax_errors(
    text: str, samples: list[tuple[str | None, dict[str, str]]]
) -> None:
    try:
        f = compile_filter(sql=text)
    except FilterSyntaxError as err:
        assert 1 <= err.column <= len(text) + 1
        assert err.expression == text
        assert f"column {err.column}" in str(err)
        return
    for tag, props in samples:
        assert f.matches(tag, props) in (True, False)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet="Ab \t|*é") | st.text())
def test_tag_parser_raises_only_filter_syntax_errors(text: str) -> None:
    try:
        tags = parse_tags(text)
    except FilterSyntaxError as err:
        assert 1 <= err.column <= len(text) + 1
        return
    f = compile_filter(tag=text)
    if tags is None:
        assert f.match_all
    else:
        for tag in tags:
            assert tag and tag == tag.strip() and f.matches(tag, {})
