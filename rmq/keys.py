"""Every Redis key name rmq uses, in one place.

All keys of one queue share the hash tag `{<topic>:<queue>}`, so every script touches one Redis
Cluster slot and the queues of a topic spread over the cluster. No command or script ever names keys
of two queues.

```
<ns>:topics                          hash    topic -> config JSON
<ns>:topic:<topic>:groups            set     groups subscribed to the topic (broadcasting ones too)
<ns>:{<topic>:<q>}:s                 stream  the queue
<ns>:{<topic>:<q>}:dd:<session>      string  a producer session's last chunk on this queue (expires)
<ns>:{<topic>:<q>}:half             zset    transactional half messages: msg_id -> next check ms
<ns>:{<topic>:<q>}:half:p           hash    half messages: msg_id -> packed fields and state
<ns>:{<topic>:<q>}:half:g:<group>   zset    one producer group's half messages: msg_id -> next check
<ns>:{<topic>:<q>}:half:d           hash    resolved half messages: msg_id -> outcome (kept a while)
<ns>:{<topic>:<q>}:half:dx          zset    resolved half messages: msg_id -> ms to forget them
<ns>:{<topic>:<q>}:half:x:<group>   stream  a producer group's discarded transactions (audit)
<ns>:{<topic>:<q>}:delay            zset    delayed messages: msg_id -> due ms
<ns>:{<topic>:<q>}:delay:p          hash    delayed messages: msg_id -> packed fields
<ns>:{<topic>:<q>}:retry:<group>     zset    retries waiting for their backoff: msg_id -> due ms
<ns>:{<topic>:<q>}:retry:<group>:p   hash    retries waiting: msg_id -> packed fields
<ns>:{<topic>:<q>}:rs:<group>        stream  retries due now, read by <group> together with :s
<ns>:{<topic>:<q>}:dlq:<group>       stream  dead letters of <group> on this queue
<ns>:{<topic>:<q>}:inv:<group>       zset    pull consumers: entry id -> invisible-until ms
<ns>:{<topic>:<q>}:lease:<group>     string  orderly consumption lease (holder token, PX ttl)
<ns>:{<topic>:<q>}:bcast:<group>     hash    broadcasting offsets: instance id -> last entry id
<ns>:members:<topic>:<group>         zset    live members of an orderly group: id -> heartbeat ms
<ns>:bslot:<group>:<instance>        string  heartbeat lease of a broadcasting instance id
<ns>:heartbeats:<module:app>         zset    worker processes: <host>:<pid> -> heartbeat ms
<ns>:consumers                       zset    apps consuming now: app name -> heartbeat (server ms)
<ns>:ptopics:<group>                 set     topics a producer group sent transactional messages to
<ns>:wake:<topic>                    channel published when a delayed message or retry is due
                                             sooner than everything scheduled before it
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

    def members(self, topic: str, group: str) -> str:
        """Live members of an orderly group (heartbeats), a key of its own."""
        return f"{self.ns}:members:{topic}:{group}"

    def broadcast_slot(self, group: str, instance: str) -> str:
        """Heartbeat lease of a broadcasting instance id."""
        return f"{self.ns}:bslot:{group}:{instance}"

    def heartbeats(self, app_id: str) -> str:
        """Worker processes of one app (`module:attr`): `<host>:<pid>` -> heartbeat ms."""
        return f"{self.ns}:heartbeats:{app_id}"

    @property
    def live_consumers(self) -> str:
        """Apps that consume now (their consumer names start with the app's name)."""
        return f"{self.ns}:consumers"

    def producer_topics(self, group: str) -> str:
        """Topics that producer group `group` sent transactional messages to (check-back scans)."""
        return f"{self.ns}:ptopics:{group}"

    def wake(self, topic: str) -> str:
        """Pub/sub channel that wakes the topic's promoters early."""
        return f"{self.ns}:wake:{topic}"

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

    @property
    def half(self) -> str:
        return f"{self.prefix}:half"

    @property
    def half_payload(self) -> str:
        return f"{self.prefix}:half:p"

    def half_group(self, group: str) -> str:
        """One producer group's half messages here, by next check time (what its checkers claim)."""
        return f"{self.prefix}:half:g:{group}"

    @property
    def half_done(self) -> str:
        """Outcomes of resolved half messages ("c <entry id> <due>" or "r"), kept a while."""
        return f"{self.prefix}:half:d"

    @property
    def half_done_expiry(self) -> str:
        """When each outcome in `half_done` is forgotten (epoch ms)."""
        return f"{self.prefix}:half:dx"

    def half_discarded(self, group: str) -> str:
        """A producer group's half messages rolled back after `transaction_max_checks` checks."""
        return f"{self.prefix}:half:x:{group}"

    @property
    def delay(self) -> str:
        return f"{self.prefix}:delay"

    @property
    def delay_payload(self) -> str:
        return f"{self.prefix}:delay:p"

    def retry(self, group: str) -> str:
        return f"{self.prefix}:retry:{group}"

    def retry_payload(self, group: str) -> str:
        return f"{self.prefix}:retry:{group}:p"

    def retry_stream(self, group: str) -> str:
        return f"{self.prefix}:rs:{group}"

    def lease(self, group: str) -> str:
        return f"{self.prefix}:lease:{group}"

    def broadcast_offsets(self, group: str) -> str:
        return f"{self.prefix}:bcast:{group}"

    def invisible(self, group: str) -> str:
        return f"{self.prefix}:inv:{group}"

    def all_for_group(self, group: str) -> list[str]:
        """Every key this queue uses for `group` (plus the stream); used by the slot test."""
        return [
            self.stream, self.dedup("session"), self.dlq(group), self.invisible(group),
            self.delay, self.delay_payload, self.retry(group), self.retry_payload(group),
            self.retry_stream(group), self.lease(group), self.broadcast_offsets(group),
        ]  # fmt: skip
