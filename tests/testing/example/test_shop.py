"""The user's tests: handlers run against a real server, until the consumers have nothing to do."""

from __future__ import annotations

import pytest
import shop

import rmq
from rmq.testing import RunUntilIdle

pytestmark = pytest.mark.anyio


async def test_orders_are_billed_then_mailed(
    shop_app: rmq.App, rmq_run_until_idle: RunUntilIdle
) -> None:
    async with shop_app:
        for n in range(20):
            await shop_app.send("orders", {"id": n, "amount": 10 * n})

    stats = await rmq_run_until_idle(shop_app)

    assert shop.ledger == {n: 10 * n for n in range(20)}
    assert sorted(shop.mailed) == list(range(20))  # the receipts sent by `bill` were consumed too
    assert stats["orders/billing"].handled == 20
    assert stats["receipts/mailer"].handled == 20


async def test_a_flaky_payment_is_retried(
    shop_app: rmq.App, rmq_run_until_idle: RunUntilIdle
) -> None:
    async with shop_app:
        await shop_app.send("orders", {"id": 7, "amount": 70, "flaky": True})

    stats = await rmq_run_until_idle(shop_app)  # waits out the two retries' backoff

    assert shop.ledger == {7: 70}
    assert stats["orders/billing"].retried == 2


async def test_a_negative_amount_is_dead_lettered(
    shop_app: rmq.App, rmq_run_until_idle: RunUntilIdle
) -> None:
    async with shop_app:
        await shop_app.send("orders", {"id": 1, "amount": -5})

    stats = await rmq_run_until_idle(shop_app)

    assert stats["orders/billing"].dead_lettered == 1
    assert shop.ledger == {} and shop.mailed == []
    async with shop_app:
        (letter,) = await shop_app.dead_letters("orders", "billing").everything()
    assert letter.reason == "rejected" and letter.error == "negative amount"
    assert letter.message is not None
    assert letter.message.body == {"id": 1, "amount": -5}


async def test_a_handler_written_in_the_test(
    rmq_app: rmq.App, rmq_run_until_idle: RunUntilIdle
) -> None:
    seen: list[str] = []

    @rmq_app.consumer("pings", group="echo")
    async def echo(msg: rmq.Message) -> None:
        seen.append(msg.body)

    async with rmq_app:
        await rmq_app.send("pings", "hello")
    await rmq_run_until_idle()  # rmq_app by default

    assert seen == ["hello"]


def test_each_test_gets_its_own_namespace(rmq_settings: rmq.Settings, rmq_namespace: str) -> None:
    assert rmq_settings.namespace == rmq_namespace
