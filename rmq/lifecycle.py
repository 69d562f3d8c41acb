"""A worker process's life around its consumers: startup and shutdown hooks, the state they keep,
and the choice of the consumers to run (`rmq worker run --only`).

`App.run()` (what `rmq worker run` calls, once per worker process) connects and declares the
groups, runs the startup hooks in registration order, consumes until stopped, drains, then runs
the shutdown hooks in reverse order and closes. A startup hook that raises stops the run with
`WorkerStartError` before anything is consumed, and no shutdown hook runs. A shutdown hook that
raises is logged; the others still run, also after a forced stop. Hooks take no arguments and
may be `async def` or plain (a plain one runs on the event loop: keep it short).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import SimpleNamespace

from .consumer.spec import ConsumerSpec
from .errors import ConfigError, WorkerStartError
from .names import validate_group, validate_topic

__all__ = ["Hook", "Hooks", "State", "select_consumers"]

log = logging.getLogger("rmq.app")

Hook = Callable[[], Awaitable[None]] | Callable[[], None]
"""A startup or shutdown hook: a function without arguments, `async def` or plain."""


class State(SimpleNamespace):
    """`app.state`: attributes the startup hooks set (`app.state.db = ...`) and handlers read."""

    def __repr__(self) -> str:
        return f"<rmq.App state {', '.join(sorted(vars(self))) or '(empty)'}>"


class Hooks:
    """The startup and shutdown hooks of one App."""

    def __init__(self) -> None:
        self.startup: list[Hook] = []
        self.shutdown: list[Hook] = []

    def add(self, where: list[Hook], hook: Hook, what: str) -> None:
        """Check `hook` (callable without arguments) and append it to `where`."""
        if not callable(hook):
            raise ConfigError(f"@app.{what} takes a function, got {hook!r}")
        try:
            inspect.signature(hook).bind()
        except TypeError:
            raise ConfigError(f"@app.{what}: {_name(hook)} must take no arguments") from None
        except ValueError:  # no signature to read (a builtin): trust it
            pass
        where.append(hook)

    async def run_startup(self) -> None:
        """Run the startup hooks in order; the first that raises becomes `WorkerStartError`."""
        for hook in self.startup:
            try:
                await _call(hook)
            except Exception as exc:
                reason = " ".join(str(exc).split())
                detail = f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
                raise WorkerStartError(f"startup hook {_name(hook)} failed: {detail}") from exc
            log.debug("startup hook %s done", _name(hook))

    async def run_shutdown(self) -> None:
        """Run every shutdown hook, last registered first; failures are logged."""
        for hook in reversed(self.shutdown):
            try:
                await _call(hook)
            except Exception:
                log.exception("shutdown hook %s failed", _name(hook))


async def _call(hook: Hook) -> None:
    result = hook()
    if inspect.isawaitable(result):
        await result


def _name(hook: Hook) -> str:
    name = getattr(hook, "__qualname__", None)
    return name if isinstance(name, str) else repr(hook)


def select_consumers(specs: Sequence[ConsumerSpec], only: Iterable[str]) -> list[ConsumerSpec]:
    """The consumers of `specs` that `only` names (`"topic"`: every consumer of the topic;
    `"topic/group"`: that one), in registration order.

    Raises `ConfigError` for a malformed name or one that matches no consumer.
    """
    wanted: list[tuple[str, str | None]] = []
    for item in only:
        if not isinstance(item, str):
            raise ConfigError(f"consumers are named 'topic' or 'topic/group', got {item!r}")
        topic, slash, name = item.partition("/")
        validate_topic(topic)
        if slash:
            validate_group(name)
        wanted.append((topic, name if slash else None))
    known = ", ".join(s.name for s in specs) or "none"
    for topic, group in wanted:
        if not any(s.topic == topic and group in (None, s.group) for s in specs):
            name = topic if group is None else f"{topic}/{group}"
            raise ConfigError(f"{name!r} matches no consumer of this app (it has: {known})")
    return [s for s in specs if any(s.topic == t and g in (None, s.group) for t, g in wanted)]
