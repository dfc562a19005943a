"""One Settings object, read once at start-up from the environment and `.env`, passed down.

Variable names are a contract (docs/configuration.md): deployment files and outside tests set
them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PLATFORMS = ("telegram", "discord", "console")


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it and says what is expected."""


def _parse_id_list(value: object) -> list[str]:
    """Parse `telegram:1,discord:2` into a normalised list; reject unknown platforms."""
    if value is None or value == "":
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    parsed: list[str] = []
    for raw in items:
        item = str(raw).strip()
        if not item:
            continue
        platform, sep, user_id = item.partition(":")
        if not sep or platform.lower() not in PLATFORMS or not user_id.strip():
            raise ValueError(
                f"'{item}' is not of the form telegram:<id>, discord:<id> or console:<name>"
            )
        parsed.append(f"{platform.lower()}:{user_id.strip()}")
    return parsed


def _parse_pairs(value: object, form: str) -> list[tuple[str, int]]:
    """Parse `a:1,b:2` (the form named in the error) into pairs with a positive number."""
    if isinstance(value, list | dict):
        items = value.items() if isinstance(value, dict) else value
        return [(str(key), int(number)) for key, number in items]
    pairs = []
    for raw in str(value or "").split(","):
        if not raw.strip():
            continue
        key, sep, number = raw.strip().partition(":")
        if not sep or not key.strip() or not number.strip().isdigit() or int(number) < 1:
            raise ValueError(f"'{raw.strip()}' is not of the form {form}")
        pairs.append((key.strip(), int(number)))
    return pairs


