"""Small pieces of the worker: request parsing, the artefact format, the store's queue order."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from backends.local import Worker, WorkerConfig
from backends.local.errors import ConfigError
from backends.local.params import RequestError, parse_prompt, parse_tune
from backends.local.records import JobState
from backends.local.store import WorkerStore
from tests.worker_fixtures import worker_config

NATIVE = {"native_size": 1024, "max_side": 2048, "random_seed": 99}


def test_prompt_defaults_and_lora_tag() -> None:
    p = parse_prompt({"text": "<lora:123:0.83> ohwx man  in  a park"}, **NATIVE)
    assert (p.lora_tune_id, p.lora_strength) == (123, 0.83)
    assert p.clean_text == "ohwx man in a park"
    assert (p.w, p.h, p.scheduler, p.seed, p.num_images) == (1024, 1024, "euler_a", 99, 4)
    assert not p.super_resolution


def test_prompt_form_strings_and_aspect_ratios() -> None:
    p = parse_prompt(
        {
            "text": "x",
            "num_images": "2",
            "seed": "5",
            "super_resolution": "true",
            "inpaint_faces": "true",
            "ar": "portrait",
        },
        **NATIVE,
    )
    assert (p.num_images, p.seed, p.super_resolution, p.inpaint_faces) == (2, 5, True, True)
    assert (p.w, p.h) == (832, 1216)
    assert parse_prompt({"text": "x", "ar": "16:9"}, **NATIVE).w == 1344
    one_side = parse_prompt({"text": "x", "w": "512"}, **NATIVE)
    assert (one_side.w, one_side.h) == (512, 512)


@pytest.mark.parametrize(
    "fields",
    [
        {"text": ""},
        {"text": "<faceid:1:1> man"},
        {"text": "<lora:abc:1> man"},
        {"text": "<lora:1:5> man"},
        {"text": "x", "ar": "7:5"},
        {"text": "x", "seed": "-1"},
        {"text": "x", "steps": "99"},
        {"text": "x", "num_images": "two"},
        {"text": "x", "super_resolution": "maybe"},
        {"text": "x", "w": 56, "h": 64},
    ],
)
def test_prompt_rejections(fields: dict) -> None:
    with pytest.raises(RequestError):
        parse_prompt(fields, **NATIVE)


def test_tune_fields() -> None:
    t = parse_tune({"title": "u", "name": "man"}, n_images=4, base_ids={666678})
    assert (t.token, t.base_tune_id, t.model_type) == ("ohwx", 666678, "pti")
    with pytest.raises(RequestError):
        parse_tune(
            {"title": "u", "name": "man", "token": "Bad Token"}, n_images=4, base_ids={666678}
        )
    with pytest.raises(RequestError):
        parse_tune(
            {"title": "u", "name": "man", "model_type": "faceid"}, n_images=4, base_ids={666678}
        )


def test_artefacts_round_trip_and_alias(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    from backends.local.artefacts import (
        ArtefactError,
        Manifest,
        load_artefacts,
        save_artefacts,
    )

    manifest = Manifest(token="ohwx", class_word="woman", n_tokens=2, base_model="sdxl", rank=8)
    lora = {"down_blocks.1.attn1.to_q.lora_A.weight": torch.ones(8, 16)}
    emb = {"clip_l": torch.zeros(2, 768), "clip_g": torch.ones(2, 1280)}
    save_artefacts(tmp_path / "t", manifest, lora, emb)
    loaded = load_artefacts(tmp_path / "t")
    assert loaded.manifest == manifest and loaded.manifest.lora_alpha == 8.0
    assert list(loaded.lora) == ["unet.down_blocks.1.attn1.to_q.lora_A.weight"]
    assert loaded.embeddings["clip_g"].shape == (2, 1280)
    # cog-sdxl's key names are read as an alias
    save_file(
        {"text_encoders_0": emb["clip_l"], "text_encoders_1": emb["clip_g"]},
        str(tmp_path / "t" / "embeddings.safetensors"),
    )
    assert load_artefacts(tmp_path / "t").embeddings["clip_l"].shape == (2, 768)
    with pytest.raises(ArtefactError):
        save_artefacts(
            tmp_path / "u",
            manifest,
            lora,
            {"clip_l": torch.zeros(3, 768), "clip_g": torch.zeros(2, 1280)},
        )
    with pytest.raises(ArtefactError):
        load_artefacts(tmp_path / "missing")


async def test_store_runs_prompts_before_trainings_and_requeues(tmp_path: Path) -> None:
    store = WorkerStore(tmp_path / "db.sqlite3")
    await store.open()
    try:
        tune = await store.create_tune(
            {
                "title": "t",
                "name": "man",
                "token": "ohwx",
                "base_tune_id": 666678,
                "model_type": "pti",
            },
            [],
            None,
        )
        assert await store.next_job() is None  # accepted, photos not written yet: not ready
        await store.set_tune_images(tune["id"], ["tunes/1/0.jpg"])
        assert await store.next_job() == ("tune", tune["id"])
        prompt = await store.create_prompt(666678, {"text": "x"}, None)
        assert await store.next_job() == ("prompt", prompt["id"])
        await store.update_prompt(prompt["id"], state="running")
        assert await store.requeue_interrupted() == 1
        assert (await store.get_prompt(prompt["id"]))["state"] == "queued"
        assert tune["id"] >= 100_000_001  # never collides with a base model id
    finally:
        await store.close()


async def test_a_broken_queued_prompt_fails_instead_of_blocking_the_queue(tmp_path: Path) -> None:
    """A row the runner cannot even read (e.g. stored by another version) is failed once, and
    the job after it still runs."""
    worker = Worker(worker_config(tmp_path))
    await worker.start()
    try:
        broken = await worker.store.create_prompt(666678, {"text": "x"}, None)
        worker.runner.wake()
        for _ in range(600):  # up to 30 s
            row = await worker.store.get_prompt(broken["id"])
            if row["state"] != JobState.QUEUED:
                break
            await asyncio.sleep(0.05)
        assert row["state"] == "failed" and "internal error" in row["user_error"]
    finally:
        await worker.stop()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("WORKER_TRAIN_STEPS", "abc", "not a whole number"),
        ("WORKER_TRAIN_STEPS", "20000", "between 0 and 10000"),
        ("WORKER_TRAIN_PIVOT", "1.5", "between 0 and 1"),
        ("WORKER_TRAIN_UNET_LR", "fast", "not a number"),
        ("WORKER_TRAIN_RESOLUTION", "1020", "multiple of 8"),
        ("WORKER_LORA_MAX_RANK", "x", "not a whole number"),
        ("WORKER_PNG_COMPRESS", "10", "between 0 and 9"),
        ("WORKER_COMPILE_WARMUP", "1024x1024", "WxHxB"),
        ("WORKER_FUSE_QKV", "sometimes", "use one of"),
        ("WORKER_PUBLIC_URL", "gpu.example.org", "http"),
        ("WORKER_DEVICE", "cuda 1", "torch device"),
        ("SDXL_EXTRA_MODELS", "zavy", "ID=MODEL"),
    ],
)
def test_a_bad_variable_stops_the_worker_at_start_naming_it(
    name: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        WorkerConfig.from_env({name: value})
    assert str(info.value).startswith(name)


def test_the_trainers_knobs_are_read_with_the_rest_of_the_config(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path), "WORKER_TRAIN_STEPS": " 1500 ", "WORKER_LOW_MEMORY": "1"}
    env |= {"SDXL_CONFIG_DIR": "/m/sdxl-configs", "WORKER_TRAIN_RANK": ""}  # empty: unset
    config = WorkerConfig.from_env(env)
    assert (config.training.steps, config.training.rank) == (1500, 32)
    assert config.training.low_memory and config.low_memory
    assert config.sdxl_config_dir == "/m/sdxl-configs"


def test_tiny_model_has_sdxl_geometry_and_is_the_same_every_build() -> None:
    """SDXL's shapes (latents 1/8 of the image, attention only below the top UNet level, both
    encoders' states side by side), from a fixed seed that leaves the caller's RNG alone."""
    torch = pytest.importorskip("torch")
    from backends.local.models import build_tiny_pipeline, native_size

    state = torch.random.get_rng_state()
    pipe, again = build_tiny_pipeline(), build_tiny_pipeline()
    assert torch.equal(torch.random.get_rng_state(), state)
    assert pipe.vae_scale_factor == 8
    assert pipe.default_sample_size * pipe.vae_scale_factor == native_size("tiny") == 128
    levels = [hasattr(block, "attentions") for block in pipe.unet.down_blocks]
    assert levels == [False, True, True]
    width = pipe.text_encoder.config.hidden_size + pipe.text_encoder_2.config.hidden_size
    assert pipe.unet.config.cross_attention_dim == width
    with torch.no_grad():
        latents = pipe(
            prompt="x", width=64, height=96, num_inference_steps=1, output_type="latent"
        ).images
    assert latents.shape == (1, 4, 12, 8)
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        module, twin = getattr(pipe, part), getattr(again, part)
        for (name, value), (_, other) in zip(
            module.state_dict().items(), twin.state_dict().items(), strict=True
        ):
            assert torch.equal(value, other), name
