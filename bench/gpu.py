"""Stock diffusers vs. our worker, side by side in one run, for each row of issue 7's table.

Full-size SDXL with random weights (same cost as real ones) on a GPU, or the tiny model on the
CPU as a smoke test (`python bench/gpu.py --tiny --cpu`). Three sides per generation row:
- `stock`: the plain diffusers pipeline call, no LoRA (what `../shared/bench/stock_sdxl.py`
  times), fp32 VAE decode as shipped;
- `stock_tune`: the same plain pipelines with a tune applied the usual way (PEFT adapter and
  textual inversion loaded before the prompt and removed after it), every lever off;
- `ours`: the worker's Engine with its levers (`backends/local/accel.py`) and the tune active.
Ratios are stock_tune/ours and stock/ours. The quality guard is the pixel difference between
`ours` and `stock_tune` on the same seed. Results go to stdout and to $OUT/gpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASE = 666678
ROWS = ("one", "switch", "quality", "restart", "four", "srfaces", "lowmem", "train")
"""In order of importance: a run cut off at the device's time limit keeps the first rows."""
TEXT = "<lora:{id}:0.8> portrait photo of ohwx man, studio light"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="the tiny model (smoke test)")
    p.add_argument("--cpu", action="store_true", help="run on the CPU")
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma list of {', '.join(ROWS)}")
    p.add_argument("--compile", default=None, help="WORKER_COMPILE for ours (default: auto)")
    p.add_argument("--warmup", default="", help="WORKER_COMPILE_WARMUP shapes WxHxB,...")
    p.add_argument("--cache-dir", default=None, help="compile cache (default: a temp folder)")
    p.add_argument("--steps", type=int, default=None, help="default 30 (tiny: 3)")
    p.add_argument("--reps", type=int, default=None, help="timed repeats (default 2, tiny 1)")
    p.add_argument("--rank", type=int, default=32, help="the benchmark tune's LoRA rank")
    p.add_argument("--restart-probe", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.device = "cpu" if args.cpu else "cuda"
    args.spec = "tiny" if args.tiny else "random"
    args.steps = args.steps or (2 if args.tiny else 30)
    args.reps = args.reps or (1 if args.tiny else 2)
    args.size = 64 if args.tiny else 1024
    return args


# -- measuring ------------------------------------------------------------------------------


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str, reps: int) -> float:
    """Best of `reps` wall times in seconds, after one untimed warm-up call (not on the CPU
    smoke run, where only the code path matters)."""
    if device != "cpu":
        fn()
    times = []
    for _ in range(reps):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: str) -> float | None:
    """Peak GPU memory of one side: its model's weights plus the row's peak above what was
    allocated before it (both models stay resident, so the raw peak would count both)."""
    import torch

    if not device.startswith("cuda"):
        return None
    return (torch.cuda.max_memory_allocated() - torch.cuda.memory_allocated()) / 2**30


def weights_gib(pipe: Any) -> float:
    modules = (pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2)
    tensors = [t for m in modules for t in (*m.parameters(), *m.buffers())]
    return sum(t.numel() * t.element_size() for t in tensors) / 2**30


