"""`photoshoot-bot doctor`: checks a deployment before users find the problem.

It loads the configuration, asks the image backend for its tunes with our key, asks each chat
platform whose token is set who we are, and tries the data dir; then it says in plain words
what is wrong. Exit status 0 = all good, 1 = something needs fixing. Nothing it prints holds a
secret: tokens live in Telegram URLs, so no URL with a token is ever shown.
"""

from __future__ import annotations

import asyncio
import importlib.util
import ipaddress
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

import httpx

from bot.app import default_language
from bot.config import ConfigError, Settings, load_settings
from bot.logs import add_secrets, redact, secrets_of

DISCORD_API = "https://discord.com/api/v10"
MIN_FREE_BYTES = 1024**3
"""Below this the store and the images soon fail; a photoshoot is a few MB, a tune more."""
TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Check:
    """One finding: `problem` says what is wrong (None when fine), `detail` what was seen;
    `warning` is a risk worth a look that does not stop the bot (it still counts as ok)."""

    name: str
    detail: str = ""
    problem: str | None = None
    warning: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


async def run_checks(settings: Settings, *, discord_api: str = DISCORD_API) -> list[Check]:
    """Every check that applies to `settings`, the network ones concurrently."""
    checks = [configuration(settings), credits(settings)]
    if settings.backend == "astria" or settings.local_worker_url:
        checks += await asyncio.to_thread(worker_settings, settings)
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as http:
        remote = [backend(settings, http)]
        if settings.telegram_bot_token:
            remote.append(telegram(settings, http))
        if settings.discord_bot_token:
            remote.append(discord(settings, http, discord_api))
        checks += await asyncio.gather(*remote)
    checks.append(data_dir(settings.data_dir))
    return checks


def configuration(settings: Settings) -> Check:
    platforms = [
        name
        for name, token in (
            ("Telegram", settings.telegram_bot_token),
            ("Discord", settings.discord_bot_token),
        )
        if token
    ]
    chats = ", ".join(platforms) or "none set, so `run` starts the console chat"
    where = {
        "astria": f"Astria at {settings.astria_api_url}",
        "local": f"our worker at {settings.local_worker_url}"
        if settings.local_worker_url
        else f"our worker in this process (SDXL_MODEL={settings.sdxl_model})",
    }[settings.backend or "local"]
    public = settings.public_url or ""
    if settings.telegram_bot_token and public and not public.startswith("https://"):
        return Check(
            "configuration",
            problem=f"PUBLIC_URL {public} must start with https://: Telegram delivers webhooks "
            "only over HTTPS (put a TLS proxy in front of CALLBACK_PORT)",
        )
    try:
        language = default_language(settings)
    except ConfigError as exc:
        return Check("configuration", problem=str(exc).removeprefix("Bad configuration: "))
    return Check(
        "configuration", f"loaded; images by {where}; chats: {chats}; default language {language}"
    )


def credits(settings: Settings) -> Check:
    """An open chat bot that charges nothing is an open wallet: warn. A charging bot that sells
    nothing leaves users stuck: warn too."""
    name = "credits"
    open_chat = not settings.allowed_ids and (
        settings.telegram_bot_token or settings.discord_bot_token
    )
    if not settings.credits_enabled:
        if open_chat:
            return Check(
                name,
                warning="the bot is open to everyone (no ALLOWED_IDS) and charges nothing "
                f"(CREDITS={settings.credits}): anyone can train and make images at your cost, "
                "without limits. Set CREDITS=on, or ALLOWED_IDS.",
            )
        return Check(name, "off: nothing is charged, nothing is limited")
    detail = (
        f"on: a training costs {settings.price_training}, an image {settings.price_image}; "
        f"new accounts get {settings.free_credits}; {len(settings.credit_packages)} Stars "
        f"package(s), {len(settings.discord_sku_credits)} Discord SKU(s)"
    )
    if not settings.credit_packages and not settings.discord_sku_credits:
        return Check(
            name,
            detail,
            warning="nothing is on sale (CREDIT_PACKAGES and DISCORD_SKU_CREDITS are empty): "
            "users get credits only from FREE_CREDITS and admins' /grant",
        )
    return Check(name, detail)


