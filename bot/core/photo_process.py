"""The bot's image work runs in a process of its own, beside the event loop's.

Preparing a photo (decode, turn upright, resize, encode: bot.core.photos) and its model-free
checks (backends.photo_quality: sharpness, exposure, perceptual hash; numpy and Python) used
to run in threads, where they held the interpreter lock the event loop needs to answer chats:
in bench/telegram_load.py at 300 updates/s the bot answered with a p99 of 31 ms when the mix
had no photos, and of 0.4-2.5 s when a tenth of the updates were photos, every other update
(and every trip to the database thread) waiting its turn for the lock. Both now run here, from
one decode (`photos.prepare_and_measure`).

A process shares no interpreter lock with the loop. It runs at a lower CPU priority, so that
on a machine short of cores the chats are served first and the photos take the idle time.
One process per bot process, started with the bot (`start`) or on the first photo, spawned
rather than forked (the bot's process has threads: a fork copies their locks in any state).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
NICENESS = 10
"""How much lower than the bot's its CPU priority is (Unix `nice`)."""
PARENT_CHECK_S = 1.0
"""How often the process looks whether the bot is still there (it ends itself when not)."""

_pool: ProcessPoolExecutor | None = None


def start() -> None:
    """Start the process now, so the first photo does not wait for an interpreter to start."""
    _executor().submit(int)


class ProcessDied(Exception):
    """The work killed the photo process twice in a row (a decoder crash, memory): the photo,
    not the process, is the cause. Raised rather than tried in the bot's own process, which
    it would take down."""


async def run(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` in the photo process (both must pickle). Should the process die
    (killed, out of memory), the call goes to a new one: a photo is never lost to it. Should
    that die too, ProcessDied."""
    loop = asyncio.get_running_loop()
    for attempt in range(2):
        pool = _executor()
        try:
            return await loop.run_in_executor(pool, function, *args)
        except BrokenProcessPool:
            _discard(pool)
            log.warning("the photo check process died (%s)", ("once", "twice")[attempt])
    raise ProcessDied(getattr(function, "__name__", repr(function)))


def _discard(pool: ProcessPoolExecutor) -> None:
    """Forget a dead pool; one that a call finding it dead already replaced stays."""
    global _pool
    if _pool is pool:
        _pool = None


def _executor() -> ProcessPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_prepare_process,
            initargs=(os.getpid(),),
        )
    return _pool


def _prepare_process(bot_pid: int) -> None:
    """In the photo process, first: a lower priority, and an end of its own should the bot
    die without stopping it (kill -9): it would otherwise wait for work forever."""
    with contextlib.suppress(OSError, AttributeError):  # AttributeError: no os.nice (Windows)
        os.nice(NICENESS)
    # Ctrl-C in a terminal reaches the whole process group: the bot stops this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_end_with, args=(bot_pid,), daemon=True).start()


def _end_with(bot_pid: int) -> None:
    while os.getppid() == bot_pid:
        time.sleep(PARENT_CHECK_S)
    os._exit(0)
