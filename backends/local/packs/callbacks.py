"""A run's `prompts_callback`: one POST with the array of its prompts when all have ended.

Called by the job runner after each prompt ends (and at start, for a run whose last prompt
ended while the worker was stopping). As every other callback it is POSTed at most once: the
run row is claimed in SQLite before the POST, and a failed POST is not retried (as Astria).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backends.local.packs.records import PackRecords
from backends.local.serialize import prompt_json
from backends.local.store import JobStore

PostLater = Callable[[str, Any], None]
"""POSTs a JSON body to a URL in the background (the runner's callback client)."""


class RunCallbacks:
    def __init__(self, store: JobStore, public_url: str | None, post_later: PostLater) -> None:
        self.store = store
        self.public_url = public_url
        self.records = PackRecords(store)
        self.post_later = post_later

    async def prompt_ended(self, prompt_id: int) -> None:
        row = await self.store.get_prompt(prompt_id)
        run_id = row["params"].get("run_id") if row is not None else None
        if run_id is not None:
            await self._send_if_finished(run_id)

    async def send_unsent(self) -> None:
        for run_id in await self.records.runs_with_unsent_callbacks():
            await self._send_if_finished(run_id)

    async def _send_if_finished(self, run_id: int) -> None:
        run = await self.records.get_run(run_id)
        if run is None or not run["prompts_callback"] or run["callback_sent"]:
            return
        if not await self.records.run_finished(run_id):
            return
        if not await self.records.claim_run_callback(run_id):
            return
        base = self.public_url or run["origin"] or ""
        rows = [await self.store.get_prompt(i) for i in await self.records.run_prompt_ids(run_id)]
        self.post_later(run["prompts_callback"], [prompt_json(r, base) for r in rows if r])
