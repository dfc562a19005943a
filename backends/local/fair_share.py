"""A training's guaranteed share of the GPU while prompts keep coming (no starvation).

Prompts go first: a user waits for them. But a stream of prompts that never stops would hold a
training back for ever (a 60-step tune once took 78 minutes of wall time). So every second of
prompts served between two training steps earns the training `share / (1 - share)` seconds of
steps before the next prompt; with `share` 0.25 a training gets at least a quarter of the GPU
under any load, and prompts wait at most about one third of a prompt's time for it. Credit is
not banked: when no prompt waits, the training runs anyway and the credit goes back to 0.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TrainingTurns:
    """The credit of one running training, in seconds of steps owed to it."""

    def __init__(self, share: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = share / (1.0 - share)
        self._clock = clock
        self._credit = 0.0
        self._resumed_at: float | None = None

    def step_done(self) -> None:
        """A training step finished: what it took comes off the credit."""
        if self._resumed_at is not None:
            self._credit = max(0.0, self._credit - (self._clock() - self._resumed_at))

    def training_owed(self) -> bool:
        """True: the training takes its next step before the next prompt."""
        return self._credit > 0.0

    def prompt_served(self, seconds: float) -> None:
        self._credit += seconds * self.rate

    def no_prompt_waiting(self) -> None:
        self._credit = 0.0

    def resume(self) -> None:
        """The training has the GPU again (its next step starts now)."""
        self._resumed_at = self._clock()
