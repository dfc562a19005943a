"""Start-up warm-up: import now what libraries would otherwise import on first use, under load.

Profiling the bot at 300 updates/s (bench/telegram_load.py) showed two such imports in the
middle of the load: the first photo made Pillow import its ~50 format plugins, and the first
image-service call made httpx load its async backend (anyio's). Imports hold the interpreter
lock, so every chat waited meanwhile: 50 ms of CPU on an idle machine, 100-300 ms of stall on
a busy one, enough to decide a benchmark's p99. Run before `gc.freeze`, these modules are kept
out of the collector's sight like everything else made at start-up.
"""

from __future__ import annotations

import anyio
from PIL import Image

from bot.core import photo_process


def warm_up() -> None:
    """Load the lazily imported parts now; call from inside the running event loop."""
    Image.init()  # what bot.core.photos opens photos with
    anyio.Event()  # the first Event on a loop imports anyio's backend for it (httpx's waits)
    photo_process.start()  # an interpreter starting meanwhile would slow the first photo
