"""What charging costs per job: recording a generation with its credit hold (and the limits'
reads) against recording it without, on the same real SQLite store in the same run.

Each round records `--batch` generations unmetered, then `--batch` with the hold a charged user
takes (bot/core/credits.py), alternating, so a busy machine slows both alike; it prints the
median time per job of each and their ratio (the baseline is the unmetered write). Settling a
hold (capture) is timed too, against the tracker's own `mark_delivered` write.

Usage: python bench/ledger_holds.py [--rounds 10] [--batch 100]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.core.credits import Credits, CreditsConfig
from bot.core.ledger import Ledger
from bot.core.limits import Limits
from bot.core.records import ChatTarget, JobKind, User
from bot.core.store import Also, Store

TARGET = ChatTarget("telegram", "42")


async def timed(batch: int, work: Callable[[int], Awaitable[None]]) -> float:
    """Seconds per call of `work` over one batch."""
    started = time.perf_counter()
    for index in range(batch):
        await work(index)
    return (time.perf_counter() - started) / batch


async def run(rounds: int, batch: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        store = await Store.open(Path(folder) / "bench.sqlite3", Path(folder))
        try:
            row = await store.get_or_create_user("telegram", "42")
            user = User(row.id, row.platform, row.platform_user_id, None, None)
            tune = await store.create_tune(
                user.id, title="bench", class_name="man", token="ohwx", label=None, photo_ids=[]
            )
            ledger = Ledger(store, free_credits=10**9)
            never = 10**9  # limits that are read (as a charged user's are) but never refuse
            limits = Limits(never, never, never, never)
            credits = Credits(ledger, CreditsConfig(enabled=True, limits=limits))
            made: list[int] = []

            async def record(also: Also | None) -> None:
                generation, _ = await store.create_generation(
                    user.id, tune_id=tune.id, prompt_typed="p", prompt_sent="p",
                    negative_prompt="", options={"num_images": 4}, seed=1, target=TARGET,
                    also=also,
                )  # fmt: skip
                made.append(generation.id)

            async def plain(_: int) -> None:
                await record(None)

            async def charged(_: int) -> None:
                await record(credits.for_generation(user, 4))

            async def capture(index: int) -> None:
                await ledger.settle(JobKind.GENERATION, made[index], capture=True)

            async def deliver(index: int) -> None:
                delivery = await store.get_delivery(JobKind.GENERATION, made[index])
                assert delivery is not None
                await store.mark_delivered(delivery.id)

            times: dict[str, list[float]] = {
                "plain": [],
                "charged": [],
                "deliver": [],
                "capture": [],
            }
            for _ in range(rounds):
                times["plain"].append(await timed(batch, plain))
                made.clear()
                times["charged"].append(await timed(batch, charged))
                times["deliver"].append(await timed(batch, deliver))
                times["capture"].append(await timed(batch, capture))
                made.clear()
        finally:
            await store.close()
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.rounds, args.batch))
    print(
        f"record a generation: unmetered {result['plain'] * 1e6:.0f} us, with its hold "
        f"{result['charged'] * 1e6:.0f} us: {result['charged'] / result['plain']:.2f}x\n"
        f"end a job: mark delivered {result['deliver'] * 1e6:.0f} us, capture its hold "
        f"{result['capture'] * 1e6:.0f} us: {result['capture'] / result['deliver']:.2f}x"
    )
    return result


if __name__ == "__main__":
    main()
