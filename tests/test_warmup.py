"""The start-up warm-up leaves nothing for the first photo or image-service call to import.

Checked in a fresh interpreter each: what a test process imported earlier would hide it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.threaded_server import free_port
from tests.imagegen import jpeg_bytes

ROOT = Path(__file__).resolve().parents[1]
FIRST_USE = """
import asyncio, json, sys
from pathlib import Path

import httpx

from bot.core.photos import prepare_photo
from bot.warmup import warm_up


async def main(photo: Path, url: str, warm: bool) -> None:
    if warm:
        warm_up()
    client = httpx.AsyncClient()  # made at start-up, as the image-service client is
    before = set(sys.modules)
    prepare_photo(photo.read_bytes())
    try:
        await client.get(url)  # nothing listens there: a refused connection
    except httpx.HTTPError:
        pass
    await client.aclose()
    print(json.dumps(sorted(set(sys.modules) - before)))


asyncio.run(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "warm"))
"""


def imported_on_first_use(tmp_path: Path, mode: str) -> list[str]:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg_bytes(1024, 1024))
    url = f"http://127.0.0.1:{free_port()}/"
    done = subprocess.run(
        [sys.executable, "-c", FIRST_USE, str(photo), url, mode],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=True,
    )
    modules: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return modules


@pytest.mark.slow
def test_after_the_warm_up_the_first_photo_and_request_import_nothing(tmp_path: Path) -> None:
    cold = imported_on_first_use(tmp_path, "cold")
    assert "PIL.PngImagePlugin" in cold and "anyio._backends._asyncio" in cold  # what it saves
    assert imported_on_first_use(tmp_path, "warm") == []
