"""The worker's configuration: one dataclass, built from the environment at start (env.py reads
and checks every variable), with the bot's Settings filling in what they share when the bot
runs the worker (DATA_DIR, SDXL_MODEL, WORKER_API_KEY).

Base models: `sdxl_model` serves the SDXL base tune id 666678 (what LoRA+TI tunes are trained on
and prompted through, as on Astria). `extra_models` maps further base tune ids to other SDXL
checkpoints the operator offers (e.g. `{1000001: "/models/zavychromaxl.safetensors"}`); a prompt
sent to `/tunes/1000001/prompts` with `<lora:ID:S>` then runs that checkpoint with the tune's
LoRA and embeddings. Env form: `SDXL_EXTRA_MODELS="1000001=/models/zavy.safetensors,..."`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from backends.base import SDXL_BASE_TUNE_ID
from backends.local.accel import Accel
from backends.local.env import EnvReader
from backends.local.errors import ConfigError
from backends.local.records import FIRST_TUNE_ID
from backends.local.training_recipe import TrainingDefaults

DEVICE = re.compile(r"[a-z]+(:\d+)?")
"""A torch device name (`cuda`, `cuda:1`, `cpu`, `mps`); torch itself is only loaded by a job."""

ON_OFF = {
    **dict.fromkeys(("1", "true", "on", "yes"), "on"),
    **dict.fromkeys(("0", "false", "off", "no"), "off"),
}
"""How an on/off variable (WORKER_FETCH_URLS) may be spelled."""


@dataclass
class WorkerConfig:
    """Everything the worker needs; `data_dir` holds its SQLite queue, tunes and images."""

    data_dir: Path
    sdxl_model: str = "tiny"
    sdxl_config_dir: str | None = None
    """SDXL configs for single-file checkpoints (a diffusers folder without weights is enough);
    None: the hub's SDXL base configs, which needs internet."""
    api_key: str | None = None
    public_url: str | None = None
    """Base URL put in front of `/files/...` image URLs; None: the URL of the incoming request."""
    extra_models: dict[int, str] = field(default_factory=dict)
    device: str | None = None
    """`cuda`, `cuda:1`, `cpu`, ...; None picks CUDA when present."""
    eager_load: bool = False
    """Load the base model at start() (a GPU box) rather than on the first job (tests, bot)."""
    upscaler_model: str | None = None
    """Optional ESRGAN-family weights (`.pth`/`.safetensors`) run through spandrel before the
    hires-fix pass; needs `spandrel` installed."""
    sr_scale: float = 2.0
    """super_resolution factor. Astria says x4; x2 keeps SDXL's hires fix coherent (above ~2x
    it duplicates structures) and the files shippable through chat apps."""
    max_side: int = 2048
    """Largest w or h accepted for the base pass (before super_resolution)."""
    callback_timeout_s: float = 10.0
    packs_dir: Path | None = None
    """WORKER_PACKS_DIR: the operator's pack files, added to the shipped ones (`packs`)."""
    fetch_urls: bool = False
    """WORKER_FETCH_URLS: fetch `tune[image_urls][]` (public http(s) only, see fetch_urls.py)."""
    stop_grace_s: float = 60.0
    """How long a stop waits for the running job to reach its next abort check; then the job
    is left behind (queued again), so the process ends within its unit's stop timeout (90 s;
    the bot runs its in-process worker with 10 s of its 30)."""
    overgenerate: float = 1.0
    """OVERGENERATE: make this many times the images asked and deliver the best (best_of.py);
    1 = off."""
    face_detector: str = "auto"
    """FACE_DETECTOR: `auto` (dlib if installed, else haar), `dlib` or `haar` (face_detect.py)."""
    accel: Accel = field(default_factory=Accel)
    """Generation speed levers (compile, channels_last, fused QKV, LoRA hot-swap, low memory);
    see `accel.py`. Their compile cache defaults to `data_dir/compile-cache`."""
    training: TrainingDefaults = field(default_factory=TrainingDefaults)
    """The trainer's knobs (WORKER_TRAIN_*; a tune's own `steps` wins), see training_recipe.py."""
    training_share: float = 0.25
    """The GPU share a training keeps while prompts never stop coming (fair_share.py)."""
    retention_days: int = 0
    """WORKER_RETENTION_DAYS: a daily sweep deletes photos, result files and tunes unused
    this long (sweep.py); 0 = off, as the bot deletes through the API by its own rules."""

    def __post_init__(self) -> None:
        if self.accel.compile_cache_dir is None:
            self.accel = replace(self.accel, compile_cache_dir=self.data_dir / "compile-cache")

    @property
    def low_memory(self) -> bool:
        """WORKER_LOW_MEMORY: offload + VAE slicing/tiling here; the trainer checkpoints."""
        return self.accel.low_memory != "off"

    def base_models(self) -> dict[int, str]:
        """Base tune id -> model spec, the default SDXL first."""
        return {SDXL_BASE_TUNE_ID: self.sdxl_model, **self.extra_models}

    @property
    def db_path(self) -> Path:
        return self.data_dir / "worker.sqlite3"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def tunes_dir(self) -> Path:
        return self.data_dir / "tunes"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WorkerConfig:
        """Every worker variable, checked now (a ConfigError naming the variable): DATA_DIR,
        SDXL_MODEL, SDXL_CONFIG_DIR, WORKER_API_KEY, WORKER_PUBLIC_URL, SDXL_EXTRA_MODELS,
        WORKER_DEVICE, WORKER_UPSCALER_MODEL, OVERGENERATE, FACE_DETECTOR (docs/configuration.md),
        WORKER_PACKS_DIR, WORKER_FETCH_URLS, the speed switches of `Accel.from_env`
        (WORKER_COMPILE, WORKER_LOW_MEMORY, ...), the trainer's knobs of
        `TrainingDefaults.from_env` (WORKER_TRAIN_STEPS, ...), WORKER_TRAINING_SHARE,
        WORKER_STOP_GRACE_S and WORKER_RETENTION_DAYS."""
        read = EnvReader(environ)
        data_dir = (read.path("DATA_DIR") or Path("./data")) / "worker"
        device = read.optional("WORKER_DEVICE")
        if device is not None and not DEVICE.fullmatch(device):
            raise ConfigError(f"WORKER_DEVICE={device!r}: use a torch device: cuda, cuda:1, cpu")
        packs_dir = read.path("WORKER_PACKS_DIR")
        if packs_dir is not None:
            from backends.local.packs.catalog import CatalogError, load_catalog

            try:  # a bad pack file is a bad value: stop at start, one line
                load_catalog(packs_dir)
            except CatalogError as exc:
                raise ConfigError(str(exc)) from None
        return cls(
            data_dir=data_dir,
            sdxl_model=read.text("SDXL_MODEL", "tiny"),
            sdxl_config_dir=read.optional("SDXL_CONFIG_DIR"),
            api_key=read.optional("WORKER_API_KEY"),
            public_url=read.url("WORKER_PUBLIC_URL"),
            extra_models=parse_extra_models(read.text("SDXL_EXTRA_MODELS")),
            device=device,
            upscaler_model=read.optional("WORKER_UPSCALER_MODEL"),
            overgenerate=parse_overgenerate(read.text("OVERGENERATE")),
            face_detector=parse_face_detector(read.text("FACE_DETECTOR")),
            accel=Accel.from_env(environ, data_dir),
            training=TrainingDefaults.from_env(environ),
            training_share=read.number(
                "WORKER_TRAINING_SHARE", cls.training_share, minimum=0, maximum=0.9
            ),
            packs_dir=packs_dir,
            fetch_urls=read.choice("WORKER_FETCH_URLS", ON_OFF, "off") == "on",
            stop_grace_s=read.number(
                "WORKER_STOP_GRACE_S", cls.stop_grace_s, minimum=0, maximum=80
            ),
            retention_days=read.integer("WORKER_RETENTION_DAYS", 0, minimum=0),
        )


