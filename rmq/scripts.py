"""The Lua scripts under `rmq/lua/`: loaded once, called by EVALSHA, reloaded after NOSCRIPT.

Each `.lua` file is one atomic state change; its header lists every KEY, ARGV and the return value.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from importlib import resources
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, ResponseError

from .errors import ScriptError
from .streams import Client, call

__all__ = ["SCRIPT_NAMES", "Script", "Scripts", "script_error"]

_CLUSTER_AT_ONCE = 8
"""Commands a cluster "pipeline" sends at once (each takes a pooled connection of its node)."""

SCRIPT_NAMES = (
    "bcast_commit",
    "cancel_delayed",
    "check_claim",
    "claim_slot",
    "commit",
    "dead_letter",
    "declare_group",
    "dlq_replay",
    "drop_consumer",
    "fenced_ack",
    "find_entries",
    "half_list",
    "heartbeat",
    "lease",
    "mark_sent",
    "prepare",
    "promote",
    "pull_ack",
    "pull_change_invisible",
    "pull_receive",
    "reap_consumers",
    "reset_offset",
    "retry",
    "rollback",
    "schedule",
    "send",
    "set_idle",
    "trim",
)


@dataclass(frozen=True, slots=True)
class Script:
    """One Lua script and its SHA1."""

    name: str
    source: str
    sha: str

    def evalsha_args(self, keys: Sequence[str], args: Sequence[Any]) -> tuple[Any, ...]:
        """The arguments of an EVALSHA command for this script (for pipelines)."""
        return ("EVALSHA", self.sha, len(keys), *keys, *args)


def _load(name: str) -> Script:
    source = (resources.files("rmq") / "lua" / f"{name}.lua").read_text(encoding="utf-8")
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())


class Scripts:
    """All scripts, by name, with helpers that survive a server that forgot them (NOSCRIPT)."""

    def __init__(self) -> None:
        self._by_name = {name: _load(name) for name in SCRIPT_NAMES}

    def __getitem__(self, name: str) -> Script:
        return self._by_name[name]

    def __iter__(self) -> Any:
        return iter(self._by_name.values())

    async def load_all(self, client: Client) -> None:
        """SCRIPT LOAD every script (after connecting, and after a NOSCRIPT); a cluster client
        loads them on every primary."""
        if isinstance(client, RedisCluster):
            for script in self._by_name.values():
                await client.script_load(script.source)
            return
        pipe = client.pipeline(transaction=False)
        for script in self._by_name.values():
            pipe.execute_command("SCRIPT LOAD", script.source)
        await pipe.execute()

    async def call(
        self, client: Client, name: str, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        """Run script `name` on `client` (the script tests use this; rmq itself builds its calls
        in `rmq.calls`). A script's own error reply raises `ScriptError`."""
        (reply,) = await self.pipeline(client, [self._by_name[name].evalsha_args(keys, args)])
        if isinstance(reply, BaseException):
            raise script_error(name, reply)
        return reply

    async def pipeline(self, client: Client, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Run `commands` in one pipeline (one round trip). Results may be exceptions.

        Commands that failed with NOSCRIPT are re-run once after loading the scripts.
        """
        if isinstance(client, RedisCluster):
            # Cluster pipelines refuse EVALSHA: send the commands one by one, all at once (each
            # routed to the node that owns its key).
            async def send(batch: Sequence[tuple[Any, ...]]) -> list[Any]:
                out: list[Any] = []
                for start in range(0, len(batch), _CLUSTER_AT_ONCE):  # within its pools
                    chunk = batch[start : start + _CLUSTER_AT_ONCE]
                    out += await asyncio.gather(*(_single(client, c) for c in chunk))
                return out
        else:

            async def send(batch: Sequence[tuple[Any, ...]]) -> list[Any]:
                if len(batch) == 1:
                    return [await _single(client, batch[0])]
                pipe = client.pipeline(transaction=False)
                for command in batch:
                    pipe.execute_command(*command)
                replies: list[Any] = await pipe.execute(raise_on_error=False)
                return replies

        return await self.recover(
            commands, await send(commands), send, partial(self.load_all, client)
        )

    async def recover(
        self,
        commands: Sequence[tuple[Any, ...]],
        replies: list[Any],
        send: Callable[[Sequence[tuple[Any, ...]]], Awaitable[list[Any]]],
        load: Callable[[], Awaitable[None]],
    ) -> list[Any]:
        """NOSCRIPT recovery, the one place it is done: the commands whose reply is NOSCRIPT
        (the server restarted without persistence, or ran SCRIPT FLUSH) are sent once more after
        `load()` loaded the scripts; the others are never re-run."""
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:
            await load()
            again = await send([commands[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies


async def _single(client: Client, command: tuple[Any, ...]) -> Any:
    try:
        return await call(client, *command)
    except ResponseError as exc:
        return exc


def script_error(name: str, exc: BaseException) -> BaseException:
    """A script's own error reply (`rmq: ...`, or a Lua runtime error) as `ScriptError`; any
    other error is returned as it is."""
    text = str(exc)
    if isinstance(exc, ResponseError) and (
        "Error running script" in text or "user_script" in text or "rmq:" in text
    ):
        wrapped = ScriptError(f"script {name} failed: {text}")
        wrapped.__cause__ = exc
        return wrapped
    return exc
