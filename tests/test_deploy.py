"""The deployment files and the configuration reference stay true to the code.

The code is the source of truth for variable names: the Settings class (bot), and for the
worker every name its `from_env` readers look up (found by calling them on an environment that
records each look-up) plus every literal `environ.get("NAME")` in backends/. The docs, the
.env example, compose and the systemd units may use exactly those, plus the few variables of
other tools that docs/configuration.md lists in its own section.

Install steps: every `pip install` in the Dockerfiles and unit files is, word for word, the
install half of a command the README gives (the part before `&&`), so they cannot drift.
"""

from __future__ import annotations

import importlib
import inspect
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from dotenv import dotenv_values

from backends.local import WorkerConfig
from bot.app import worker_config
from bot.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
README = (ROOT / "README.md").read_text()
CONFIG_DOC = (ROOT / "docs" / "configuration.md").read_text()
ENV_EXAMPLE = DEPLOY / ".env.example"
DOCKERFILES = {"bot": DEPLOY / "Dockerfile.bot", "worker": DEPLOY / "Dockerfile.worker"}
UNITS = {"bot": DEPLOY / "systemd/photoshoot-bot.service"}
UNITS["worker"] = DEPLOY / "systemd/photoshoot-worker.service"
NAME = r"[A-Z][A-Z0-9_]+"
LITERAL_READ = re.compile(rf"""(?:environ|\benv)(?:\.get\(|\[)\s*["']({NAME})["']""")


class _RecordingEnv(dict[str, str]):
    """An empty environment that remembers every name looked up in it."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.names.add(key)
        return default

    def __getitem__(self, key: str) -> str:
        self.names.add(key)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        self.names.add(str(key))
        return False


@cache
def worker_names() -> frozenset[str]:
    """What the worker reads: its `from_env` readers' look-ups and literal environ reads."""
    env = _RecordingEnv()
    for path in sorted((ROOT / "backends").rglob("*.py")):
        source = path.read_text()
        env.names.update(LITERAL_READ.findall(source))
        if "def from_env(" not in source:
            continue
        module = importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and "from_env" in vars(cls):
                cls.from_env(env)
    return frozenset(env.names)


@cache
def known_names() -> frozenset[str]:
    return frozenset(name.upper() for name in Settings.model_fields) | worker_names()


def doc_section(title: str) -> str:
    return CONFIG_DOC.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def table_names(section: str) -> set[str]:
    """Names in the first column of a Markdown table."""
    return {
        name
        for line in section.splitlines()
        if line.startswith("| `")
        for name in re.findall(rf"`({NAME})`", line.split("|")[1])
    }


@cache
def other_tools() -> frozenset[str]:
    return frozenset(table_names(doc_section("Set by the deployment files for other tools")))


def readme_install_commands() -> set[str]:
    """The install half of every README command that installs this project."""
    spans = re.findall(r"`([^`\n]*pip install[^`\n]*)`", README)
    return {
        part.strip()
        for span in spans
        for part in span.split("&&")
        if part.strip().startswith("pip install")
    }


