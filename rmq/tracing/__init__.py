"""rmq.tracing: OpenTelemetry spans for sends, handler calls, pull receives and transactions.

```python
from opentelemetry.sdk.trace import TracerProvider   # your provider, exporters, sampler
import rmq.tracing

rmq.tracing.instrument(TracerProvider(...))  # or instrument(): the global tracer provider
```

Off by default, and free when off: until `instrument()` is called, rmq imports nothing of
OpenTelemetry and its hot paths test one hook for None (`rmq.tracing.hooks`). Turn it on before
the app runs (a worker does it in an `@app.on_startup` hook, or at import): consumers started
before keep running untraced. Needs the `otel` extra (`pip install 'rmq-streams[otel]'`,
which brings `opentelemetry-api`; the SDK and exporters are yours to choose). What the spans
hold: `rmq.tracing.otel`.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from . import hooks

__all__ = ["instrument", "instrumented", "uninstrument"]


def instrument(tracer_provider: Any = None) -> None:
    """Trace every App (and `rmq.sync` client) of this process with `tracer_provider`'s tracer
    (default: OpenTelemetry's global provider). Calling it again switches providers."""
    try:
        from .otel import Tracing
    except ImportError as exc:
        raise ConfigError(
            f"tracing needs OpenTelemetry: pip install 'rmq-streams[otel]' ({exc})"
        ) from exc
    tracing = Tracing(tracer_provider)
    hooks.on_handling = tracing.on_handling
    hooks.on_receive = tracing.on_receive
    hooks.on_transaction = tracing.on_transaction
    hooks.on_send = tracing.on_send


def uninstrument() -> None:
    """Stop tracing new sends, receives and transactions (and consumers started from now on)."""
    hooks.on_send = None
    hooks.on_handling = None
    hooks.on_receive = None
    hooks.on_transaction = None


def instrumented() -> bool:
    """Whether `instrument()` is in force."""
    return hooks.installed()
