"""The photo process: the bot's photo checks run outside its interpreter (no shared lock with
the event loop), at a lower priority, and a dead process costs no photo."""

from __future__ import annotations

import os
import signal

from bot.core import photo_process
from bot.core.inspection import local_checks
from tests.imagegen import jpeg_bytes


async def test_checks_run_in_another_process_at_a_lower_priority() -> None:
    assert await photo_process.run(os.getpid) != os.getpid()
    ours = os.nice(0)
    assert await photo_process.run(os.nice, 0) == ours + photo_process.NICENESS


async def test_a_photos_checks_come_back_from_the_process_as_from_a_thread() -> None:
    photo = jpeg_bytes(1024, 1024, seed=3)
    there = await photo_process.run(local_checks, photo, [])
    assert there is not None and there == local_checks(photo, [])


async def test_a_killed_process_costs_no_check_and_the_next_one_starts_anew() -> None:
    killed = await photo_process.run(os.getpid)
    os.kill(killed, signal.SIGKILL)
    assert await photo_process.run(os.getpid) == os.getpid()  # this one ran in a thread
    fresh = await photo_process.run(os.getpid)
    assert fresh not in (killed, os.getpid())
