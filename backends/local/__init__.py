"""Our own GPU worker: an Astria-compatible HTTP server over diffusers (docs/architecture.md §2-§3).

Three ways to run it:
- standalone: `photoshoot-bot worker --host --port` -> `serve(host, port, config)` (uvicorn;
  the app's lifespan starts and stops the worker);
- in the bot's process: `worker = create_worker(config); await worker.start()`, then an
  `httpx.ASGITransport(app=worker.app)` under the bot's Astria client; `await worker.stop()`;
- as a fleet (WORKER_DATABASE_URL and WORKER_STORAGE_URL set): `photoshoot-bot worker` serves
  the same API statelessly (`fleet_api.py`: rows and procrastinate jobs in PostgreSQL, files
  in S3) and `photoshoot-bot gpu-worker` runs the jobs, one process per GPU (`gpu_worker.py`,
  `gpu_jobs.py`, `fleet_faults.py`, `file_cache.py`; the jobs themselves: `fleet_jobs.py`).

The base model loads lazily on the first job (the bot and tests start instantly), or at start()
with `WorkerConfig(eager_load=True)` (a GPU box: the first user does not pay the load).
Importing this package does not import torch; the first job does.
"""

from backends.local.config import WorkerConfig
from backends.local.worker import Worker, create_worker, serve

__all__ = ["Worker", "WorkerConfig", "create_worker", "serve"]
