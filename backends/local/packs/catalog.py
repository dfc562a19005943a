"""The pack catalog: curated photoshoots read from TOML files, checked once at load.

Where packs come from: the project's own folder (`shipped/`, installed with the package), then
the operator's folder (`WORKER_PACKS_DIR`). An operator's pack with the slug of a shipped one
replaces it, and keeps its id unless it declares another.

A pack file (the shipped ones are complete examples):

    id = 101                          # optional; default derived from the slug (stable)
    slug = "corporate-headshots"      # optional; default the file name without .toml
    title = "Corporate headshots"
    description = "Business portraits for LinkedIn and company pages."

    [defaults]                        # optional: options for every prompt of the pack
    negative_prompt = "blurry, deformed, cartoon"
    num_images = 4
    ar = "portrait"                   # an aspect (params.ASPECTS), or w and h in px
    super_resolution = true
    inpaint_faces = true

    [[prompts.man]]                   # per class (man, woman, person, boy, girl, dog ...)
    text = "ohwx man, corporate headshot, navy suit, soft studio light"
    num_images = 2                    # any option above, for this prompt only

Options: `negative_prompt`, `num_images` (1-8), `ar`, `w`, `h`, `super_resolution`,
`inpaint_faces`, `hires_fix`, `steps`, `cfg_scale`, `scheduler`, `seed`, `lora_strength` (0-2,
default 1), and per prompt an optional `id`.

The subject is written literally, `ohwx <class>` ("ohwx woman"), as on Astria: the text reads
as what runs, and a test can check it. When the pack runs on a tune whose token is not `ohwx`,
the tune's token replaces it. `{{key}}` placeholders are filled from the run's
`characteristics`; one left unfilled is dropped.

Ids are stable integers: a pack's from its `id` or its slug, a prompt's from its `id` or its
pack, class and text (so likes stay with a prompt across restarts and reorderings; edit a
prompt's text and it is a new prompt, unless it declares an `id`). Prompt ids live in
10,000,000-99,999,999, apart from the ids of the prompts the worker makes (from 100,000,001).

Every error names the file and the field, e.g. `travel.toml: prompts.man.2.num_images: Input
should be less than or equal to 8`.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from backends.local import params as validate

SHIPPED_DIR = Path(__file__).with_name("shipped")
SUBJECT_TOKEN = "ohwx"
"""The token pack texts are written with; the tune's own token replaces it at run time."""
PACK_IDS = range(1, 1_000_000)
DERIVED_PACK_IDS = range(1_000, 1_000_000)
PROMPT_IDS = range(10_000_000, 100_000_000)
DEFAULT_STRENGTH = 1.0
PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
CLASS_NAME = r"^[a-z][a-z_]{1,23}$"
SLUG = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"


class CatalogError(ValueError):
    """A pack file is unreadable or invalid; the message names the file and the field. A
    ValueError, as every bad configuration value is (`WorkerConfig.from_env` checks the
    operator's folder, so the CLI stops with this one line)."""


class _Options(BaseModel):
    """What a prompt may set (as `[defaults]` for the whole pack, or on the prompt itself)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    negative_prompt: str | None = None
    num_images: int | None = Field(None, ge=1, le=validate.MAX_IMAGES)
    ar: str | None = None
    w: int | None = None
    h: int | None = None
    super_resolution: bool | None = None
    inpaint_faces: bool | None = None
    hires_fix: bool | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    scheduler: str | None = None
    seed: int | None = None
    lora_strength: float | None = Field(None, ge=0.0, le=2.0)


class _Prompt(_Options):
    id: int | None = Field(None, ge=PROMPT_IDS.start, lt=PROMPT_IDS.stop)
    text: str = Field(min_length=1, max_length=500)


class _PackFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: int | None = Field(None, ge=PACK_IDS.start, lt=PACK_IDS.stop)
    slug: str | None = Field(None, pattern=SLUG, max_length=64)
    title: str = Field(min_length=1, max_length=80)
    description: str = Field("", max_length=300)
    defaults: _Options = _Options()
    prompts: dict[str, list[_Prompt]] = Field(min_length=1)


@dataclass(frozen=True)
class PackPrompt:
    """One prompt of a pack for one class; `options` are the pack's defaults plus its own."""

    id: int
    class_name: str
    text: str
    options: Mapping[str, Any]
    num_images: int

    @property
    def strength(self) -> float:
        return float(self.options.get("lora_strength", DEFAULT_STRENGTH))

    @property
    def negative_prompt(self) -> str:
        return str(self.options.get("negative_prompt") or "")


@dataclass(frozen=True)
class Pack:
    id: int
    slug: str
    title: str
    description: str
    prompts: Mapping[str, tuple[PackPrompt, ...]]
    source: Path

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.prompts)

    def num_images(self, class_name: str) -> int:
        return sum(p.num_images for p in self.prompts.get(class_name, ()))


class Catalog:
    """The packs, by id and by slug, and their prompts by id."""

    def __init__(self, packs: Iterable[Pack]) -> None:
        self.packs = tuple(sorted(packs, key=lambda p: p.id))
        self._by_key = {str(p.id): p for p in self.packs} | {p.slug: p for p in self.packs}
        self._prompts = {
            prompt.id: (pack, prompt)
            for pack in self.packs
            for prompts in pack.prompts.values()
            for prompt in prompts
        }

    def get(self, key: int | str) -> Pack | None:
        """By id (`101`, `"101"`) or slug (`"corporate-headshots"`)."""
        return self._by_key.get(str(key))

    def prompt(self, prompt_id: int) -> tuple[Pack, PackPrompt] | None:
        return self._prompts.get(prompt_id)


