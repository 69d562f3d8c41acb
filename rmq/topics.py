"""Topic metadata: how many queues a topic has and its retention overrides. Kept in the hash
`<ns>:topics` as JSON: `{"queues": 8, "created_ms": ..., "retention": 259200.0}` (the retention
fields only when set; older configs without them read as "use the settings")."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from dataclasses import dataclass
from functools import partial

import orjson

from .connection import RedisConnection
from .errors import ConfigError, TopicNotFound
from .keys import NamespaceKeys
from .names import validate_topic
from .streams import call

__all__ = ["TopicInfo", "Topics"]

MAX_QUEUES = 1024
_REFRESH_SECONDS = 30.0
_CHUNK = 1000


RETENTION_FIELDS = ("retention", "retention_max_len", "retention_max_age", "dlq_retention")
"""The per-topic overrides of the settings of the same names (None = use the setting)."""


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """A topic, its number of queues (streams) and its retention overrides."""

    name: str
    queues: int
    created_ms: int
    retention: float | None = None
    """Seconds acknowledged entries are kept; None = the `retention` setting."""
    retention_max_len: int | None = None
    """Hard cap on entries per queue; None = the setting, 0 = no cap for this topic."""
    retention_max_age: float | None = None
    """Hard cap on entry age in seconds; None = the setting, 0 = no cap for this topic."""
    dlq_retention: float | None = None
    """Seconds dead letters are kept; None = the setting, 0 = kept until purged."""

    def __post_init__(self) -> None:
        for name in RETENTION_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            ok = isinstance(value, int | float) and math.isfinite(value) and value >= 0
            if name == "retention_max_len":
                ok = ok and isinstance(value, int)
            if not ok:
                raise ConfigError(f"{name} of topic {self.name!r} must be >= 0, got {value!r}")

    def to_json(self) -> bytes:
        data: dict[str, object] = {"queues": self.queues, "created_ms": self.created_ms}
        for name in RETENTION_FIELDS:
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        return orjson.dumps(data)

    @classmethod
    def from_json(cls, name: str, raw: bytes | str) -> TopicInfo:
        data = orjson.loads(raw)
        max_len = data.get("retention_max_len")
        return cls(
            name,
            int(data["queues"]),
            int(data.get("created_ms", 0)),
            retention=_float_or_none(data.get("retention")),
            retention_max_len=None if max_len is None else int(max_len),
            retention_max_age=_float_or_none(data.get("retention_max_age")),
            dlq_retention=_float_or_none(data.get("dlq_retention")),
        )

    def replace(self, **changes: object) -> TopicInfo:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _float_or_none(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


class Topics:
    """Reads, creates and caches topic metadata."""

    def __init__(self, conn: RedisConnection, keys: NamespaceKeys) -> None:
        self._conn = conn
        self._keys = keys
        self._cache: dict[str, tuple[TopicInfo, float]] = {}
        self._lookups: dict[str, asyncio.Future[TopicInfo]] = {}

    def cached(self, topic: str) -> TopicInfo | None:
        """The cached metadata of `topic` (possibly stale), without a round trip."""
        hit = self._cache.get(topic)
        return hit[0] if hit else None

    async def get(self, topic: str) -> TopicInfo | None:
        """Current metadata of `topic`, or None if it does not exist."""
        raw = await self._conn.commands.hget(self._keys.topics, topic)
        if raw is None:
            self._cache.pop(topic, None)
            return None
        info = TopicInfo.from_json(topic, raw)
        self._cache[topic] = (info, time.monotonic())
        return info

    async def ensure(self, topic: str) -> TopicInfo:
        """Metadata of `topic`, creating it with the default queue count unless `strict_topics`.

        Cached; concurrent callers share one lookup.
        """
        hit = self._cache.get(topic)
        if hit is not None and time.monotonic() - hit[1] < _REFRESH_SECONDS:
            return hit[0]
        lookup = self._lookups.get(topic)
        if lookup is None:
            lookup = asyncio.ensure_future(self._lookup(topic))
            self._lookups[topic] = lookup
            lookup.add_done_callback(partial(self._lookup_done, topic))
        if hit is not None and not lookup.done():
            return hit[0]  # stale but usable while the refresh runs
        return await asyncio.shield(lookup)

    def _lookup_done(self, topic: str, lookup: asyncio.Future[TopicInfo]) -> None:
        self._lookups.pop(topic, None)
        if not lookup.cancelled():
            lookup.exception()  # retrieved: a failed background refresh is not an error to log

    async def _lookup(self, topic: str) -> TopicInfo:
        """Read (or create) the topic, retrying a Redis that is briefly away within
        `send_timeout`, as a send would (both steps are safe to repeat)."""
        validate_topic(topic)
        settings = self._conn.settings
        deadline = time.monotonic() + settings.send_timeout
        what = f"looking up topic {topic!r}"
        info = await self._conn.retry(partial(self.get, topic), deadline=deadline, what=what)
        if info is not None:
            return info
        if settings.strict_topics:
            raise TopicNotFound(
                f"topic {topic!r} does not exist and strict_topics is on; "
                f"create it first (rmq topic create {topic})"
            )
        create = partial(self.create, topic, settings.default_queues)
        return await self._conn.retry(create, deadline=deadline, what=f"creating topic {topic!r}")

    async def ensure_many(self, topics: list[str]) -> dict[str, TopicInfo]:
        """`ensure` for many topics in a few round trips (one HMGET per chunk, the missing ones
        created together)."""
        out: dict[str, TopicInfo] = {}
        now = time.monotonic()
        wanted = []
        for topic in dict.fromkeys(topics):
            hit = self._cache.get(topic)
            if hit is not None and now - hit[1] < _REFRESH_SECONDS:
                out[topic] = hit[0]
            else:
                wanted.append(validate_topic(topic))
        missing = await self._read_many(wanted, out)
        if missing:
            if self._conn.settings.strict_topics:
                raise TopicNotFound(
                    f"topic {missing[0]!r} does not exist and strict_topics is on; "
                    f"create it first (rmq topic create {missing[0]})"
                )
            created_ms = int(time.time() * 1000)
            default = self._conn.settings.default_queues
            for start in range(0, len(missing), _CHUNK):
                pipe = self._conn.commands.pipeline(transaction=False)
                for topic in missing[start : start + _CHUNK]:
                    info = TopicInfo(topic, default, created_ms)
                    pipe.hsetnx(self._keys.topics, topic, info.to_json())
                await pipe.execute()
            still = await self._read_many(missing, out)
            if still:  # deleted between the two calls: one by one
                for topic in still:
                    out[topic] = await self.ensure(topic)
        return out

    async def _read_many(self, topics: list[str], out: dict[str, TopicInfo]) -> list[str]:
        """Read `topics` into `out` (and the cache); return the ones that do not exist."""
        missing: list[str] = []
        now = time.monotonic()
        for start in range(0, len(topics), _CHUNK):
            chunk = topics[start : start + _CHUNK]
            raws = await self._conn.commands.hmget(self._keys.topics, chunk)
            for topic, raw in zip(chunk, raws, strict=True):
                if raw is None:
                    missing.append(topic)
                    continue
                info = TopicInfo.from_json(topic, raw)
                self._cache[topic] = (info, now)
                out[topic] = info
        return missing

    async def create(self, topic: str, queues: int, **retention: float | None) -> TopicInfo:
        """Create `topic` with `queues` queues unless it exists; return the stored metadata.

        `retention`, `retention_max_len`, `retention_max_age` and `dlq_retention` override the
        settings for this topic. An existing topic keeps its queue count and retention (compare
        the result).
        """
        validate_topic(topic)
        if not 1 <= queues <= MAX_QUEUES:
            raise ConfigError(f"a topic has 1..{MAX_QUEUES} queues, got {queues}")
        info = TopicInfo(topic, queues, int(time.time() * 1000)).replace(**retention)
        await self._conn.commands.hsetnx(self._keys.topics, topic, info.to_json())
        stored = await self.get(topic)
        if stored is None:  # deleted between the two calls
            return await self.create(topic, queues, **retention)
        return stored

    async def update(self, topic: str, **retention: float | None) -> TopicInfo:
        """Change the retention overrides of an existing topic (None: back to the setting)."""
        unknown = set(retention) - set(RETENTION_FIELDS)
        if unknown:
            raise ConfigError(f"not a topic setting: {', '.join(sorted(unknown))}")
        info = await self.get(validate_topic(topic))
        if info is None:
            raise TopicNotFound(f"topic {topic!r} does not exist (rmq topic list shows them)")
        updated = info.replace(**retention)
        await self._conn.commands.hset(self._keys.topics, topic, updated.to_json())
        self._cache[topic] = (updated, time.monotonic())
        return updated

    async def list(self) -> list[TopicInfo]:
        """All topics of the namespace, sorted by name."""
        raw: dict[bytes, bytes] = await call(self._conn.commands, "HGETALL", self._keys.topics)
        infos = [TopicInfo.from_json(k.decode(), v) for k, v in raw.items()]
        return sorted(infos, key=lambda i: i.name)
