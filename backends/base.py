"""The backend contract: the Backend protocol, the records it returns and the errors it raises.

The contract is the Astria API (docs/architecture.md §2). Both the hosted Astria service and our
own GPU worker are reached through one client, so these types mirror Astria's tune and prompt
objects, reduced to what the bot needs, with the raw JSON kept for anything else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from backends.findings import Finding

SDXL_BASE_TUNE_ID = 666678
"""Astria's gallery id of SDXL 1.0: LoRA+TI tunes are trained on it and prompted through it."""

DEFAULT_TOKEN = "ohwx"
SCHEDULERS = ("euler_a", "euler", "dpm++2m", "dpm++2m_karras", "dpm++sde", "dpm++sde_karras")


class JobStatus(StrEnum):
    """The `status` of a tune or prompt as our worker reports it beside Astria's fields (hosted
    Astria sends none: there `trained_at`, `images` and `user_error` tell the same)."""

    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"


class BackendError(Exception):
    """Base of every backend failure. `user_message` is safe and useful to show in a chat."""

    user_message = "The image service failed. Please try again in a few minutes."

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthError(BackendError):
    """401/403: the API key is wrong. Retrying will not help; the operator must fix the key."""

    user_message = "The image service refused our key. The bot operator has to fix the setup."


class NotFoundError(BackendError):
    """404: the tune or prompt does not exist (any more) on the backend."""

    user_message = "The image service no longer knows this model or job."


class ValidationError(BackendError):
    """422: the request is invalid. The backend's own message is shown to the user."""

    @property
    def user_message(self) -> str:  # type: ignore[override]
        return f"The image service rejected the request: {self}"


class RateLimitError(BackendError):
    """429: too many requests. `retry_after` (seconds) comes from the Retry-After header."""

    user_message = "The image service is busy right now. Your request is kept; it will go on."

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, status=429)
        self.retry_after = retry_after


class ServerError(BackendError):
    """5xx or a network failure/timeout: transient. Reads are retried; creates are not."""

    user_message = "The image service is having trouble. Your request is kept; it will go on."


@dataclass(frozen=True)
class Tune:
    """A trained (or training) personal model. Done when `trained_at` is set."""

    id: int
    title: str
    name: str
    token: str
    eta: datetime | None = None
    started_training_at: datetime | None = None
    trained_at: datetime | None = None
    error: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> bool:
        return self.trained_at is not None

    @property
    def failed(self) -> bool:
        return self.error is not None


@dataclass(frozen=True)
class Prompt:
    """One generation request. Done when `images` is non-empty, failed when `user_error` is set."""

    id: int
    tune_id: int
    text: str
    images: tuple[str, ...] = ()
    user_error: str | None = None
    started_training_at: datetime | None = None
    trained_at: datetime | None = None
    pack_id: int | None = None
    """The pack this prompt was made from (`POST /p/:id/tunes`), else None."""
    orig_prompt_id: int | None = None
    """The pack's own prompt (its template) this one was made from: likes add up there."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> bool:
        return bool(self.images)

    @property
    def failed(self) -> bool:
        return bool(self.user_error)


@dataclass(frozen=True)
class TrainingImage:
    """Bytes of one training photo. Bytes, never a URL: chat file URLs hold the bot token."""

    filename: str
    content: bytes
    content_type: str = "image/jpeg"


@dataclass(frozen=True)
class TuneRequest:
    """What `create_tune` sends. `title` is the idempotency key: one UUID per training."""

    title: str
    name: str
    images: Sequence[TrainingImage]
    token: str = DEFAULT_TOKEN
    base_tune_id: int = SDXL_BASE_TUNE_ID
    model_type: str = "pti"
    steps: int | None = None
    face_crop: bool | None = True
    callback: str | None = None
    characteristics: Mapping[str, str] = field(default_factory=dict)
    """What the photos showed (`glasses`: `glasses` ...), for pack prompts' `{{key}}`s."""


@dataclass(frozen=True)
class PromptRequest:
    """What `create_prompt` sends. Defaults follow the seed's advice for SDXL LoRA+TI."""

    text: str
    negative_prompt: str = ""
    num_images: int = 4
    seed: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    w: int | None = None
    h: int | None = None
    scheduler: str = "euler_a"
    super_resolution: bool = True
    inpaint_faces: bool = True
    face_correct: bool = False
    hires_fix: bool = False
    callback: str | None = None


@dataclass(frozen=True)
class PackCost:
    """What a pack makes for one class: how many images, at what price (the backend's unit;
    Astria's `costs` give cents, `cost_mc_hash` millicents; None when not given)."""

    num_images: int | None = None
    cost: float | None = None
    cost_mc: int | None = None


@dataclass(frozen=True)
class PackPrompt:
    """One of a pack's prompts for a class. Astria shows only `id` and sample `images`; our
    worker also shows the text. `likes` is the sum of likes on every image made from it."""

    id: int
    text: str = ""
    num_images: int | None = None
    images: tuple[str, ...] = ()
    likes: int = 0


