"""Prompt composition: what the user typed -> `<lora:ID:S> TOKEN CLASS ...` for the backend.

Two rules shape everything here. Astria (and our worker) accept at most ONE LoRA+TI tune per
SDXL prompt, so a prompt names exactly one personal model. And a user may only ever use their
own models: a `<lora:...>` tag is never passed through unless it names a tune in `owned`, and
every other `<name:...>` tag (`<faceid:...>`, `<hypernet:...>`, ...) is *removed* with a note,
since such tags could reach other people's tunes on the backend.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from bot.core.errors import UserError
from bot.core.prompt_language import looks_english
from bot.core.texts import text

LORA_TAG = re.compile(r"<\s*lora\s*:(?P<body>[^<>]*)>", re.IGNORECASE)
"""`<lora:ID>` or `<lora:ID:STRENGTH>`, any case, spaces allowed; the body is parsed below."""
OTHER_TAG = re.compile(r"<[^<>]*:[^<>]*>")
NEGATIVE_FLAG = re.compile(r"(?<!\S)(?:--|[—–])\s*(?:no|neg(?:ative)?)(?!\w)\s*:?", re.IGNORECASE)
"""Midjourney's `--no`, also `--neg`; phones turn `--` into a dash, so `—no` counts too."""

MIN_STRENGTH, MAX_STRENGTH = 0.0, 2.0
MAX_NEGATIVE_WORDS, MAX_NEGATIVE_CHARS = 40, 300
"""Long negatives dilute CLIP's 77-token window and mostly fight the LoRA."""
LONG_PROMPT_WORDS = 15

SD15_EMBEDDINGS = (
    "easynegative", "easynegativev2", "badhandv4", "bad-hands-5", "bad_prompt",
    "bad_prompt_version2", "ng_deepnegative_v1_75t", "verybadimagenegative",
    "verybadimagenegative_v1.3", "negative_hand-neg", "bad-artist", "bad-artist-anime",
    "bad-image-v2", "bad-image-v2-39000", "fastnegativev2", "baddream", "unrealisticdream",
    "bad-picture-chill-75v",
)  # fmt: skip
"""Textual-inversion names copied from SD1.5 recipes: SDXL has no such embeddings, so these
words would only be read as literal text."""
_NAMES = "|".join(re.escape(n) for n in sorted(SD15_EMBEDDINGS, key=len, reverse=True))
_EMBEDDING = rf"(?:embedding\s*:\s*)?(?:{_NAMES})(?:\.(?:pt|safetensors|bin))?(?:\s*:\s*[\d.]+)?"
SD15_EMBEDDING = re.compile(
    rf"\(\s*{_EMBEDDING}\s*\)|(?<![\w-]){_EMBEDDING}(?![\w-])", re.IGNORECASE
)


class PromptError(UserError):
    """The prompt can't be used as typed; `message` tells the user how to fix it."""


@dataclass(frozen=True)
class TuneRef:
    """The bits of a user's tune that prompts need; `backend_id` is the backend's tune id."""

    backend_id: int
    token: str
    class_name: str
    title: str | None = None


@dataclass(frozen=True)
class ComposedPrompt:
    """What to send (`text`, `negative_prompt`, `tune_id`) and what to tell the user (`notes`)."""

    text: str
    negative_prompt: str
    tune_id: int
    strength: float
    notes: tuple[str, ...]
    user_text: str


def compose_prompt(
    user_text: str,
    *,
    active: TuneRef | None,
    owned: Mapping[int, TuneRef],
    default_strength: float = 0.8,
) -> ComposedPrompt:
    """Build the backend prompt from `user_text`; raises PromptError with a user message."""
    notes: list[str] = []
    tags = list(LORA_TAG.finditer(user_text))
    if len(tags) > 1:
        raise PromptError(text("prompt.one_model_only"))
    tune, strength = active, default_strength
    if tags:
        tune, strength = _resolve_tag(tags[0]["body"], owned, default_strength)
    if tune is None:
        raise PromptError(_no_model_message(owned))
    strength = _clamp_strength(strength, notes)
    rest = _remove_other_tags(LORA_TAG.sub(" ", user_text), notes)
    positive, negative = _split_negative(rest)
    positive = _tidy(positive)
    if not positive:
        raise PromptError(text("prompt.empty", token=tune.token, class_name=tune.class_name))
    if len(positive.split()) > LONG_PROMPT_WORDS:
        notes.append(text("prompt.short_is_better", token=tune.token, class_name=tune.class_name))
    if not looks_english(positive):  # used as typed all the same: only the user knows the intent
        notes.append(text("prompt.not_english"))
    sent = f"<lora:{tune.backend_id}:{strength:g}> {_with_subject(positive, tune)}"
    negative = _clean_negative(negative, notes)
    return ComposedPrompt(sent, negative, tune.backend_id, strength, tuple(notes), user_text)


