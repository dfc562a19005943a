"""`python -m bot ...` as a real subprocess, for the tests that stop and restart the bot."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bot.config import Settings
from tests.conftest import FAKE_KEY
from tests.fakes.astria_server import FakeAstria

ROOT = Path(__file__).resolve().parents[1]


TINY_ON_CPU = {"SDXL_MODEL": "tiny", "WORKER_DEVICE": "cpu", "WORKER_COMPILE": "off"}
"""The worker's settings for the tiny test model on a CPU (not compiled: it would take longer
than the test)."""


def bot_env(data_dir: Path, **values: str) -> dict[str, str]:
    """The environment of `python -m bot` in a test: this one less any setting of the bot's (a
    developer's own must not steer the test), the checkout importable, the data in `data_dir`,
    then `values` (settings by their variable names)."""
    ambient = {k: v for k, v in os.environ.items() if k.upper() not in Settings.model_fields}
    return {**ambient, "PYTHONPATH": str(ROOT), "DATA_DIR": str(data_dir), **values}


def astria_bot_env(astria: FakeAstria, data_dir: Path, **values: str) -> dict[str, str]:
    """`bot_env` for a bot on the fake Astria that polls it often and asks no consent to train
    (tests/test_consent.py asks it)."""
    return bot_env(
        data_dir,
        ASTRIA_API_KEY=FAKE_KEY,
        ASTRIA_API_URL=astria.url,
        POLL_INTERVAL_S="0.05",
        CONSENT_REQUIRED="false",
        **values,
    )


class BotProcess:
    """The CLI in a subprocess, its output collected on a thread (a full pipe would block it);
    with `stdin=True` the test types into it, as into the console chat."""

    def __init__(
        self, args: list[str], env: dict[str, str], cwd: Path, *, stdin: bool = False
    ) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "bot", *args],
            stdin=subprocess.PIPE if stdin else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=cwd,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def send(self, text: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(text)
        self.popen.stdin.flush()

    def wait_for(self, pattern: str, timeout: float = 30) -> str:
        """The first output line matching `pattern`, waiting for it to be printed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if re.search(pattern, line):
                    return line
            if self.popen.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r} in:\n{self.output}")

    def close_input_and_wait(self, timeout: float = 60) -> str:
        assert self.popen.stdin is not None
        self.popen.stdin.close()
        self.popen.wait(timeout)
        self._reader.join(timeout)
        return self.output

    def terminate_within(self, bound_s: float) -> int:
        """SIGTERM, then the exit status; fails if it takes longer than `bound_s`."""
        self.popen.send_signal(signal.SIGTERM)
        try:
            status = self.popen.wait(bound_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            raise AssertionError(f"no exit {bound_s} s after SIGTERM:\n{self.output}") from None
        self._reader.join(5)
        return status

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


def until(condition: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """Poll `condition` until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def worker_health(http: httpx.Client) -> dict[str, Any] | None:
    """The worker's `/healthz` answer, or None while it is not (yet, or any more) up."""
    try:
        response = http.get("/healthz")
    except httpx.TransportError:
        return None
    return response.json() if response.status_code == 200 else None


def wait_for_worker(http: httpx.Client, timeout: float = 120) -> dict[str, Any]:
    """Wait until a worker process answers `/healthz` (loading the tiny model takes seconds)."""
    return until(lambda: worker_health(http), "the worker to answer /healthz", timeout)
