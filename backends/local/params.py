"""Parse and validate what a client POSTs: Astria's `tune[...]`/`prompt[...]` fields.

Everything that can be refused is refused here, before a job is queued, so a client learns of a
bad request at once (422 `{"error": ...}`) instead of from a failed job minutes later.
Forms carry strings ("true", "4"); JSON carries typed values; both come through the same code.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from backends.base import DEFAULT_TOKEN, SCHEDULERS
from backends.local.errors import RequestError
from backends.local.training_recipe import MAX_STEPS as MAX_TUNE_STEPS
from backends.routing import MAX_ID

LORA_TAG = re.compile(r"<lora:([^:>]{0,32}):([^:>]{0,32})>", re.IGNORECASE)
"""Bounded parts: each `<lora:` looks at most ~70 characters ahead, so matching stays linear in
the text's length (an unbounded `[^>]*` made a text of repeated `<lora:a:` quadratic)."""
OTHER_TAG = re.compile(r"<(faceid|hypernet|embedding):", re.IGNORECASE)
MAX_TEXT_CHARS = 4000
"""A prompt's text and negative prompt: CLIP reads 77 tokens; far beyond that is an abuse."""
MAX_FIELD_CHARS = 1000
"""Any other text field (title, name, callback URL, branch)."""
MAX_IMAGES = 8
MIN_SIDE = 64
DEFAULT_STEPS = 30
MAX_STEPS = 50
DEFAULT_CFG = 5.0
MAX_SEED = 2**32 - 1
MIN_PHOTO_SIDE = 1024
"""Training photos' short side: SDXL learns at 1024, and an upscaled small photo teaches blur."""

ASPECTS: dict[str, tuple[int, int]] = {
    # SDXL's trained buckets (w, h) at 1024² ≈ 1 MP, scaled for models with another native size.
    "1:1": (1024, 1024),
    "square": (1024, 1024),
    "portrait": (832, 1216),
    "2:3": (832, 1216),
    "3:4": (896, 1152),
    "4:5": (896, 1088),
    "9:16": (768, 1344),
    "9:21": (640, 1536),
    "landscape": (1216, 832),
    "3:2": (1216, 832),
    "4:3": (1152, 896),
    "5:4": (1088, 896),
    "16:9": (1344, 768),
    "21:9": (1536, 640),
    "anamorphic": (1536, 640),
}


def too_small_message(name: str, width: int, height: int) -> str:
    """The one wording for a photo below the minimum, used at acceptance and in the trainer."""
    return (
        f"{name} is {width}x{height} px: training photos need at least {MIN_PHOTO_SIDE} px on the"
        " short side (send the originals as files, not compressed chat photos)"
    )


