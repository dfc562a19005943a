"""GPU work on a daemon thread, so a stop never waits for a step that cannot be interrupted.

`asyncio.to_thread` uses the loop's executor, whose threads the interpreter joins at exit: a
model load or a hires pass that ignores the abort flag then holds the process past its service
manager's stop timeout (the bot took 29.7 s of systemd's 30). A daemon thread is not joined;
the runner stops waiting for it after `WorkerConfig.stop_grace_s` and its job stays queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
THREAD_PREFIX = "worker-job"


def left_behind() -> list[threading.Thread]:
    """GPU threads still running (a stop gave up waiting for them): the process may exit
    without them, as nothing they would write is still awaited."""
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX) and t.is_alive()]


async def run_in_daemon_thread(func: Callable[..., T], *args: object) -> T:
    """`await asyncio.to_thread(func, *args)`, but on a fresh daemon thread."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(set_outcome: Callable[[Any], None], value: Any) -> None:
        if not future.done():  # the awaiting task may have been cancelled meanwhile
            set_outcome(value)

    def body() -> None:
        try:
            outcome = (future.set_result, context.run(func, *args))
        except BaseException as exc:  # handed to the awaiting task, as to_thread does
            outcome = (future.set_exception, exc)
        # A closed loop: nobody waits for this any more (the process is stopping).
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(
        target=body, name=f"{THREAD_PREFIX}-{getattr(func, '__name__', '')}", daemon=True
    ).start()
    return await future
