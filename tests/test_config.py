"""Settings: the contract's variable names, `.env` loading, one clear message for bad values."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, Settings, load_settings

CONTRACT_NAMES = {
    "TELEGRAM_BOT_TOKEN", "TELEGRAM_API_URL", "TELEGRAM_FILE_URL", "DISCORD_BOT_TOKEN",
    "BACKEND", "ASTRIA_API_KEY", "ASTRIA_API_URL", "LOCAL_WORKER_URL", "SDXL_MODEL",
    "WORKER_API_KEY", "DATA_DIR", "PUBLIC_URL", "POLL_INTERVAL_S", "ADMIN_IDS", "ALLOWED_IDS",
}  # fmt: skip


def test_every_design_variable_is_a_setting() -> None:
    assert {name.upper() for name in Settings.model_fields} >= CONTRACT_NAMES


def test_defaults_match_the_design() -> None:
    settings = load_settings()
    assert settings.backend == "local"
    assert settings.telegram_api_url == "https://api.telegram.org/bot"
    assert settings.telegram_file_url == "https://api.telegram.org/file/bot"
    assert settings.astria_api_url == "https://api.astria.ai"
    assert settings.sdxl_model == "tiny"
    assert settings.data_dir == Path("./data")
    assert settings.poll_interval_s == 10
    assert settings.public_url is None and settings.allowed_ids == []


def test_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ASTRIA_API_KEY=sd_abc\nADMIN_IDS=telegram:1, discord:2\n")
    monkeypatch.setenv("ALLOWED_IDS", "telegram:5")
    settings = load_settings()
    assert settings.backend == "astria"  # a key switches the default backend
    assert settings.astria_api_key is not None
    assert settings.astria_api_key.get_secret_value() == "sd_abc"
    assert "sd_abc" not in repr(settings)
    assert settings.admin_ids == ["telegram:1", "discord:2"]
    assert settings.is_allowed("telegram:5") and settings.is_allowed("discord:2")
    assert not settings.is_allowed("telegram:6")


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("POLL_INTERVAL_S", "soon", "POLL_INTERVAL_S"),
        ("POLL_INTERVAL_S", "-1", "POLL_INTERVAL_S"),
        ("BACKEND", "replicate", "BACKEND"),
        ("ADMIN_IDS", "42", "telegram:<id>"),
        ("ASTRIA_API_URL", "api.astria.ai", "http"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert name in str(error.value) and expected in str(error.value)


def test_cli_stops_with_one_clear_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "chat"],
        env={"PATH": "/usr/bin:/bin", "POLL_INTERVAL_S": "often", "HOME": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("photoshoot-bot: Bad configuration: POLL_INTERVAL_S")
    assert "Traceback" not in result.stderr
