"""Settings: one frozen dataclass, read from `RMQ_*` environment variables by `Settings.from_env()`.

Every field maps to the variable `RMQ_<FIELD NAME IN CAPITALS>`; explicit keyword arguments win over
the environment, which wins over the defaults. Durations are float seconds; their variables also
take the CLI's forms (`RMQ_RETENTION=3d`, `RMQ_BLOCK_SECONDS=500ms`). `unknown_variables()` names
the `RMQ_*` variables rmq does not read (the CLI and workers warn about them).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from redis.asyncio.connection import Connection, parse_url
from redis.exceptions import RedisError

from .durations import duration_seconds
from .errors import ConfigError
from .names import validate_namespace

__all__ = ["OTHER_VARIABLES", "Settings", "check_redis_url", "redact_url", "unknown_variables"]

_PASSWORD_IN_QUERY = re.compile(r"((?:^|&)password=)[^&]*", re.IGNORECASE)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def redact_url(url: str) -> str:
    """Return `url` with any password (in the user info or the query) replaced by `***`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        if colon:
            netloc = f"{user}:***@{hostport}"
    query = _PASSWORD_IN_QUERY.sub(r"\1***", parts.query)
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


_POOL_OPTIONS = ("max_connections", "timeout", "readonly")
"""URL query options redis-py hands to the pool (the rest go to each connection)."""


def _secrets(url: str) -> list[str]:
    """The password(s) written in `url` (user info and `password=` query), raw and decoded."""
    rest = url.partition("://")[2]
    netloc, _, tail = rest.partition("/")
    found = []
    userinfo = netloc.rpartition("@")[0] if "@" in netloc else ""
    if ":" in userinfo:
        found.append(userinfo.partition(":")[2])
    query = tail.partition("?")[2] or rest.partition("?")[2]
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if name.lower() == "password":
            found.append(value)
    return [secret for raw in found if raw for secret in {raw, unquote(raw)}]


