"""`rmq.sync.PullConsumer`: `rmq.PullConsumer` (RocketMQ 5's SimpleConsumer), blocking."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..consumer.pull import PullConsumer as AsyncPullConsumer
from ..errors import ConsumerError
from ..message import Message

if TYPE_CHECKING:
    from .app import App, Opened

__all__ = ["PullConsumer"]


class PullConsumer:
    """Use as `with client.pull_consumer(topic, group) as pc:`; each call blocks until done.

    One pull consumer is meant for one thread at a time (as a RocketMQ SimpleConsumer is); make
    one per thread to receive from several threads.
    """

    def __init__(self, client: App, topic: str, group: str, **options: Any) -> None:
        self._client = client
        self.topic = topic
        self.group = group
        self._options = options
        self._pc: AsyncPullConsumer | None = None
        self._state: Opened | None = None

    def _open(self) -> tuple[Opened, AsyncPullConsumer]:
        if self._pc is None or self._state is None:
            raise ConsumerError("use the pull consumer inside `with client.pull_consumer(...)`")
        return self._state, self._pc

    def __enter__(self) -> PullConsumer:
        state = self._client._opened()

        async def enter() -> AsyncPullConsumer:
            pc = state.app.pull_consumer(self.topic, self.group, **self._options)
            return await pc.__aenter__()

        self._pc, self._state = state.runner.run(enter), state
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        state, pc = self._open()
        self._pc = None
        state.runner.run(lambda: pc.__aexit__(et, e, tb))

    def receive(
        self, max_messages: int = 32, invisible: float = 30.0, wait: float = 0.0
    ) -> list[Message]:
        """Receive up to `max_messages`, hidden from the group for `invisible` seconds; with
        `wait` > 0, block up to that long when nothing is available."""
        state, pc = self._open()
        return state.runner.run(lambda: pc.receive(max_messages, invisible, wait))

    def ack(self, *messages: Message) -> int:
        """Acknowledge messages; returns how many were still pending."""
        state, pc = self._open()
        return state.runner.run(lambda: pc.ack(*messages))

    def change_invisible_duration(self, message: Message, invisible: float) -> bool:
        """Hide `message` for `invisible` more seconds; False when it is no longer ours."""
        state, pc = self._open()
        return state.runner.run(lambda: pc.change_invisible_duration(message, invisible))

    def nack(self, message: Message, delay: float = 0.0) -> bool:
        """Give `message` back: delivered again after `delay` seconds."""
        state, pc = self._open()
        return state.runner.run(lambda: pc.nack(message, delay))
