"""Name validation: RocketMQ's charset `^[A-Za-z0-9_-]+$` and its length limits."""

from __future__ import annotations

import string
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmq.errors import ConfigError, InvalidName, RMQError
from rmq.names import (
    MAX_GROUP_LENGTH,
    MAX_TOPIC_LENGTH,
    validate_group,
    validate_keys,
    validate_namespace,
    validate_properties,
    validate_tag,
    validate_topic,
)

NAME_CHARS = string.ascii_letters + string.digits + "_-"
valid_names = st.text(alphabet=NAME_CHARS, min_size=1, max_size=MAX_GROUP_LENGTH)

Validator = Callable[[object], str]
NAME_VALIDATORS: list[tuple[Validator, int]] = [
    (validate_topic, 127),
    (validate_group, 120),
    (validate_namespace, 64),
]


def test_invalid_name_is_a_config_error_and_value_error() -> None:
    assert issubclass(InvalidName, ConfigError)
    assert issubclass(InvalidName, ValueError)
    assert issubclass(InvalidName, RMQError)


def test_length_constants() -> None:
    assert MAX_TOPIC_LENGTH == 127
    assert MAX_GROUP_LENGTH == 120


@pytest.mark.parametrize(
    "name", ["a", "A", "0", "_", "-", "orders", "Order_Events-2", "x" * 10, "a-b_c-D9"]
)
@pytest.mark.parametrize(("validate", "limit"), NAME_VALIDATORS)
def test_valid_names(validate: Validator, limit: int, name: str) -> None:
    assert validate(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        " ",
        "a b",
        "a\tb",
        "a\n",
        "\na",
        "a.b",
        "a:b",
        "a/b",
        "a{b}",
        "{a}",
        "a*",
        "a|b",
        "%RETRY%group",
        "%DLQ%g",
        "é",
        "naïve",
        "日本",
        "a\x00b",
        "٣",  # an Arabic-Indic digit: \d would match it, the ASCII class must not
        "\uff41",  # fullwidth letter a
    ],
)
@pytest.mark.parametrize(("validate", "limit"), NAME_VALIDATORS)
def test_invalid_characters(validate: Validator, limit: int, name: str) -> None:
    with pytest.raises(InvalidName):
        validate(name)


@pytest.mark.parametrize(("validate", "limit"), NAME_VALIDATORS)
def test_length_limits(validate: Validator, limit: int) -> None:
    assert validate("a" * limit) == "a" * limit
    with pytest.raises(InvalidName, match=str(limit)):
        validate("a" * (limit + 1))


def test_topic_and_group_limits_differ() -> None:
    name = "t" * 127
    assert validate_topic(name) == name
    with pytest.raises(InvalidName):
        validate_group(name)
    assert validate_group("g" * 120) == "g" * 120
    with pytest.raises(InvalidName):
        validate_group("g" * 121)
    with pytest.raises(InvalidName):
        validate_topic("t" * 128)


@pytest.mark.parametrize("value", [None, 1, 1.5, b"orders", ["orders"], ("a",), {"a": 1}, True])
@pytest.mark.parametrize(("validate", "limit"), NAME_VALIDATORS)
def test_wrong_types(validate: Validator, limit: int, value: object) -> None:
    with pytest.raises(InvalidName, match="must be a str"):
        validate(value)


def test_error_message_names_the_kind() -> None:
    with pytest.raises(InvalidName, match="topic"):
        validate_topic("a b")
    with pytest.raises(InvalidName, match="group"):
        validate_group("")
    with pytest.raises(InvalidName, match="namespace"):
        validate_namespace("x:y")


def test_long_name_error_is_truncated() -> None:
    with pytest.raises(InvalidName) as info:
        validate_topic("x" * 5000)
    assert len(str(info.value)) < 200


@settings(deadline=None)
@given(valid_names)
def test_any_charset_name_is_valid(name: str) -> None:
    assert validate_group(name) == name
    assert validate_topic(name) == name


@settings(deadline=None)
@given(st.text(min_size=1, max_size=50).filter(lambda s: any(c not in NAME_CHARS for c in s)))
def test_any_name_outside_charset_is_invalid(name: str) -> None:
    with pytest.raises(InvalidName):
        validate_topic(name)
    with pytest.raises(InvalidName):
        validate_group(name)


# ---------------------------------------------------------------------------- tags


@pytest.mark.parametrize(
    "tag", ["paid", "TagA", "a.b", "a:b", "a|b", "x*", "*x", "é", "%", "t" * 127]
)
def test_valid_tags(tag: str) -> None:
    assert validate_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", "*", "a||b", "||", "a b", " a", "a\t", "a\nb", "t" * 128])
def test_invalid_tags(tag: str) -> None:
    with pytest.raises(InvalidName):
        validate_tag(tag)


@pytest.mark.parametrize("tag", [None, 1, b"tag", ["tag"]])
def test_tag_wrong_types(tag: object) -> None:
    with pytest.raises(InvalidName, match="str"):
        validate_tag(tag)


# ---------------------------------------------------------------------------- keys


def test_keys() -> None:
    assert validate_keys(["order-1", "user:7"]) == ["order-1", "user:7"]
    assert validate_keys(("a", "b")) == ["a", "b"]
    assert validate_keys("solo") == ["solo"]
    assert validate_keys([]) == []
    assert validate_keys(["k" * 255]) == ["k" * 255]


@pytest.mark.parametrize(
    "keys", [[""], ["a b"], ["ok", "a\tb"], ["k" * 256], "two words", ["a\n"], [" "]]
)
def test_invalid_keys(keys: object) -> None:
    with pytest.raises(InvalidName):
        validate_keys(keys)


@pytest.mark.parametrize("keys", [None, 1, {"a"}, {"a": "b"}, [1], ["a", None], [b"a"], b"ab"])
def test_keys_wrong_types(keys: object) -> None:
    with pytest.raises(InvalidName):
        validate_keys(keys)


@settings(deadline=None)
@given(st.lists(st.text(max_size=30)))
def test_keys_round_trip_through_space_join(keys: list[str]) -> None:
    """Whatever validate_keys accepts survives the space-joined storage unchanged."""
    try:
        checked = validate_keys(keys)
    except InvalidName:
        return
    stored = " ".join(checked)
    assert (stored.split(" ") if stored else []) == keys


# ---------------------------------------------------------------------------- properties


def test_properties() -> None:
    props = {"region": "eu", "a b": "x y", "empty": ""}
    assert validate_properties(props) == props
    assert validate_properties({}) == {}


@pytest.mark.parametrize(
    "props",
    [
        {"": "x"},
        {1: "x"},
        {"a": 1},
        {"a": None},
        {"a": b"x"},
        {"n" * 256: "x"},
        {b"a": "x"},
    ],
)
def test_invalid_properties(props: object) -> None:
    with pytest.raises(InvalidName):
        validate_properties(props)


@pytest.mark.parametrize("props", [None, [], [("a", "b")], "a=b", 1])
def test_properties_wrong_types(props: object) -> None:
    with pytest.raises(InvalidName, match="dict"):
        validate_properties(props)


def test_property_name_limit() -> None:
    assert validate_properties({"n" * 255: "v"}) == {"n" * 255: "v"}