def check_redis_url(url: str) -> None:
    """Raise `ConfigError` (never showing a password) unless `url` is a Redis URL rmq can use:
    redis://, rediss:// or unix://, a valid port and host, a numeric database, known options."""
    shown = redact_url(url)

    def bad(reason: str) -> ConfigError:
        for secret in _secrets(url):
            reason = reason.replace(secret, "***")
        return ConfigError(f"redis_url {shown!r} is malformed: {reason} (set RMQ_REDIS_URL)")

    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            f"redis_url {shown!r} must start with redis://, rediss:// or unix:// "
            "(set RMQ_REDIS_URL)"
        )
    try:
        options: dict[str, Any] = dict(parse_url(url))
    except ValueError as exc:
        raise bad(str(exc)) from None
    if not url.startswith("unix://"):
        database = urlsplit(url).path.lstrip("/")
        if database and not database.isdigit():
            raise bad(f"the database {database!r} is not a number (redis://host:port/<db>)")
    if options.get("protocol", 2) not in (2, "2"):
        raise bad("rmq speaks RESP2: leave protocol out of the URL")
    connection_class = options.pop("connection_class", Connection)
    for name in _POOL_OPTIONS:
        options.pop(name, None)
    try:
        connection_class(**options)  # no I/O: checks option names and values
    except TypeError as exc:
        raise bad(f"unknown option in the URL ({exc})") from None
    except (RedisError, ValueError) as exc:
        raise bad(str(exc)) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything rmq can be tuned with. See the README for what each setting does."""

    # Connection
    redis_url: str = "redis://localhost:6379/0"
    """`redis://`, `rediss://` (TLS) or `unix://`, with an ACL user and password if needed (never
    printed)."""
    namespace: str = "rmq"
    """Prefix of every key, so several applications can share one Redis."""
    app_name: str = "app"
    """Names this application in broadcasting instance ids (`<host>:<app_name>:<n>`)."""
    connect_timeout: float = 5.0
    """How long opening a connection to Redis may take."""
    socket_timeout: float = 10.0
    """How long a command waits for Redis's reply (longer than `block_seconds`)."""
    max_connections: int = 64
    """Most connections of each of the app's connection pools."""
    startup_timeout: float = 10.0
    """How long `async with app` keeps retrying an unreachable Redis before `BrokerUnavailable`."""
    backoff_base: float = 0.05
    """First delay of the jittered exponential backoff after a transient Redis error."""
    backoff_cap: float = 2.0
    """Longest delay of that backoff."""
    health_check_interval: float = 30.0
    """A pooled connection idle this long is checked with a PING before its next command."""

    # Topics and messages
    default_queues: int = 4
    """Queues of a topic created on first send (RocketMQ's defaultTopicQueueNums)."""
    strict_topics: bool = False
    """Never create a topic on first use: sending to or consuming a missing one raises
    `TopicNotFound` (create it with `rmq topic create`)."""
    max_body_bytes: int = 4 * 1024 * 1024
    """Largest encoded body, checked before compression (`MessageTooLarge`)."""
    max_properties_bytes: int = 32 * 1024
    """Largest encoded properties of one message."""
    compress_threshold: int = 4 * 1024
    """Bodies of this many bytes or more are zlib-compressed (0: never)."""

    # Producer
    send_timeout: float = 3.0
    """Time budget of one send, retries included (RocketMQ's sendMsgTimeout)."""
    send_retries: int = 2
    """Retries of a failed send round trip within `send_timeout`."""
    dedup_window: float = 30.0
    """How long a retried send (or a repeated commit) is recognised and not stored twice."""
    max_batch_messages: int = 500
    """Most messages in one `send_batch` (and in one send script call)."""
    max_pending_sends: int = 10_000
    """Most messages waiting for a round trip; then `send` waits and `send_async` raises."""
    max_delay: float = 7 * 24 * 3600.0
    """The furthest a delayed message may be scheduled, in seconds (7 days)."""

    # Transactions
    transaction_check_immunity: float = 6.0
    """No check-back asks about a half message younger than this (RocketMQ's transactionTimeOut)."""
    transaction_check_interval: float = 30.0
    """A half message still unresolved is checked back again after this long."""
    transaction_max_checks: int = 15
    """After this many check-backs answered UNKNOWN, a half message is rolled back and recorded."""

    # Consumers
    concurrency: int = 20
    """Handlers of one consumer running at once (a consumer's `concurrency=` wins)."""
    prefetch: int = 1000
    """Messages a consumer buffers ahead of its handlers (flow control)."""
    fetch_batch: int = 32
    """First XREADGROUP COUNT per queue; grows up to 8x while reads come back full."""
    block_seconds: float = 2.0
    """XREADGROUP BLOCK: how long one read waits for new messages."""
    visibility_timeout: float = 30.0
    """Idle time after which another consumer claims a delivered message (XAUTOCLAIM)."""
    claim_interval: float = 2.0
    """How often consumers look for messages to claim where other consumers hold some (a stream
    where no other consumer holds anything is looked at once per visibility timeout)."""
    read_lanes: int = 4
    """Most reading connections a worker keeps per Redis node: one per consumer group up to
    this many groups; beyond, the last one reads every other group's streams (a doorbell)."""
    shutdown_grace: float = 30.0
    """How long a stopping worker lets running handlers finish."""
    promote_batch: int = 250
    """Most delayed messages or retries one promote script call moves (bounds its run time)."""
    promote_max_sleep: float = 1.0
    """Longest the scheduler sleeps without a wake-up while its subscription is down (while it
    is up, a safety sweep runs every 30 times this)."""
    promote_min_sleep: float = 0.002
    """Shortest pause between two promotion rounds (due messages are moved in batches)."""
    lease_ttl: float = 10.0
    """Orderly queue leases and member heartbeats expire after this long without renewal."""
    rebalance_interval: float = 2.0
    """How often orderly members heartbeat, renew leases and recompute their queues."""
    instance_id: str | None = None
    """Broadcasting instance id (e.g. a pod name); unset: a `<host>:<app_name>:<n>` slot is
    claimed."""

    # Retention
    retention: float = 72 * 3600.0
    """Acknowledged entries are trimmed once older than this (seconds; RocketMQ keeps 72 h).
    Entries a subscribed group has not acknowledged are kept however old (see the hard caps)."""
    retention_max_len: int | None = None
    """Hard cap: a queue stream keeps at most this many entries, acknowledged or not (off: None)."""
    retention_max_age: float | None = None
    """Hard cap: entries older than this (seconds) are removed, acknowledged or not (off: None)."""
    dlq_retention: float | None = None
    """Dead letters older than this (seconds) are deleted by the workers' trimmer (off: None,
    they stay until `rmq dlq purge`)."""
    trim_interval: float = 60.0
    """How often workers trim the queues of the topics they consume (with +-20% jitter)."""
    trim_batch: int = 10_000
    """Most entries one trim script call removes per stream (bounds the time Redis is busy)."""

    # Worker runner
    heartbeat_interval: float = 5.0
    """How often worker processes refresh their heartbeat (`rmq worker check`)."""
    restart_delay: float = 1.0
    """First delay before the runner restarts a crashed worker process; doubles per crash."""
    restart_delay_cap: float = 30.0
    """Longest delay before the runner restarts a crashed worker process."""

    _env_names: typing.ClassVar[dict[str, str]] = {}

    def __post_init__(self) -> None:
        validate_namespace(self.namespace)
        if not isinstance(self.redis_url, str):
            raise ConfigError(f"redis_url must be a str, got {type(self.redis_url).__name__}")
        check_redis_url(self.redis_url)
        positive = (
            "connect_timeout", "socket_timeout", "max_connections", "default_queues",
            "max_body_bytes", "send_timeout", "dedup_window", "max_batch_messages",
            "max_pending_sends", "concurrency", "prefetch", "fetch_batch", "read_lanes",
            "block_seconds",
            "visibility_timeout", "claim_interval", "backoff_base", "backoff_cap",
            "health_check_interval",
            "max_properties_bytes", "max_delay", "promote_batch", "promote_max_sleep",
            "promote_min_sleep", "lease_ttl", "rebalance_interval", "heartbeat_interval",
            "restart_delay", "restart_delay_cap", "transaction_check_immunity",
            "transaction_check_interval", "transaction_max_checks", "trim_interval",
        )  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
        for name in (
            "send_retries", "shutdown_grace", "startup_timeout", "compress_threshold", "retention",
        ):  # fmt: skip
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
        if not isinstance(self.transaction_max_checks, int):
            raise ConfigError(
                f"transaction_max_checks must be an int >= 1, got {self.transaction_max_checks!r}"
            )
        if not isinstance(self.trim_batch, int) or self.trim_batch < 1000:
            raise ConfigError(
                f"trim_batch must be an int >= 1000 (well above a stream node's 100 entries), "
                f"got {self.trim_batch!r}"
            )
        if self.retention_max_len is not None and not (
            isinstance(self.retention_max_len, int) and self.retention_max_len >= 1
        ):
            raise ConfigError(
                f"retention_max_len must be an int >= 1 or unset, got {self.retention_max_len!r}"
            )
        age = self.retention_max_age
        if age is not None and not (
            isinstance(age, int | float) and math.isfinite(age) and age > 0
        ):
            raise ConfigError(f"retention_max_age must be a number > 0 or unset, got {age!r}")
        dlq_age = self.dlq_retention
        if dlq_age is not None and not (
            isinstance(dlq_age, int | float) and math.isfinite(dlq_age) and dlq_age > 0
        ):
            raise ConfigError(f"dlq_retention must be a number > 0 or unset, got {dlq_age!r}")
        if self.default_queues > 1024:
            raise ConfigError("default_queues must be <= 1024")
        if self.dedup_window < self.send_timeout:
            raise ConfigError(
                f"dedup_window ({self.dedup_window}s) must be at least send_timeout "
                f"({self.send_timeout}s), or a retried send could be stored twice"
            )
        if self.block_seconds >= self.socket_timeout:
            raise ConfigError("block_seconds must be shorter than socket_timeout")

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={redact_url(self.redis_url)!r}"
            if f.name == "redis_url"
            else f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
        )
        return f"Settings({shown})"

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with `changes` applied (validated like the constructor)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def env_var(cls, name: str) -> str:
        """The environment variable that sets field `name`."""
        return f"RMQ_{name.upper()}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from `RMQ_*` variables; keyword `overrides` win over the environment."""
        env = os.environ if environ is None else environ
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in fields(cls):
            var = cls.env_var(f.name)
            if f.name in overrides or var not in env:
                continue
            values[f.name] = _cast(var, env[var], hints[f.name])
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        values.update(overrides)
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(str(exc)) from exc


