"""Settings: defaults, `from_env` casting and errors, validation, and password redaction."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

import rmq
from rmq.errors import ConfigError, InvalidName
from rmq.settings import Settings, redact_url

# ---------------------------------------------------------------------------- defaults


def test_defaults() -> None:
    s = Settings()
    assert s.redis_url == "redis://localhost:6379/0"
    assert s.namespace == "rmq"
    assert s.connect_timeout == 5.0
    assert s.socket_timeout == 10.0
    assert s.max_connections == 64
    assert s.startup_timeout == 10.0
    assert s.backoff_base == 0.05
    assert s.backoff_cap == 2.0
    assert s.default_queues == 4
    assert s.strict_topics is False
    assert s.max_body_bytes == 4 * 1024 * 1024
    assert s.max_properties_bytes == 32 * 1024
    assert s.compress_threshold == 4 * 1024
    assert s.send_timeout == 3.0
    assert s.send_retries == 2
    assert s.dedup_window == 30.0
    assert s.max_batch_messages == 500
    assert s.max_pending_sends == 10_000
    assert s.concurrency == 20
    assert s.prefetch == 1000
    assert s.fetch_batch == 32
    assert s.block_seconds == 2.0
    assert s.visibility_timeout == 30.0
    assert s.claim_interval == 2.0
    assert s.read_lanes == 4
    assert s.shutdown_grace == 30.0
    assert s.instance_id is None


def test_from_empty_env_is_defaults() -> None:
    assert Settings.from_env({}) == Settings()


def test_from_env_ignores_os_environ_when_mapping_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RMQ_CONCURRENCY", "7")
    assert Settings.from_env({}).concurrency == 20
    assert Settings.from_env().concurrency == 7


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.concurrency = 3  # type: ignore[misc]


def test_env_var_names() -> None:
    assert Settings.env_var("redis_url") == "RMQ_REDIS_URL"
    assert Settings.env_var("dedup_window") == "RMQ_DEDUP_WINDOW"
    for f in dataclasses.fields(Settings):
        assert Settings.env_var(f.name) == "RMQ_" + f.name.upper()


def test_every_field_is_settable_from_env() -> None:
    """Each field reads its own variable (a value different from the default)."""
    env = {
        "RMQ_REDIS_URL": "rediss://cache.example:6380/2",
        "RMQ_NAMESPACE": "app-1",
        "RMQ_APP_NAME": "billing",
        "RMQ_CONNECT_TIMEOUT": "1.5",
        "RMQ_SOCKET_TIMEOUT": "20",
        "RMQ_MAX_CONNECTIONS": "8",
        "RMQ_STARTUP_TIMEOUT": "0",
        "RMQ_BACKOFF_BASE": "0.1",
        "RMQ_BACKOFF_CAP": "3",
        "RMQ_HEALTH_CHECK_INTERVAL": "7",
        "RMQ_DEFAULT_QUEUES": "16",
        "RMQ_STRICT_TOPICS": "true",
        "RMQ_MAX_BODY_BYTES": "1000",
        "RMQ_MAX_PROPERTIES_BYTES": "500",
        "RMQ_COMPRESS_THRESHOLD": "0",
        "RMQ_SEND_TIMEOUT": "4",
        "RMQ_SEND_RETRIES": "0",
        "RMQ_DEDUP_WINDOW": "60",
        "RMQ_MAX_BATCH_MESSAGES": "50",
        "RMQ_MAX_PENDING_SENDS": "99",
        "RMQ_MAX_DELAY": "3600",
        "RMQ_TRANSACTION_CHECK_IMMUNITY": "2.5",
        "RMQ_TRANSACTION_CHECK_INTERVAL": "10",
        "RMQ_TRANSACTION_MAX_CHECKS": "3",
        "RMQ_CONCURRENCY": "3",
        "RMQ_PREFETCH": "10",
        "RMQ_FETCH_BATCH": "5",
        "RMQ_BLOCK_SECONDS": "0.25",
        "RMQ_VISIBILITY_TIMEOUT": "12.5",
        "RMQ_CLAIM_INTERVAL": "1",
        "RMQ_READ_LANES": "2",
        "RMQ_SHUTDOWN_GRACE": "0",
        "RMQ_PROMOTE_BATCH": "100",
        "RMQ_PROMOTE_MAX_SLEEP": "0.5",
        "RMQ_PROMOTE_MIN_SLEEP": "0.01",
        "RMQ_LEASE_TTL": "4",
        "RMQ_REBALANCE_INTERVAL": "0.5",
        "RMQ_HEARTBEAT_INTERVAL": "2",
        "RMQ_RESTART_DELAY": "0.5",
        "RMQ_RESTART_DELAY_CAP": "10",
        "RMQ_INSTANCE_ID": "pod-7",
        "RMQ_RETENTION": "0.5",
        "RMQ_RETENTION_MAX_LEN": "1000",
        "RMQ_RETENTION_MAX_AGE": "86400",
        "RMQ_DLQ_RETENTION": "604800",
        "RMQ_TRIM_INTERVAL": "5",
        "RMQ_TRIM_BATCH": "2000",
    }
    assert set(env) == {Settings.env_var(f.name) for f in dataclasses.fields(Settings)}
    s = Settings.from_env(env)
    assert s == Settings(
        redis_url="rediss://cache.example:6380/2",
        namespace="app-1",
        app_name="billing",
        connect_timeout=1.5,
        socket_timeout=20.0,
        max_connections=8,
        startup_timeout=0.0,
        backoff_base=0.1,
        backoff_cap=3.0,
        health_check_interval=7.0,
        default_queues=16,
        strict_topics=True,
        max_body_bytes=1000,
        max_properties_bytes=500,
        compress_threshold=0,
        send_timeout=4.0,
        send_retries=0,
        dedup_window=60.0,
        max_batch_messages=50,
        max_pending_sends=99,
        max_delay=3600.0,
        transaction_check_immunity=2.5,
        transaction_check_interval=10.0,
        transaction_max_checks=3,
        concurrency=3,
        prefetch=10,
        fetch_batch=5,
        block_seconds=0.25,
        visibility_timeout=12.5,
        claim_interval=1.0,
        read_lanes=2,
        shutdown_grace=0.0,
        promote_batch=100,
        promote_max_sleep=0.5,
        promote_min_sleep=0.01,
        lease_ttl=4.0,
        rebalance_interval=0.5,
        heartbeat_interval=2.0,
        restart_delay=0.5,
        restart_delay_cap=10.0,
        instance_id="pod-7",
        retention=0.5,
        retention_max_len=1000,
        retention_max_age=86400.0,
        dlq_retention=604800.0,
        trim_interval=5.0,
        trim_batch=2000,
    )
    assert type(s.max_connections) is int
    assert type(s.socket_timeout) is float
    assert type(s.startup_timeout) is float


# ---------------------------------------------------------------------------- casting


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("12", 12), (" 12 ", 12), ("+3", 3), ("0012", 12), ("1_000", 1000)],
)
def test_cast_int(raw: str, expected: int) -> None:
    s = Settings.from_env({"RMQ_MAX_CONNECTIONS": raw})
    assert s.max_connections == expected
    assert type(s.max_connections) is int


@pytest.mark.parametrize(
    ("raw", "expected"), [("2.5", 2.5), (" 7 ", 7.0), ("1e1", 10.0), (".5", 0.5)]
)
def test_cast_float(raw: str, expected: float) -> None:
    s = Settings.from_env({"RMQ_SOCKET_TIMEOUT": raw, "RMQ_BLOCK_SECONDS": "0.1"})
    assert s.socket_timeout == expected
    assert type(s.socket_timeout) is float


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "True", "yes", "Yes", "on", "ON", " true "])
def test_cast_bool_true(raw: str) -> None:
    assert Settings.from_env({"RMQ_STRICT_TOPICS": raw}).strict_topics is True


@pytest.mark.parametrize("raw", ["0", "false", "FALSE", "no", "No", "off", "OFF", "", "  "])
def test_cast_bool_false(raw: str) -> None:
    assert Settings.from_env({"RMQ_STRICT_TOPICS": raw}).strict_topics is False


def test_cast_optional_str() -> None:
    assert Settings.from_env({"RMQ_INSTANCE_ID": "worker-3"}).instance_id == "worker-3"
    assert Settings.from_env({"RMQ_INSTANCE_ID": ""}).instance_id is None
    assert Settings.from_env({"RMQ_INSTANCE_ID": "   "}).instance_id is None
    assert Settings.from_env({}).instance_id is None


def test_cast_str_kept_verbatim() -> None:
    s = Settings.from_env({"RMQ_REDIS_URL": "redis://h:1/3", "RMQ_NAMESPACE": "Prod_2"})
    assert s.redis_url == "redis://h:1/3"
    assert s.namespace == "Prod_2"


def test_unrelated_env_vars_are_ignored() -> None:
    env = {"RMQ_NOT_A_SETTING": "x", "CONCURRENCY": "1", "rmq_concurrency": "2"}
    assert Settings.from_env(env) == Settings()


@pytest.mark.parametrize(
    ("var", "raw", "kind"),
    [
        ("RMQ_MAX_CONNECTIONS", "ten", "int"),
        ("RMQ_MAX_CONNECTIONS", "1.5", "int"),
        ("RMQ_MAX_CONNECTIONS", "", "int"),
        ("RMQ_DEFAULT_QUEUES", "0x10", "int"),
        ("RMQ_SEND_TIMEOUT", "fast", "duration"),
        ("RMQ_SEND_TIMEOUT", "", "duration"),
        ("RMQ_SEND_TIMEOUT", "3 weeks", "duration"),
        ("RMQ_STRICT_TOPICS", "maybe", "bool"),
        ("RMQ_STRICT_TOPICS", "2", "bool"),
        ("RMQ_STRICT_TOPICS", "y", "bool"),
    ],
)
def test_bad_env_value_names_the_variable(var: str, raw: str, kind: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({var: raw})
    message = str(info.value)
    assert var in message
    assert repr(raw) in message
    assert kind in message
    assert isinstance(info.value, ValueError)


def test_overrides_win_over_env() -> None:
    env = {"RMQ_CONCURRENCY": "9", "RMQ_PREFETCH": "not-even-a-number"}
    s = Settings.from_env(env, concurrency=3, prefetch=50)
    assert (s.concurrency, s.prefetch) == (3, 50)
    assert Settings.from_env(env, prefetch=50).concurrency == 9


def test_unknown_override_names_it() -> None:
    with pytest.raises(ConfigError, match=r"unknown setting.*concurency"):
        Settings.from_env({}, concurency=3)
    with pytest.raises(ConfigError, match="alpha, beta"):
        Settings.from_env({}, beta=1, alpha=2)


def test_replace_validates() -> None:
    s = Settings()
    assert s.replace(concurrency=2).concurrency == 2
    assert s.concurrency == 20
    with pytest.raises(ConfigError, match="concurrency"):
        s.replace(concurrency=0)


# ---------------------------------------------------------------------------- validation


def kwargs(name: str, value: object) -> dict[str, Any]:
    return {name: value}


POSITIVE = [
    "connect_timeout",
    "socket_timeout",
    "max_connections",
    "default_queues",
    "max_body_bytes",
    "send_timeout",
    "dedup_window",
    "max_batch_messages",
    "max_pending_sends",
    "concurrency",
    "prefetch",
    "fetch_batch",
    "block_seconds",
    "visibility_timeout",
    "claim_interval",
    "backoff_base",
    "backoff_cap",
    "health_check_interval",
]
NON_NEGATIVE = [
    "send_retries", "shutdown_grace", "startup_timeout", "compress_threshold", "retention",
]  # fmt: skip


@pytest.mark.parametrize("name", POSITIVE)
@pytest.mark.parametrize("value", [0, -1])
def test_positive_fields(name: str, value: int) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings(**kwargs(name, value))


@pytest.mark.parametrize("name", POSITIVE)
def test_positive_fields_from_env(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({Settings.env_var(name): "0"})


@pytest.mark.parametrize("name", NON_NEGATIVE)
def test_non_negative_fields(name: str) -> None:
    assert getattr(Settings(**kwargs(name, 0)), name) == 0
    with pytest.raises(ConfigError, match=name):
        Settings(**kwargs(name, -1))


def test_retention_defaults_and_validation() -> None:
    s = Settings()
    assert (s.retention, s.retention_max_len, s.retention_max_age) == (72 * 3600.0, None, None)
    assert (s.trim_interval, s.trim_batch) == (60.0, 10_000)
    assert Settings.from_env({"RMQ_RETENTION_MAX_LEN": ""}).retention_max_len is None
    assert s.dlq_retention is None
    assert Settings.from_env({"RMQ_DLQ_RETENTION": "86400"}).dlq_retention == 86400.0
    for bad in (
        {"retention_max_len": 0}, {"retention_max_len": 1.5}, {"retention_max_age": 0},
        {"retention_max_age": math.inf}, {"trim_batch": 999}, {"trim_interval": 0},
        {"retention": math.nan}, {"dlq_retention": 0}, {"dlq_retention": math.inf},
    ):  # fmt: skip
        with pytest.raises(ConfigError, match=next(iter(bad))):
            Settings(**bad)


def test_max_properties_bytes_must_be_positive() -> None:
    """A negative (or zero) properties limit makes every property set 'too large'."""
    with pytest.raises(ConfigError, match="max_properties_bytes"):
        Settings(max_properties_bytes=-1)


@pytest.mark.parametrize("name", ["send_timeout", "connect_timeout", "visibility_timeout"])
def test_nan_durations_are_rejected(name: str) -> None:
    """NaN compares False with everything, so `<= 0` checks let it through."""
    with pytest.raises(ConfigError, match=Settings.env_var(name)):
        Settings.from_env({Settings.env_var(name): "nan"})
    with pytest.raises(ConfigError, match=name):
        Settings(**kwargs(name, math.nan))


def test_default_queues_upper_bound() -> None:
    assert Settings(default_queues=1024).default_queues == 1024
    with pytest.raises(ConfigError, match="default_queues"):
        Settings(default_queues=1025)


def test_dedup_window_must_cover_send_timeout() -> None:
    assert Settings(send_timeout=5, dedup_window=5).dedup_window == 5
    with pytest.raises(ConfigError) as info:
        Settings(send_timeout=5, dedup_window=4.9)
    assert "dedup_window" in str(info.value)
    assert "send_timeout" in str(info.value)
    with pytest.raises(ConfigError, match="dedup_window"):
        Settings.from_env({"RMQ_SEND_TIMEOUT": "10", "RMQ_DEDUP_WINDOW": "2"})


def test_block_seconds_shorter_than_socket_timeout() -> None:
    with pytest.raises(ConfigError, match="block_seconds"):
        Settings(block_seconds=10, socket_timeout=10)
    assert Settings(block_seconds=9.9, socket_timeout=10).block_seconds == 9.9


@pytest.mark.parametrize(
    "url", ["redis://h:1/0", "rediss://h:6380/0", "unix:///tmp/redis.sock", "redis://h"]
)
def test_good_url_schemes(url: str) -> None:
    assert Settings(redis_url=url).redis_url == url


@pytest.mark.parametrize("url", ["http://h:1/0", "localhost:6379", "", "redis:/h", "tcp://h:1"])
def test_bad_url_scheme(url: str) -> None:
    with pytest.raises(ConfigError, match="RMQ_REDIS_URL"):
        Settings(redis_url=url)
    with pytest.raises(ConfigError, match="redis_url"):
        Settings.from_env({"RMQ_REDIS_URL": url})


def test_bad_url_scheme_error_hides_password() -> None:
    with pytest.raises(ConfigError) as info:
        Settings(redis_url="http://user:hunter2@host:1/0")
    assert "hunter2" not in str(info.value)
    assert "***" in str(info.value)


@pytest.mark.parametrize("namespace", ["", "a b", "ns:x", "{ns}", "x" * 65, "ns%"])
def test_bad_namespace(namespace: str) -> None:
    with pytest.raises(InvalidName):
        Settings(namespace=namespace)
    with pytest.raises(ConfigError):
        Settings.from_env({"RMQ_NAMESPACE": namespace})


def test_wrong_type_argument_is_config_error() -> None:
    with pytest.raises(ConfigError):
        Settings.from_env({}, max_connections="5")


# ---------------------------------------------------------------------------- redaction

SECRET_URLS = [
    ("redis://user:secret@host:1/0", "redis://user:***@host:1/0"),
    ("rediss://user:secret@host:6380/0", "rediss://user:***@host:6380/0"),
    ("rediss://:secret@host:6380", "rediss://:***@host:6380"),
    ("redis://:secret@host/0", "redis://:***@host/0"),
    ("redis://default:se%40cret@host:1/0", "redis://default:***@host:1/0"),
    ("redis://u:p@ss:w@rd@host:1/0", "redis://u:***@host:1/0"),
    ("unix://user:secret@/tmp/redis.sock?db=1", "unix://user:***@/tmp/redis.sock?db=1"),
]


@pytest.mark.parametrize(("url", "expected"), SECRET_URLS)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize(("url", "expected"), SECRET_URLS)
def test_repr_hides_password(url: str, expected: str) -> None:
    s = Settings(redis_url=url)
    text = repr(s)
    assert "secret" not in text
    assert "se%40cret" not in text
    assert "w@rd" not in text
    assert f"redis_url={expected!r}" in text
    assert str(s) == text
    # the real URL is still there for connecting
    assert s.redis_url == url


def test_repr_lists_every_field() -> None:
    text = repr(Settings(instance_id="pod-1"))
    assert text.startswith("Settings(")
    for f in dataclasses.fields(Settings):
        assert f"{f.name}=" in text
    assert "instance_id='pod-1'" in text


@pytest.mark.parametrize(
    "url",
    ["redis://localhost:6379/0", "rediss://user@host:1/0", "unix:///tmp/x.sock", "redis://h"],
)
def test_redact_url_without_password_is_unchanged(url: str) -> None:
    assert redact_url(url) == url


def test_redact_url_ipv6_keeps_brackets() -> None:
    assert redact_url("redis://u:secret@[::1]:6379/0") == "redis://u:***@[::1]:6379/0"


@pytest.mark.parametrize(
    "url",
    [
        "redis://u:secret@host:notaport/0",
        "redis://u:secret@host:99999/0",
        "redis://u:secret@[::1/0",
    ],
)
def test_redact_url_never_raises_nor_leaks_on_odd_urls(url: str) -> None:
    redacted = redact_url(url)
    assert "secret" not in redacted


MALFORMED_URLS = [
    ("redis://u:secret@host:notaport/0", "Port could not be cast"),
    ("redis://u:secret@host:99999/0", "Port out of range"),
    ("redis://u:secret@host:-1/0", "Port could not be cast"),
    ("redis://u:secret@[::1/0", "Invalid IPv6 URL"),
    ("redis://u:secret@host:6379/db0", "database 'db0' is not a number"),
    ("redis://u:secret@host:6379/0?socket_timeout=soon", "socket_timeout"),
    ("redis://u:secret@host:6379/0?db=x", "db"),
    ("redis://u:secret@host:6379/0?colour=blue", "unknown option"),
    ("rediss://u:secret@host:6379/0?ssl_cert_reqs=maybe", "SSL Certificate Requirements"),
    ("redis://u:secret@host:6379/0?protocol=3", "RESP2"),
    ("redis://host:6379/0?password=secret&colour=1", "unknown option"),
]


@pytest.mark.parametrize(("url", "reason"), MALFORMED_URLS)
def test_malformed_url_is_a_config_error_without_the_password(url: str, reason: str) -> None:
    """A bad port, a broken IPv6 address, a non-numeric database or an option redis-py would
    choke on when connecting is refused when the settings are made: a ConfigError naming the
    problem and the variable, never a traceback later, never the password."""
    with pytest.raises(ConfigError, match="malformed") as info:
        Settings(redis_url=url)
    message = str(info.value)
    assert reason in message
    assert "RMQ_REDIS_URL" in message
    assert "secret" not in message
    with pytest.raises(ConfigError) as from_env:
        Settings.from_env({"RMQ_REDIS_URL": url})
    assert "secret" not in str(from_env.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://u:p@ss:w@rd@host:1/0",
        "redis://[::1]:6379/0",
        "redis://:6379/0",
        "redis://host:6379/0?socket_keepalive=true&health_check_interval=5",
        "rediss://host:6380/0?ssl_cert_reqs=none",
        "unix:///tmp/redis.sock?db=1",
        "redis://host:6379/0?max_connections=3",
    ],
)
def test_well_formed_urls_are_accepted(url: str) -> None:
    assert Settings(redis_url=url).redis_url == url


def test_non_str_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="redis_url must be a str"):
        Settings(redis_url=6379)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost:6379/0?password=secret",
        "unix:///tmp/redis.sock?db=1&password=secret",
    ],
)
def test_redact_url_hides_query_string_password(url: str) -> None:
    """redis-py's parse_url accepts `?password=...`, so it must not be logged either."""
    assert "secret" not in redact_url(url)


