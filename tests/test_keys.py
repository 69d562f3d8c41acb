"""Key layout: every key of one queue lives in one Redis Cluster slot; queues spread over slots."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from rmq.keys import NamespaceKeys, QueueKeys

NAME_CHARS = string.ascii_letters + string.digits + "_-"
topics = st.text(alphabet=NAME_CHARS, min_size=1, max_size=127)
groups = st.text(alphabet=NAME_CHARS, min_size=1, max_size=120)
namespaces = st.text(alphabet=NAME_CHARS, min_size=1, max_size=64)
queue_ids = st.integers(min_value=0, max_value=1023)


def slot(key: str) -> int:
    return key_slot(key.encode())


def test_layout() -> None:
    ns = NamespaceKeys("rmq")
    assert ns.topics == "rmq:topics"
    assert ns.topic_groups("orders") == "rmq:topic:orders:groups"
    q = ns.queue("orders", 3)
    assert q == QueueKeys("rmq", "orders", 3)
    assert q.tag == "{orders:3}"
    assert q.prefix == "rmq:{orders:3}"
    assert q.stream == "rmq:{orders:3}:s"
    assert q.dedup("1a2b-c3") == "rmq:{orders:3}:dd:1a2b-c3"
    assert q.dlq("billing") == "rmq:{orders:3}:dlq:billing"
    assert q.invisible("billing") == "rmq:{orders:3}:inv:billing"
    assert q.delay == "rmq:{orders:3}:delay"
    assert q.delay_payload == "rmq:{orders:3}:delay:p"
    assert q.retry("billing") == "rmq:{orders:3}:retry:billing"
    assert q.retry_payload("billing") == "rmq:{orders:3}:retry:billing:p"
    assert q.retry_stream("billing") == "rmq:{orders:3}:rs:billing"
    assert ns.wake("orders") == "rmq:wake:orders"
    assert q.all_for_group("billing") == [
        q.stream,
        q.dedup("session"),
        q.dlq("billing"),
        q.invisible("billing"),
        q.delay,
        q.delay_payload,
        q.retry("billing"),
        q.retry_payload("billing"),
        q.retry_stream("billing"),
        q.lease("billing"),
        q.broadcast_offsets("billing"),
    ]


def test_keys_of_one_queue_are_distinct() -> None:
    q = NamespaceKeys("ns").queue("t", 0)
    keys = [q.stream, q.dedup("a"), q.dedup("b"), q.dlq("g"), q.invisible("g"), q.dlq("h")]
    assert len(set(keys)) == len(keys)


@settings(deadline=None)
@given(namespaces, topics, queue_ids, groups, st.integers(min_value=-1, max_value=2**40))
def test_every_key_of_a_queue_is_in_one_slot(
    ns: str, topic: str, queue_id: int, group: str, bucket: int
) -> None:
    q = NamespaceKeys(ns).queue(topic, queue_id)
    expected = slot(q.tag[1:-1])  # the hash tag's content decides the slot
    keys = [
        q.stream,
        q.dedup(str(bucket)),
        q.dedup(f"{bucket:x}-session"),
        q.dlq(group),
        q.invisible(group),
        *q.all_for_group(group),
    ]
    assert {slot(k) for k in keys} == {expected}


@settings(deadline=None)
@given(topics, queue_ids, namespaces, namespaces)
def test_slot_does_not_depend_on_namespace(topic: str, queue_id: int, ns1: str, ns2: str) -> None:
    """The namespace is outside the hash tag: the same queue of two namespaces shares a slot."""
    a = NamespaceKeys(ns1).queue(topic, queue_id)
    b = NamespaceKeys(ns2).queue(topic, queue_id)
    assert slot(a.stream) == slot(b.stream)


@settings(deadline=None)
@given(namespaces, topics)
def test_queues_of_a_topic_spread_over_slots(ns: str, topic: str) -> None:
    keys = NamespaceKeys(ns)
    slots = [slot(keys.queue(topic, q).stream) for q in range(8)]
    # CRC16 is not a perfect hash: allow one collision among 8 queues (p(2+) ~ 1e-6)
    assert len(set(slots)) >= 7


def test_queues_of_common_topics_have_distinct_slots() -> None:
    keys = NamespaceKeys("rmq")
    for topic in ("orders", "payments", "events", "TopicTest", "user-signup", "a"):
        slots = {slot(keys.queue(topic, q).stream) for q in range(16)}
        assert len(slots) >= 15, topic


def test_namespace_keys_without_tag_are_single_key_only() -> None:
    """Namespace-level keys carry no queue tag (they are only used by single-key commands)."""
    keys = NamespaceKeys("rmq")
    assert "{" not in keys.topics
    assert "{" not in keys.topic_groups("orders")
