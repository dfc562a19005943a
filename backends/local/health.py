"""`GET /healthz` of the worker: is it up, is the model in memory, how much work waits.

Open to every client (no key): load balancers, Docker's HEALTHCHECK and `photoshoot-bot
doctor` probe it. It shows nothing secret: counts, the model spec the operator chose, GPU
memory. It never imports torch itself (the first job does): a probe must stay instant.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backends.local.queue import JobRunner
    from backends.local.store import WorkerStore


async def health(
    store: WorkerStore, runner: JobRunner, model: str, started_at: str | None
) -> dict[str, Any]:
    """The health document of a worker serving `model` since `started_at`; `ok` is False while
    it is not serving (store closed)."""
    try:
        queue: dict[str, int] | None = await store.queue_depth()
    except RuntimeError:  # the store is closed: not started yet, or stopping
        queue = None
    return {
        "ok": queue is not None and started_at is not None,
        "started_at": started_at,
        "model": model,
        "model_loaded": runner.loaded_model is not None,
        "running": "{} {}".format(*runner.running) if runner.running else None,
        "queue": queue,
        "lora_binds": runner.binds,
        "gpu": gpu_memory(),
    }


def gpu_memory() -> dict[str, int] | None:
    """Free/total/allocated bytes of the current CUDA device, when torch is loaded and has one."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    return {
        "free_bytes": int(free),
        "total_bytes": int(total),
        "allocated_bytes": int(torch.cuda.memory_allocated()),
        "reserved_bytes": int(torch.cuda.memory_reserved()),
    }
