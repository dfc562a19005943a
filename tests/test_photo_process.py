"""The photo process: the bot prepares and checks photos outside its interpreter (no lock
shared with the event loop), at a lower priority, and a dead process costs no photo."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from bot.core import photo_process
from bot.core.photos import (
    MeasuredPhoto,
    Rejection,
    RejectReason,
    prepare_and_measure,
    prepare_photo,
)
from tests.imagegen import jpeg_bytes


async def test_checks_run_in_another_process_at_a_lower_priority() -> None:
    assert await photo_process.run(os.getpid) != os.getpid()
    ours = os.nice(0)
    assert await photo_process.run(os.nice, 0) == ours + photo_process.NICENESS


async def test_a_photo_is_prepared_and_measured_there_as_it_would_be_here() -> None:
    photo = jpeg_bytes(1024, 1024, seed=3)
    there = await photo_process.run(prepare_and_measure, photo, "IMG.jpg", "en")
    assert isinstance(there, MeasuredPhoto) and there.quality is not None
    assert there == prepare_and_measure(photo, "IMG.jpg", "en")
    assert there.photo == prepare_photo(photo, "IMG.jpg")


async def test_a_refusal_made_there_speaks_the_users_language() -> None:
    tiny = jpeg_bytes(200, 200, seed=4)
    there = await photo_process.run(prepare_and_measure, tiny, "small.jpg", "de")
    assert isinstance(there, Rejection) and there.reason == RejectReason.TOO_SMALL
    assert there.message == prepare_and_measure(tiny, "small.jpg", "de").message
    assert there.message != prepare_and_measure(tiny, "small.jpg", "en").message


async def test_a_killed_process_costs_no_check_the_call_goes_to_a_new_one() -> None:
    killed = await photo_process.run(os.getpid)
    os.kill(killed, signal.SIGKILL)
    fresh = await photo_process.run(os.getpid)
    assert fresh not in (killed, os.getpid())  # a new process, never the bot's own
    assert await photo_process.run(os.getpid) == fresh


async def test_work_that_kills_the_process_twice_is_refused_and_the_next_runs() -> None:
    """A photo that crashes its decoder would take the bot down in a thread: ProcessDied."""
    before = await photo_process.run(os.getpid)
    with pytest.raises(photo_process.ProcessDied):
        await photo_process.run(os._exit, 3)
    after = await photo_process.run(os.getpid)
    assert after not in (before, os.getpid())


def test_the_process_ends_when_the_bot_is_killed() -> None:
    """A bot killed with SIGKILL cannot stop its photo process: that ends itself."""
    script = (
        "import asyncio, os, sys\n"
        "from bot.core import photo_process\n"
        "print(asyncio.run(photo_process.run(os.getpid)), flush=True)\n"
        "sys.stdin.read()\n"
    )
    bot = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert bot.stdout is not None
    child = int(bot.stdout.readline())
    bot.kill()
    bot.wait()
    deadline = time.monotonic() + 10 * photo_process.PARENT_CHECK_S
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False
