"""rmq.testing: test your handlers against a real Redis, with one import.

```python
# conftest.py (the root one)
pytest_plugins = ["rmq.testing"]

# test_billing.py
import pytest
from myservice.worker import app     # your App, with its @app.consumer handlers

@pytest.mark.anyio
async def test_an_order_is_billed(rmq_bind, rmq_run_until_idle):
    rmq_bind(app)                    # the test server, a fresh namespace
    async with app:
        await app.send("orders", {"id": 1})
    stats = await rmq_run_until_idle(app)
    assert stats["orders/billing"].handled == 1
```

Without pytest: `with rmq.testing.server() as srv:` starts a server; `rmq.testing.settings(srv.url)`
gives settings on a fresh namespace; `await rmq.testing.run_until_idle(app)` runs an app's consumers
until they have nothing left to do, then drains. The plugin is opt-in (not a `pytest11` entry
point): installing rmq adds no fixtures to a project that does not ask for them.

PYTEST_DONT_REWRITE: nothing here needs assertion rewriting, and a conftest may import this module
before pytest loads it as a plugin.
"""

from ..embedded import EmbeddedServer
from .harness import TEST_SETTINGS, bind, delete_namespace, new_namespace, server, settings
from .idle import Backlog, RunUntilIdle, backlog, run_until_idle, wait_until_idle

pytest_plugins = ["rmq.testing.fixtures"]
"""Read by pytest when it loads this module as a plugin: the fixtures come with it."""

__all__ = [
    "Backlog",
    "EmbeddedServer",
    "RunUntilIdle",
    "TEST_SETTINGS",
    "backlog",
    "bind",
    "delete_namespace",
    "new_namespace",
    "run_until_idle",
    "server",
    "settings",
    "wait_until_idle",
]
