"""Before: a Dramatiq actor on a Redis broker (syntax-checked by the tests, not run)."""

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from shop import mailer

dramatiq.set_broker(RedisBroker(url="redis://localhost:6379/0"))


@dramatiq.actor(queue_name="receipts", max_retries=5, min_backoff=1_000, max_backoff=300_000)
def send_receipt(order_id: int, email: str) -> None:
    mailer.send(email, f"receipt for order {order_id}")


send_receipt.send(42, "ada@example.com")
send_receipt.send_with_options(args=(43, "alan@example.com"), delay=30_000)  # milliseconds
# run the workers: dramatiq shop --processes 2 --threads 8
