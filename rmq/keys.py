"""Every Redis key name rmq uses, in one place.

All keys of one queue share the hash tag `{<topic>:<queue>}`, so every script touches one Redis
Cluster slot and the queues of a topic spread over the cluster. No command or script ever names keys
of two queues.

```
<ns>:topics                          hash    topic -> config JSON
<ns>:topic:<topic>:groups            set     consumer groups subscribed to the topic
<ns>:{<topic>:<q>}:s                 stream  the queue
<ns>:{<topic>:<q>}:dd:<session>      string  a producer session's last chunk on this queue (expires)
<ns>:{<topic>:<q>}:dlq:<group>       stream  dead letters of <group> on this queue
<ns>:{<topic>:<q>}:inv:<group>       zset    pull consumers: entry id -> invisible-until ms
```
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NamespaceKeys", "QueueKeys"]


@dataclass(frozen=True, slots=True)
class NamespaceKeys:
    """Keys that are not bound to a queue (single-key commands only)."""

    ns: str

    @property
    def topics(self) -> str:
        return f"{self.ns}:topics"

    def topic_groups(self, topic: str) -> str:
        return f"{self.ns}:topic:{topic}:groups"

    def queue(self, topic: str, queue_id: int) -> QueueKeys:
        return QueueKeys(self.ns, topic, queue_id)


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """Keys of one queue; they all hash to the same cluster slot."""

    ns: str
    topic: str
    queue_id: int

    @property
    def tag(self) -> str:
        return f"{{{self.topic}:{self.queue_id}}}"

    @property
    def prefix(self) -> str:
        return f"{self.ns}:{self.tag}"

    @property
    def stream(self) -> str:
        return f"{self.prefix}:s"

    def dedup(self, session: str) -> str:
        return f"{self.prefix}:dd:{session}"

    def dlq(self, group: str) -> str:
        return f"{self.prefix}:dlq:{group}"

    def invisible(self, group: str) -> str:
        return f"{self.prefix}:inv:{group}"

    def all_for_group(self, group: str) -> list[str]:
        """Every key this queue uses for `group` (plus the stream); used by the slot test."""
        return [self.stream, self.dedup("session"), self.dlq(group), self.invisible(group)]
