"""Wrong argument types and values at the public API raise rmq errors (never a TypeError from deep
inside), and nothing is written."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import rmq

Call = Callable[[rmq.App], Awaitable[Any]]


async def _pull(app: rmq.App, **kwargs: Any) -> Any:
    async with app.pull_consumer("t", "g") as pc:
        return await pc.receive(**kwargs)


CASES: dict[str, Call] = {
    "topic int": lambda a: a.send(123, "x"),  # type: ignore[arg-type]
    "topic None": lambda a: a.send(None, "x"),  # type: ignore[arg-type]
    "tag int": lambda a: a.send("t", "x", tag=5),  # type: ignore[arg-type]
    "keys of ints": lambda a: a.send("t", "x", keys=[1, 2]),  # type: ignore[list-item]
    "properties a list": lambda a: a.send("t", "x", properties=[("a", "b")]),  # type: ignore[arg-type]
    "property value int": lambda a: a.send("t", "x", properties={"a": 1}),  # type: ignore[dict-item]
    "delay a str": lambda a: a.send("t", "x", delay="5"),  # type: ignore[arg-type]
    "deliver_at a str": lambda a: a.send("t", "x", deliver_at="2030"),  # type: ignore[arg-type]
    "delay_level a str": lambda a: a.send("t", "x", delay_level="3"),  # type: ignore[arg-type]
    "sharding_key int": lambda a: a.send("t", "x", sharding_key=5),  # type: ignore[arg-type]
    "selector not callable": lambda a: a.send("t", "x", selector=5),  # type: ignore[arg-type]
    "batch of a str": lambda a: a.send_batch("t", "abc"),
    "batch of an int": lambda a: a.send_batch("t", 5),  # type: ignore[arg-type]
    "body not JSON-able": lambda a: a.send("t", object()),
    "body NaN": lambda a: a.send("t", {"x": float("nan")}),
    "group int": lambda a: a.dead_letters("t", 5).count(),  # type: ignore[arg-type]
    "cancel_delayed id int": lambda a: a.cancel_delayed("t", 5),  # type: ignore[arg-type]
    "receive max a str": lambda a: _pull(a, max_messages="3"),
    "receive invisible a str": lambda a: _pull(a, invisible="30"),
    "receive wait negative": lambda a: _pull(a, wait=-1),
}


@pytest.mark.parametrize("name", sorted(CASES))
async def test_wrong_arguments_raise_rmq_errors(opened: rmq.App, name: str) -> None:
    with pytest.raises(rmq.RMQError):
        await CASES[name](opened)
    sent = await opened.admin.messages("t", count=10) if await topic_exists(opened) else []
    assert sent == []


async def topic_exists(app: rmq.App) -> bool:
    return any(t.name == "t" for t in await app.admin.topics())
