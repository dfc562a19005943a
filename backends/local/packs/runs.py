"""A run: the prompts one request makes for one tune, queued together and reported together.

Two requests make runs: a pack (`POST /p/:id/tunes`, on a new tune or on `tune_ids`) and a new
tune's own `tune[prompts_attributes][]` (`POST /tunes`). Both become a `RunPlan`: texts with the
subject written as `ohwx <class>`, options, a LoRA strength, and where they came from. A plan is
checked in full before anything is stored (a bad option is a 422, not half a run), then each
prompt is stored as an ordinary prompt of the tune (`tune_id` = the tune, text
`<lora:TUNE:STRENGTH> ...`, so `GET /tunes/:id/prompts` lists them with their state) carrying
`run_id`, `pack_id` and `orig_prompt_id` in its params. Prompts of a tune still training wait
for it (`schedule.py`); if the training fails, they fail with it.

Characteristics (`{"eye_color": "blue eyes"}`) fill `{{eye_color}}`; a placeholder without a
value is dropped with its comma. Values are plain words: no `<`/`>` (no tags smuggled in).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from backends.local import params as validate
from backends.local.packs.catalog import PLACEHOLDER, SUBJECT_TOKEN, Pack
from backends.local.packs.records import PackRecords
from backends.local.records import Row
from backends.local.store import JobStore

MAX_CHARACTERISTICS = 20
MAX_CHARACTERISTIC_CHARS = 100
MAX_ATTRIBUTE_PROMPTS = 20
ANY_LORA_TAG = re.compile(r"<\s*lora\s*:[^<>]*>", re.IGNORECASE)
ATTRIBUTE_OVERRIDES = ("callback", "num_images", "ar", "super_resolution", "inpaint_faces")
"""What `prompt_attributes` may set on every prompt of a pack run (`aspect_ratio` = `ar`)."""


@dataclass(frozen=True)
class PlannedPrompt:
    text: str
    """The subject as `ohwx <class>` (the tune's token goes in at `fields`), no LoRA tag."""
    options: Mapping[str, Any]
    strength: float = 1.0
    orig_prompt_id: int | None = None

    def fields(self, tune_id: int, token: str) -> dict[str, Any]:
        """The prompt as `parse_prompt` takes it, for tune `tune_id` with token `token`."""
        text = re.sub(rf"(?<!\w){SUBJECT_TOKEN}(?!\w)", token, self.text)
        return {**self.options, "text": f"<lora:{tune_id}:{self.strength:g}> {text}"}


@dataclass(frozen=True)
class RunPlan:
    prompts: tuple[PlannedPrompt, ...]
    pack_id: int | None = None
    prompts_callback: str | None = None


def pack_plan(pack: Pack, class_name: str, request: Mapping[str, Any]) -> RunPlan:
    """The pack's prompts for `class_name`, as the `tune` part of `POST /p/:id/tunes` asks:
    `prompt_ids` (a subset), `characteristics`, `prompt_attributes`, `prompts_callback`."""
    if class_name not in pack.prompts:
        raise validate.RequestError(
            f"pack {pack.slug!r} has no prompts for {class_name!r}; it has"
            f" {', '.join(pack.classes)}"
        )
    prompts = pack.prompts[class_name]
    wanted = parse_ids(request.get("prompt_ids"), "prompt_ids")
    if wanted:
        known = {p.id for p in prompts}
        unknown = sorted(set(wanted) - known)
        if unknown:
            raise validate.RequestError(
                f"prompt_ids {unknown} are not prompts of pack {pack.slug!r} for {class_name!r}"
            )
        prompts = tuple(p for p in prompts if p.id in set(wanted))
    values = characteristics(request.get("characteristics"))
    overrides = _overrides(request.get("prompt_attributes"))
    planned = tuple(
        PlannedPrompt(
            fill(p.text, values),
            {
                **{k: v for k, v in p.options.items() if k != "lora_strength"},
                "negative_prompt": fill(p.negative_prompt, values),
                **overrides,
            },
            p.strength,
            p.id,
        )
        for p in prompts
    )
    return RunPlan(planned, pack.id, _text(request.get("prompts_callback")))


def attributes_plan(items: Any) -> RunPlan | None:
    """`tune[prompts_attributes][]` of `POST /tunes`: prompts made with the tune, run once it
    is trained, their text as sent (write the subject, `ohwx man`, as on Astria). A
    `<lora:...>` tag in it (Astria's examples write `<lora:...>` for "this tune") is replaced
    by the new tune's; its strength, or `lora_scale`, is kept (default 1)."""
    if items in (None, "", [], {}):
        return None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise validate.RequestError("prompts_attributes must be a list of prompt objects")
    if len(items) > MAX_ATTRIBUTE_PROMPTS:
        raise validate.RequestError(f"at most {MAX_ATTRIBUTE_PROMPTS} prompts_attributes")
    planned = []
    for index, item in enumerate(items):
        text = str(item.get("text") or "")
        strength = item.get("lora_scale")
        tags = validate.LORA_TAG.findall(text)
        if strength in (None, "") and tags:
            strength = tags[0][1]
        text = " ".join(ANY_LORA_TAG.sub(" ", text).split())
        if not text:
            raise validate.RequestError(f"prompts_attributes[{index}]: text is required")
        options = {k: v for k, v in item.items() if k not in ("text", "lora_scale")}
        planned.append(PlannedPrompt(text, options, _strength(strength, index)))
    return RunPlan(tuple(planned))


def check(plan: RunPlan, *, token: str, native_size: int, max_side: int) -> None:
    """Every prompt of the plan as it will be stored (RequestError names the first bad one)."""
    for index, prompt in enumerate(plan.prompts):
        try:
            _parse(prompt, 0, token, native_size, max_side)
        except validate.RequestError as exc:
            raise validate.RequestError(f"prompt {index + 1} of the run: {exc}") from None


async def queue(
    store: JobStore,
    records: PackRecords,
    tune: Row,
    plan: RunPlan,
    *,
    native_size: int,
    max_side: int,
    origin: str | None,
) -> list[Row]:
    """Store the plan as a run of prompts of `tune` (queued; they wait for its training),
    in one transaction where the store has them (the fleet: with the run's job)."""
    check(plan, token=tune["token"], native_size=native_size, max_side=max_side)
    rows = []
    async with store.transaction():
        run_id = await records.create_run(tune["id"], plan.pack_id, plan.prompts_callback, origin)
        for prompt in plan.prompts:
            params = _parse(prompt, tune["id"], tune["token"], native_size, max_side)
            params = replace(
                params, run_id=run_id, pack_id=plan.pack_id, orig_prompt_id=prompt.orig_prompt_id
            )
            rows.append(await store.create_prompt(tune["id"], params.to_json(), origin=origin))
        await store.run_queued(run_id, tune["id"])
    return rows


def characteristics(value: Any) -> dict[str, str]:
    """`{"eye_color": "blue eyes"}` (JSON, form fields, or the CLI's JSON string), checked."""
    if value in (None, "", {}):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise validate.RequestError("characteristics must be an object") from None
    if not isinstance(value, dict) or len(value) > MAX_CHARACTERISTICS:
        raise validate.RequestError(
            f"characteristics must be an object of at most {MAX_CHARACTERISTICS} words"
        )
    out = {}
    for key, raw in value.items():
        text = " ".join(str(raw).split())
        if not re.fullmatch(r"\w{1,40}", str(key)):
            raise validate.RequestError(f"characteristics key {key!r} is not a plain name")
        if len(text) > MAX_CHARACTERISTIC_CHARS or "<" in text or ">" in text:
            raise validate.RequestError(
                f"characteristics[{key}] must be plain text of at most"
                f" {MAX_CHARACTERISTIC_CHARS} characters"
            )
        out[str(key)] = text
    return out


def fill(text: str, values: Mapping[str, str]) -> str:
    """`{{key}}` -> its value; an unfilled placeholder goes, with the comma it leaves."""
    filled = PLACEHOLDER.sub(lambda m: values.get(m.group(1), ""), text)
    parts = [" ".join(part.split()) for part in filled.split(",")]
    return ", ".join(part for part in parts if part)


def _parse(
    prompt: PlannedPrompt, tune_id: int, token: str, native_size: int, max_side: int
) -> validate.PromptParams:
    return validate.parse_prompt(
        prompt.fields(tune_id, token),
        native_size=native_size,
        max_side=max_side,
        random_seed=random.randrange(2**32),
    )


def _overrides(value: Any) -> dict[str, Any]:
    if value in (None, "", {}):
        return {}
    if not isinstance(value, dict):
        raise validate.RequestError("prompt_attributes must be an object")
    value = {("ar" if k == "aspect_ratio" else k): v for k, v in value.items()}
    overrides = {k: value[k] for k in ATTRIBUTE_OVERRIDES if value.get(k) not in (None, "")}
    if str(overrides.get("inpaint_faces")).strip().lower() in ("true", "1", "yes", "on"):
        overrides["super_resolution"] = True  # what Astria's inpaint_faces needs anyway
    if "ar" in overrides:
        overrides |= {"w": None, "h": None}  # the run's aspect wins over a prompt's size
    return overrides


def parse_ids(value: Any, name: str) -> list[int]:
    """`[1, "2"]`, `"3"` or nothing -> a list of ints; RequestError for anything else."""
    if value in (None, "", []):
        return []
    items: Sequence[Any] = value if isinstance(value, list) else [value]
    try:
        return [int(str(v)) for v in items]
    except ValueError:
        raise validate.RequestError(f"{name} must be a list of integers") from None


def _strength(value: Any, index: int) -> float:
    if value in (None, ""):
        return 1.0
    try:
        return float(value)
    except (TypeError, ValueError):
        raise validate.RequestError(
            f"prompts_attributes[{index}]: lora_scale must be a number"
        ) from None


def _text(value: Any) -> str | None:
    text = "" if value is None else str(value).strip()
    return text or None