@dataclass(frozen=True)
class PromptParams:
    """A validated prompt request, stored as JSON with the job so a restart replays it exactly."""

    text: str
    clean_text: str
    """`text` without the `<lora:...>` tag: what the text encoders see."""
    negative_prompt: str
    num_images: int
    seed: int
    steps: int
    cfg_scale: float
    w: int
    h: int
    scheduler: str
    super_resolution: bool
    inpaint_faces: bool
    hires_fix: bool
    ar: str | None
    lora_tune_id: int | None
    lora_strength: float
    callback: str | None
    pack_id: int | None = None
    """Made by a pack run (`POST /p/:id/tunes`): the pack, and below the pack's own prompt."""
    orig_prompt_id: int | None = None
    run_id: int | None = None
    """The run (a pack or `prompts_attributes` on one tune) it belongs to; see `packs`."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PromptParams:
        return cls(**data)


@dataclass(frozen=True)
class TuneParams:
    """A validated tune request (the images travel separately, as bytes)."""

    title: str
    name: str
    token: str
    base_tune_id: int
    model_type: str
    steps: int | None
    face_crop: bool | None
    callback: str | None
    branch: str | None


def parse_prompt(
    fields: dict[str, Any], *, native_size: int, max_side: int, random_seed: int
) -> PromptParams:
    """Validate a prompt; `random_seed` is used (and stored) when the client sent none."""
    text = _str(fields.get("text"), "text", MAX_TEXT_CHARS)
    if not text.strip():
        raise RequestError("text is required")
    if OTHER_TAG.search(text):
        raise RequestError("only <lora:ID:STRENGTH> tags are supported by this worker")
    tags = LORA_TAG.findall(text)
    if len(tags) > 1:
        raise RequestError("a prompt may hold at most one <lora:ID:STRENGTH> of a LoRA+TI tune")
    lora_id: int | None = None
    strength = 1.0
    if tags:
        raw_id, raw_strength = tags[0]
        if not raw_id.strip().isdigit():
            raise RequestError(f"unknown LoRA {raw_id!r}: use the id of a trained tune")
        lora_id = int(raw_id)
        if lora_id > MAX_ID:
            raise RequestError(f"unknown LoRA {raw_id!r}: use the id of a trained tune")
        if not raw_strength.strip():
            raise RequestError("lora strength is missing: write <lora:ID:1>")
        strength = _float(raw_strength, "lora strength")
        if not 0.0 <= strength <= 2.0:
            raise RequestError("lora strength must be between 0 and 2")
    clean = " ".join(LORA_TAG.sub(" ", text).split())

    num_images = _int(fields.get("num_images"), "num_images", default=4)
    if not 1 <= num_images <= MAX_IMAGES:
        raise RequestError(f"num_images must be between 1 and {MAX_IMAGES}")
    scheduler = _str(fields.get("scheduler"), "scheduler").strip() or "euler_a"
    if scheduler not in SCHEDULERS:
        raise RequestError(f"unknown scheduler {scheduler!r}; use one of {', '.join(SCHEDULERS)}")
    steps = _int(fields.get("steps"), "steps", default=DEFAULT_STEPS) or DEFAULT_STEPS
    if not 1 <= steps <= MAX_STEPS:
        raise RequestError(f"steps must be between 1 and {MAX_STEPS}")
    cfg = _float(fields.get("cfg_scale"), "cfg_scale", default=DEFAULT_CFG)
    if not 0.0 <= cfg <= 15.0:
        raise RequestError("cfg_scale must be between 0 and 15")
    seed = _int(fields.get("seed"), "seed", default=random_seed)
    if not 0 <= seed <= MAX_SEED:
        raise RequestError(f"seed must be between 0 and {MAX_SEED}")

    super_resolution = _bool(fields.get("super_resolution"), "super_resolution")
    inpaint_faces = _bool(fields.get("inpaint_faces"), "inpaint_faces")
    hires_fix = _bool(fields.get("hires_fix"), "hires_fix")
    if inpaint_faces and not super_resolution:
        raise RequestError("inpaint_faces requires super_resolution")
    if hires_fix and not super_resolution:
        raise RequestError("hires_fix requires super_resolution")

    ar = _str(fields.get("ar") or fields.get("aspect_ratio"), "ar").strip() or None
    w, h = _size(fields, ar, native_size=native_size, max_side=max_side)
    return PromptParams(
        text=text,
        clean_text=clean,
        negative_prompt=_str(fields.get("negative_prompt"), "negative_prompt", MAX_TEXT_CHARS),
        num_images=num_images,
        seed=seed,
        steps=steps,
        cfg_scale=cfg,
        w=w,
        h=h,
        scheduler=scheduler,
        super_resolution=super_resolution,
        inpaint_faces=inpaint_faces,
        hires_fix=hires_fix,
        ar=ar,
        lora_tune_id=lora_id,
        lora_strength=strength,
        callback=_str(fields.get("callback"), "callback").strip() or None,
    )


def parse_tune(fields: dict[str, Any], *, n_images: int, base_ids: set[int]) -> TuneParams:
    """Validate a tune; only LoRA+TI ("pti"/"lora") tunes on one of our base models train here."""
    title = _str(fields.get("title"), "title").strip()
    name = _str(fields.get("name"), "name").strip()
    if not title:
        raise RequestError("title is required")
    if not name:
        raise RequestError("name (the class word: man, woman, ...) is required")
    if n_images < 1:
        raise RequestError("images are required (tune[images][] file parts or image_urls)")
    base = _int(fields.get("base_tune_id"), "base_tune_id", default=min(base_ids))
    if base not in base_ids:
        raise RequestError(f"base_tune_id {base} is not a base model of this worker")
    model_type = _str(fields.get("model_type"), "model_type").strip() or "pti"
    if model_type not in ("pti", "lora"):
        raise RequestError("only model_type pti (LoRA + text embedding) is trained here")
    token = _str(fields.get("token"), "token").strip() or DEFAULT_TOKEN
    if not re.fullmatch(r"[a-z][a-z0-9]{1,15}", token):
        raise RequestError("token must be 2-16 lowercase letters/digits, starting with a letter")
    steps = _int(fields.get("steps"), "steps", default=0) or None
    if steps is not None and not 1 <= steps <= MAX_TUNE_STEPS:
        raise RequestError(f"steps must be between 1 and {MAX_TUNE_STEPS}")
    face_crop_value = fields.get("face_crop")
    face_crop = None if face_crop_value in (None, "") else _bool(face_crop_value, "face_crop")
    return TuneParams(
        title=title,
        name=name,
        token=token,
        base_tune_id=base,
        model_type="pti",
        steps=steps,
        face_crop=face_crop,
        callback=_str(fields.get("callback"), "callback").strip() or None,
        branch=_str(fields.get("branch"), "branch").strip() or None,
    )


def _size(fields: dict[str, Any], ar: str | None, *, native_size: int, max_side: int) -> tuple:
    w = _int(fields.get("w"), "w", default=0)
    h = _int(fields.get("h"), "h", default=0)
    if not w and not h:
        if ar is not None and ar not in ASPECTS:
            raise RequestError(f"unknown ar {ar!r}; use one of {', '.join(ASPECTS)}")
        bw, bh = ASPECTS[ar or "1:1"]
        return _round8(bw * native_size / 1024), _round8(bh * native_size / 1024)
    if not w or not h:
        # One side given: keep the other at the aspect's proportion.
        bw, bh = ASPECTS.get(ar or "1:1", (1024, 1024))
        w = w or _round8(h * bw / bh)
        h = h or _round8(w * bh / bw)
    for side, value in (("w", w), ("h", h)):
        if value % 8:
            raise RequestError(f"{side} must be a multiple of 8")
        if not MIN_SIDE <= value <= max_side:
            raise RequestError(f"{side} must be between {MIN_SIDE} and {max_side}")
    return w, h


def _round8(value: float) -> int:
    return max(MIN_SIDE, round(value / 8) * 8)


def _str(value: Any, name: str, max_chars: int = MAX_FIELD_CHARS) -> str:
    """Text a client sent: a string or a number, storable as UTF-8 (no lone surrogate, which
    SQLite stores but no answer can carry), within `max_chars`."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        raise RequestError(f"{name} must be text")
    text = str(value)
    if len(text) > max_chars:
        raise RequestError(f"{name} is longer than {max_chars} characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError(f"{name} is not valid Unicode text") from None
    if "\x00" in text:
        raise RequestError(f"{name} must not contain a null character")
    return text


def _int(value: Any, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise RequestError(f"{name} must be an integer")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise RequestError(f"{name} must be an integer") from None
    if not number.is_integer() or abs(number) > MAX_ID:
        raise RequestError(f"{name} must be an integer in range")
    return int(number)


def _float(value: Any, name: str, default: float = 0.0) -> float:
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        raise RequestError(f"{name} must be a number") from None


def _bool(value: Any, name: str) -> bool:
    if value is None or value == "":
        return False
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise RequestError(f"{name} must be true or false")
