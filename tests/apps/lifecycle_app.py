"""A worker app with startup and shutdown hooks and three consumers, for the lifecycle and
runner-flag tests (`rmq worker run tests.apps.lifecycle_app:app`, or `:create_app --factory`).

Configured by environment variables:

- `LIFECYCLE_OUT`: a file every hook and handler appends one line to (`startup <pid>`,
  `shutdown <pid>`, `<topic>/<group> <msg_id> <pid>`), one unbuffered `os.write` each;
- `LIFECYCLE_FAIL=1`: the startup hook raises (the database is down).
"""

from __future__ import annotations

import os

import rmq

OUT = os.environ.get("LIFECYCLE_OUT", "")
CONSUMERS = [("jobs", "a"), ("jobs", "b"), ("other", "c")]


def record(line: str) -> None:
    if OUT:
        fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{line}\n".encode())
        finally:
            os.close(fd)


class Database:
    """Stands in for a connection pool: opened once per process, used by every handler."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.closed = False

    def write(self, what: str) -> None:
        assert not self.closed, "the database was closed before a handler ran"
        record(f"{what} {self.pid}")


def create_app() -> rmq.App:
    """The App, built by a function (`rmq worker run --factory ...:create_app`)."""
    app = rmq.App()

    @app.on_startup
    async def open_database() -> None:
        if os.environ.get("LIFECYCLE_FAIL") == "1":
            raise RuntimeError("database down")
        app.state.db = Database()
        record(f"startup {os.getpid()}")

    @app.on_shutdown
    def close_database() -> None:
        app.state.db.closed = True
        record(f"shutdown {os.getpid()}")

    for topic, group in CONSUMERS:

        @app.consumer(topic, group=group, start="first")
        async def handle(msg: rmq.Message) -> None:
            db: Database = app.state.db
            db.write(f"{msg.topic}/{msg.group} {msg.msg_id}")

    return app


app = create_app()