def unique_graphs() -> int:
    """Dynamo's count of compiled graphs: a rise after a tune switch means a recompile."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


# -- fixtures -------------------------------------------------------------------------------


def write_tune(folder: Path, pipe: Any, rank: int, seed: int) -> Path:
    """A random LoRA on every attention projection plus random embeddings, in our format."""
    import torch

    from backends.local.artefacts import Manifest, save_artefacts
    from backends.local.lora_slot import PROJECTIONS

    gen = torch.Generator().manual_seed(seed)
    lora = {}
    for name, module in pipe.unet.named_modules():
        if not name.endswith((".attn1", ".attn2")):
            continue
        for proj in PROJECTIONS:
            linear = module.get_submodule(proj)
            fan_in, fan_out = linear.in_features, linear.out_features
            lora[f"{name}.{proj}.lora_A.weight"] = torch.randn(rank, fan_in, generator=gen)
            lora[f"{name}.{proj}.lora_A.weight"] /= fan_in**0.5
            lora[f"{name}.{proj}.lora_B.weight"] = torch.randn(fan_out, rank, generator=gen) * 0.02
    dims = [
        enc.get_input_embeddings().weight.shape[1]
        for enc in (pipe.text_encoder, pipe.text_encoder_2)
    ]
    embeddings = {
        key: torch.randn(2, dim, generator=gen)
        for key, dim in zip(("clip_l", "clip_g"), dims, strict=True)
    }
    manifest = Manifest(token="ohwx", class_word="man", n_tokens=2, base_model="bench", rank=rank)
    save_artefacts(folder, manifest, lora, embeddings)
    return folder


def prompt_job(args: argparse.Namespace, tune_dir: Path, **fields: Any) -> Any:
    from backends.local.generate import PromptJob
    from backends.local.params import parse_prompt

    values = {"text": TEXT.format(id=1), "w": args.size, "h": args.size, "steps": args.steps}
    values.update({"num_images": 1, "seed": 7, "cfg_scale": 7, "scheduler": "euler_a"})
    values.update({"super_resolution": False, "inpaint_faces": False, **fields})
    params = parse_prompt(values, native_size=args.size, max_side=4096, random_seed=0)
    return PromptJob(0, params, BASE, tune_dir)


def one_face_per_image() -> None:
    """Noise has no faces: report one centred face per image, so the face pass is timed."""
    from backends.local import faces

    def detect(image: Any) -> list[Any]:
        w, h = image.size
        return [faces.Box(w * 3 // 8, h * 3 // 8, w // 4, h // 4)]

    faces.detect_faces = detect


def engine_for(args: argparse.Namespace, accel: Any) -> tuple[Any, Any, float]:
    """An Engine over its own copy of the model; returns (engine, model, load seconds)."""
    from backends.local.generate import Engine
    from backends.local.models import ModelCache

    engine = Engine(ModelCache({BASE: args.spec}, args.device, accel))
    start = time.perf_counter()
    model = engine.models.get(BASE)
    sync(args.device)
    return engine, model, time.perf_counter() - start


def ours_accel(args: argparse.Namespace) -> Any:
    from backends.local.accel import Accel

    env = {"WORKER_COMPILE": args.compile or "", "WORKER_COMPILE_WARMUP": args.warmup}
    env["WORKER_COMPILE_CACHE_DIR"] = args.cache_dir
    return Accel.from_env(env)


# -- rows -----------------------------------------------------------------------------------


class Bench:
    """Holds the two engines (stock and ours), the tunes, and the results."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        from backends.local.accel import Accel

        self.args = args
        self.res: dict[str, Any] = {}
        self.stock, self.stock_model, self.res["stock_load_s"] = engine_for(args, Accel.off())
        self.ours, self.model, self.res["ours_load_and_compile_s"] = engine_for(
            args, ours_accel(args)
        )
        self.res["ours_levers"] = {k: str(v) for k, v in vars(self.model.accel).items()}
        stock_w, ours_w = weights_gib(self.stock_model.pipe), weights_gib(self.model.pipe)
        self.weights = {"stock": stock_w, "stock_tune": stock_w, "ours": ours_w}
        self.res["weights_gib"] = {"stock": stock_w, "ours": ours_w}
        pipe = self.stock_model.pipe
        self.tunes = [write_tune(work / f"tune{i}", pipe, args.rank, seed=i) for i in (1, 2)]

    def run(self, engine: Any, job: Any) -> list[Any]:
        return engine.run_prompt(job, lambda fraction: None)

    def compare(self, name: str, fns: dict[str, Callable[[], Any]], per: int = 1) -> None:
        """Time each side of a row; store seconds (or images/s when per > 1) and peak memory."""
        a = self.args
        row: dict[str, Any] = {}
        for side, fn in fns.items():
            reset_peak(a.device)
            seconds = timed(fn, a.device, a.reps)
            row[side] = per / seconds if per > 1 else seconds
            extra = peak_gib(a.device)
            row[f"{side}_peak_gib"] = None if extra is None else extra + self.weights[side]
        better = (lambda s: row[s] / row["ours"]) if per == 1 else (lambda s: row["ours"] / row[s])
        for side in fns:
            if side != "ours":
                row[f"speedup_vs_{side}"] = better(side)
        row["unit"] = "images/s" if per > 1 else "s"
        self.res[name] = row
        print(f"{name}: {json.dumps(row)}", flush=True)

    def row_one(self) -> None:
        job = prompt_job(self.args, self.tunes[0])
        self.compare(
            "one_image",
            {
                "stock": lambda: self.plain(1),
                "stock_tune": lambda: self.run(self.stock, job),
                "ours": lambda: self.run(self.ours, job),
            },
        )

    def row_four(self) -> None:
        job = prompt_job(self.args, self.tunes[0], num_images=4)
        self.compare(
            "four_images",
            {
                "stock": lambda: self.plain(4),
                "stock_tune": lambda: self.run(self.stock, job),
                "ours": lambda: self.run(self.ours, job),
            },
            per=4,
        )

    def row_srfaces(self) -> None:
        one_face_per_image()
        job = prompt_job(self.args, self.tunes[0], super_resolution=True, inpaint_faces=True)
        self.compare(
            "sr_faces_per_image",
            {
                "stock_tune": lambda: self.run(self.stock, job),
                "ours": lambda: self.run(self.ours, job),
            },
        )

    def plain(self, n: int) -> Any:
        """The stock side: one plain pipeline call, no tune (as stock_sdxl.py)."""
        import torch

        gens = [torch.Generator(self.args.device).manual_seed(7 + i) for i in range(n)]
        return self.stock_model.pipe(
            prompt=["portrait photo of man, studio light"] * n,
            negative_prompt=[""] * n,
            num_inference_steps=self.args.steps,
            guidance_scale=7.0,
            width=self.args.size,
            height=self.args.size,
            generator=gens,
        )

    def row_switch(self) -> None:
        """Tune A -> tune B -> A ...: time to apply and release a tune (no generation)."""
        from backends.local.tune_binding import tune_applied

        a = self.args
        row: dict[str, Any] = {}
        for side, engine, model in (
            ("stock_tune", self.stock, self.stock_model),
            ("ours", self.ours, self.model),
        ):
            loaded = [engine.tunes.load(t) for t in self.tunes]
            times = []
            for i in range(6):
                tune, key = loaded[i % 2]
                sync(a.device)
                start = time.perf_counter()
                with tune_applied(model, tune, 0.8, key=key):
                    sync(a.device)
                times.append(time.perf_counter() - start)
            row[f"{side}_ms"] = 1000 * statistics.median(times[1:])
        graphs = unique_graphs()
        self.run(self.ours, prompt_job(a, self.tunes[1]))
        self.run(self.ours, prompt_job(a, self.tunes[0]))
        row["recompiles_after_switch"] = unique_graphs() - graphs
        row["speedup_vs_stock_tune"] = row["stock_tune_ms"] / max(row["ours_ms"], 1e-6)
        self.res["tune_switch"] = row
        print(f"tune_switch: {json.dumps(row)}", flush=True)

    def row_quality(self) -> None:
        """Same seed, same tune: ours (all levers) against the plain pipelines."""
        import numpy as np

        job = prompt_job(self.args, self.tunes[0])
        [ours] = self.run(self.ours, job)
        [stock] = self.run(self.stock, job)
        diff = np.abs(np.asarray(ours, np.int16) - np.asarray(stock, np.int16))
        row = {
            "max_pixel_diff": int(diff.max()),
            "mean_pixel_diff": float(diff.mean()),
            "p99_pixel_diff": float(np.percentile(diff, 99)),
        }
        self.res["quality_vs_stock_tune"] = row
        print(f"quality_vs_stock_tune: {json.dumps(row)}", flush=True)

    def row_restart(self) -> None:
        """A fresh process with the compile cache this run filled: load + first image."""
        a = self.args
        cmd = [sys.executable, str(Path(__file__).resolve()), "--restart-probe", "--rows", "one"]
        cmd += ["--steps", str(a.steps), "--cache-dir", a.cache_dir, "--warmup", a.warmup]
        cmd += ["--compile", a.compile or ""] + (["--tiny"] if a.tiny else [])
        cmd += ["--cpu"] if a.cpu else []
        env = {**os.environ, "BENCH_TUNE": str(self.tunes[0])}
        start = time.perf_counter()
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        row: dict[str, Any] = {"process_s": time.perf_counter() - start}
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
        row.update(json.loads(lines[-1]) if lines else {"error": out.stderr[-2000:]})
        self.res["restart_warm_cache"] = row
        print(f"restart_warm_cache: {json.dumps(row)}", flush=True)

    def row_lowmem(self) -> None:
        """WORKER_LOW_MEMORY=1 (model offload, VAE slicing/tiling): one image with the tune,
        and the GPU memory it needed (the 24 GB card check)."""
        from backends.local.accel import Accel

        a = self.args
        engine, model, load_s = engine_for(a, Accel(low_memory="offload"))
        full = not a.tiny  # the smoke run only walks the code path
        job = prompt_job(a, self.tunes[0], super_resolution=full, inpaint_faces=full)
        reset_peak(a.device)
        row = {
            "load_s": load_s,
            "super_resolution_and_faces": full,
            "per_image_s": timed(lambda: self.run(engine, job), a.device, 1),
        }
        row["peak_gib"] = peak_gib(a.device)
        row["levers"] = str(model.accel)
        self.res["low_memory"] = row
        print(f"low_memory: {json.dumps(row)}", flush=True)

    def row_train(self) -> None:
        """Training through the trainer's own entry point (`train.benchmark` if it has one,
        else `run_training` on random photos for a few steps); none: n/a."""
        from backends.local import train

        hook = getattr(train, "benchmark", None)
        if hook is not None:
            self.res["train"] = hook(device=self.args.device, tiny=self.args.tiny)
        elif hasattr(train, "run_training"):
            self.res["train"] = {
                mode: self.train_steps(train, low)
                for mode, low in (("default", False), ("low_memory", True))
            }
        else:
            self.res["train"] = "n/a: trainer not available"
        print(f"train: {json.dumps(self.res['train'], default=str)}", flush=True)

    def train_steps(self, train: Any, low_memory: bool) -> dict[str, Any]:
        """A few steps of `train.run_training` on random crops, timed per step."""
        import dataclasses

        import numpy as np
        from PIL import Image

        from backends.local.accel import Accel
        from backends.local.models import load_model
        from backends.local.training_recipe import TrainingDefaults, TrainJob

        a = self.args
        steps, photos = (3, 2) if a.tiny else (30, 10)
        defaults = TrainingDefaults.from_env({})
        settings = dataclasses.replace(defaults, steps=steps, low_memory=low_memory)
        rng = np.random.default_rng(0)
        crops = [
            Image.fromarray(rng.integers(0, 255, (a.size * 2, a.size * 2, 3), np.uint8)).resize(
                (a.size, a.size)
            )
            for _ in range(photos)
        ]
        job = TrainJob(0, "ohwx", "man", BASE, a.spec, [], steps, None, Path(), a.device)
        start = time.perf_counter()
        model = load_model(a.spec, a.device, Accel.off())
        sync(a.device)
        marks = [time.perf_counter()]

        def between_steps(fraction: float) -> None:
            sync(a.device)
            marks.append(time.perf_counter())

        reset_peak(a.device)
        train.run_training(model, job, settings, crops, between_steps)
        step_s = np.diff(marks[2:])[2:] if len(marks) > 6 else np.diff(marks[2:])
        per_step = float(np.median(step_s))
        row = {
            "load_s": marks[0] - start,
            "latents_s": marks[1] - marks[0],
            "step_ms": 1000 * per_step,
            "batch_size": settings.batch_size,
            "resolution": a.size,
            "peak_gib": peak_gib(a.device),
            "tune_of_1000_steps_s_estimate": marks[1] - start + 1000 * per_step,
        }
        del model
        return row


