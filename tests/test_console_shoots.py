"""Shoots on the console, end to end against the fake Astria: `/packs` -> a pick -> `/shoot`
(the confirm) delivers every image of the pack once, then a ZIP of them all; /status and
/cancel know shoots; a like reaches the backend; bad input gets a clear answer."""

from __future__ import annotations

import io
import re
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from bot.app import running_core
from bot.chat.console import ConsoleChat
from bot.config import Settings
from tests.conftest import chat
from tests.fakes.astria_server import FakeAstria

SAVED = re.compile(r"^bot>   (\S+) \(/like (\d+), /more \d+\)$", re.M)


def saved_images(output: str) -> list[str]:
    return [match.group(1) for match in SAVED.finditer(output)]


async def test_a_picked_pack_delivers_every_image_once_then_a_zip(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    travel = fake_astria.packs.add_pack(
        "travel", "Travel", {"man": ["ohwx man, in Rome", "ohwx man, in Kyoto"]}, num_images=3
    )
    output = await chat(
        make_settings(),
        f"/photos {photo_dir}\n/train man\n/wait\n/packs\n/packs 1\n/shoot 1\n/wait\n",
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


async def test_a_restart_in_the_middle_of_a_shoot_delivers_the_rest_once(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    travel = fake_astria.packs.add_pack(
        "travel", "Travel", {"man": ["ohwx man, in Rome", "ohwx man, in Kyoto"]}, num_images=3
    )
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
    travel = fake_astria.packs.add_pack(
        "travel", "Travel", {"man": ["ohwx man, in Rome", "ohwx man, in Kyoto"]}, num_images=3
    )
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

    fake_astria.hold_prompts_with("Kyoto")
    cancelled = await run_console(
        settings,
        [
            ("bot> ", "/shoot travel\n", nothing),
            ("images saved:", "/status\n", nothing),
            ("3 of 6 ready", "/cancel\n", nothing),
        ],
    )
    assert "Cancelled: shoot Travel (3 of 6 images made are kept)." in cancelled
    kyoto = [p for p in fake_astria.prompts.values() if "Kyoto" in p["text"]]
    assert len(kyoto) == 1  # the second shoot's Kyoto prompt was deleted on the backend
    assert "Travel is done" not in cancelled.split("Cancelled")[1]
