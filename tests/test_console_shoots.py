"""Shoots on the console, end to end against the fake Astria: `/packs` -> a pick -> `/shoot`
(the confirm) delivers every image of the pack once, then a ZIP of them all; /status and
/cancel know shoots; a like reaches the backend; bad input gets a clear answer."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable
from pathlib import Path

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
