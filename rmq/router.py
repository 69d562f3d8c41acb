"""Where keys live: the one server, or, on Redis Cluster, the primary that owns the key's slot.

Every key of one queue shares a hash tag, so each command and script rmq sends touches one slot;
the router maps that slot to a node and keeps per-node connections (a command pool and a pool of
dedicated hot-loop connections). The slot map comes from `CLUSTER SLOTS` and is refreshed when a
node answers MOVED or ASK (slots migrate while resharding) or a connection to a node fails.

`WireSet` is the cluster-aware counterpart of `Wire`: it sends each command of a batch to the
node that owns its first key, one round trip per node, all nodes at once. It follows resharding
itself: a MOVED reply updates the slot map and the command goes to the new owner, an ASK reply
sends it to the importing node behind ASKING, and TRYAGAIN (a script whose keys are split
between the two nodes mid-migration) is sent again after a short pause. None of these replies
means the command ran, so sending it again is safe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError, TryAgainError

from .clients import CommandClient
from .scripts import Scripts
from .wire import DEFAULT_TIMEOUT, Multi, Progress, Wire

__all__ = ["Node", "Router", "WireSet", "command_key"]

log = logging.getLogger("rmq.router")

SLOTS = 16384
_REFRESH_MIN_INTERVAL = 0.2
_REDIRECTS = 8
"""How many MOVED/ASK/TRYAGAIN rounds one `WireSet.execute` follows before it gives up."""
_TRYAGAIN_PAUSE = 0.01


def command_key(command: Sequence[Any]) -> Any:
    """The first key a command names (what Redis Cluster routes it by), or None. A `Multi` is
    routed by its first command."""
    if command.__class__ is Multi:
        return command_key(command[0])
    name = str(command[0]).upper()
    if name in ("EVALSHA", "EVAL"):
        return command[3] if int(command[2]) > 0 else None
    if name in ("XREAD", "XREADGROUP"):
        for i, arg in enumerate(command):
            if isinstance(arg, str) and arg.upper() == "STREAMS":
                return command[i + 1]
        return None
    return command[1] if len(command) > 1 else None


def node_url(url: str, host: str, port: int) -> str:
    """`url` pointed at another node (user, password, TLS and db kept)."""
    parts = urlsplit(url)
    userinfo, at, _ = parts.netloc.rpartition("@")
    host_part = f"[{host}]" if ":" in host else host
    return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{host_part}:{port}"))


class Node:
    """The connections of one server (or cluster primary), and the progress of its wires."""

    def __init__(self, name: str, client: Redis, wire_pool: BlockingConnectionPool) -> None:
        self.name = name
        self.client = client
        self.wire_pool = wire_pool
        self.progress = Progress()

    async def close(self) -> None:
        await self.client.aclose()
        await self.client.connection_pool.disconnect()
        await self.wire_pool.disconnect()


class Router:
    """Maps keys to nodes. Standalone: one node. Cluster: the owner of the key's slot."""

    def __init__(self, url: str, make_pool: Any, seed: Node) -> None:
        self._url = url
        self._make_pool = make_pool  # (url, socket_timeout|None) -> BlockingConnectionPool
        self.seed = seed
        self.cluster = False
        self._nodes: dict[str, Node] = {seed.name: seed}
        self._slots: list[str] = [seed.name] * SLOTS
        self._refreshed = 0.0
        self._refreshing: asyncio.Future[None] | None = None

    @property
    def nodes(self) -> list[Node]:
        """Every node the slot map names."""
        return [self._nodes[name] for name in dict.fromkeys(self._slots)]

    def node_for(self, key: str | bytes | None) -> Node:
        if not self.cluster or key is None:
            return self.seed
        return self._nodes[self._slots[key_slot(key if isinstance(key, bytes) else key.encode())]]

    async def discover(self) -> None:
        """Find out whether the seed is a cluster node; if so, load the slot map."""
        info = await self.seed.client.info("cluster")
        if int(info.get("cluster_enabled", 0)) != 1:
            return
        self.cluster = True
        await self.refresh(force=True)

    async def refresh(self, *, force: bool = False) -> None:
        """Reload the slot map (at most every 0.2 s unless forced; concurrent callers share one)."""
        if not self.cluster:
            return
        if self._refreshing is not None:
            await asyncio.shield(self._refreshing)
            return
        if not force and time.monotonic() - self._refreshed < _REFRESH_MIN_INTERVAL:
            return
        self._refreshing = asyncio.get_running_loop().create_future()
        try:
            await self._load_slots()
            self._refreshing.set_result(None)
        except BaseException as exc:
            self._refreshing.set_exception(exc)
            self._refreshing.exception()
            raise
        finally:
            self._refreshing = None
            self._refreshed = time.monotonic()

    async def _load_slots(self) -> None:
        last: Exception | None = None
        for node in [self.seed, *self._nodes.values()]:
            try:
                ranges = await node.client.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
                break
            except Exception as exc:  # try another node
                last = exc
        else:
            assert last is not None
            raise last
        slots = list(self._slots)
        for entry in ranges:
            start, end, primary = int(entry[0]), int(entry[1]), entry[2]
            host = primary[0].decode() if isinstance(primary[0], bytes) else str(primary[0])
            host = host or urlsplit(self._url).hostname or "127.0.0.1"
            name = f"{host}:{int(primary[1])}"
            if name not in self._nodes:
                self._nodes[name] = self._new_node(host, int(primary[1]))
            slots[start : end + 1] = [name] * (end - start + 1)
        self._slots = slots
        log.debug("cluster slot map loaded: %d nodes", len(set(slots)))

    def node_at(self, host: str, port: int) -> Node:
        """The node at host:port (as a redirect names it), connected on first use."""
        host = host or urlsplit(self._url).hostname or "127.0.0.1"
        name = f"{host}:{port}"
        node = self._nodes.get(name)
        if node is None:
            node = self._nodes[name] = self._new_node(host, port)
        return node

    def learn(self, moved: MovedError) -> None:
        """A MOVED reply: its slot is served by the node it names from now on."""
        self._slots[moved.slot_id] = self.node_at(moved.host, moved.port).name

    async def follow(self, error: BaseException) -> None:
        """After a failed command: learn a MOVED reply, then reload the slot map (rate limited)."""
        if isinstance(error, MovedError):
            self.learn(error)
        await self.refresh()

    def _new_node(self, host: str, port: int) -> Node:
        url = node_url(self._url, host, port)
        client = CommandClient(connection_pool=self._make_pool(url, "commands"))
        return Node(f"{host}:{port}", client, self._make_pool(url, "wire"))

    async def close(self) -> None:
        for node in self._nodes.values():
            if node is not self.seed:
                await node.close()


