"""workers/payments.py, the distributed-transaction example, runs end to end as documented."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import redis

from workers.payments import make_order

ROOT = Path(__file__).resolve().parent.parent


def test_the_payments_scenario_settles_every_order(redis_url: str) -> None:
    orders = 60
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RMQ_", "PAYMENTS_"))},
        "RMQ_REDIS_URL": redis_url,
        "RMQ_TRANSACTION_CHECK_IMMUNITY": "1",
        "PAYMENTS_ORDERS": str(orders),
    }
    done = subprocess.run(
        [sys.executable, "-m", "workers.payments"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    all_orders = [make_order(n) for n in range(1, orders + 1)]
    placed = [o for o in all_orders if not (o["out_of_stock"] or o["lost_before_commit"])]
    assert len(placed) == 50
    out = done.stdout
    assert "UNKNOWN (left to the check-back)" in out
    assert f"payment service: {len(placed)} orders charged, no payment without an order" in out
    assert "worker drained and exited with code 0" in out
    client = redis.Redis.from_url(redis_url)
    assert client.keys("payments-*") == [], "the demo deletes its keys"
    client.close()
