"""`rmq worker run --reload`: restart the worker when its code changes (for development).

The reloader does not import the app. It runs the worker command (the same `rmq worker run`
without `--reload`) as a child process, and every `interval` seconds it compares the size and
modification time of the Python files it watches: the package the app's module belongs to
(recursively, skipping hidden folders, `__pycache__` and virtual environments), or, for a
module that is not in a package, the `.py` files beside it. On a change it stops the child as a
signal would (SIGTERM: it drains, within `shutdown_grace`; then SIGKILL) and starts it again. A
child that exits by itself (a syntax error, a failing startup hook) is started again at the next
change. SIGINT or SIGTERM stops the child and the reloader, which then exits with the child's
code (0 after a clean drain).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import anyio
from anyio.abc import Process

from .errors import ConfigError

__all__ = ["Reloader", "watched_files"]

log = logging.getLogger("rmq.reload")

_SKIP = {"__pycache__", "node_modules", "site-packages", "venv", "build", "dist"}
_KILL_MARGIN_SECONDS = 5.0

Snapshot = dict[str, tuple[int, int]]


def watch_root(module: str) -> tuple[Path, bool]:
    """Where the code of `module` lives: (its top-level package's folder, True), or (the
    folder of a plain top-level module, False: its `.py` files only). Found without running the
    module (a dotted name imports its parent packages, as any import would)."""
    top = module.split(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"--reload: cannot find module {top!r}: {exc}") from exc
    if spec is None:
        raise ConfigError(f"--reload: no module named {top!r}")
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))), True
    if spec.origin is None or not spec.origin.endswith(".py"):
        raise ConfigError(f"--reload: {top!r} is not Python source that can be watched")
    return Path(spec.origin).parent, False


def watched_files(root: Path, recursive: bool) -> Iterator[Path]:
    """The `.py` files under `root` (only those directly in it unless `recursive`)."""
    if not recursive:
        yield from sorted(root.glob("*.py"))
        return
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in _SKIP]
        for name in files:
            if name.endswith(".py"):
                yield Path(folder, name)


def snapshot(root: Path, recursive: bool) -> Snapshot:
    """Size and mtime (ns) of every watched file."""
    out: Snapshot = {}
    for path in watched_files(root, recursive):
        try:
            stat = path.stat()
        except OSError:  # removed meanwhile
            continue
        out[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return out


def changed(before: Snapshot, after: Snapshot) -> list[str]:
    """Files added, removed or modified between two snapshots."""
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


def _listing(root: Path, paths: list[str]) -> str:
    shown = ", ".join(os.path.relpath(p, root) for p in paths[:3])
    return shown + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


class Reloader:
    """Runs `command` and restarts it whenever a file of module `module`'s package changes."""

    def __init__(
        self,
        module: str,
        command: Sequence[str],
        *,
        interval: float = 0.5,
        grace: float = 30.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.root, self.recursive = watch_root(module)
        self.command = list(command)
        self.interval = interval
        self.grace = grace
        self.env = dict(os.environ if env is None else env)
        self.restarts = 0
        self._stopping = False
        self._code = 0

    async def run(self) -> int:
        """Run until SIGINT or SIGTERM; returns the last child's exit code."""
        log.info("reloading on changes under %s", self.root)
        async with anyio.create_task_group() as tg:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                tg.start_soon(self._loop)
                async for signum in signals:
                    log.info("%s received: stopping the worker", signal.Signals(signum).name)
                    self._stopping = True
                    tg.cancel_scope.cancel()
                    break
        return self._code

    async def _loop(self) -> None:
        files = await anyio.to_thread.run_sync(snapshot, self.root, self.recursive)
        while True:
            proc = await self._start()
            try:
                files = await self._wait_for_change(files, proc)
            finally:
                with anyio.CancelScope(shield=True):
                    await self._stop(proc)
            self.restarts += 1

    async def _start(self) -> Process:
        # A session of its own: Ctrl-C in the terminal reaches the reloader only, which stops the
        # child with one SIGTERM (a drain), not a second signal (a forced stop).
        return await anyio.open_process(
            self.command, env=self.env, stdin=subprocess.DEVNULL, stdout=None, stderr=None,
            start_new_session=True,
        )  # fmt: skip

    async def _wait_for_change(self, files: Snapshot, proc: Process) -> Snapshot:
        reported = False
        while True:
            await anyio.sleep(self.interval)
            if proc.returncode is not None and not reported:
                reported = True
                log.warning(
                    "the worker exited with %d: waiting for a change to start it again",
                    proc.returncode,
                )
            now = await anyio.to_thread.run_sync(snapshot, self.root, self.recursive)
            diff = changed(files, now)
            if diff:
                log.info("changed: %s: restarting the worker", _listing(self.root, diff))
                return now

    async def _stop(self, proc: Process) -> None:
        """SIGTERM (a drain), then SIGKILL after the grace period."""
        if proc.returncode is None:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            with anyio.move_on_after(self.grace + _KILL_MARGIN_SECONDS):
                await proc.wait()
            if proc.returncode is None:
                log.error("the worker did not stop within the grace period: killing it")
                proc.kill()
        self._code = await proc.wait()