@dataclass(frozen=True)
class Pack:
    """A curated photoshoot: per class (man, woman, ...) a set of prompts, run on a tune."""

    id: int
    slug: str
    title: str
    description: str = ""
    cover_url: str | None = None
    costs: Mapping[str, PackCost] = field(default_factory=dict)
    prompts_per_class: Mapping[str, tuple[PackPrompt, ...]] = field(default_factory=dict)
    likes: int = 0
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names the pack has prompts for (a pack list item only shows its costs)."""
        return tuple(dict.fromkeys([*self.costs, *self.prompts_per_class]))

    def supports(self, class_name: str) -> bool:
        return class_name in self.classes

    def num_images(self, class_name: str) -> int | None:
        """Images one run makes for `class_name`: the stated cost, else the prompts' sum."""
        cost = self.costs.get(class_name)
        if cost is not None and cost.num_images is not None:
            return cost.num_images
        prompts = self.prompts_per_class.get(class_name)
        if not prompts or any(p.num_images is None for p in prompts):
            return None
        return sum(p.num_images or 0 for p in prompts)


@dataclass(frozen=True)
class PackRunRequest:
    """What `run_pack` sends (`POST /p/:id/tunes`).

    Either a new tune (`title`, `name` and `images` or `image_urls`: it trains, then the pack
    runs on it) or `tune_ids`: the pack's prompts on existing tunes, no training.
    """

    title: str | None = None
    name: str | None = None
    images: Sequence[TrainingImage] = ()
    image_urls: Sequence[str] = ()
    tune_ids: Sequence[int] = ()
    prompt_ids: Sequence[int] = ()
    """Run only these of the pack's prompts; empty = all of them for the class."""
    characteristics: Mapping[str, str] = field(default_factory=dict)
    """Fill the prompts' `{{key}}` placeholders, e.g. {"eye_color": "blue eyes"}."""
    callback: str | None = None
    """POSTed `{"tune": ...}` when a new tune has trained."""
    prompt_callback: str | None = None
    """Sent as `prompt_attributes[callback]`: POSTed `{"prompt": ...}` per finished prompt."""
    prompts_callback: str | None = None
    """POSTed once with the array of the run's prompts when all of them are done."""
    num_images: int | None = None
    aspect_ratio: str | None = None
    inpaint_faces: bool | None = None


@dataclass(frozen=True)
class PackRun:
    """The answer to `run_pack`: the new tune (None with `tune_ids` where the backend answers
    only "Prompts created", as Astria may) and the prompts made, when the backend lists them
    (our worker does; otherwise `list_prompts(tune_id)` shows them, by `pack_id`)."""

    tune: Tune | None
    prompts: tuple[Prompt, ...] = ()
    raw: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Inspection:
    """What `POST /images/inspect` said about one photo, on either backend.

    `findings` unifies both: hosted Astria's booleans mapped onto `Finding`s, and our
    worker's own `findings`. The worker also measures (None from hosted Astria, whose
    figures the bot takes itself with `backends.photo_quality`)."""

    name: str | None
    """The class seen (`man`, `cat` ...); None when nothing of the class was seen."""
    attributes: dict[str, str]
    """Astria's string attributes that have a value (`eye_color`: `blue eyes` ...): the
    tune's `characteristics`. Unknown ("NONE") and empty ones are left out."""
    findings: frozenset[Finding]
    faces: int | None = None
    face_fraction: float | None = None
    sharpness: float | None = None
    phash: str | None = None
    """16 hex digits; pass the set's hashes to the next inspect as `hashes`."""
    near_duplicate_of: int | None = None
    """Index into the `hashes` sent with the request."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


class Backend(Protocol):
    """Everything the bot asks of an image backend (implemented by `backends.astria`)."""

    async def create_tune(self, request: TuneRequest) -> Tune: ...

    async def get_tune(self, tune_id: int) -> Tune: ...

    async def list_tunes(self) -> list[Tune]: ...

    async def delete_tune(self, tune_id: int) -> None: ...

    async def create_prompt(self, tune_id: int, request: PromptRequest) -> Prompt: ...

    async def get_prompt(self, prompt_id: int, tune_id: int | None = None) -> Prompt: ...

    async def list_prompts(self, tune_id: int) -> list[Prompt]: ...

    async def delete_prompt(self, prompt_id: int) -> None: ...

    async def list_packs(
        self, *, gallery: bool = False, order: str | None = None
    ) -> list[Pack]: ...

    async def get_pack(self, pack: int | str) -> Pack: ...

    async def run_pack(self, pack_id: int, request: PackRunRequest) -> PackRun: ...

    async def like_prompt(self, prompt_id: int) -> None: ...

    async def unlike_prompt(self, prompt_id: int) -> None: ...

    async def inspect_image(
        self, name: str, image: TrainingImage, *, hashes: Sequence[str] = ()
    ) -> Inspection: ...

    async def download(self, url: str) -> bytes: ...

    async def aclose(self) -> None: ...
