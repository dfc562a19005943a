"""What goes wrong in a way the user can act on, and the one place backend failures get words.

`UserError` is the root of every refusal the chat shows as the answer itself: its message
(from `bot.core.texts`) says what went wrong and what to do. Frontends catch `UserError` once,
around every handler, and show its message; anything else is a bug, logged, and answered with
an apology. The subclasses live beside the rules that raise them:

- `bot.core.prompts.PromptError`: a prompt that cannot be used as typed;
- `bot.core.photos.PhotoRejected`: a photo that cannot be used (mostly collected into a
  batch summary rather than raised to the chat);
- `bot.core.photos.NotEnoughPhotos`: `/train` with too small a set.

Backend failures (`backends.base.BackendError`) are not user errors by type: the tracker
retries most of them. Where one does end a job or a request, `backend_problem` turns it into
the sentence the user reads.
"""

from __future__ import annotations

from backends.base import (
    AuthError,
    BackendError,
    NotFoundError,
    RateLimitError,
    ServerError,
    ValidationError,
)
from bot.core.texts import text


class UserError(Exception):
    """Something the user asked for cannot be done; `message` says why and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


_BACKEND_KEYS: tuple[tuple[type[BackendError], str], ...] = (
    (AuthError, "backend.refused_key"),
    (NotFoundError, "backend.not_found"),
    (RateLimitError, "backend.busy"),
    (ServerError, "backend.trouble"),
)


def backend_problem(error: BackendError) -> str:
    """The user's words for a backend failure; a 422 passes on the service's own reason."""
    if isinstance(error, ValidationError):
        return text("backend.rejected", reason=error)
    for kind, key in _BACKEND_KEYS:
        if isinstance(error, kind):
            return text(key)
    return text("backend.failed")
