"""The console chat end to end against the fake Astria server, in-process and as a subprocess."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from bot.config import Settings
from bot.core.texts import text
from tests.conftest import FAKE_KEY, chat, write_photos
from tests.fakes.astria_server import FakeAstria
from tests.processes import TINY_ON_CPU, BotProcess, astria_bot_env, bot_env

SAVED_PATH = re.compile(r"^bot>\s+(/\S+\.(?:png|jpg|webp))$", re.MULTILINE)


async def test_photos_train_imagine_saves_images(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    output = await chat(
        make_settings(),
        f"/photos {photo_dir}\n/train man\n/wait\n/imagine astronaut on the moon\n/wait\n",
    )

    assert "5 added" in output
    assert "is ready" in output
    [tune_post] = [r for r in fake_astria.find_requests("POST") if r.path == "/tunes"]
    fields = {key: values[0] for key, values in tune_post.form.items()}
    uuid.UUID(fields["tune[title]"])  # the idempotency key is a UUID
    assert fields["tune[name]"] == "man"
    assert fields["tune[token]"] == "ohwx"
    assert fields["tune[base_tune_id]"] == "666678"
    assert fields["tune[model_type]"] == "pti"
    assert [field for field, _, _ in tune_post.files] == ["tune[images][]"] * 5
    assert tune_post.headers["authorization"] == f"Bearer {FAKE_KEY}"

    tune_id = next(iter(fake_astria.tunes))
    [prompt_post] = fake_astria.find_requests("POST", "/tunes/666678/prompts")
    prompt = {key: values[0] for key, values in prompt_post.form.items()}
    assert prompt["prompt[text]"] == f"<lora:{tune_id}:0.8> ohwx man astronaut on the moon"
    assert prompt["prompt[scheduler]"] == "euler_a"
    assert prompt["prompt[super_resolution]"] == "true"
    assert prompt["prompt[inpaint_faces]"] == "true"
    assert prompt["prompt[num_images]"] == "4"

    saved = [Path(match) for match in SAVED_PATH.findall(output)]
    assert len(saved) == 4
    for path in saved:
        with Image.open(path) as image:
            assert image.size == fake_astria.image_size


async def test_bad_input_gets_a_clear_answer_and_keeps_state(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    small = write_photos(tmp_path / "small", 1, size=800, first_seed=50)
    (tmp_path / "notes.jpg").write_text("not an image at all")
    settings = make_settings()
    output = await chat(
        settings,
        f"/photos {photo_dir_of(tmp_path, 3)}\n/photos {small} {tmp_path / 'notes.jpg'}\n"
        "/train man\n/imagine hello\n/frobnicate\n/models 99\n/status\n",
    )
    assert "as a file" in output  # the 800 px photo: explains sending files
    assert "not a readable image" in output
    assert "at least 4" in output  # /train with 3 photos
    assert "no model yet" in output  # /imagine before training
    assert "Unknown command /frobnicate" in output
    assert "no model with that number" in output
    assert "Photos waiting for /train: 3." in output


def photo_dir_of(tmp_path: Path, count: int) -> Path:
    return write_photos(tmp_path / f"set{count}", count, first_seed=10)


async def test_another_users_model_cannot_be_used(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    foreign = fake_astria.add_tune(str(uuid.uuid4()), "woman", trained=True)
    output = await chat(
        make_settings(),
        f"/photos {photo_dir}\n/train man\n/wait\n<lora:{foreign['id']}:1> ohwx woman in paris\n",
    )
    assert "your own models" in output
    assert fake_astria.find_requests("POST", "/tunes/666678/prompts") == []


async def test_backend_validation_error_reaches_the_user(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    fake_astria.fail_next("POST", "/tunes/666678/prompts", 422, {"error": "Prompt is too spicy"})
    output = await chat(
        make_settings(),
        f"/photos {photo_dir}\n/train man\n/wait\n/imagine on a beach\n/wait\n/status\n",
    )
    assert "Prompt is too spicy" in output
    assert "Nothing is running." in output


async def test_a_failed_training_keeps_the_photos_for_a_retry(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    fake_astria.fail_next("POST", "/tunes", 422, {"error": "Images are too blurry"})
    output = await chat(
        make_settings(), f"/photos {photo_dir}\n/train man\n/wait\n/train man\n/wait\n"
    )
    assert "Images are too blurry" in output
    assert "is ready" in output  # the second /train found the same five photos
    [tune] = fake_astria.tunes.values()
    assert len(fake_astria.training_images[tune["id"]]) == 5


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGKILL, signal.SIGTERM])
def test_restart_while_training_resumes_and_delivers_once(
    fake_astria: FakeAstria, photo_dir: Path, tmp_path: Path, stop_signal: signal.Signals
) -> None:
    env = astria_bot_env(fake_astria, tmp_path / "data")
    fake_astria.hold_training()
    first = BotProcess(["chat"], env, tmp_path, stdin=True)
    first.send(f"/photos {photo_dir}\n/train man\n")
    first.wait_for(r"Training .* in progress")
    first.popen.send_signal(stop_signal)  # SIGKILL: the harshest stop, no clean-up at all
    returncode = first.popen.wait(30)
    if stop_signal == signal.SIGTERM:
        assert returncode == 0  # a graceful stop
    before = first.output

    fake_astria.release_training()
    second = BotProcess(["chat"], env, tmp_path, stdin=True)
    second.wait_for(r"is ready")
    second.send("/imagine astronaut on the moon\n")
    after = second.close_input_and_wait()

    assert "is ready" not in before
    assert after.count("is ready") == 1
    assert len(fake_astria.tunes) == 1  # resumed, not trained twice
    saved = [Path(match) for match in SAVED_PATH.findall(after)]
    assert len(saved) == 4 and all(path.exists() for path in saved)

    third = BotProcess(["chat"], env, tmp_path, stdin=True)  # a third start delivers nothing again
    third.send("/status\n")
    final = third.close_input_and_wait()
    assert "is ready" not in final
    assert not SAVED_PATH.findall(final)


async def test_cancel_acts_while_wait_waits(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    """The training never finishes on its own: only the /cancel typed after /wait ends it."""
    fake_astria.hold_training()
    output = await asyncio.wait_for(
        chat(make_settings(), f"/photos {photo_dir}\n/train man\n/wait\n/cancel\n/status\n"),
        timeout=60,
    )
    lines = output.splitlines()
    cancelled = next(i for i, line in enumerate(lines) if "Cancelled: training of man #1" in line)
    waited = lines.index("bot> " + text("console.no_jobs"))
    assert cancelled < waited  # /cancel ran during the wait and ended it
    assert "Nothing is running." in "\n".join(lines[waited:])  # /status waited its turn
    assert fake_astria.tunes == {}  # nothing left training on the backend


@pytest.mark.slow
def test_console_prints_the_conversation_and_logs_to_a_file(
    photo_dir: Path, tmp_path: Path
) -> None:
    """The in-process tiny worker's INFO lines and the libraries' warnings go to the log file;
    standard output holds the conversation alone."""
    data = tmp_path / "data"
    env = {
        **bot_env(data),
        "BACKEND": "local",
        **TINY_ON_CPU,
        "WORKER_TRAIN_STEPS": "2",
        "OMP_NUM_THREADS": "1",
        "POLL_INTERVAL_S": "0.2",
        "CONSENT_REQUIRED": "false",  # tests/test_consent.py asks it
    }
    script = f"/photos {photo_dir}\n/train man\n/wait\n/status\n"
    done = subprocess.run(
        [sys.executable, "-m", "bot", "chat"],
        input=script,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line for line in lines if not line.startswith("bot> ")] == []
    assert any("is ready" in line for line in lines)
    assert done.stderr == ""
    log = (data / "logs" / "bot.log").read_text()
    assert "INFO backends.local.worker: worker started" in log
    assert "WARNING backends.local.models: SDXL_MODEL=tiny" in log
