"""Orderly consumption: per-queue order, sharding keys, in-place retries.

Run: python orderly.py
"""

from collections import defaultdict
from functools import partial

import anyio

import rmq

app = rmq.App()
posted: dict[str, list[int]] = defaultdict(list)
failed_once: set[str] = set()


# --8<-- [start:orderly]
@app.consumer("ledger", group="posting", mode="orderly", suspend=0.2, max_retries=16)
async def post(msg: rmq.Message) -> None:
    entry = msg.body
    if entry["seq"] == 3 and entry["account"] not in failed_once:
        failed_once.add(entry["account"])
        raise RuntimeError("database busy")  # retried in place after `suspend`: order holds
    posted[entry["account"]].append(entry["seq"])


async def record(account: str, seq: int) -> None:
    await app.send("ledger", {"account": account, "seq": seq}, sharding_key=account)


# --8<-- [end:orderly]


async def main() -> None:
    async with anyio.create_task_group() as tg:
        await tg.start(partial(app.run, handle_signals=False))
        for seq in range(10):
            for account in ("alice", "bob", "carol"):
                await record(account, seq)
        with anyio.fail_after(30):
            while sum(len(v) for v in posted.values()) < 30:
                await anyio.sleep(0.05)
        app.stop()
    for account, seqs in posted.items():
        assert seqs == list(range(10)), (account, seqs)  # send order, despite the failure
    print({account: seqs[-1] for account, seqs in posted.items()})


if __name__ == "__main__":
    anyio.run(main)
