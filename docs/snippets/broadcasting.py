"""Broadcasting: every instance gets every message (run: python broadcasting.py)."""

from functools import partial

import anyio

import rmq

seen: dict[str, list[str]] = {}


# --8<-- [start:broadcast]
def cache_instance(label: str) -> rmq.App:
    """One instance of a service that keeps a configuration cache (a process, a pod...)."""
    app = rmq.App(app_name="cache")
    seen[label] = []

    @app.consumer("config", group="cache", model="broadcasting")
    async def refresh(msg: rmq.Message) -> None:
        seen[label].append(msg.body["key"])

    return app


# --8<-- [end:broadcast]


async def main() -> None:
    first, second = cache_instance("first"), cache_instance("second")
    async with anyio.create_task_group() as tg:
        await tg.start(partial(first.run, handle_signals=False))
        await tg.start(partial(second.run, handle_signals=False))
        for key in ("timeout", "retries", "region"):
            await first.send("config", {"key": key})
        with anyio.fail_after(20):
            while len(seen["first"]) < 3 or len(seen["second"]) < 3:
                await anyio.sleep(0.05)
        first.stop()
        second.stop()
    assert sorted(seen["first"]) == sorted(seen["second"]) == ["region", "retries", "timeout"]
    print(seen)


if __name__ == "__main__":
    anyio.run(main)