def pip_installs(text: str, *, comments: bool = False) -> list[str]:
    """`pip install ...` commands of a Dockerfile's RUN steps (or of comment lines)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = [
        line.lstrip("# ").strip() if comments else line.strip()
        for line in joined.splitlines()
        if line.startswith("#") == comments
    ]
    found = []
    for line in lines:
        for part in re.split(r"&&|#", line.removeprefix("RUN ")):
            match = re.search(r"pip install .*", part)
            if match:
                found.append(match.group(0).strip())
    return found


# -- the configuration reference and the .env example -------------------------------------


def test_the_worker_names_are_found_in_the_code() -> None:
    expected = {"SDXL_EXTRA_MODELS", "WORKER_DEVICE", "WORKER_PUBLIC_URL", "WORKER_UPSCALER_MODEL"}
    assert expected <= worker_names()


def test_configuration_doc_lists_exactly_what_the_code_reads() -> None:
    documented = table_names(doc_section("Bot")) | table_names(doc_section("Worker"))
    assert sorted(known_names() - documented) == [], "undocumented: add them to the doc"
    assert sorted(documented - known_names()) == [], "documented but never read"
    assert not other_tools() & known_names()


def env_example_entries() -> list[tuple[str, bool, str]]:
    """(name, active, comment above) for every `NAME=` or `# NAME=` line."""
    entries = []
    lines = ENV_EXAMPLE.read_text().splitlines()
    for index, line in enumerate(lines):
        match = re.match(rf"^(#\s*)?({NAME})=", line)
        if match:
            above = lines[index - 1] if index else ""
            is_comment = above.startswith("#") and not re.match(rf"^#\s*{NAME}=", above)
            entries.append((match.group(2), match.group(1) is None, above if is_comment else ""))
    return entries


def test_env_example_lists_every_name_once_with_a_comment() -> None:
    entries = env_example_entries()
    names = [name for name, _, _ in entries]
    assert len(names) == len(set(names)), "a name is listed twice"
    assert sorted(known_names() - set(names)) == [], "missing from deploy/.env.example"
    assert sorted(set(names) - known_names()) == [], "not read by the code"
    assert [name for name, _, comment in entries if not comment] == [], "no comment above"


def test_env_example_as_copied_starts_the_bot_and_the_worker(tmp_path: Path) -> None:
    """Its active lines are valid as they are: compose's env_file and systemd read them."""
    values = {k: v for k, v in dotenv_values(ENV_EXAMPLE).items() if v is not None}
    active = {name for name, is_active, _ in env_example_entries() if is_active}
    assert set(values) == active
    Settings(_env_file=ENV_EXAMPLE)  # type: ignore[call-arg]
    WorkerConfig.from_env(values)
    for line in ENV_EXAMPLE.read_text().splitlines():
        assert not re.match(rf"^{NAME}=.*\s#", line), f"inline comment: {line}"
        assert not re.match(rf"^{NAME}=[\"']", line), f"quoted value: {line}"