def _cast(var: str, raw: str, hint: Any) -> Any:
    text = raw.strip()
    args = typing.get_args(hint)
    if args and type(None) in args:
        if not text:
            return None
        hint = next(a for a in args if a is not type(None))
    try:
        if hint is bool:
            lowered = text.lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(raw)
        if hint is int:
            return int(text)
        if hint is float:  # every float setting is a duration in seconds: "30", "500ms", "3d"
            return duration_seconds(text)
        return raw
    except ValueError:
        name = getattr(hint, "__name__", str(hint))
        if hint is float:
            name = "duration (seconds, or 500ms, 30s, 5m, 2h, 3d)"
        raise ConfigError(f"{var}={raw!r} is not a valid {name}") from None


OTHER_VARIABLES = {
    "RMQ_BIND": "`rmq worker run` / `rmq metrics serve`: address the HTTP ports listen on",
    "RMQ_EVENT_LOOP": "`rmq worker run`: auto, uvloop or asyncio",
    "RMQ_EXPORT_STATE": "`rmq worker run`: also serve the Redis-state gauges",
    "RMQ_HEALTH_PORT": "`rmq worker run`: port of /healthz and /readyz",
    "RMQ_LOG_FORMAT": "text or json",
    "RMQ_LOG_LEVEL": "DEBUG, INFO, WARNING, ERROR or CRITICAL",
    "RMQ_METRICS_PORT": "`rmq worker run` / `rmq metrics serve`: port of /metrics",
    "RMQ_PROCESSES": "`rmq worker run`: worker processes",
    "RMQ_TEST_REDIS_URL": "rmq's own tests: a server to run against",
    "RMQ_TEST_SERVER": "rmq's own tests: redis or valkey",
    "RMQ_FAULTS_REPORT": "rmq's fault tests: a file collecting their figures",
}
"""`RMQ_*` variables that are not settings but that rmq reads (the CLI's options, tests)."""


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """One warning per `RMQ_*` variable rmq does not read (a typo), with the nearest known name."""
    env = os.environ if environ is None else environ
    known = {Settings.env_var(f.name) for f in fields(Settings)} | set(OTHER_VARIABLES)
    out = []
    for name in sorted(env):
        if not name.startswith("RMQ_") or name in known:
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        out.append(f"{name} is not an rmq setting and is ignored{hint}")
    return out
