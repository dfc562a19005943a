"""The generation speed levers on the CPU: each must leave the images what they were.

The GPU timings come from bench/gpu.py; here the tiny model checks the semantics: a hot-swapped
tune gives the images a fresh load gives, strength 0 is the base model, fused QKV and compile
compute the same function, the low-memory switch reaches the pipeline, PNGs still get written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from backends.local.accel import Accel, parse_low_memory, parse_warmup
from backends.local.config import WorkerConfig
from backends.local.levers import place
from backends.local.pngwriter import PngWriter
from tests.worker_fixtures import write_random_tune

torch = pytest.importorskip("torch")

from backends.local.generate import Engine, GenerationError, PromptJob  # noqa: E402
from backends.local.lora_slot import LoraSlot, SlotMisfit  # noqa: E402
from backends.local.models import (  # noqa: E402
    TINY_ARCHITECTURE,
    ModelCache,
    build_tiny_pipeline,
)
from backends.local.params import parse_prompt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EAGER = Accel(compile="off")


def engine(accel: Accel) -> Engine:
    return Engine(ModelCache({1: "tiny"}, "cpu", accel))


def job(tune: Path | None, strength: float = 0.8, seed: int = 5) -> PromptJob:
    text = f"<lora:9:{strength}> ohwx man" if tune else "ohwx man"
    fields = {"text": text, "w": 64, "h": 64, "steps": 2, "num_images": 1, "seed": seed}
    fields.update({"super_resolution": False, "inpaint_faces": False})
    params = parse_prompt(fields, native_size=128, max_side=2048, random_seed=0)
    return PromptJob(1, params, 1, tune)


def image(eng: Engine, prompt: PromptJob) -> np.ndarray:
    [out] = eng.run_prompt(prompt, lambda fraction: None)
    return np.asarray(out, dtype=np.int16)


def close(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to float rounding, which the tiny random model amplifies into a few levels."""
    diff = np.abs(a - b)
    return bool(diff.mean() < 1.0 and diff.max() <= 16)


