"""The worker's configuration: one dataclass, built by the bot's Settings or from the environment.

Base models: `sdxl_model` serves the SDXL base tune id 666678 (what LoRA+TI tunes are trained on
and prompted through, as on Astria). `extra_models` maps further base tune ids to other SDXL
checkpoints the operator offers (e.g. `{1000001: "/models/zavychromaxl.safetensors"}`); a prompt
sent to `/tunes/1000001/prompts` with `<lora:ID:S>` then runs that checkpoint with the tune's
LoRA and embeddings. Env form: `SDXL_EXTRA_MODELS="1000001=/models/zavy.safetensors,..."`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from backends.base import SDXL_BASE_TUNE_ID
from backends.local.accel import Accel

FIRST_TUNE_ID = 100_000_001
"""Our own tune ids start here, far above any base-model id an operator would pick by hand."""


@dataclass
class WorkerConfig:
    """Everything the worker needs; `data_dir` holds its SQLite queue, tunes and images."""

    data_dir: Path
    sdxl_model: str = "tiny"
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
    overgenerate: float = 1.0
    """OVERGENERATE: make this many times the images asked and deliver the best (best_of.py);
    1 = off."""
    face_detector: str = "auto"
    """FACE_DETECTOR: `auto` (dlib if installed, else haar), `dlib` or `haar` (face_detect.py)."""
    accel: Accel = field(default_factory=Accel)
    """Generation speed levers (compile, channels_last, fused QKV, LoRA hot-swap, low memory);
    see `accel.py`. Their compile cache defaults to `data_dir/compile-cache`."""

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
    def from_env(cls, environ: dict[str, str] | None = None) -> WorkerConfig:
        """Read DATA_DIR, SDXL_MODEL, WORKER_API_KEY, WORKER_PUBLIC_URL, SDXL_EXTRA_MODELS,
        WORKER_DEVICE, WORKER_UPSCALER_MODEL, OVERGENERATE, FACE_DETECTOR (design.md §5 names
        where they exist), and the speed switches of `Accel.from_env` (WORKER_COMPILE, ...)."""
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("DATA_DIR") or "./data") / "worker"
        return cls(
            data_dir=data_dir,
            sdxl_model=env.get("SDXL_MODEL") or "tiny",
            api_key=env.get("WORKER_API_KEY") or None,
            public_url=env.get("WORKER_PUBLIC_URL") or None,
            extra_models=parse_extra_models(env.get("SDXL_EXTRA_MODELS", "")),
            device=env.get("WORKER_DEVICE") or None,
            upscaler_model=env.get("WORKER_UPSCALER_MODEL") or None,
            overgenerate=parse_overgenerate(env.get("OVERGENERATE", "")),
            face_detector=parse_face_detector(env.get("FACE_DETECTOR", "")),
            accel=Accel.from_env(env, data_dir),
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
            raise ValueError(f"SDXL_EXTRA_MODELS item {item!r} is not of the form ID=MODEL")
        tune_id = int(key)
        if tune_id == SDXL_BASE_TUNE_ID or tune_id >= FIRST_TUNE_ID:
            raise ValueError(f"SDXL_EXTRA_MODELS id {tune_id} collides with the base or tune ids")
        models[tune_id] = spec.strip()
    return models


def parse_overgenerate(value: str) -> float:
    """`OVERGENERATE`: empty or `1` = off; `2` or `2.0` = make twice the images (max 4)."""
    if not value.strip():
        return 1.0
    try:
        factor = float(value)
    except ValueError:
        raise ValueError(f"OVERGENERATE={value!r} is not a number (e.g. 2 or 1.5)") from None
    if not 1.0 <= factor <= 4.0:
        raise ValueError(f"OVERGENERATE={value!r} must be between 1 (off) and 4")
    return factor


def parse_face_detector(value: str) -> str:
    """`FACE_DETECTOR`: `auto` (default), `dlib` or `haar`."""
    choice = value.strip().lower() or "auto"
    if choice not in ("auto", "dlib", "haar"):
        raise ValueError(f"FACE_DETECTOR={value!r} must be auto, dlib or haar")
    return choice
