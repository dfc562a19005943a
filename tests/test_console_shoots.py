"""Shoots on the console, end to end against the fake Astria: `/packs` -> a pick -> `/shoot`
(the confirm) delivers every image of the pack once, then a ZIP of them all; /status and
/cancel know shoots; a like reaches the backend; bad input gets a clear answer."""

from __future__ import annotations

import asyncio
import io
import re
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.app import running_core
from bot.chat.console import ConsoleChat
from bot.config import Settings, load_settings
from bot.core.texts import text
from tests.conftest import chat
from tests.fakes.astria_server import FakeAstria
from tests.fakes.threaded_server import free_port

SAVED = re.compile(r"^bot>   (\S+) \(/like (\d+), /more \d+\)$", re.M)


def saved_images(output: str) -> list[str]:
    return [match.group(1) for match in SAVED.finditer(output)]


def add_travel(fake: FakeAstria) -> dict[str, Any]:
    """A pack of two prompts of 3 images for a man (Rome, Kyoto): 6 images."""
    return fake.packs.add_pack(
        "travel", "Travel", {"man": ["ohwx man, in Rome", "ohwx man, in Kyoto"]}, num_images=3
    )


async def test_a_picked_pack_delivers_every_image_once_then_a_zip(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    travel = add_travel(fake_astria)
    output = await chat(
        make_settings(),
        f"/photos {photo_dir}\n/train man\n/wait\n/packs\n/packs 1\n/shoot 1\n/wait\n/like 1\n",
    )

    assert "Make 6 images: /shoot travel" in output
    assert "Travel: making 6 images of man #" in output
    images = saved_images(output)
    assert len(images) == 6 and len(set(images)) == 6  # each image once
    assert all(Path(path).is_file() for path in images)
    assert "Travel: 6 of 6 ready" in output
    assert "Travel is done: 6 images." in output
    archive = re.search(r"ZIP of Travel: (\S+)", output)
    assert archive is not None
    with zipfile.ZipFile(archive.group(1)) as zipped:
        contents = sorted(zipped.read(name) for name in zipped.namelist())
    assert contents == sorted(Path(path).read_bytes() for path in images)
    runs = fake_astria.find_requests("POST", f"/p/{travel['id']}/tunes")
    assert len(runs) == 1
    assert "Liked: packs are ordered by likes like yours." in output
    liked = [p for p in fake_astria.prompts.values() if p["id"] in fake_astria.packs.liked]
    assert len(liked) == 1 and liked[0]["pack_id"] == travel["id"]


async def test_shoot_bad_input_is_answered_and_runs_nothing(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    fake_astria.packs.add_pack("bridal", "Bridal", {"woman": ["ohwx woman, bride"]})
    output = await chat(
        make_settings(),
        "/shoot 1\n"
        f"/photos {photo_dir}\n/train man\n/wait\n/shoot\n/shoot no-such-pack\n/shoot bridal\n",
    )
    assert "You have no model yet." in output
    assert "Which pack? /shoot <number or name>" in output
    assert "There is no pack called “no-such-pack”. /packs lists them." in output
    assert "Bridal has no prompts for a man. Packs that have: Corporate Headshots." in output
    assert not [r for r in fake_astria.requests if r.path.startswith("/p/") and r.method == "POST"]


class GatedScript(io.StringIO):
    """Console input whose lines wait for the bot's output: each line is sent once `after`
    appears in what the bot printed (then `then()` runs), as a person would type it."""

    def __init__(self, out: io.StringIO, steps: list[tuple[str, str, Callable[[], None]]]):
        super().__init__()
        self._out = out
        self._steps = list(steps)

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        if not self._steps:
            return ""
        after, line, then = self._steps.pop(0)
        deadline = time.monotonic() + 60
        while after not in self._out.getvalue():
            if time.monotonic() > deadline:  # the input ends; the test's asserts say why
                self._steps.clear()
                return ""
            time.sleep(0.02)
        then()
        return line


def nothing() -> None:
    return None


async def run_console(settings: Settings, steps: list[tuple[str, str, Callable[[], None]]]) -> str:
    out = io.StringIO()
    async with running_core(settings) as core:
        await ConsoleChat(core, stdin=GatedScript(out, steps), stdout=out).run()
    return out.getvalue()


async def rome_only(settings: Settings, fake: FakeAstria, then: list[tuple[str, str]]) -> str:
    """`/shoot travel` while Kyoto's prompt is held, then each line once its words appear."""
    fake.hold_prompts_with("Kyoto")
    steps = [("bot> ", "/shoot travel\n", nothing), *((w, line, nothing) for w, line in then)]
    return await run_console(settings, steps)


async def test_a_restart_in_the_middle_of_a_shoot_delivers_the_rest_once(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    travel = add_travel(fake_astria)
    settings = make_settings()
    await chat(settings, f"/photos {photo_dir}\n/train man\n/wait\n")
    fake_astria.hold_prompts_with("Kyoto")
    first = await run_console(
        settings,
        [("bot> ", "/shoot travel\n", nothing), ("images saved:", "/quit\n", nothing)],
    )
    fake_astria.hold_prompts_with(None)
    second = await chat(settings, "")

    assert len(saved_images(first)) == 3  # Rome came before the stop, Kyoto did not
    assert "Travel is done" not in first
    assert len(saved_images(second)) == 3  # the rest, once
    assert set(saved_images(first)).isdisjoint(saved_images(second))
    assert second.count("Travel is done: 6 images.") == 1
    archive = re.search(r"ZIP of Travel: (\S+)", second)
    assert archive is not None
    with zipfile.ZipFile(archive.group(1)) as zipped:
        assert len(zipped.namelist()) == 6
    assert len(fake_astria.find_requests("POST", f"/p/{travel['id']}/tunes")) == 1
    third = await chat(settings, "/status\n")
    assert not saved_images(third) and "Travel" not in third


async def test_a_shoot_while_the_model_trains_waits_for_it_and_status_and_cancel_know_it(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    travel = add_travel(fake_astria)
    settings = make_settings()
    fake_astria.hold_training()
    output = await run_console(
        settings,
        [
            ("bot> ", f"/photos {photo_dir}\n", nothing),
            ("5 photos", "/train man\n", nothing),
            ("Training", "/shoot travel\n", nothing),
            ("starts when it is done", "/status\n", fake_astria.release_training),
        ],
    )
    assert "man #1 is still training: Travel (6 images) starts when it is done." in output
    assert "Travel starts when man #1 is trained." in output  # /status
    assert len(saved_images(output)) == 6
    assert "Travel is done: 6 images." in output
    assert len(fake_astria.find_requests("POST", f"/p/{travel['id']}/tunes")) == 1

    cancelled = await rome_only(
        settings, fake_astria, [("images saved:", "/status\n"), ("3 of 6 ready", "/cancel\n")]
    )
    assert "Cancelled: shoot Travel (3 of 6 images made are kept)." in cancelled
    kyoto = [p for p in fake_astria.prompts.values() if "Kyoto" in p["text"]]
    assert len(kyoto) == 1  # the second shoot's Kyoto prompt was deleted on the backend
    assert "Travel is done" not in cancelled.split("Cancelled")[1]


QUICK_PACK = """
slug = "quick-test"
title = "Quick test"
description = "Two small shots, for a CPU."

[defaults]
num_images = 1
w = 64
h = 64
steps = 2
super_resolution = false
inpaint_faces = false

[[prompts.man]]
text = "ohwx man, studio portrait, soft light"

[[prompts.man]]
text = "ohwx man, on a beach at sunset"
"""


def tiny_worker_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **overrides: object
) -> Settings:
    """The bot on the in-process worker with the tiny model, QUICK_PACK in its catalog."""
    packs = tmp_path / "packs"
    packs.mkdir()
    (packs / "quick.toml").write_text(QUICK_PACK)
    worker_env = {
        "WORKER_PACKS_DIR": str(packs),
        "WORKER_DEVICE": "cpu",
        "WORKER_COMPILE": "off",
        "WORKER_TRAIN_STEPS": "2",
    }
    for name, value in worker_env.items():
        monkeypatch.setenv(name, value)
    return load_settings(
        data_dir=tmp_path / "data",
        backend="local",
        sdxl_model="tiny",
        poll_interval_s=0.2,
        credits="off",
        consent_required=False,
        **overrides,
    )


@pytest.mark.slow
async def test_a_shoot_on_the_in_process_worker_delivers_once_and_likes_reach_it(
    tmp_path: Path, photo_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = tiny_worker_settings(tmp_path, monkeypatch)
    output = await chat(
        settings,
        f"/photos {photo_dir}\n/train man\n/wait\n/packs quick-test\n/shoot quick-test\n/wait\n",
    )
    assert "Make 2 images: /shoot quick-test" in output
    images = saved_images(output)
    assert len(images) == 2 and len(set(images)) == 2
    assert "Quick test is done: 2 images." in output
    archive = re.search(r"ZIP of Quick test: (\S+)", output)
    assert archive is not None and zipfile.ZipFile(archive.group(1)).testzip() is None
    shot = SAVED.search(output)
    assert shot is not None

    liked = await chat(settings, f"/like {shot.group(2)}\n/like {shot.group(2)}\n/like 999\n")
    assert "Liked: packs are ordered by likes like yours." in liked
    assert "Like taken back." in liked
    assert "That image is not from one of your shoots." in liked


async def test_a_shoot_holds_each_image_and_gives_back_what_never_came(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    add_travel(fake_astria)
    settings = make_settings(credits="on", free_credits=50 + 8, price_training=50, price_image=1)
    await chat(settings, f"/photos {photo_dir}\n/train man\n/wait\n")
    short = await chat(settings, "/shoot corporate-headshots\n")  # 28 images, 8 credits
    assert "A set of 28 images costs 28 credits; you have 8 credits." in short
    assert not fake_astria.find_requests("POST", "/p/")

    output = await rome_only(
        settings, fake_astria, [("images saved:", "/cancel\n"), ("Cancelled", "/credits\n")]
    )
    assert "Cancelled: shoot Travel (3 of 6 images made are kept)." in output
    assert "Your balance: 5 credits." in output  # 8 - the 3 images delivered
    movements = output.split("Last movements")[1]
    assert re.search(r"-3 for shoot #1, delivered\n", movements)  # one line per outcome
    assert re.search(r"-3 for shoot #1, given back\n", movements)
    assert re.search(r"\+3 given back for shoot #1\n", movements)
    assert movements.count("shoot #1") == 3


async def test_train_and_shoot_in_one_go_runs_the_pack_with_the_photos(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    travel = add_travel(fake_astria)
    fake_astria.packs.add_pack("bridal", "Bridal", {"woman": ["ohwx woman, bride"]})
    output = await chat(
        make_settings(),
        f"/photos {photo_dir}\n/train man bridal\n/train man travel Holiday me\n/wait\n/status\n",
    )

    assert "Bridal has no prompts for a man. Packs that have: Travel, Corporate Headshots." in (
        output
    )
    assert "Training Holiday me started" in output
    assert "Travel starts when Holiday me is trained." in output
    assert len(saved_images(output)) == 6
    assert output.count("Travel is done: 6 images.") == 1
    [run] = fake_astria.find_requests("POST", f"/p/{travel['id']}/tunes")
    assert len(run.files) == 5  # the photos went with the pack run: one request trains and shoots
    assert not fake_astria.find_requests("POST", "/tunes")  # no separate training
    assert len(fake_astria.tunes) == 1


@pytest.mark.slow
async def test_the_block_list_refuses_a_pack_before_anything_is_held_or_sent(
    tmp_path: Path, photo_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our worker shows a pack's prompt texts, so the operator's rules apply to them."""
    rules = tmp_path / "rules.txt"
    rules.write_text("beach\n")
    settings = tiny_worker_settings(tmp_path, monkeypatch, prompt_blocklist=rules)
    output = await chat(
        settings,
        f"/photos {photo_dir}\n/train man\n/wait\n/shoot quick-test\n/train man quick-test\n"
        "/status\n",
    )
    refusal = text("safety.blocked")
    assert output.count(refusal) == 2  # the shoot, and the train-and-shoot (as a whole)
    assert not saved_images(output)
    assert output.count("Training man #") == output.count("Training man #1")  # no second model
    assert "Quick test" not in output.split(refusal)[-1]


async def test_a_running_shoot_counts_as_one_running_set_for_the_limits(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    add_travel(fake_astria)
    settings = make_settings(
        credits="on", free_credits=100, price_training=50, price_image=1, limit_running_prompts=1
    )
    await chat(settings, f"/photos {photo_dir}\n/train man\n/wait\n")
    output = await rome_only(
        settings,
        fake_astria,
        [("images saved:", "/imagine astronaut\n"), ("at a time is the limit", "/cancel\n")],
    )
    refusal = output.split("images saved:")[1]
    assert "You have 1 image set on its way; 1 at a time is the limit." in refusal
    assert not [p for p in fake_astria.prompts.values() if "astronaut" in p["text"]]


async def test_the_pack_runs_callback_wakes_the_shoot_long_before_the_next_poll(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    add_travel(fake_astria)
    port = free_port()
    settings = make_settings(
        poll_interval_s=60, public_url=f"http://127.0.0.1:{port}", callback_port=port
    )
    script = f"/photos {photo_dir}\n/train man travel\n/wait\n"
    output = await asyncio.wait_for(chat(settings, script), timeout=30)

    assert "Travel is done: 6 images." in output
    sent = [url for url, _ in fake_astria.callbacks_sent]
    assert any(url.startswith(f"http://127.0.0.1:{port}/callbacks/photoshoot/") for url in sent)
    assert fake_astria.callback_failures == []


async def test_delete_during_a_shoot_deletes_its_prompts_and_files(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    add_travel(fake_astria)
    settings = make_settings()
    await chat(settings, f"/photos {photo_dir}\n/train man\n/wait\n")
    output = await rome_only(settings, fake_astria, [("images saved:", "/delete confirm\n")])
    fake_astria.hold_prompts_with(None)

    assert "Deleted" in output.split("images saved:")[1]
    # Kyoto (not done) and Rome (done: /delete leaves no image of the user on the backend)
    assert len(fake_astria.find_requests("DELETE", "/prompts/")) == 2
    assert not [p for p in fake_astria.prompts.values() if "Kyoto" in p["text"]]
    assert not (settings.data_dir / "shoots" / "1").exists()
    after = await chat(settings, "/status\n")
    assert "Travel" not in after and not saved_images(after)
