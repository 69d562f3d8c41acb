"""The Lua scripts under `rmq/lua/`: loaded once, called by EVALSHA, reloaded after NOSCRIPT.

Each `.lua` file is one atomic state change; its header lists every KEY, ARGV and the return value.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, ResponseError

from .errors import ScriptError
from .streams import Client, call

__all__ = ["SCRIPT_NAMES", "Script", "Scripts"]

SCRIPT_NAMES = (
    "bcast_commit",
    "cancel_delayed",
    "check_claim",
    "claim_slot",
    "commit",
    "dead_letter",
    "declare_group",
    "dlq_replay",
    "fenced_ack",
    "find_entries",
    "half_list",
    "heartbeat",
    "lease",
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
        """Run script `name` with EVALSHA, loading it first if the server does not know it."""
        script = self._by_name[name]
        try:
            return await call(client, *script.evalsha_args(keys, args))
        except NoScriptError:
            await self.load_all(client)
            try:
                return await call(client, *script.evalsha_args(keys, args))
            except ResponseError as exc:
                raise_script_error(name, exc)
                raise
        except ResponseError as exc:
            raise_script_error(name, exc)
            raise

    async def pipeline(self, client: Client, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Run `commands` in one pipeline (one round trip). Results may be exceptions.

        Commands that failed with NOSCRIPT (the server restarted without persistence, or ran
        SCRIPT FLUSH) are re-run once after loading the scripts; the others are never re-run.
        """
        if len(commands) == 1:
            return [await self._single(client, commands[0])]
        if isinstance(client, RedisCluster):
            # Cluster pipelines refuse EVALSHA: send the commands one by one, all at once (each
            # routed to the node that owns its key).
            return list(await asyncio.gather(*(self._single(client, c) for c in commands)))
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:
            await self.load_all(client)
            pipe = client.pipeline(transaction=False)
            for i in missing:
                pipe.execute_command(*commands[i])
            for i, r in zip(missing, await pipe.execute(raise_on_error=False), strict=True):
                results[i] = r
        return results

    async def _single(self, client: Client, command: tuple[Any, ...]) -> Any:
        try:
            return await call(client, *command)
        except NoScriptError:
            await self.load_all(client)
            try:
                return await call(client, *command)
            except ResponseError as exc:
                return exc
        except ResponseError as exc:
            return exc


def raise_script_error(name: str, exc: ResponseError) -> None:
    """Re-raise a script's own error reply as `ScriptError`; leave other errors alone."""
    text = str(exc)
    if "Error running script" in text or "user_script" in text or "rmq:" in text:
        raise ScriptError(f"script {name} failed: {text}") from exc
