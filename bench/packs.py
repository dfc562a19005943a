"""A 40-image pack vs. the same 40 images as separate prompts, on our worker (issue 14).

Both sides go through the worker's HTTP API (the bot's Astria client over the in-process ASGI
transport) on one worker, one tune and one loaded model, in alternating repetitions (the best
of each side counts):
- `separate`: 40 `POST /tunes/666678/prompts` with `<lora:TUNE:1>`, all sent at once, as a
  client would send them;
- `pack`: one `POST /p/:id/tunes` with `tune_ids=[TUNE]`, a generated pack of the same 40
  prompts (`--per-prompt` images each).
A warm-up prompt with the tune runs first (model load, first reads: paid by neither side), and
a base-model prompt before each side, so each starts with no tune bound. Measured: wall
time from the first request to the last image, and LoRA binds (`/healthz` `lora_binds`, the
engine's counter). Printed: both, the ratio separate/pack (>= 1: the pack is not slower) and
whether the pack bound the tune once.

Then the fairness row: 3 single prompts (another user, the base model) sent just after each
side started: how long each waited for its image. A pack lets each of them in after at most
one of its prompts (each costing it one more bind); 40 separate prompts are served in order.

Tiny model on the CPU by default (`--size 64 --steps 2`: minutes, not hours); `--hotswap off`
measures the PEFT path instead of the hot-swap slot. Results also go to $OUT/packs.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASE = 666678
TOLERANCE = 0.05
"""The pack counts as "not slower" within 5 %: a shared CPU's noise is larger than that."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=40, help="images per side (default 40)")
    p.add_argument("--per-prompt", type=int, default=1, help="images per prompt (1-8)")
    p.add_argument("--size", type=int, default=64, help="image side in px (default 64)")
    p.add_argument("--steps", type=int, default=2, help="denoising steps (default 2)")
    p.add_argument("--reps", type=int, default=2, help="alternating repetitions per side")
    p.add_argument("--singles", type=int, default=3, help="single prompts in the fairness row")
    p.add_argument("--hotswap", choices=("on", "off"), default="on", help="the LoRA slot")
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="tiny", help="SDXL_MODEL (default tiny)")
    return p.parse_args(argv)


