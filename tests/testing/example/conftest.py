"""The project's root conftest: rmq.testing's fixtures, and the service's App bound to them."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import shop

import rmq

pytest_plugins = ["rmq.testing"]


@pytest.fixture
def shop_app(rmq_bind: Callable[[rmq.App], rmq.App]) -> rmq.App:
    shop.ledger.clear()
    shop.mailed.clear()
    return rmq_bind(shop.app)