def test_the_worker_takes_its_own_names_from_env_and_dotenv(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("WORKER_DEVICE=cpu\nWORKER_PUBLIC_URL=http://from-file\n")
    monkeypatch.setenv("WORKER_PUBLIC_URL", "https://gpu.example.org")
    monkeypatch.setenv("WORKER_DEVICE", "")  # recorded, so the value .env adds is undone
    monkeypatch.delenv("WORKER_DEVICE")
    settings = load_settings(data_dir=tmp_path / "d", sdxl_model="tiny", astria_api_key=None)

    config = worker_config(settings, api_key="k")

    assert config.device == "cpu"  # from .env
    assert config.public_url == "https://gpu.example.org"  # the environment wins
    assert (config.data_dir, config.api_key) == (tmp_path / "d" / "worker", "k")


# -- compose --------------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def service_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_compose_names_only_existing_settings() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    interpolated = set(re.findall(rf"\$\{{({NAME})", text))
    used = interpolated | {n for s in compose()["services"].values() for n in service_env(s)}
    assert sorted(used - known_names() - other_tools()) == []


def test_compose_profiles_volumes_and_restarts() -> None:
    services = compose()["services"]
    volumes = set(compose()["volumes"])
    profiles: dict[str, set[str]] = {}
    for name, service in services.items():
        for profile in service["profiles"]:
            profiles.setdefault(profile, set()).add(name)
        assert service["restart"] == "unless-stopped"
        assert service["env_file"] in (".env", [".env"])
        data_dir = service_env(service)["DATA_DIR"]
        mounts = dict(reversed(v.split(":")[:2]) for v in service["volumes"])
        assert mounts[data_dir] in volumes, f"{name}: DATA_DIR is not on a named volume"
    assert profiles["astria"] == {"bot"}
    assert profiles["local"] == {"bot-local", "worker"}
    [device] = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert "gpu" in device["capabilities"]
    assert service_env(services["bot-local"])["LOCAL_WORKER_URL"] == "http://worker:7860"
    for name, service in services.items():
        image = "worker" if name == "worker" else "bot"
        assert service["build"]["dockerfile"] == f"deploy/{DOCKERFILES[image].name}"
        assert service["stop_grace_period"] == unit_values(image)["TimeoutStopSec"][0]


# -- Dockerfiles ------------------------------------------------------------------------------


def test_dockerfile_install_steps_are_the_readme_commands() -> None:
    commands = readme_install_commands()
    assert "pip install -e ." in commands
    bot = pip_installs(DOCKERFILES["bot"].read_text())
    worker = pip_installs(DOCKERFILES["worker"].read_text())
    assert bot == ["pip install -e ."]  # the bot image: no torch, no worker extra
    assert len(worker) == 1 and "'.[worker]'" in worker[0]
    assert set(bot + worker) <= commands
    [pin] = re.findall(r"torch==(\S+)", worker[0])
    assert f"ARG TORCH_VERSION={pin}\n" in DOCKERFILES["worker"].read_text()


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_dockerfiles_run_as_a_user_with_a_healthcheck(image: str) -> None:
    text = DOCKERFILES[image].read_text()
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    [check] = re.findall(r"^HEALTHCHECK .*", text, re.MULTILINE)
    assert "/healthz" in check and "curl" not in check
    env = re.findall(rf"^(?:ENV\s+|\s+)({NAME})=", text, re.MULTILINE)
    assert env and sorted(set(env) - known_names() - other_tools()) == []


# -- systemd --------------------------------------------------------------------------------


@cache
def unit_values(image: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in UNITS[image].read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


@pytest.mark.parametrize("image", sorted(UNITS))
def test_systemd_units_are_hardened_and_name_known_settings(image: str) -> None:
    unit = unit_values(image)
    for key, value in {
        "Restart": "on-failure",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "User": "photoshoot",
        "KillSignal": "SIGTERM",
    }.items():
        assert unit[key] == [value], key
    assert unit["EnvironmentFile"] and unit["TimeoutStopSec"]
    command = "run" if image == "bot" else "worker"
    assert unit["ExecStart"][0].split()[1] == command
    env = dict(item.split("=", 1) for line in unit["Environment"] for item in line.split())
    assert sorted(set(env) - known_names() - other_tools()) == []
    writable = " ".join(unit["ReadWritePaths"]).split()
    assert any(env["DATA_DIR"].startswith(path) for path in writable)
    installs = pip_installs(UNITS[image].read_text(), comments=True)
    assert installs and set(installs) <= readme_install_commands()


def test_the_fleet_profile_runs_each_part_with_known_settings() -> None:
    """deploy/compose.fleet.yaml (included by compose.yaml): PostgreSQL, S3, the migration,
    the API, the bot and GPU workers, all in the `fleet` profile; a GPU for each gpu-worker."""
    text = (DEPLOY / "compose.fleet.yaml").read_text()
    assert "compose.fleet.yaml" in compose()["include"]
    fleet = yaml.safe_load(text)
    services = fleet["services"]
    assert set(services) == {
        "postgres",
        "s3",
        "s3-bucket",
        "fleet-migrate",
        "worker-api",
        "gpu-worker",
        "bot-fleet",
    }
    assert all(service["profiles"] == ["fleet"] for service in services.values())
    assert services["gpu-worker"]["command"] == ["gpu-worker"]
    assert services["fleet-migrate"]["command"] == ["worker", "migrate"]
    [device] = services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert "gpu" in device["capabilities"]
    assert service_env(services["bot-fleet"])["LOCAL_WORKER_URL"] == "http://worker-api:7860"
    ours = ("fleet-migrate", "worker-api", "gpu-worker", "bot-fleet")
    used = {variable for name in ours for variable in service_env(services[name])}
    assert {"WORKER_DATABASE_URL", "WORKER_STORAGE_URL"} <= used
    assert sorted(used - known_names() - other_tools()) == []
    for name in ours:
        mounts = dict(reversed(v.split(":")[:2]) for v in services[name]["volumes"])
        assert mounts[service_env(services[name])["DATA_DIR"]] in fleet["volumes"], name
    assert "pip install -e '.[fleet]'" in (DEPLOY / "Dockerfile.fleet").read_text()


def test_the_gpu_box_unit_runs_a_hardened_gpu_worker() -> None:
    path = DEPLOY / "systemd/photoshoot-gpu-worker.service"
    unit: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            unit.setdefault(key, []).append(value)
    assert unit["ExecStart"][0].split()[1] == "gpu-worker"
    assert unit["Restart"] == ["on-failure"]  # a hung GPU exits: the unit brings it back
    assert unit["NoNewPrivileges"] == ["yes"] and unit["ProtectSystem"] == ["strict"]
    assert unit["User"] == ["photoshoot"] and unit["EnvironmentFile"]
    env = dict(item.split("=", 1) for line in unit["Environment"] for item in line.split())
    assert sorted(set(env) - known_names() - other_tools()) == []
    installs = pip_installs(path.read_text(), comments=True)
    assert "pip install -e '.[fleet]'" in installs
