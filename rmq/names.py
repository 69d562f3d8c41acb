"""Validation of user-supplied names, with RocketMQ's charset and lengths."""

from __future__ import annotations

import re

from .errors import InvalidName

__all__ = [
    "MAX_GROUP_LENGTH",
    "MAX_TOPIC_LENGTH",
    "validate_group",
    "validate_keys",
    "validate_namespace",
    "validate_properties",
    "validate_tag",
    "validate_topic",
]

MAX_TOPIC_LENGTH = 127
MAX_GROUP_LENGTH = 120
MAX_NAMESPACE_LENGTH = 64
MAX_TAG_LENGTH = 127
MAX_KEY_LENGTH = 255
MAX_PROPERTY_NAME_LENGTH = 255

_NAME = re.compile(r"[A-Za-z0-9_-]+")
_SPACE = re.compile(r"\s")


def _check(kind: str, name: object, limit: int) -> str:
    if not isinstance(name, str):
        raise InvalidName(f"{kind} name must be a str, got {type(name).__name__}")
    if not name:
        raise InvalidName(f"{kind} name must not be empty")
    if len(name) > limit:
        raise InvalidName(
            f"{kind} name {name[:40]!r}... is {len(name)} chars; the limit is {limit}"
        )
    if _NAME.fullmatch(name) is None:
        raise InvalidName(
            f"{kind} name {name!r} may only contain letters, digits, '_' and '-' "
            "('%' is reserved for system names)"
        )
    return name


def validate_topic(name: object) -> str:
    """Return `name` if it is a valid topic name, else raise `InvalidName`."""
    return _check("topic", name, MAX_TOPIC_LENGTH)


def validate_group(name: object) -> str:
    """Return `name` if it is a valid consumer or producer group name."""
    return _check("group", name, MAX_GROUP_LENGTH)


def validate_namespace(name: object) -> str:
    """Return `name` if it is a valid key namespace."""
    return _check("namespace", name, MAX_NAMESPACE_LENGTH)


def validate_tag(tag: object) -> str:
    """A tag is one word: no whitespace, no '||' and not '*' (those belong to filters)."""
    if not isinstance(tag, str):
        raise InvalidName(f"tag must be a str, got {type(tag).__name__}")
    if not tag or len(tag) > MAX_TAG_LENGTH:
        raise InvalidName(f"tag must be 1..{MAX_TAG_LENGTH} chars, got {len(tag)}")
    if _SPACE.search(tag) or "||" in tag or tag == "*":
        raise InvalidName(f"tag {tag!r} must not contain whitespace or '||', nor be '*'")
    return tag


def validate_keys(keys: object) -> list[str]:
    """Keys are a list of non-empty strings without whitespace (they are stored space-joined)."""
    if isinstance(keys, str):
        keys = [keys]
    if not isinstance(keys, list | tuple):
        raise InvalidName(f"keys must be a list of str, got {type(keys).__name__}")
    out: list[str] = []
    for key in keys:
        if not isinstance(key, str):
            raise InvalidName(f"each key must be a str, got {type(key).__name__}")
        if not key or len(key) > MAX_KEY_LENGTH or _SPACE.search(key):
            raise InvalidName(f"key {key!r} must be 1..{MAX_KEY_LENGTH} chars without whitespace")
        out.append(key)
    return out


def validate_properties(properties: object) -> dict[str, str]:
    """Properties map non-empty str names to str values."""
    if not isinstance(properties, dict):
        raise InvalidName(f"properties must be a dict[str, str], got {type(properties).__name__}")
    for name, value in properties.items():
        if not isinstance(name, str) or not name or len(name) > MAX_PROPERTY_NAME_LENGTH:
            raise InvalidName(f"property name {name!r} must be a non-empty str")
        if not isinstance(value, str):
            raise InvalidName(
                f"property {name!r} must have a str value, got {type(value).__name__}"
            )
    return properties
