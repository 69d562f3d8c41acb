"""The CLI's operations as a library: `app.admin` (run: python admin.py)."""

from datetime import UTC, datetime, timedelta

import anyio

import rmq

app = rmq.App()


async def main() -> None:
    async with app:
        # --8<-- [start:admin]
        info, created = await app.admin.create_topic("orders", queues=8, retention=3 * 86400)
        async with app.pull_consumer("orders", "billing"):  # declares the group
            pass
        await app.send("orders", {"id": 1}, keys=["order-1"])

        progress = await app.admin.group_progress("orders", "billing")  # consumerProgress
        print(progress.lag, progress.pending, progress.oldest_pending_age_seconds)  # 1 0 None
        found = await app.admin.query_key("orders", "order-1")  # queryMsgByKey
        print(found[0].msg_id)

        an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
        await app.reset_offset("orders", "billing", to=an_hour_ago)  # or "first", "last"
        # --8<-- [end:admin]
        assert created and info.queues == 8 and progress.lag == 1 and len(found) == 1


if __name__ == "__main__":
    anyio.run(main)