def restart_probe(args: argparse.Namespace) -> None:
    """Child process of the `restart` row: time from nothing to the first finished image."""
    start = time.perf_counter()
    engine, model, load_s = engine_for(args, ours_accel(args))
    job = prompt_job(args, Path(os.environ["BENCH_TUNE"]))
    engine.run_prompt(job, lambda fraction: None)
    sync(args.device)
    total = time.perf_counter() - start
    print(
        json.dumps(
            {
                "load_and_compile_s": load_s,
                "first_image_after_restart_s": total,
                "compile": model.accel.compile,
            }
        )
    )


def versions(device: str) -> dict[str, Any]:
    import diffusers
    import peft
    import torch
    import transformers

    name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    return {
        "device": name,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    args = parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = True
    with tempfile.TemporaryDirectory() as tmp:
        args.cache_dir = args.cache_dir or str(Path(tmp) / "compile-cache")
        if args.restart_probe:
            restart_probe(args)
            return {}
        res: dict[str, Any] = {
            **versions(args.device),
            "model": args.spec,
            "steps": args.steps,
            "size": args.size,
            "lora_rank": args.rank,
        }
        bench = Bench(args, Path(tmp))
        res.update(bench.res)
        bench.res = res
        save(res)
        for row in [r.strip() for r in args.rows.split(",") if r.strip()]:
            getattr(bench, f"row_{row}")()
            save(res)  # after every row: a run cut off at its time limit still reports
    print("\n" + json.dumps(res, indent=1, default=str))
    return res


def save(res: dict[str, Any]) -> None:
    out = os.environ.get("OUT")
    if out:
        Path(out, "gpu.json").write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
