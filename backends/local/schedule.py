"""Which queued job the worker runs next: prompts before trainings, a run kept together, and
nobody's single prompt stuck behind somebody's 40-image pack.

The rules, in order:
1. Only prompts that can run are candidates: a prompt made for a tune that is still training
   (a pack on a new tune, `tune[prompts_attributes]`) waits for it.
2. Prompts before trainings (a training also yields to waiting prompts between its steps).
3. A run (a pack's prompts on one tune) is one unit: once started, its prompts follow one
   another, even when older prompts of another run became ready meanwhile (a tune that just
   finished training). So the tune's LoRA and embeddings stay bound for the whole run: the
   engine binds a tune only when it differs from the one bound (see `tune_binding.py`).
4. Interleave per prompt: after each prompt of a run, one waiting single prompt (not in a run)
   goes first, so a user's `/imagine` waits for at most one pack prompt, not forty. Each such
   interruption costs the run one more bind when it resumes.
5. Otherwise the oldest candidate first.

The state (the run in progress, whether its last prompt ran) lives in memory: after a restart
the oldest candidate simply goes first.
"""

from __future__ import annotations

from typing import Any

from backends.local.packs.records import RUN_ID
from backends.local.records import JobKind, JobState
from backends.local.store import WorkerStore

READY = f"""
SELECT p.id AS id, {RUN_ID} AS run_id FROM prompts p
LEFT JOIN tunes t ON t.id = p.tune_id
WHERE p.state = ? AND (t.id IS NULL OR t.state = ?)
"""
"""Queued prompts that can run: on a base model (no tune row), or on a trained tune. (Only
`prompts` has a `params` column, so RUN_ID needs no table name and matches its index.)"""


class Scheduler:
    """Picks the next job from the store; one per runner."""

    def __init__(self, store: WorkerStore) -> None:
        self.store = store
        self._run: int | None = None
        self._run_went_last = False

    async def next_job(self) -> tuple[JobKind, int] | None:
        prompt = await self.next_prompt()
        if prompt is not None:
            return (JobKind.PROMPT, prompt)
        tune = await self.store.next_tune()
        return (JobKind.TUNE, tune) if tune is not None else None

    async def next_prompt(self) -> int | None:
        if self._run is not None:
            if self._run_went_last:
                single = await self._first(f"AND {RUN_ID} IS NULL")
                if single is not None:
                    self._run_went_last = False
                    return single["id"]
            same = await self._first(f"AND {RUN_ID} = ?", self._run)
            if same is not None:
                self._run_went_last = True
                return same["id"]
        oldest = await self._first("")
        if oldest is None:
            self._run, self._run_went_last = None, False
            return None
        self._run = oldest["run_id"]
        self._run_went_last = self._run is not None
        return oldest["id"]

    async def _first(self, condition: str, *args: Any) -> dict[str, Any] | None:
        sql = f"{READY} {condition} ORDER BY p.id LIMIT 1"
        async with self.store.db.execute(sql, (JobState.QUEUED, JobState.DONE, *args)) as cursor:
            row = await cursor.fetchone()
        return dict(row) if row is not None else None
