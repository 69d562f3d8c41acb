"""Meta-tests of rmq/lua/*.lua: shebang, documented KEYS/ARGV, registry, loading by the server."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import rmq
from rmq.errors import ScriptError
from rmq.scripts import SCRIPT_NAMES, Scripts
from tests.scripts import SCRIPTS, call, connect, queue_keys

LUA_DIR = Path(rmq.__file__).parent / "lua"
LUA_FILES = sorted(LUA_DIR.glob("*.lua"))
SCRIPT_FLAGS = {"no-writes", "allow-oom"}
"""The Redis 7 script flags rmq uses (allow-stale, no-cluster, allow-cross-slot-keys: never)."""


@dataclass
class Parsed:
    first_line: str
    header: list[str]  # the leading comment block, without the "--"
    body: str  # the code after the header, with comments removed


def parse(path: Path) -> Parsed:
    lines = path.read_text(encoding="utf-8").splitlines()
    header: list[str] = []
    i = 1
    while i < len(lines) and lines[i].startswith("--"):
        header.append(lines[i][2:])
        i += 1
    code = [re.sub(r"--.*$", "", line) for line in lines[i:]]
    return Parsed(lines[0] if lines else "", header, "\n".join(code))


def documented_keys(p: Parsed) -> list[int]:
    return [int(m.group(1)) for h in p.header if (m := re.match(r"\s*KEYS\[(\d+)\]", h))]


def documented_argv(p: Parsed) -> tuple[set[int], int | None]:
    """(single ARGV indexes, start of an open-ended ARGV[n..] range or None)."""
    singles: set[int] = set()
    open_from: int | None = None
    for h in p.header:
        m = re.match(r"\s*ARGV\[(\d+)(\.\.)?\]", h)
        if not m:
            continue
        if m.group(2):
            assert open_from is None, "two open-ended ARGV ranges"
            open_from = int(m.group(1))
        else:
            singles.add(int(m.group(1)))
    return singles, open_from


def ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def test_lua_dir_is_not_empty() -> None:
    assert len(LUA_FILES) >= 8


def test_every_file_is_registered_and_vice_versa() -> None:
    assert sorted(p.stem for p in LUA_FILES) == sorted(SCRIPT_NAMES)
    assert len(set(SCRIPT_NAMES)) == len(SCRIPT_NAMES)


def problems(path: Path) -> list[str]:
    """Everything wrong with one script's shebang and header (empty when it is fine)."""
    p = parse(path)
    out: list[str] = []
    shebang, _, flags = p.first_line.partition(" ")
    if shebang != "#!lua":
        out.append("first line is not #!lua")
    elif flags:
        named = flags.removeprefix("flags=").split(",") if flags.startswith("flags=") else []
        if not named or not set(named) <= SCRIPT_FLAGS:
            out.append(f"shebang flags must be flags=<{'|'.join(sorted(SCRIPT_FLAGS))}>")
        elif "(flag " not in "\n".join(p.header):
            out.append("a flagged script says why in its header ('... (flag allow-oom): ...')")
    # KEYS
    keys = documented_keys(p)
    if not keys:
        out.append("no KEYS documented")
    elif keys != list(range(1, len(keys) + 1)):
        out.append(f"KEYS must be listed 1..n in order, got {keys}")
    used_keys = {int(n) for n in re.findall(r"KEYS\[(\d+)\]", p.body)}
    if used_keys != set(keys):
        out.append(f"KEYS used {sorted(used_keys)}, documented {keys}")
    keys_open = any(re.match(r"\s*KEYS\[\d+\.\.\]", h) for h in p.header)
    if (re.search(r"KEYS\[[^\d\]]", p.body) or "#KEYS" in p.body) and not keys_open:
        out.append("KEYS indexed by a variable (document a KEYS[n..] range if it must be)")
    # ARGV
    singles, open_from = documented_argv(p)
    used = {int(n) for n in re.findall(r"ARGV\[(\d+)\]", p.body)}
    out.extend(
        f"ARGV[{n}] undocumented"
        for n in sorted(used)
        if n not in singles and (open_from is None or n < open_from)
    )
    if "#ARGV" in p.body or re.search(r"ARGV\[[a-z_]", p.body):
        loops = [int(n) for n in re.findall(r"for\s+\w+\s*=\s*(\d+)\s*,\s*#ARGV", p.body)]
        if open_from is None:
            out.append("variadic ARGV use needs an ARGV[n..] line in the header")
        elif not loops:
            out.append("variadic ARGV without a `for j = n, #ARGV` loop")
        elif any(n != open_from for n in loops):
            out.append(f"ARGV loops start at {loops}, the header says {open_from}")
    elif open_from is not None:
        out.append("header documents variadic ARGV the script never reads")
    out.extend(f"ARGV[{n}] documented but unused" for n in sorted(singles - used))
    if singles and singles != set(range(1, max(singles) + 1)):
        out.append(f"ARGV must be listed 1..n, got {sorted(singles)}")
    if not re.search(r"\bReturns?\b", "\n".join(p.header)):
        out.append("no 'Returns:' in the header")
    out.extend(
        f"{clock} used: take time from redis.call('TIME')"
        for clock in ("os.time", "os.clock", "math.random")
        if clock in p.body
    )
    return out


