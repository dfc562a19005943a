"""Photoshoot packs, the chat side: which packs fit a user's model, and picking one.

A pack (backends.base.Pack) is a curated set of prompts per class word (man, woman, ...). The
user's model has one class (the `/train` word), so `/packs` offers only the packs with prompts
for it, each with its size (images one run makes) and price when the backend states one. A
pick names a pack by its number in that list, its slug or its id; a pack that exists but has
no prompts for the model's class is refused with the packs that do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from backends.base import Backend, BackendError, Pack, PackCost
from bot.core.errors import UserError, backend_problem
from bot.core.records import TuneRecord, TuneState
from bot.core.texts import text
from bot.core.texts.english import MESSAGES

CENTS_PER_UNIT = 100
"""Astria states a pack's `cost` in cents ..."""
MILLICENTS_PER_CENT = 1000
"""... and its `cost_mc_hash` (all a pack list item shows) in millicents."""


@dataclass(frozen=True)
class PackOffer:
    """A pack as offered for one model: its number in the list and what a run makes."""

    number: int
    pack: Pack
    model: TuneRecord
    num_images: int
    cost_cents: float | None

    @property
    def title(self) -> str:
        """The pack's title in the reader's language (its own words if we have none)."""
        return pack_words(self.pack, "title")

    @property
    def line(self) -> str:
        """One line of the `/packs` list."""
        title = self.title
        if self.cost_cents:
            price = f"{self.cost_cents / CENTS_PER_UNIT:.2f}"
            return text(
                "packs.item_priced",
                count=self.num_images,
                number=self.number,
                title=title,
                price=price,
            )
        return text("packs.item", count=self.num_images, number=self.number, title=title)

    @property
    def details(self) -> str:
        """The pick's answer: what the pack is and what a run makes of this model."""
        lines = [self.line]
        if self.pack.description:
            lines.append(pack_words(self.pack, "description"))
        lines.append(text("packs.makes", count=self.num_images, model=self.model.display_name))
        return "\n".join(lines)

    @property
    def confirm_label(self) -> str:
        """The label of the button (or the command) that runs it: "Make 28 images"."""
        return text("packs.confirm", count=self.num_images)


def pack_words(pack: Pack, field: str) -> str:
    """A pack's title or description in the reader's language: the catalogs translate the
    shipped packs' words (bot/core/texts/packs.py), and only when the backend's English is the
    same; any other pack keeps the backend's words."""
    own = str(getattr(pack, field))
    key = f"pack.{pack.slug}.{field}"
    return text(key) if MESSAGES.get(key) == own else own


def pack_model(tunes: Sequence[TuneRecord], active_id: int | None) -> TuneRecord:
    """The model packs are offered for: the active one, else the newest that is trained or
    still training. Refuses a user without one."""
    usable = [t for t in tunes if t.state == TuneState.TRAINED or t.state.unfinished]
    if not usable:
        raise UserError(text("imagine.no_model"))
    active = next((t for t in usable if t.id == active_id), None)
    return active or max(usable, key=lambda t: t.id)


async def offers(backend: Backend, model: TuneRecord) -> list[PackOffer]:
    """The packs with prompts for the model's class, numbered as `/packs` shows them."""
    try:
        packs = await backend.list_packs()
    except BackendError as exc:
        raise UserError(backend_problem(exc)) from exc
    fitting = [p for p in packs if p.supports(model.class_name)]
    result = []
    for listed in fitting:
        pack = await with_size(backend, listed, model.class_name)
        cost = pack.costs.get(model.class_name)
        result.append(
            PackOffer(
                number=len(result) + 1,
                pack=pack,
                model=model,
                num_images=pack.num_images(model.class_name) or 0,
                cost_cents=_cents(cost),
            )
        )
    return result


async def with_size(backend: Backend, pack: Pack, class_name: str) -> Pack:
    """The pack with its size for the class: a list item (Astria's) shows only the price, so
    the pack itself is fetched then."""
    if pack.num_images(class_name) is not None:
        return pack
    try:
        return await backend.get_pack(pack.id)
    except BackendError as exc:
        raise UserError(backend_problem(exc)) from exc


def _cents(cost: PackCost | None) -> float | None:
    if cost is None:
        return None
    if cost.cost is not None:
        return cost.cost
    return cost.cost_mc / MILLICENTS_PER_CENT if cost.cost_mc is not None else None


def offers_text(found: Sequence[PackOffer], model: TuneRecord) -> str:
    if not found:
        return text("packs.none_for_class", class_name=model.class_name)
    lines = [text("packs.heading", model=model.display_name, class_name=model.class_name)]
    lines += [offer.line for offer in found]
    return "\n".join(lines)


async def pick(backend: Backend, model: TuneRecord, wanted: str) -> PackOffer:
    """The pack `wanted` names (a number in the list, a slug or an id) for this model."""
    found = await offers(backend, model)
    key = wanted.strip().lstrip("#").lower()
    for offer in found:
        if key in (str(offer.number), offer.pack.slug.lower()):
            return offer
    for offer in found:
        if key == str(offer.pack.id):
            return offer
    try:
        other = await backend.get_pack(key) if key else None
    except BackendError:
        other = None
    if other is None:
        raise UserError(text("packs.unknown", pack=wanted.strip()))
    titles = ", ".join(offer.title for offer in found)
    raise UserError(
        text(
            "packs.unsupported",
            title=pack_words(other, "title"),
            class_name=model.class_name,
            packs=titles or text("packs.unsupported_none"),
        )
    )
