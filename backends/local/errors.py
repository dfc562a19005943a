"""Every exception the worker raises on purpose, in one tree.

Three families, each handled in one place:

- `Aborted`: not a failure. The worker is stopping (or the job's row went away): the work is
  dropped and the job stays queued, to start over at the next start() (queue.py).
- `JobFailed`: a job ends failed for a reason a user can read. `user_message` becomes the
  prompt's `user_error` or the tune's `error` (Astria's 422-style message, delivered with the
  job) and the log gets one line, no stack trace: a user's photos or this worker's build are
  not bugs. Kinds: `GenerationError`, `TrainingFailed` (with `PhotoError` naming the photo)
  and `TrainerUnavailable`.
- `HTTPError`: a request is answered with its status and `{"error": message}` (the exception
  handlers in http.py); `RequestError` is the 422 of an invalid request (params.py).

Besides: `ConfigError`, a bad environment variable, refused at start (a ValueError, which the
bot's wiring turns into its own one-line configuration error); and the two errors about a
tune's files (`ArtefactError`, `SlotMisfit`), which generation wraps in a GenerationError that
says what they mean for the prompt.
"""

from __future__ import annotations


class Aborted(Exception):
    """The worker is stopping: drop the work, keep the job queued (it starts over later)."""


class JobFailed(Exception):
    """A job cannot be done as submitted; `user_message` is written for the user."""

    @property
    def user_message(self) -> str:
        return str(self)


class GenerationError(JobFailed):
    """The prompt cannot be run; the message becomes the prompt's `user_error`."""


class TrainingFailed(JobFailed):
    """The tune cannot be trained as submitted (its photos, its steps, the GPU's memory)."""

    @property
    def user_message(self) -> str:
        return f"training failed: {self}"


class PhotoError(TrainingFailed):
    """A training photo is unusable; the message names the photo and says what to do."""


class TrainerUnavailable(JobFailed):
    """This worker build cannot train; the message becomes the tune's `error`."""


class HTTPError(Exception):
    """Answered with `status` and `{"error": message}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class RequestError(HTTPError):
    """The request is invalid: answered 422 with this message, before any job is queued."""

    def __init__(self, message: str) -> None:
        super().__init__(422, message)


class ConfigError(ValueError):
    """An environment variable holds a value the worker cannot use; the message names it."""


class ArtefactError(Exception):
    """The tune folder is missing a file or holds something of the wrong shape."""


class SlotMisfit(Exception):
    """The tune does not fit the LoRA slot (a layer outside it, or a rank above the max)."""