async def backend(settings: Settings, http: httpx.AsyncClient) -> Check:
    if settings.backend == "astria":
        key = settings.astria_api_key.get_secret_value() if settings.astria_api_key else ""
        return await _list_tunes("Astria API", settings.astria_api_url, key, "ASTRIA_API_KEY", http)
    if settings.local_worker_url:
        return await remote_worker(settings, http)
    return await asyncio.to_thread(in_process_worker, settings)  # imports torch: seconds


async def remote_worker(settings: Settings, http: httpx.AsyncClient) -> Check:
    """Our worker over HTTP: its open /healthz first (is it up?), then the key on /tunes."""
    url = (settings.local_worker_url or "").rstrip("/")
    name = "worker"
    try:
        response = await http.get(f"{url}/healthz")
    except httpx.HTTPError as exc:
        return Check(name, problem=f"cannot reach LOCAL_WORKER_URL {url}: {_reason(exc)}")
    if response.status_code not in (200, 503):
        status = response.status_code
        return Check(name, problem=f"{url}/healthz answered {status}: is it our worker?")
    key = settings.worker_api_key or settings.astria_api_key
    secret = key.get_secret_value() if key else ""
    names = "WORKER_API_KEY" if settings.worker_api_key else "WORKER_API_KEY (or ASTRIA_API_KEY)"
    check = await _list_tunes(name, url, secret, names, http)
    if check.problem and not secret and not _is_loopback(url):
        return Check(
            name,
            problem=f"no WORKER_API_KEY set: the worker at {url} serves only its own machine "
            "without a key. Set the same WORKER_API_KEY for the bot and the worker.",
        )
    if check.ok and response.status_code == 503:
        return Check(name, problem=f"{url} is up but not ready yet (starting or stopping)")
    if check.ok:
        health = response.json()
        loaded = "model loaded" if health.get("model_loaded") else "model loads on first job"
        queue = health.get("queue") or {}
        waiting = f"{queue.get('prompts', 0)} prompts, {queue.get('tunes', 0)} tunes queued"
        return Check(name, f"{check.detail}; {health.get('model')}: {loaded}; {waiting}")
    return check


def worker_settings(settings: Settings) -> list[Check]:
    """The worker's own variables (WORKER_TRAIN_STEPS, ...) where the bot does not run it:
    `photoshoot-bot worker` on this machine reads the same environment and `.env`, and a bad
    value would only fail when its first job starts. Nothing to check without the worker."""
    try:
        from bot.app import worker_config

        worker_config(settings, api_key=None)
    except ImportError:
        return []
    except ConfigError as exc:
        return [Check("worker settings", problem=str(exc).removeprefix("Bad configuration: "))]
    return []


def in_process_worker(settings: Settings) -> Check:
    """BACKEND=local without LOCAL_WORKER_URL: the worker extra must be installed here."""
    name = "worker (in-process)"
    missing = [m for m in ("torch", "diffusers") if importlib.util.find_spec(m) is None]
    if missing:
        return Check(
            name,
            problem=f"the worker's packages are not installed ({', '.join(missing)}). Set "
            "ASTRIA_API_KEY for hosted Astria, LOCAL_WORKER_URL for a worker elsewhere, or "
            "install it: pip install torch==2.13.0 -e '.[worker]'",
        )
    from bot.app import worker_config

    try:
        device = worker_config(settings, api_key=None).device or ""
    except ConfigError as exc:
        return Check(name, problem=str(exc))
    gpu = _cuda_summary()
    if device.startswith("cuda") and gpu is None:
        return Check(
            name,
            problem=f"WORKER_DEVICE={device} but PyTorch sees no CUDA GPU: check the NVIDIA "
            "driver (nvidia-smi) and that torch is a CUDA build",
        )
    where = gpu or "no CUDA GPU, so it runs on the CPU (fine for SDXL_MODEL=tiny only)"
    model = settings.sdxl_model
    if model == "tiny":
        return Check(name, f"SDXL_MODEL=tiny, a random test model (noise images); {where}")
    looks_local = model.startswith(("/", ".", "~")) or model.endswith(".safetensors")
    if looks_local and not Path(model).expanduser().exists():
        return Check(name, problem=f"SDXL_MODEL {model} does not exist on this machine")
    return Check(name, f"SDXL_MODEL={model}; {where}")


