"""The worker's job kinds and job states, as its SQLite file stores them, and the row type.

The values are the strings worker databases already hold (`queued`, `running` ...), so existing
files keep working. Clients never see a `JobState`: the API shows `backends.base.JobStatus`
(serialize.py maps one onto the other, `running` -> `processing`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

Row = dict[str, Any]
"""One stored tune or prompt, JSON columns decoded (store.py)."""


FIRST_TUNE_ID = 100_000_001
"""Our own tune and prompt ids start here, far above any base-model id an operator would pick
by hand."""


class JobKind(StrEnum):
    """What a job makes: a tune (a training) or a prompt (images). Also Astria's name of the
    resource: the root key of its request and callback bodies."""

    TUNE = "tune"
    PROMPT = "prompt"

    @property
    def table(self) -> str:
        """Its SQLite table, its key in /healthz's queue counts and its folder under files/."""
        return f"{self.value}s"


class JobState(StrEnum):
    """Where a tune or prompt stands. `queued` rows are the queue; `running` ones go back to
    `queued` when the worker starts again (they were interrupted)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