def parse_extra_models(value: str) -> dict[int, str]:
    """`"1000001=/m/zavy.safetensors, 1000002=org/model"` -> {1000001: ..., 1000002: ...}."""
    models: dict[int, str] = {}
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, spec = item.partition("=")
        if not sep or not key.strip().isdigit() or not spec.strip():
            raise ConfigError(f"SDXL_EXTRA_MODELS item {item!r} is not of the form ID=MODEL")
        tune_id = int(key)
        if tune_id == SDXL_BASE_TUNE_ID or tune_id >= FIRST_TUNE_ID:
            raise ConfigError(f"SDXL_EXTRA_MODELS id {tune_id} collides with the base or tune ids")
        models[tune_id] = spec.strip()
    return models


def parse_overgenerate(value: str) -> float:
    """`OVERGENERATE`: empty or `1` = off; `2` or `2.0` = make twice the images (max 4)."""
    if not value.strip():
        return 1.0
    try:
        factor = float(value)
    except ValueError:
        raise ConfigError(f"OVERGENERATE={value!r} is not a number (e.g. 2 or 1.5)") from None
    if not 1.0 <= factor <= 4.0:
        raise ConfigError(f"OVERGENERATE={value!r} must be between 1 (off) and 4")
    return factor


def parse_face_detector(value: str) -> str:
    """`FACE_DETECTOR`: `auto` (default), `dlib` or `haar`."""
    choice = value.strip().lower() or "auto"
    if choice not in ("auto", "dlib", "haar"):
        raise ConfigError(f"FACE_DETECTOR={value!r} must be auto, dlib or haar")
    return choice