def _resolve_tag(
    body: str, owned: Mapping[int, TuneRef], default_strength: float
) -> tuple[TuneRef, float]:
    """The same answer for a name, a stranger's id and an id that doesn't exist: nothing leaks."""
    ref, _, raw_strength = (part.strip() for part in body.partition(":"))
    if ":" in raw_strength:
        raise PromptError(text("prompt.unreadable_tag"))
    tune = owned.get(int(ref)) if ref.isascii() and ref.isdigit() else None
    if tune is None:
        raise PromptError(text("prompt.not_your_model"))
    try:
        strength = float(raw_strength) if raw_strength else default_strength
    except ValueError:
        strength = math.nan
    if not math.isfinite(strength):
        raise PromptError(text("prompt.bad_strength", ref=ref))
    return tune, strength


def _clamp_strength(strength: float, notes: list[str]) -> float:
    """Above ~1.2 a LoRA burns the image; 0..2 is the range the backends accept."""
    clamped = round(min(MAX_STRENGTH, max(MIN_STRENGTH, strength)), 2)
    if clamped != round(strength, 2):
        notes.append(text("prompt.strength_clamped", strength=strength, used=clamped))
    return clamped


def _no_model_message(owned: Mapping[int, TuneRef]) -> str:
    return text("prompt.pick_a_model" if owned else "prompt.no_model")


def _remove_other_tags(prompt: str, notes: list[str]) -> str:
    """Drop `<x:y>` tags, then every stray angle bracket, so no tag can be rebuilt from parts."""
    removed = OTHER_TAG.findall(prompt)
    if removed:
        notes.append(text("prompt.tags_removed", tags=", ".join(removed)))
    return OTHER_TAG.sub(" ", prompt).replace("<", " ").replace(">", " ")


def _split_negative(prompt: str) -> tuple[str, str]:
    """Everything after the first `--no`/`--neg` is the negative prompt."""
    match = NEGATIVE_FLAG.search(prompt)
    if match is None:
        return prompt, ""
    return prompt[: match.start()], NEGATIVE_FLAG.sub(",", prompt[match.end() :])


def _clean_negative(negative: str, notes: list[str]) -> str:
    removed = [m.group(0).strip() for m in SD15_EMBEDDING.finditer(negative)]
    if removed:
        notes.append(text("prompt.embeddings_removed", names=", ".join(removed)))
    negative = _tidy(SD15_EMBEDDING.sub(",", negative))
    words = negative.split()
    if len(words) > MAX_NEGATIVE_WORDS or len(negative) > MAX_NEGATIVE_CHARS:
        negative = " ".join(words[:MAX_NEGATIVE_WORDS])
        if len(negative) > MAX_NEGATIVE_CHARS:
            negative = negative[: MAX_NEGATIVE_CHARS + 1].rsplit(" ", 1)[0]
        negative = negative.rstrip(" ,")
        notes.append(text("prompt.negative_shortened", words=len(negative.split())))
    return negative


def _tidy(prompt: str) -> str:
    """Whitespace and commas left behind by removals: `a ,, b ()` -> `a, b`."""
    prompt = re.sub(r"\(\s*[\s,]*\)", " ", prompt)
    prompt = re.sub(r"\s*,[\s,]*", ", ", prompt)
    return re.sub(r"\s+", " ", prompt).strip(" ,")


def _with_subject(positive: str, tune: TuneRef) -> str:
    """Put `TOKEN CLASS` in once: the token binds the learned face, the class word its kind.

    Text that has the token already is used as written (the user placed it). Text that has
    the class word ("a man on a beach") gets the token before it, not a second "man".
    """
    if _find_word(tune.token, positive) is not None:
        return positive
    at = _find_word(tune.class_name, positive)
    if at is not None:
        return f"{positive[:at]}{tune.token} {positive[at:]}"
    return f"{tune.token} {tune.class_name} {positive}"


def _find_word(word: str, prompt: str) -> int | None:
    match = re.search(rf"(?<!\w){re.escape(word)}(?!\w)", prompt, re.IGNORECASE)
    return None if match is None else match.start()