@pytest.fixture(scope="module")
def tunes(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("tunes")
    for seed in (1, 2):
        write_random_tune(root / str(seed), seed=seed)
    return [root / "1", root / "2"]


def test_hot_swapped_tune_gives_the_images_of_a_fresh_load(tunes: list[Path]) -> None:
    swapping = engine(EAGER)
    first = image(swapping, job(tunes[0]))
    swapped = image(swapping, job(tunes[1]))
    back = image(swapping, job(tunes[0]))
    fresh = image(engine(EAGER), job(tunes[1]))
    classic = image(engine(Accel.off()), job(tunes[1]))
    assert np.array_equal(swapped, fresh)
    assert np.array_equal(first, back)
    assert not np.array_equal(first, swapped)
    assert close(swapped, classic)  # strength folded into B: rounding only


def test_strength_zero_and_no_tune_are_the_base_model(tunes: list[Path]) -> None:
    swapping = engine(EAGER)
    image(swapping, job(tunes[0], strength=1))  # leave a tune in the slot
    zero = image(swapping, job(tunes[0], strength=0))
    classic_zero = image(engine(Accel.off()), job(tunes[0], strength=0))
    assert np.array_equal(zero, classic_zero)
    image(swapping, job(tunes[1], strength=1))
    base = image(swapping, job(None))
    assert np.array_equal(base, image(engine(Accel.off()), job(None)))


def test_fixed_slot_pads_smaller_ranks_and_refuses_larger_ones(tmp_path: Path) -> None:
    write_random_tune(tmp_path / "t", seed=3)
    padded = engine(Accel(compile="off", max_lora_rank=8))
    padded.models.get(1).slot.resizable = False  # as when compiled
    exact = image(engine(EAGER), job(tmp_path / "t"))
    assert close(image(padded, job(tmp_path / "t")), exact)
    small = engine(Accel(compile="off", max_lora_rank=2))
    small.models.get(1).slot.resizable = False
    with pytest.raises(GenerationError, match="rank 4 is above"):
        image(small, job(tmp_path / "t"))
    assert small.models.get(1).slot.loaded is None  # cleared: the next prompt is clean


def test_slot_clears_what_it_loaded_and_names_what_does_not_fit() -> None:
    unet = build_tiny_pipeline().unet
    lora = {k: v.float() for k, v in _moderate_lora(unet, seed=1).items()}
    slot = LoraSlot(unet, 4, torch.float32)
    slot.load(lora, 1.0)  # no key: the slot must still know it is not empty
    assert any(b.abs().sum() > 0 for _, b in slot._weights)
    slot.clear()
    assert all(a.abs().sum() == 0 and b.abs().sum() == 0 for a, b in slot._weights)
    with pytest.raises(SlotMisfit, match="a layer the slot lacks"):
        slot.load(
            {
                "unet.mid_block.resnets.0.conv1.lora_A.weight": torch.zeros(4, 8),
                "unet.mid_block.resnets.0.conv1.lora_B.weight": torch.zeros(8, 4),
            },
            1.0,
        )


def _unet_inputs(dtype: Any) -> tuple[Any, ...]:
    gen = torch.Generator().manual_seed(0)
    te1, te2 = TINY_ARCHITECTURE.text_encoder, TINY_ARCHITECTURE.text_encoder_2
    x = torch.randn(2, 4, 8, 8, generator=gen, dtype=dtype)
    width = te1["hidden_size"] + te2["hidden_size"]  # both encoders' states, concatenated
    enc = torch.randn(2, 77, width, generator=gen, dtype=dtype)
    add = {
        "text_embeds": torch.randn(2, te2["projection_dim"], generator=gen, dtype=dtype),
        "time_ids": torch.randn(2, 6, generator=gen, dtype=dtype),
    }
    return x, enc, add


def _moderate_lora(unet: Any, seed: int) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(seed)
    lora = {}
    for name, module in unet.named_modules():
        projection = name.rsplit(".", 1)[-1] in ("to_q", "to_k", "to_v") or name.endswith(
            "to_out.0"
        )
        if isinstance(module, torch.nn.Linear) and ".attn" in name and projection:
            a = torch.randn(4, module.in_features, generator=gen, dtype=torch.float64)
            b = torch.randn(module.out_features, 4, generator=gen, dtype=torch.float64)
            lora[f"unet.{name}.lora_A.weight"] = a * 0.1
            lora[f"unet.{name}.lora_B.weight"] = b * 0.1
    return lora


def test_fused_qkv_with_the_lora_slot_computes_the_same_unet() -> None:
    plain, fused = build_tiny_pipeline().unet.double(), build_tiny_pipeline().unet.double()
    fused.fuse_qkv_projections()
    lora = _moderate_lora(plain, seed=4)
    outs = []
    for unet in (plain, fused):
        slot = LoraSlot(unet, 8, torch.float64)
        slot.load(lora, 0.7)
        x, enc, add = _unet_inputs(torch.float64)
        with torch.no_grad():
            outs.append(unet(x, 10, enc, added_cond_kwargs=add).sample)
    assert torch.allclose(outs[0], outs[1], rtol=0, atol=1e-9)
    assert (
        "Fused"
        in type(fused.down_blocks[1].attentions[0].transformer_blocks[0].attn1.processor).__name__
    )


@pytest.mark.slow
def test_compiled_unet_matches_eager_and_swaps_without_recompiling() -> None:
    from torch._dynamo.utils import counters

    from backends.local.levers import apply_static, compile_unet

    pipe = build_tiny_pipeline()
    unet = pipe.unet
    loras = [{k: v.float() for k, v in _moderate_lora(unet, seed).items()} for seed in (5, 6)]
    gpu_like = Accel(compile="default", channels_last="on", fuse_qkv="on", bf16_vae="on")
    apply_static(pipe, torch.float32, gpu_like)  # the GPU's module changes, in fp32
    slot = LoraSlot(unet, 8, torch.float32)
    x, enc, add = _unet_inputs(torch.float32)

    def forward() -> Any:
        with torch.no_grad():
            return unet(x, 10, enc, added_cond_kwargs=add).sample

    eager = []
    for lora in loras:
        slot.load(lora, 1.0)
        eager.append(forward())
    torch._dynamo.reset()
    compile_unet(pipe, gpu_like)
    slot.load(loras[0], 1.0)
    first = forward()
    graphs = counters["stats"]["unique_graphs"]
    slot.load(loras[1], 1.0)
    second = forward()
    assert counters["stats"]["unique_graphs"] == graphs  # the swap did not recompile
    assert not torch.allclose(eager[0], eager[1], atol=1e-3)  # the two tunes really differ
    assert torch.allclose(first, eager[0], atol=1e-4)
    assert torch.allclose(second, eager[1], atol=1e-4)


def test_a_failed_compile_leaves_a_working_eager_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from backends.local import levers
    from backends.local.models import load_model

    def broken(*args: Any, **kwargs: Any) -> float:
        raise RuntimeError("inductor is unhappy")

    monkeypatch.setattr(levers, "warm_up", broken)
    model = load_model("tiny", "cpu", Accel(compile="default"))
    assert model.accel.compile == "off"
    assert getattr(model.pipe.unet, "_compiled_call_impl", None) is None
    out = model.pipe(prompt="a", num_inference_steps=1, width=64, height=64, output_type="np")
    assert out.images.shape == (1, 64, 64, 3)


def test_switches_from_env_and_their_device_defaults(tmp_path: Path) -> None:
    config = WorkerConfig.from_env({"DATA_DIR": str(tmp_path), "WORKER_LOW_MEMORY": "1"})
    assert config.low_memory and config.accel.low_memory == "offload"
    assert config.accel.compile_cache_dir == tmp_path / "worker" / "compile-cache"
    on_gpu = config.accel.resolve("cuda")
    assert on_gpu.compile == "off"  # offload hooks and a compiled graph do not mix
    assert on_gpu.channels_last == on_gpu.fuse_qkv == on_gpu.bf16_vae == "on"
    cpu = Accel().resolve("cpu")
    assert (cpu.compile, cpu.channels_last, cpu.fuse_qkv) == ("off", "off", "off")
    assert Accel().resolve("cuda").compile == "default"
    env = {"WORKER_COMPILE": "max-autotune", "WORKER_LORA_HOTSWAP": "0", "WORKER_FUSE_QKV": "1"}
    accel = Accel.from_env(env).resolve("cuda")
    assert accel.compile == "max-autotune" and accel.fuse_qkv == "off"  # fusing needs the slot
    assert parse_low_memory("sequential") == "sequential" and parse_low_memory("") == "off"
    assert parse_warmup("", 1024) == [(1024, 1024, 1), (1024, 1024, 4), (2048, 2048, 1)]
    assert parse_warmup("832x1216x2", 1024) == [(832, 1216, 2)]
    for bad in ({"WORKER_COMPILE": "fast"}, {"WORKER_LOW_MEMORY": "maybe"}):
        with pytest.raises(ValueError):
            Accel.from_env(bad)
    assert WorkerConfig(data_dir=tmp_path).accel.compile_cache_dir == tmp_path / "compile-cache"


class _RecordingPipe:
    """Stands in for a pipeline where only CUDA could run it: records what was asked."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.vae = self

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self.calls.append(name)


def test_low_memory_mode_reaches_the_pipeline() -> None:
    accel = Accel(low_memory="offload").resolve("cuda")
    pipe = _RecordingPipe()
    place(pipe, "cuda", torch.bfloat16, accel)
    assert pipe.calls == ["to", "enable_model_cpu_offload", "enable_slicing", "enable_tiling"]
    pipe = _RecordingPipe()
    place(pipe, "cuda", torch.bfloat16, Accel(low_memory="sequential").resolve("cuda"))
    assert "enable_sequential_cpu_offload" in pipe.calls
    tiny = engine(Accel(compile="off", low_memory="offload")).models.get(1)
    assert tiny.pipe.vae.use_slicing and tiny.pipe.vae.use_tiling  # CPU: no offload, VAE savers


def test_png_writer_writes_every_file_and_reports_failures(tmp_path: Path) -> None:
    writer = PngWriter(compress_level=1)
    picture = Image.new("RGB", (32, 16), (200, 10, 10))
    for i in range(3):
        writer.submit(picture, tmp_path / f"{i}.png")
    writer.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.png", "1.png", "2.png"]
    assert Image.open(tmp_path / "1.png").size == (32, 16)
    writer.submit(picture, tmp_path / "missing" / "x.png")
    with pytest.raises(OSError):
        writer.wait()


@pytest.mark.slow
def test_benchmark_smoke_mode_runs_every_row(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "bench" / "gpu.py"), "--tiny", "--cpu"]
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=900)
    result = json.loads((tmp_path / "gpu.json").read_text())
    for row in ("one_image", "four_images", "sr_faces_per_image", "tune_switch"):
        assert result[row]["ours"] if row != "tune_switch" else result[row]["ours_ms"]
    assert result["tune_switch"]["recompiles_after_switch"] == 0
    assert result["quality_vs_stock_tune"]["max_pixel_diff"] <= 2
    assert "first_image_after_restart_s" in result["restart_warm_cache"]
    assert result["train"]
