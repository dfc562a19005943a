"""What the store keeps, as plain frozen records, and the named states those records go through.

The enums are `StrEnum`s whose values are the strings stored in the database (and logged), so
an existing database reads back unchanged, and a member compares equal to its stored string.
Code names a state by its member (`TuneState.TRAINING`), never by a bare string; SQL text is
the one place the values are spelled out (see `sql_in`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class TuneState(StrEnum):
    """A user's model: creating -> training -> trained | failed | cancelled."""

    CREATING = "creating"
    """Recorded here; its photos are being uploaded (it may not exist on the backend yet)."""
    TRAINING = "training"
    TRAINED = "trained"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def unfinished(self) -> bool:
        return self in TUNE_UNFINISHED


class GenerationState(StrEnum):
    """One `/imagine`: queued -> submitted -> done | failed | cancelled."""

    QUEUED = "queued"
    """Recorded here, not yet created on the backend."""
    SUBMITTED = "submitted"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def unfinished(self) -> bool:
        return self in GENERATION_UNFINISHED


class JobKind(StrEnum):
    """What the job tracker drives, and what a delivery (and a callback URL) belongs to."""

    TUNE = "tune"
    GENERATION = "generation"
    SHOOT = "photoshoot"
    """A pack run on one model (bot/core/shoot_jobs.py): many prompts, one status message."""


class ShootState(StrEnum):
    """A `/shoot`: waiting (its model still trains) -> submitting -> running -> done | failed |
    cancelled. `done` also covers a shoot whose prompts partly failed: what came is kept."""

    WAITING = "waiting"
    """Recorded; starts when its model is trained."""
    TRAINING = "training"
    """Asked for with `/train <class> <pack>`: the pack run creates the model (POST
    /p/:id/tunes with the photos), so its prompts exist on the backend once the tune does."""
    SUBMITTING = "submitting"
    """Its model is trained; the pack run is not (known to be) created on the backend yet."""
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def unfinished(self) -> bool:
        return self in SHOOT_UNFINISHED


class ShotState(StrEnum):
    """One prompt of a shoot on the backend: running -> done | failed | cancelled."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ActionKind(StrEnum):
    """What a chat button does when pressed (stored in the `actions` table)."""

    REROLL = "reroll"
    VARIATION = "variation"
    UPSCALE = "upscale"
    FILES = "files"
    TRAIN = "train"
    MODEL = "model"
    DELETE = "delete"
    IMAGINE = "imagine"
    """Make what a plain-text prompt previewed (the argument is the text)."""
    BUY = "buy"
    """Send the invoice of a credit package (the argument is `credits:stars`)."""
    LANGUAGE = "language"
    CONSENT = "consent"
    PACK = "pack"
    """Show a pack and its confirm button (the argument is the pack id)."""
    SHOOT = "shoot"
    """Run a pack on the active model (the argument is the pack id)."""
    LIKE = "like"
    """Like (or unlike) one shot of a shoot (the argument is the shot id)."""
    MORE = "more"
    """A new image set from one shot's prompt text (the argument is the shot id)."""


TUNE_UNFINISHED = (TuneState.CREATING, TuneState.TRAINING)
"""Tunes the tracker still drives; /status shows them, /cancel stops them."""
GENERATION_UNFINISHED = (GenerationState.QUEUED, GenerationState.SUBMITTED)
"""Generations waiting for images: the queue /status counts."""
SHOOT_UNFINISHED = (
    ShootState.WAITING,
    ShootState.TRAINING,
    ShootState.SUBMITTING,
    ShootState.RUNNING,
)
"""Shoots the tracker still drives."""
TUNE_GAVE_UP = (TuneState.FAILED, TuneState.CANCELLED)
"""Tunes that end without a model: their photos go back to the pending set."""


def sql_in(states: Iterable[StrEnum]) -> str:
    """`IN ('a', 'b')` for SQL text: literal, so SQLite can match the partial indexes."""
    return "IN (" + ", ".join(f"'{state.value}'" for state in states) + ")"


