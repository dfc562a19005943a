"""The event loop the bot's processes run on: uvloop where it is installed, else asyncio's own.

Under load the bot's event loop is its bottleneck (one thread answers every chat), and most of
its time per update is the loop's own plumbing: socket reads and writes, callbacks, the hand-
over from the database thread. uvloop (libuv) does that plumbing in C, ~30 % cheaper per
database trip and more per HTTP call (bench/telegram_load.py, bench/profile_telegram.py).
It is a dependency on Linux and macOS; on Windows, which it does not support, the stock loop
runs the same code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop constructor, or None for asyncio's default."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, on uvloop where it is installed."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