def _all_kwargs() -> dict[str, Any]:
    return {f.name: getattr(Settings(), f.name) for f in dataclasses.fields(Settings)}


def test_equal_settings_compare_equal() -> None:
    assert Settings(**_all_kwargs()) == Settings()


def test_duration_variables_take_the_cli_forms() -> None:
    from rmq.settings import unknown_variables

    env = {"RMQ_RETENTION": "3d", "RMQ_BLOCK_SECONDS": "500ms", "RMQ_SHUTDOWN_GRACE": "1m",
           "RMQ_VISIBILITY_TIMEOUT": "45", "RMQ_RETENTION_MAX_AGE": "2h"}  # fmt: skip
    settings = rmq.Settings.from_env(env)
    assert settings.retention == 3 * 86400
    assert settings.block_seconds == 0.5
    assert (settings.shutdown_grace, settings.visibility_timeout) == (60, 45)
    assert settings.retention_max_age == 7200
    with pytest.raises(ConfigError, match="RMQ_RETENTION='3 weeks' is not a valid duration"):
        rmq.Settings.from_env({"RMQ_RETENTION": "3 weeks"})
    assert unknown_variables({"RMQ_RETENTOIN": "3d", "RMQ_HEALTH_PORT": "1", "HOME": "/"}) == [
        "RMQ_RETENTOIN is not an rmq setting and is ignored (did you mean RMQ_RETENTION?)"
    ]
    others = ("RMQ_EXPORT_STATE", "RMQ_BIND", "RMQ_PROCESSES", "RMQ_LOG_LEVEL", "RMQ_EVENT_LOOP")
    assert unknown_variables(dict.fromkeys(others, "1")) == []
