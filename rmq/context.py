"""What producers and consumers share while an App is open."""

from __future__ import annotations

from dataclasses import dataclass

from .calls import ScriptCalls
from .connection import RedisConnection
from .keys import NamespaceKeys
from .settings import Settings
from .topics import Topics

__all__ = ["Context"]


@dataclass(frozen=True, slots=True)
class Context:
    """Settings, the Redis connection, key names, script calls and the topic registry of one
    open App."""

    settings: Settings
    conn: RedisConnection
    keys: NamespaceKeys
    topics: Topics
    calls: ScriptCalls

    @classmethod
    def create(cls, settings: Settings, client_name: str = "rmq") -> Context:
        conn = RedisConnection(settings, client_name)
        keys = NamespaceKeys(settings.namespace)
        return cls(settings, conn, keys, Topics(conn, keys), ScriptCalls(conn, keys, settings))