def pack_file(args: argparse.Namespace) -> str:
    """The benchmark pack: images/per-prompt prompts of one class, small and fast."""
    lines = [
        'title = "Bench"',
        "[defaults]",
        f"num_images = {args.per_prompt}",
        f"w = {args.size}",
        f"h = {args.size}",
        f"steps = {args.steps}",
        "super_resolution = false",
        "inpaint_faces = false",
    ]
    for i in range(args.images // args.per_prompt):
        lines += ["[[prompts.man]]", f'text = "ohwx man, bench portrait {i}"']
    return "\n".join(lines) + "\n"


class Bench:
    def __init__(self, args: argparse.Namespace, worker: Any, client: Any, tune_id: int) -> None:
        self.args = args
        self.worker = worker
        self.client = client
        self.tune_id = tune_id

    def fields(self, text: str) -> Any:
        from backends.base import PromptRequest

        a = self.args
        return PromptRequest(
            text=text,
            num_images=a.per_prompt,
            w=a.size,
            h=a.size,
            steps=a.steps,
            super_resolution=False,
            inpaint_faces=False,
        )

    @property
    def binds(self) -> int:
        return int(self.worker.runner.binds)

    async def wait(self, prompt_ids: list[int]) -> dict[int, datetime]:
        """When each prompt finished (its `trained_at`, the worker's clock): polling only says
        when to look, slowly, so it takes no CPU from the generation being measured."""
        wanted = set(prompt_ids)
        while True:
            prompts = [
                p
                for tune_id in (BASE, self.tune_id)
                for p in await self.client.list_prompts(tune_id)
                if p.id in wanted
            ]
            for prompt in prompts:
                if prompt.failed:
                    raise RuntimeError(f"prompt {prompt.id}: {prompt.user_error}")
            if len(prompts) == len(wanted) and all(p.done for p in prompts):
                return {p.id: p.trained_at for p in prompts if p.trained_at is not None}
            await asyncio.sleep(0.2)

    async def warm_up(self) -> None:
        """One prompt with the tune first: the model load, the tune's first read from disk and
        torch's first calls are paid here, by neither side."""
        text = f"<lora:{self.tune_id}:1> ohwx man, warm up"
        prompt = await self.client.create_prompt(BASE, self.fields(text))
        await self.wait([prompt.id])

    async def unbind(self) -> None:
        prompt = await self.client.create_prompt(BASE, self.fields("a plain photo"))
        await self.wait([prompt.id])

    async def separate(self) -> list[int]:
        text = f"<lora:{self.tune_id}:1> ohwx man, bench portrait"
        n = self.args.images // self.args.per_prompt
        created = [
            await self.client.create_prompt(BASE, self.fields(f"{text} {i}")) for i in range(n)
        ]
        return [p.id for p in created]

    async def pack(self) -> list[int]:
        from backends.base import PackRunRequest

        pack = await self.client.get_pack("bench")
        run = await self.client.run_pack(pack.id, PackRunRequest(tune_ids=[self.tune_id]))
        return [p.id for p in run.prompts]

    async def side(self, name: str, singles: int = 0) -> dict[str, Any]:
        await self.unbind()
        before = self.binds
        start = datetime.now(UTC)
        ids = await (self.separate() if name == "separate" else self.pack())
        single_ids = []
        for _ in range(singles):
            single = await self.client.create_prompt(BASE, self.fields("another user"))
            single_ids.append(single.id)
        sent = datetime.now(UTC)
        finished = await self.wait(ids + single_ids)
        result: dict[str, Any] = {
            "seconds": round((max(finished[i] for i in ids) - start).total_seconds(), 3),
            "binds": self.binds - before,
        }
        if single_ids:
            waits = [(finished[i] - sent).total_seconds() for i in single_ids]
            result["single_waits_s"] = [round(w, 3) for w in waits]
        return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    from backends.astria import AstriaClient
    from backends.local import Worker, WorkerConfig
    from backends.local.accel import Accel
    from backends.local.records import JobState
    from backends.local.store import now_iso
    from bench.gpu import write_tune

    with tempfile.TemporaryDirectory() as tmp:
        packs = Path(tmp) / "packs"
        packs.mkdir()
        (packs / "bench.toml").write_text(pack_file(args))
        accel = Accel(compile="off", lora_hotswap=args.hotswap == "on")
        config = WorkerConfig(
            data_dir=Path(tmp) / "worker",
            sdxl_model=args.model,
            device=args.device,
            packs_dir=packs,
            accel=accel,
        )
        worker = Worker(config)
        await worker.start()
        transport = httpx.ASGITransport(app=worker.app, client=("127.0.0.1", 1))
        try:
            async with AstriaClient(None, "http://worker", transport=transport) as client:
                tune = await worker.store.create_tune(
                    {"title": "bench", "name": "man", "token": "ohwx", "base_tune_id": BASE,
                     "model_type": "pti"}, [], None)  # fmt: skip
                pipe = await asyncio.to_thread(lambda: worker.runner.engine().models.get(BASE).pipe)
                write_tune(config.tunes_dir / str(tune["id"]), pipe, rank=4, seed=1)
                await worker.store.update_tune(
                    tune["id"], state=JobState.DONE, trained_at=now_iso()
                )
                bench = Bench(args, worker, client, tune["id"])
                await bench.warm_up()
                sides: dict[str, list[dict[str, Any]]] = {"separate": [], "pack": []}
                for _ in range(args.reps):
                    for name in sides:
                        sides[name].append(await bench.side(name))
                        print(name, sides[name][-1], flush=True)
                fairness = {name: await bench.side(name, args.singles) for name in sides}
        finally:
            await worker.stop()
    best = {name: min(runs, key=lambda r: r["seconds"]) for name, runs in sides.items()}
    ratio = best["separate"]["seconds"] / best["pack"]["seconds"]
    return {
        "images": args.images,
        "per_prompt": args.per_prompt,
        "size": args.size,
        "steps": args.steps,
        "hotswap": args.hotswap,
        "model": args.model,
        "device": args.device,
        "separate": best["separate"],
        "pack": best["pack"],
        "ratio_separate_over_pack": round(ratio, 3),
        "pack_not_slower": ratio >= 1 - TOLERANCE,
        "pack_binds_once": best["pack"]["binds"] == 1,
        "fairness": fairness,
        "all_runs": sides,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    worker_logs = logging.getLogger("backends")
    level = worker_logs.level
    worker_logs.setLevel(logging.ERROR)  # "the tiny model makes noise" x80
    try:
        result = asyncio.run(run(args))
    finally:  # run in-process by a test: later tests' log assertions need the worker's records
        worker_logs.setLevel(level)
    print(
        f"\n{args.images} images, {args.size}px, {args.steps} steps, hot-swap {args.hotswap}:"
        f"\n  separate prompts: {result['separate']['seconds']:.2f} s,"
        f" {result['separate']['binds']} bind(s)"
        f"\n  pack:             {result['pack']['seconds']:.2f} s,"
        f" {result['pack']['binds']} bind(s)"
        f"\n  ratio separate/pack: {result['ratio_separate_over_pack']:.3f}"
        f" (pack not slower: {result['pack_not_slower']}, binds once:"
        f" {result['pack_binds_once']})"
    )
    for name, row in result["fairness"].items():
        print(
            f"  {args.singles} singles sent during the {name} side waited"
            f" {row['single_waits_s']} s; that side bound {row['binds']} time(s)"
        )
    out = os.environ.get("OUT")
    if out:
        Path(out, "packs.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