@pytest.mark.parametrize("path", LUA_FILES, ids=ids(LUA_FILES))
def test_header(path: Path) -> None:
    assert problems(path) == []


GOOD = """#!lua
-- A script.
-- KEYS[1]  the stream
-- ARGV[1]  group
-- ARGV[2..] ids
-- Returns: a count.
local n = 0
for j = 2, #ARGV do n = n + redis.call('XACK', KEYS[1], ARGV[1], ARGV[j]) end
return n
"""


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        (GOOD, None),
        (GOOD.replace("#!lua", "-- no shebang"), "#!lua"),
        (
            GOOD.replace("#!lua", "#!lua flags=allow-oom").replace(
                "A script.", "A (flag allow-oom): x"
            ),
            None,
        ),
        (GOOD.replace("#!lua", "#!lua flags=allow-oom"), "says why"),
        (GOOD.replace("#!lua", "#!lua flags=allow-cross-slot-keys"), "shebang flags"),
        (GOOD.replace("#!lua", "#!lua oom"), "shebang flags"),
        (GOOD.replace("XACK', KEYS[1]", "XACK', KEYS[2]"), "KEYS used"),
        (GOOD.replace("-- KEYS[1]  the stream\n", ""), "no KEYS"),
        (GOOD.replace("-- ARGV[2..] ids\n", ""), "variadic ARGV"),
        (GOOD.replace("-- ARGV[1]  group\n", ""), "ARGV[1] undocumented"),
        (GOOD.replace("for j = 2,", "for j = 3,"), "loops start"),
        (GOOD.replace("-- Returns: a count.\n", ""), "Returns"),
        (GOOD.replace("-- A script.", "-- A script.\n-- ARGV[5]  unused"), "ARGV[5]"),
        (GOOD.replace("local n = 0", "local n = os.time()"), "os.time"),
    ],
)
def test_header_checker_catches_problems(tmp_path: Path, source: str, problem: str | None) -> None:
    path = tmp_path / "x.lua"
    path.write_text(source, encoding="utf-8")
    found = problems(path)
    if problem is None:
        assert found == []
    else:
        assert any(problem in f for f in found), found


def test_scripts_registry_matches_files() -> None:
    scripts = Scripts()
    assert [s.name for s in scripts] == list(SCRIPT_NAMES)
    for path in LUA_FILES:
        script = scripts[path.stem]
        source = path.read_text(encoding="utf-8")
        assert script.source == source
        assert script.sha == hashlib.sha1(source.encode()).hexdigest()
        assert script.evalsha_args(["k1", "k2"], ["a", 1]) == (
            "EVALSHA",
            script.sha,
            2,
            "k1",
            "k2",
            "a",
            1,
        )


async def test_every_script_loads_on_the_server(redis_url: str) -> None:
    async with connect(redis_url) as client:
        await SCRIPTS.load_all(client)
        shas = [s.sha for s in SCRIPTS]
        assert await client.script_exists(*shas) == [True] * len(shas)


async def test_call_recovers_from_noscript(redis_url: str, namespace: str) -> None:
    q = queue_keys(namespace)
    async with connect(redis_url) as client:
        await client.script_flush()
        assert await call(client, "declare_group", [q.stream], ["g", "last"]) == 1
        assert await client.script_exists(SCRIPTS["declare_group"].sha) == [True]
        await client.script_flush()
        results = await SCRIPTS.pipeline(
            client,
            [
                SCRIPTS["declare_group"].evalsha_args([q.stream], ["g", "last"]),
                SCRIPTS["declare_group"].evalsha_args([q.stream], ["h", "first"]),
            ],
        )
        assert results == [0, 1]


async def test_redis_errors_inside_scripts_become_script_errors(
    redis_url: str, namespace: str
) -> None:
    q = queue_keys(namespace)
    async with connect(redis_url) as client:
        await client.set(q.stream, "not a stream")
        with pytest.raises(ScriptError, match="declare_group"):
            await call(client, "declare_group", [q.stream], ["g", "last"])