class Settings(BaseSettings):
    """The bot's settings, and the few it shares with the worker it may run in-process.

    It owns the variables of docs/configuration.md's "Bot" table (chat tokens, backend choice
    and keys, DATA_DIR, PUBLIC_URL, CALLBACK_PORT, the allow-lists, LORA_STRENGTH ...).
    Shared with the worker: DATA_DIR (the worker uses DATA_DIR/worker), SDXL_MODEL and
    WORKER_API_KEY; `bot.app.worker_config` hands these over.

    The worker's own knobs (WORKER_DEVICE, WORKER_COMPILE, WORKER_TRAIN_*, SDXL_EXTRA_MODELS
    ...) are not here: `backends.local` reads them itself from the environment and `.env`, so
    the worker runs the same standalone (`photoshoot-bot worker`) and in the bot's process, and
    never imports the bot. docs/configuration.md lists both sets.
    """

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    telegram_bot_token: SecretStr | None = Field(None, description="Enables the Telegram frontend.")
    telegram_api_url: str = Field(
        "https://api.telegram.org/bot",
        description="Bot API base (token appended), for a local Bot API server.",
    )
    telegram_file_url: str = Field(
        "https://api.telegram.org/file/bot", description="File download base (token appended)."
    )
    discord_bot_token: SecretStr | None = Field(None, description="Enables the Discord frontend.")
    discord_dev_guild_id: int | None = Field(
        None,
        description="Sync the slash commands to this one guild (instantly, for development) "
        "instead of globally (which Discord rolls out more slowly).",
    )
    backend: Literal["astria", "local"] | None = Field(
        None, description="Which backend: `astria` if ASTRIA_API_KEY is set, else `local`."
    )
    astria_api_key: SecretStr | None = Field(
        None, description="Key for the Astria API (or our worker's key)."
    )
    astria_api_url: str = Field("https://api.astria.ai", description="Astria API base URL.")
    local_worker_url: str | None = Field(
        None, description="Our worker's URL; empty = run the worker in-process."
    )
    sdxl_model: str = Field("tiny", description="Base model for the local worker.")
    worker_api_key: SecretStr | None = Field(
        None,
        description="Key our worker accepts as `Authorization: Bearer`; empty = loopback only.",
    )
    data_dir: Path = Field(Path("./data"), description="SQLite database and media.")
    public_url: str | None = Field(
        None, description="Where backends can POST callbacks; empty = polling only."
    )
    poll_interval_s: float = Field(10.0, gt=0, description="Base polling interval for jobs.")
    admin_ids: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated telegram:<id> / discord:<id>."
    )
    allowed_ids: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated ids allowed to use the bot; empty = all."
    )
    lora_strength: float = Field(
        0.8, ge=0, le=2, description="LoRA strength used when a prompt does not give one."
    )
    default_language: str = Field(
        "en",
        description="The language for users whose own language the bot does not speak (and "
        "for command lists shown to everyone else): en, ru, es, de or pt_BR.",
    )
    credits: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Charge credits: `on`, `off` (unlimited), or `auto`: on when the bot is open "
        "to everyone (no ALLOWED_IDS) with a paid backend, off for ALLOWED_IDS deployments and "
        "the console.",
    )
    free_credits: int = Field(0, ge=0, description="Credits a new account starts with.")
    price_training: int = Field(50, ge=0, description="Credits one training costs.")
    price_image: int = Field(1, ge=0, description="Credits one image costs (a set of 4: 4x).")
    credit_packages: Annotated[list[tuple[int, int]], NoDecode] = Field(
        default_factory=lambda: [(60, 150), (150, 350), (400, 800)],
        description="What /buy sells for Telegram Stars: `credits:stars,...`; empty = nothing.",
    )
    discord_sku_credits: Annotated[dict[str, int], NoDecode] = Field(
        default_factory=dict,
        description="Discord consumable SKUs and the credits each buys: `sku_id:credits,...`.",
    )
    limit_running_prompts: int = Field(
        2, ge=0, description="Image sets one charged user may have on the way; 0 = no limit."
    )
    limit_running_trainings: int = Field(
        1, ge=0, description="Trainings one charged user may have running; 0 = no limit."
    )
    limit_images_per_day: int = Field(
        100, ge=0, description="Images one charged user may make per day (UTC); 0 = no limit."
    )
    limit_trainings_per_day: int = Field(
        50, ge=0, description="Trainings charged users start per day, all together; 0 = none."
    )
    prompt_blocklist: Path | None = Field(
        None,
        description="A file of prompt rules to refuse (see bot/core/blocklist.txt, the "
        "default when empty).",
    )
    consent_required: bool = Field(
        True,
        description="Ask each user once, before their first training, to confirm the photos "
        "are of themselves or of an adult who agreed.",
    )
    consent_text_file: Path | None = Field(
        None, description="A UTF-8 file with the operator's own consent wording."
    )
    retention_days: int = Field(
        30,
        ge=0,
        description="Delete the photos, models and images of a user inactive this many days, "
        "here and on the image service (a daily sweep); 0 = never.",
    )
    keep_training_photos: bool = Field(
        False, description="Keep training photos after their model is trained (deleted by default)."
    )
    callback_port: int = Field(
        8080,
        ge=1,
        le=65535,
        description="Port of the bot's HTTP server (backend callbacks, the Telegram webhook, "
        "/healthz), which runs when PUBLIC_URL is set.",
    )

    @field_validator("admin_ids", "allowed_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> list[str]:
        return _parse_id_list(value)

    @field_validator("credit_packages", mode="before")
    @classmethod
    def _split_packages(cls, value: object) -> list[tuple[int, int]]:
        pairs = _parse_pairs(value, "credits:stars")
        if any(not credits.isdigit() or int(credits) < 1 for credits, _ in pairs):
            raise ValueError("credits are whole numbers from 1, as in 100:250 (credits:stars)")
        return [(int(credits), stars) for credits, stars in pairs]

    @field_validator("discord_sku_credits", mode="before")
    @classmethod
    def _split_skus(cls, value: object) -> dict[str, int]:
        pairs = _parse_pairs(value, "sku_id:credits")
        if any(not sku.isdigit() for sku, _ in pairs):
            raise ValueError("SKU ids are numbers (Developer Portal › your app › SKUs)")
        return dict(pairs)

    @field_validator(
        "telegram_api_url", "telegram_file_url", "astria_api_url", "local_worker_url", "public_url"
    )
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        value = value.strip()
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"'{value}' must start with http:// or https://")
        return value

    @field_validator("telegram_bot_token", "discord_bot_token", "astria_api_key", "worker_api_key")
    @classmethod
    def _empty_secret_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        return value

    @field_validator("discord_dev_guild_id", mode="before")
    @classmethod
    def _empty_id_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _resolve_backend(self) -> Settings:
        if self.backend is None:
            self.backend = "astria" if self.astria_api_key else "local"
        return self

    @property
    def database_path(self) -> Path:
        """The bot's SQLite database: always inside DATA_DIR, beside the media it indexes."""
        return self.data_dir / "photoshoot.sqlite3"

    @property
    def paid_backend(self) -> bool:
        """Every job costs the operator money: hosted Astria bills each tune and image, and a
        worker elsewhere (LOCAL_WORKER_URL) is a GPU someone pays for. The in-process worker
        (one machine, the offline default) is not counted."""
        return self.backend == "astria" or bool(self.local_worker_url)

    @property
    def credits_enabled(self) -> bool:
        """CREDITS resolved: `auto` charges a bot open to everyone with a paid backend."""
        if self.credits != "auto":
            return self.credits == "on"
        return not self.allowed_ids and self.paid_backend

    def never_charged(self, user_key: str) -> bool:
        """Admins never pay; with CREDITS=auto neither does the console (the operator's own
        terminal)."""
        console = self.credits == "auto" and user_key.startswith("console:")
        return user_key in self.admin_ids or console

    def is_allowed(self, user_key: str) -> bool:
        """Empty ALLOWED_IDS lets everyone in; admins are always allowed."""
        return not self.allowed_ids or user_key in self.allowed_ids or user_key in self.admin_ids


def load_settings(**overrides: object) -> Settings:
    """Read the settings once; turn pydantic's report into one message naming each bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]).upper() if error["loc"] else "settings"
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{name}: {message}")
        raise ConfigError("Bad configuration: " + "; ".join(problems)) from None
