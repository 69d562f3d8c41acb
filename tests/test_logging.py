"""rmq.logging: text or JSON records on stderr, extra fields carried, bad formats refused."""

from __future__ import annotations

import io
import logging
import logging.config
import sys
from collections.abc import Iterator

import orjson
import pytest

from rmq.errors import ConfigError
from rmq.logging import JsonFormatter, configure, default_log_config


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_formatter_fields() -> None:
    record = logging.LogRecord(
        "rmq.consumer", logging.WARNING, __file__, 1, "failed %s", ("x",), None
    )
    record.topic = "orders"
    record.msg_id = "M1"
    doc = orjson.loads(JsonFormatter().format(record))
    assert doc["level"] == "WARNING"
    assert doc["logger"] == "rmq.consumer"
    assert doc["message"] == "failed x"
    assert (doc["topic"], doc["msg_id"]) == ("orders", "M1")
    assert doc["time"].endswith("+00:00")
    assert "args" not in doc and "msg" not in doc


def test_json_formatter_exceptions() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("rmq", logging.ERROR, __file__, 1, "x", (), None)
        record.exc_info = sys.exc_info()
    doc = orjson.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in doc["exc"]


def test_configure_json_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    monkeypatch.setenv("RMQ_LOG_FORMAT", "json")
    configure("debug")
    stream = io.StringIO()
    logging.getLogger().handlers[0].setStream(stream)  # type: ignore[attr-defined]
    logging.getLogger("rmq.test").info("hello %d", 1, extra={"group": "g"})
    logging.getLogger("app.module").debug("user code too")
    first, second = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert (first["message"], first["group"]) == ("hello 1", "g")
    assert second["logger"] == "app.module"


def test_text_format_and_bad_format(restore_logging: None) -> None:
    config = default_log_config("INFO", "text")
    assert "%(levelname)s" in config["formatters"]["rmq"]["format"]
    with pytest.raises(ConfigError, match="RMQ_LOG_FORMAT"):
        configure("INFO", "xml")