class WireSet:
    """Dedicated connections to every node a loop talks to; routes each command by its key.

    `timeout` is each wire's default deadline (see `Wire`).
    """

    def __init__(self, router: Router, scripts: Scripts, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._router = router
        self._scripts = scripts
        self._timeout = timeout
        self._wires: dict[str, Wire] = {}

    def _wire(self, node: Node) -> Wire:
        wire = self._wires.get(node.name)
        if wire is None:
            wire = Wire(node.wire_pool, self._scripts, self._timeout, node.progress)
            self._wires[node.name] = wire
        return wire

    def wire_for(self, key: str | bytes | None) -> Wire:
        """The wire to the node that owns `key` (for a loop bound to one queue)."""
        return self._wire(self._router.node_for(key))

    async def execute(
        self, commands: Sequence[tuple[Any, ...]], seconds: float | None = None
    ) -> list[Any]:
        """Like `Wire.execute`, across nodes, following MOVED, ASK and TRYAGAIN replies (up to
        `_REDIRECTS` rounds; past that they come back as errors, transient for the caller)."""
        router = self._router
        if not router.cluster:
            return await self._wire(router.seed).execute(commands, seconds)
        out: list[Any] = [None] * len(commands)
        todo = list(range(len(commands)))
        asking: dict[int, Node] = {}  # command -> the importing node an ASK reply named
        for round_ in range(_REDIRECTS):
            groups: dict[str, list[int]] = {}
            for i in todo:
                node = asking.get(i) or router.node_for(command_key(commands[i]))
                groups.setdefault(node.name, []).append(i)
            replies = await asyncio.gather(
                *(self._send(name, [(commands[i], i in asking) for i in group], seconds)
                  for name, group in groups.items()),
                return_exceptions=True,
            )  # fmt: skip
            failure: BaseException | None = None
            todo, asking, pause = [], {}, False
            for group, reply in zip(groups.values(), replies, strict=True):
                if isinstance(reply, BaseException):
                    failure = failure or reply
                    continue
                for i, result in zip(group, reply, strict=True):
                    out[i] = result
                    if isinstance(result, MovedError):
                        router.learn(result)
                    elif isinstance(result, AskError):
                        asking[i] = router.node_at(result.host, result.port)
                    elif isinstance(result, TryAgainError):
                        pause = True
                    else:
                        continue
                    todo.append(i)
            if failure is not None:
                await router.refresh()  # a node may be gone: reload the map before any retry
                # like Wire.execute: a connection-level failure raises; everything rmq sends
                # this way is safe to send again (idempotent scripts, XACK, chunk dedup records)
                raise failure
            if not todo:
                return out
            if pause:
                await asyncio.sleep(_TRYAGAIN_PAUSE * (round_ + 1))
        await router.refresh()
        return out

    async def _send(
        self, name: str, commands: list[tuple[tuple[Any, ...], bool]], seconds: float | None
    ) -> list[Any]:
        """One round trip to node `name`; commands flagged True go behind ASKING."""
        wire = self._wire(self._router._nodes[name])
        if not any(ask for _, ask in commands):
            return await wire.execute([command for command, _ in commands], seconds)
        packed: list[tuple[Any, ...]] = []
        for command, ask in commands:
            if ask:
                packed.append(("ASKING",))
            packed.append(command)
        replies = await wire.execute(packed, seconds)
        out, j = [], 0
        for _, ask in commands:
            j += ask  # skip ASKING's +OK
            out.append(replies[j])
            j += 1
        return out

    async def close(self) -> None:
        wires, self._wires = self._wires, {}
        for wire in wires.values():
            await wire.close()
