"""Packs and likes through the real AstriaClient, against the fake Astria over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from backends.astria import AstriaClient
from backends.base import NotFoundError, PackRunRequest, Prompt, ValidationError
from tests.conftest import FAKE_KEY
from tests.fakes.astria_server import FakeAstria
from tests.test_astria_client import photo, wait_for

CORPORATE = 260
"""The fake's gallery pack, shaped like Astria's own pack 260."""


@pytest.fixture
async def client(fake_astria: FakeAstria) -> AsyncIterator[AstriaClient]:
    async with AstriaClient(FAKE_KEY, fake_astria.url, timeout=5.0) as c:
        yield c


async def pack_prompts(client: AstriaClient, tune_id: int, pack_id: int) -> list[Prompt]:
    return [p for p in await client.list_prompts(tune_id) if p.pack_id == pack_id]


# -- listing -------------------------------------------------------------------------------


async def test_gallery_and_own_packs_are_listed_apart(
    client: AstriaClient, fake_astria: FakeAstria
) -> None:
    mine = fake_astria.packs.add_pack(
        "dog-park", "Dog park", {"dog": ["ohwx dog in a park"]}, public=False, costs={"dog": 90}
    )
    gallery = await client.list_packs(gallery=True)
    own = await client.list_packs()

    assert [p.slug for p in gallery] == ["corporate-headshots"]
    assert [p.id for p in own] == [mine["id"], CORPORATE]  # newest first, as Astria lists
    [corporate] = gallery
    assert corporate.title == "Corporate Headshots"
    assert corporate.costs["man"].cost_mc == 331_000  # list items carry cost_mc_hash only
    assert corporate.classes == ("man", "woman")
    assert corporate.prompts_per_class == {}
    assert fake_astria.find_requests("GET", "/gallery/packs")[0].query == {}


async def test_list_order_is_sent_when_asked(client: AstriaClient, fake_astria: FakeAstria):
    await client.list_packs(gallery=True, order="likes")
    assert fake_astria.find_requests("GET", "/gallery/packs")[0].query == {"order": "likes"}


async def test_get_pack_by_id_and_slug(client: AstriaClient, fake_astria: FakeAstria):
    by_id = await client.get_pack(CORPORATE)
    by_slug = await client.get_pack("corporate-headshots")

    assert by_id == by_slug
    assert by_id.num_images("man") == 28 and by_id.num_images("woman") == 35
    assert by_id.costs["woman"].cost == 360
    assert by_id.supports("woman") and not by_id.supports("dog")
    assert len(by_id.prompts_per_class["man"]) == 7
    assert [r.path for r in fake_astria.find_requests("GET", "/p/")] == [
        "/p/260",
        "/p/corporate-headshots",
    ]


async def test_unknown_pack_is_not_found(client: AstriaClient):
    with pytest.raises(NotFoundError):
        await client.get_pack(999)
    with pytest.raises(NotFoundError):
        await client.get_pack("no-such-pack")


async def test_pack_json_is_parsed_leniently(client: AstriaClient, fake_astria: FakeAstria):
    body = {
        "id": "77",
        "slug": "odd",
        "costs": {"man": {"num_images": "12", "cost": "n/a"}, "woman": "free"},
        "cost_mc_hash": {"man": 5000},
        "prompts_per_class": {"man": [{"id": 1, "images": ["u1", 3]}, {"text": "no id"}], "x": 5},
        "likes": None,
    }
    fake_astria.fail_next("GET", "/p/77", 200, body)
    pack = await client.get_pack(77)

    assert (pack.id, pack.title, pack.likes) == (77, "odd", 0)
    assert pack.costs["man"].num_images == 12 and pack.costs["man"].cost is None
    assert pack.costs["man"].cost_mc == 5000
    assert "woman" not in pack.costs
    assert [(p.id, p.images) for p in pack.prompts_per_class["man"]] == [(1, ("u1",))]


# -- running -------------------------------------------------------------------------------


async def test_run_pack_trains_a_new_tune_then_its_prompts(
    client: AstriaClient, fake_astria: FakeAstria
) -> None:
    request = PackRunRequest(
        title="shoot-uuid-1",
        name="woman",
        images=[photo(1), photo(2)],
        characteristics={"hair": "red hair"},
        callback="https://bot.example/hooks/tune",
        prompt_callback="https://bot.example/hooks/prompt",
        prompts_callback="https://bot.example/hooks/shoot",
    )
    run = await client.run_pack(CORPORATE, request)

    [rec] = fake_astria.find_requests("POST", "/p/260/tunes")
    assert rec.headers["content-type"].startswith("multipart/form-data")
    assert rec.form == {
        "tune[title]": ["shoot-uuid-1"],
        "tune[name]": ["woman"],
        "tune[callback]": ["https://bot.example/hooks/tune"],
        "tune[prompts_callback]": ["https://bot.example/hooks/shoot"],
        "tune[characteristics][hair]": ["red hair"],
        "tune[prompt_attributes][callback]": ["https://bot.example/hooks/prompt"],
    }
    assert [f[0] for f in rec.files] == ["tune[images][]", "tune[images][]"]
    assert run.tune is not None and run.tune.name == "woman" and not run.tune.done

    async def all_done() -> list[Prompt] | None:
        prompts = await pack_prompts(client, run.tune.id, CORPORATE)
        return prompts if prompts and all(p.done for p in prompts) else None

    prompts = await wait_for(all_done)
    assert len(prompts) == 7 and sum(len(p.images) for p in prompts) == 35
    assert all("red hair" in p.text and "{{" not in p.text for p in prompts)
    templates = {t.id for t in (await client.get_pack(CORPORATE)).prompts_per_class["woman"]}
    assert {p.orig_prompt_id for p in prompts} == templates
    await asyncio.sleep(0.1)
    shoot = [body for url, body in fake_astria.callbacks_sent if url.endswith("/shoot")]
    assert len(shoot) == 1 and sorted(p["id"] for p in shoot[0]) == sorted(p.id for p in prompts)


async def test_run_pack_on_existing_tune_with_a_subset(
    client: AstriaClient, fake_astria: FakeAstria
) -> None:
    tune = fake_astria.add_tune("mine", "man")
    pack = await client.get_pack(CORPORATE)
    chosen = [p.id for p in pack.prompts_per_class["man"][:2]]
    run = await client.run_pack(
        CORPORATE, PackRunRequest(tune_ids=[tune["id"]], prompt_ids=chosen, num_images=2)
    )

    [rec] = fake_astria.find_requests("POST", "/p/260/tunes")
    assert rec.form == {
        "tune[tune_ids][]": [str(tune["id"])],
        "tune[prompt_ids][]": [str(i) for i in chosen],
        "tune[prompt_attributes][num_images]": ["2"],
    }
    assert run.tune is None and run.prompts == ()  # Astria's "Prompts created" answer
    prompts = await pack_prompts(client, tune["id"], CORPORATE)
    assert sorted(p.orig_prompt_id for p in prompts) == sorted(chosen)
    assert all(p.raw["num_images"] == 2 for p in prompts)


async def test_unsupported_class_is_refused_before_anything_is_made(
    client: AstriaClient, fake_astria: FakeAstria
) -> None:
    request = PackRunRequest(title="cat-uuid", name="cat", images=[photo(1)])
    with pytest.raises(ValidationError, match="man, woman"):
        await client.run_pack(CORPORATE, request)
    assert fake_astria.tunes == {} and fake_astria.prompts == {}

    dog = fake_astria.add_tune("rex", "dog")
    with pytest.raises(ValidationError):
        await client.run_pack(CORPORATE, PackRunRequest(tune_ids=[dog["id"]]))
    with pytest.raises(NotFoundError):
        await client.run_pack(CORPORATE, PackRunRequest(tune_ids=[424242]))
    with pytest.raises(NotFoundError):
        await client.run_pack(31337, PackRunRequest(tune_ids=[dog["id"]]))
    assert fake_astria.prompts == {}


# -- likes ---------------------------------------------------------------------------------


async def test_likes_count_for_the_pack_prompt_too(client: AstriaClient, fake_astria: FakeAstria):
    tune = fake_astria.add_tune("mine", "man")
    await client.run_pack(CORPORATE, PackRunRequest(tune_ids=[tune["id"]]))
    first = (await pack_prompts(client, tune["id"], CORPORATE))[0]

    await client.like_prompt(first.id)
    await client.like_prompt(first.id)  # a like is a state: twice is once
    assert fake_astria.packs.likes == {first.id: 1, first.orig_prompt_id: 1}
    likes = fake_astria.find_requests("POST", f"/prompts/{first.id}/likes")
    assert len(likes) == 2

    await client.unlike_prompt(first.id)
    assert fake_astria.packs.likes == {first.id: 0, first.orig_prompt_id: 0}
    with pytest.raises(NotFoundError):
        await client.like_prompt(987654)