@dataclass(frozen=True)
class User:
    id: int
    platform: str
    platform_user_id: str
    display_name: str | None
    active_tune_id: int | None
    language: str | None = None
    """Chosen with /language; None = follow the platform's language."""
    platform_language: str | None = None
    """The language tag the platform last sent for this user (`ru`, `pt-BR`), if any."""
    consented_at: datetime | None = None
    """When the user confirmed the photos are of a consenting adult (consent.py); None: not yet."""
    last_seen_at: datetime | None = None
    """When the user last used the bot, as stored (retention.py writes it at most hourly)."""

    @property
    def key(self) -> str:
        """`platform:id`, the form ADMIN_IDS and ALLOWED_IDS use."""
        return f"{self.platform}:{self.platform_user_id}"


@dataclass(frozen=True)
class Photo:
    id: int
    user_id: int
    sha256: str
    width: int
    height: int
    size_bytes: int
    path: str
    phash: str | None = None
    """The perceptual hash intake's inspection gave (issue 15); None: not inspected."""
    attributes: dict[str, str] = field(default_factory=dict)
    """What inspection saw (`glasses`: `glasses` ...): becomes the tune's characteristics."""


@dataclass(frozen=True)
class TuneRecord:
    """A user's model (see TuneState for its life)."""

    id: int
    user_id: int
    title: str
    class_name: str
    label: str | None
    token: str
    backend_id: int | None
    state: TuneState
    eta: datetime | None
    error: str | None
    callback_secret: str
    created_at: datetime
    trained_at: datetime | None
    advice: tuple[str, ...] = field(default=(), compare=False)
    """What /train says about a weak photo set (bot/core/photo_set.py); not stored."""

    @property
    def display_name(self) -> str:
        return self.label or f"{self.class_name} #{self.id}"


@dataclass(frozen=True)
class GenerationRecord:
    """One `/imagine` (see GenerationState for its life)."""

    id: int
    user_id: int
    tune_id: int
    prompt_typed: str
    prompt_sent: str
    negative_prompt: str
    options: dict[str, Any]
    seed: int
    backend_id: int | None
    state: GenerationState
    error: str | None
    result_files: list[str]
    callback_secret: str
    created_at: datetime


@dataclass(frozen=True)
class Delivery:
    """Where a job's progress and result go: chat, message to reply to, status message."""

    id: int
    job_kind: JobKind
    job_id: int
    platform: str
    chat_id: str
    is_private: bool
    reply_to_message_id: str | None
    status_message_id: str | None
    status_text: str | None
    delivered_at: datetime | None


@dataclass(frozen=True)
class ChatTarget:
    """The chat a request came from; becomes a Delivery row."""

    platform: str
    chat_id: str
    is_private: bool = True
    reply_to_message_id: str | None = None


@dataclass(frozen=True)
class Action:
    """What a chat button does when pressed, and whose it is.

    `kind` stays a plain string when read back: a button made by a later version (or another
    platform) may name a kind this one does not know, and is refused where it is pressed."""

    id: int
    token: str
    user_id: int
    generation_id: int | None
    kind: str
    argument: str | None


@dataclass(frozen=True)
class ShootRecord:
    """One `/shoot`: a pack run on one of the user's models (see ShootState)."""

    id: int
    user_id: int
    tune_id: int
    pack_id: int
    pack_title: str
    num_images: int
    """What the pack makes for the model's class: the images held when it was asked for."""
    state: ShootState
    error: str | None
    callback_secret: str
    created_at: datetime


@dataclass(frozen=True)
class Shot:
    """One prompt of a shoot as the backend ran it, and what became of its images."""

    id: int
    shoot_id: int
    backend_id: int
    text: str
    num_images: int
    state: ShotState
    result_files: list[str]
    delivered: bool
    liked: bool