def load_catalog(operator_dir: Path | None = None, shipped_dir: Path = SHIPPED_DIR) -> Catalog:
    """The shipped packs, then the operator's (same slug replaces); CatalogError if invalid."""
    if operator_dir is not None and not operator_dir.is_dir():
        raise CatalogError(f"WORKER_PACKS_DIR {operator_dir} is not a folder")
    shipped = {p.slug: p for p in _load_folder(shipped_dir, {})}
    packs = dict(shipped)
    if operator_dir is not None:
        inherited = {slug: pack.id for slug, pack in shipped.items()}
        for pack in _load_folder(operator_dir, inherited):
            packs[pack.slug] = pack
    _check_unique_ids(packs.values())
    return Catalog(packs.values())


def _load_folder(folder: Path, inherited_ids: Mapping[str, int]) -> list[Pack]:
    packs: dict[str, Pack] = {}
    for path in sorted(folder.glob("*.toml")):
        pack = load_pack_file(path, inherited_ids)
        if pack.slug in packs:
            other = packs[pack.slug].source.name
            raise CatalogError(f"{path.name}: slug {pack.slug!r} is also used by {other}")
        packs[pack.slug] = pack
    return list(packs.values())


def load_pack_file(path: Path, inherited_ids: Mapping[str, int] | None = None) -> Pack:
    """One pack file, validated: its fields (pydantic), each prompt's options (the same rules
    as a prompt sent to `POST /tunes/:id/prompts`) and its subject (`ohwx <class>`)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CatalogError(f"{path.name}: not a readable TOML file: {exc}") from None
    try:
        spec = _PackFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise CatalogError(f"{path.name}: {where}: {first['msg']}") from None
    slug = spec.slug or path.stem
    if not re.fullmatch(SLUG, slug):
        raise CatalogError(f"{path.name}: slug: {slug!r} must be lowercase words joined by -")
    pack_id = spec.id or (inherited_ids or {}).get(slug) or _derived(slug, DERIVED_PACK_IDS)
    defaults = spec.defaults.model_dump(exclude_none=True)
    prompts: dict[str, tuple[PackPrompt, ...]] = {}
    for class_name, entries in spec.prompts.items():
        if not re.fullmatch(CLASS_NAME, class_name):
            raise CatalogError(f"{path.name}: prompts.{class_name}: not a class name")
        if not entries:
            raise CatalogError(f"{path.name}: prompts.{class_name}: no prompts")
        prompts[class_name] = tuple(
            _prompt(path, slug, class_name, index, entry, defaults)
            for index, entry in enumerate(entries)
        )
    return Pack(pack_id, slug, spec.title, spec.description, prompts, path)


def _prompt(
    path: Path,
    slug: str,
    class_name: str,
    index: int,
    entry: _Prompt,
    defaults: Mapping[str, Any],
) -> PackPrompt:
    where = f"{path.name}: prompts.{class_name}.{index}"
    subject = f"{SUBJECT_TOKEN} {class_name}"
    if not re.search(rf"(?<!\w){subject}(?!\w)", entry.text):
        raise CatalogError(f"{where}.text: must name the subject as {subject!r}")
    if validate.LORA_TAG.search(entry.text):
        raise CatalogError(f"{where}.text: no <lora:...> tag: the tune's own LoRA is added")
    options = {**defaults, **entry.model_dump(exclude_none=True, exclude={"id", "text"})}
    fields = {k: v for k, v in options.items() if k != "lora_strength"}
    try:
        parsed = validate.parse_prompt(
            {**fields, "text": PLACEHOLDER.sub("x", entry.text)},
            native_size=1024,
            max_side=2048,
            random_seed=0,
        )
    except validate.RequestError as exc:
        raise CatalogError(f"{where}: {exc}") from None
    prompt_id = entry.id or _derived(f"{slug}\n{class_name}\n{entry.text}", PROMPT_IDS)
    return PackPrompt(prompt_id, class_name, entry.text, options, parsed.num_images)


def _check_unique_ids(packs: Iterable[Pack]) -> None:
    seen_packs: dict[int, Pack] = {}
    seen_prompts: dict[int, Pack] = {}
    for pack in packs:
        if pack.id in seen_packs:
            other = seen_packs[pack.id]
            raise CatalogError(
                f"{pack.source.name}: id {pack.id} is also the id of {other.source.name}"
            )
        seen_packs[pack.id] = pack
        for prompts in pack.prompts.values():
            for prompt in prompts:
                if prompt.id in seen_prompts:
                    other = seen_prompts[prompt.id]
                    raise CatalogError(
                        f"{pack.source.name}: prompt id {prompt.id} is taken (in"
                        f" {other.source.name}): give one of them an explicit `id`"
                    )
                seen_prompts[prompt.id] = pack


def _derived(text: str, ids: range) -> int:
    """A stable id in `ids` from `text` (SHA-256: the same on every machine and version)."""
    digest = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    return ids.start + digest % len(ids)