def _cuda_summary() -> str | None:
    """The GPU PyTorch would use, or None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    return f"CUDA: {torch.cuda.get_device_name()}, {_size(free)} of {_size(total)} free"


async def _list_tunes(
    name: str, base_url: str, key: str, key_name: str, http: httpx.AsyncClient
) -> Check:
    """GET /tunes with the key: proves the URL is an Astria API and the key is accepted."""
    url = f"{base_url.rstrip('/')}/tunes"
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = await http.get(url, headers=headers)
    except httpx.HTTPError as exc:
        return Check(name, problem=f"cannot reach {base_url}: {_reason(exc)}")
    if response.status_code in (401, 403):
        return Check(
            name,
            problem=f"the key is wrong: {url} answered {response.status_code}. Check {key_name}.",
        )
    if response.status_code != 200:
        return Check(name, problem=f"{url} answered {response.status_code}: {_body(response)}")
    try:
        tunes = response.json()
    except ValueError:
        tunes = None
    if not isinstance(tunes, list):
        return Check(name, problem=f"{url} did not answer like an Astria API (a list of tunes)")
    return Check(name, f"the key works at {base_url} ({len(tunes)} tunes visible)")


async def telegram(settings: Settings, http: httpx.AsyncClient) -> Check:
    """getMe through TELEGRAM_API_URL (the token is part of the URL: never shown)."""
    assert settings.telegram_bot_token is not None
    token = settings.telegram_bot_token.get_secret_value()
    try:
        response = await http.get(f"{settings.telegram_api_url}{token}/getMe")
    except httpx.HTTPError as exc:
        return Check(
            "Telegram",
            problem=f"cannot reach TELEGRAM_API_URL {settings.telegram_api_url}: {_reason(exc)}",
        )
    if response.status_code in (401, 404):
        return Check(
            "Telegram",
            problem="TELEGRAM_BOT_TOKEN is wrong: Telegram does not know it "
            f"({response.status_code}). Copy the token from @BotFather again.",
        )
    if response.status_code != 200:
        return Check("Telegram", problem=f"getMe answered {response.status_code}")
    user = response.json().get("result", {})
    return Check("Telegram", f"the token works: @{user.get('username', '?')}")


async def discord(settings: Settings, http: httpx.AsyncClient, api: str) -> Check:
    assert settings.discord_bot_token is not None
    token = settings.discord_bot_token.get_secret_value()
    try:
        response = await http.get(f"{api}/users/@me", headers={"Authorization": f"Bot {token}"})
    except httpx.HTTPError as exc:
        return Check("Discord", problem=f"cannot reach {api}: {_reason(exc)}")
    if response.status_code == 401:
        return Check(
            "Discord",
            problem="DISCORD_BOT_TOKEN is wrong: Discord answered 401. Reset the token in the "
            "Developer Portal (Bot tab) and copy it again.",
        )
    if response.status_code != 200:
        return Check("Discord", problem=f"GET /users/@me answered {response.status_code}")
    return Check("Discord", f"the token works: {response.json().get('username', '?')}")


def data_dir(folder: Path) -> Check:
    """Writable (a file is created and removed) and with room for photos, models and images."""
    name = f"data dir {folder}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check(
            name,
            problem=f"cannot write there ({exc.strerror or exc}). Point DATA_DIR at a folder "
            f"the user {_user()} can write.",
        )
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE_BYTES:
        needed = _size(MIN_FREE_BYTES)
        return Check(name, problem=f"only {_size(free)} free there; keep at least {needed}")
    return Check(name, f"writable, {_size(free)} free")


def report(checks: list[Check], out: TextIO) -> int:
    """Print one line per check and a verdict; returns the exit status."""
    for check in checks:
        mark, text = ("ok  ", check.detail) if check.ok else ("FAIL", check.problem)
        if check.ok and check.warning is not None:
            mark, text = "warn", check.warning
        print(redact(f"{mark}  {check.name}: {text}"), file=out)
    problems = sum(not check.ok for check in checks)
    if problems:
        print(f"{problems} problem{'s' if problems > 1 else ''} found.", file=out)
        return 1
    print("All good.", file=out)
    return 0


def doctor(out: TextIO = sys.stdout, *, discord_api: str = DISCORD_API) -> int:
    """The `doctor` command: exit status 1 when anything is wrong."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        return report([Check("configuration", problem=str(exc))], out)
    add_secrets(*secrets_of(settings))
    return report(asyncio.run(run_checks(settings, discord_api=discord_api)), out)


def _reason(exc: httpx.HTTPError) -> str:
    return redact(str(exc) or type(exc).__name__)


def _body(response: httpx.Response) -> str:
    return redact(response.text[:200].strip())


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return "running the bot"
