"""Before: a Celery task on a Redis broker (syntax-checked by the tests, not run)."""

from celery import Celery
from shop import mailer

app = Celery("shop", broker="redis://localhost:6379/0")


@app.task(autoretry_for=(ConnectionError,), retry_backoff=True, max_retries=5, acks_late=True)
def send_receipt(order_id: int, email: str) -> None:
    mailer.send(email, f"receipt for order {order_id}")


send_receipt.delay(42, "ada@example.com")
send_receipt.apply_async(args=(43, "alan@example.com"), countdown=30)
# run the workers: celery -A shop worker --concurrency 8
