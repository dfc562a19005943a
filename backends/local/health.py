"""`GET /healthz` of the worker: is it up, is the model in memory, how much work waits.

Open to every client (no key): load balancers, Docker's HEALTHCHECK and `photoshoot-bot
doctor` probe it. It shows nothing secret: counts, the model spec the operator chose, GPU
memory. It never imports torch itself (the first job does): a probe must stay instant.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backends.local import Worker


async def health(worker: Worker) -> dict[str, Any]:
    """The health document; `ok` is False while the worker is not serving (store closed)."""
    runner = worker.runner
    try:
        queue: dict[str, int] | None = await worker.store.queue_depth()
    except RuntimeError:  # the store is closed: not started yet, or stopping
        queue = None
    return {
        "ok": queue is not None and worker.started_at is not None,
        "started_at": worker.started_at,
        "model": worker.config.sdxl_model,
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
