"""Shared fixtures: a fake Astria server, settings aimed at it, and folders of test photos; the
fake chat servers' fixtures come from tests/chat_fixtures.py."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.app import running_core
from bot.chat.console import LOCALE_VARIABLES, ConsoleChat
from bot.config import Settings, load_settings
from tests import pg
from tests.fakes.astria_server import FakeAstria
from tests.fakes.s3 import FakeS3
from tests.imagegen import jpeg_bytes

FAKE_KEY = "sd_test_key_0123456789"

pytest_plugins = ("tests.chat_fixtures", "tests.worker_modes")


@pytest.fixture
def fake_astria() -> Iterator[FakeAstria]:
    with FakeAstria(api_key=FAKE_KEY, train_seconds=0.3, prompt_seconds=0.1) as fake:
        yield fake


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never read the developer's `.env` or environment (their language included)."""
    monkeypatch.chdir(tmp_path)
    for name in (*Settings.model_fields, *LOCALE_VARIABLES):
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """Logging is process-wide: a test that sets levels (`setup_logging`, a bench's `main` run
    in-process) must not silence the loggers a later test listens to. (Handlers are pytest's
    own business during a test; the tests that replace them put them back themselves.)"""
    root = logging.getLogger()
    levels = {
        name: logger.level
        for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    root_level = root.level
    yield
    root.setLevel(root_level)  # setLevel, not `.level =`: it also clears the loggers' caches
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and logger.level != levels.get(name, logging.NOTSET):
            logger.setLevel(levels.get(name, logging.NOTSET))


@pytest.fixture
def make_settings(tmp_path: Path, fake_astria: FakeAstria) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "astria_api_key": FAKE_KEY,
            "astria_api_url": fake_astria.url,
            "data_dir": tmp_path / "data",
            "poll_interval_s": 0.05,
            # Open to everyone with a paid backend, the bot would charge credits by default
            # (CREDITS=auto); tests of other features run it unmetered, as an ALLOWED_IDS
            # deployment does. tests/test_credits*.py turn credits on.
            "credits": "off",
            "consent_required": False,  # tests/test_consent.py turns it on
            # Tests of other features look at a trained model's photos; tests/test_retention.py
            # deletes them as a deployment does (KEEP_TRAINING_PHOTOS is off by default).
            "keep_training_photos": True,
        }
        values.update(overrides)
        return load_settings(**values)

    return make


def write_photos(folder: Path, count: int, *, size: int = 1024, first_seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        seed = first_seed + index
        (folder / f"photo{seed:02d}.jpg").write_bytes(jpeg_bytes(size, size, seed=seed))
    return folder


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    """Five good 1024 px photos."""
    return write_photos(tmp_path / "me", 5)


async def chat(settings: Settings, script: str) -> str:
    """Run the console chat on a script of input lines; return everything it printed."""
    out = io.StringIO()
    async with running_core(settings) as core:
        await ConsoleChat(core, stdin=io.StringIO(script), stdout=out).run()
    return out.getvalue()


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The test PostgreSQL server's URL (tests/pg.py): skips, or fails in CI, without one."""
    url = pg.server_url()
    pg.require_server(url)
    return url


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A throwaway database of this test's own on the real server."""
    with pg.throwaway_database(pg_server) as url:
        yield url


@pytest.fixture(scope="session")
def fake_s3() -> Iterator[FakeS3]:
    with FakeS3() as s3:
        yield s3


@pytest.fixture
def s3_bucket(fake_s3: FakeS3) -> str:
    """A new bucket on the S3 fake (`fake_s3.env` are the AWS_* variables that reach it)."""
    bucket = f"bucket-{uuid.uuid4().hex[:12]}"
    fake_s3.create_bucket(bucket)
    return bucket
