"""Generation: a validated prompt plus (optionally) a tune's LoRA+TI -> finished images.

Order of stages (as ADetailer after a hires fix, and Astria's own flags):
txt2img (one batch, a seed per image) -> super_resolution (hires fix) -> inpaint_faces.

The tune (its LoRA at the prompt's strength and its token embeddings) is bound on the model by
`tune_binding.tune_applied`, and stays bound while the next prompt uses the same tune (a pack's
40 images bind once: `binds` counts); a prompt of another tune, or of none, unbinds it first.
Finished images are handed to `on_image` as soon as each is final, so the caller can encode and
write them while the GPU works on the next one.

Determinism: image i uses seed `params.seed + i` on its own torch.Generator, for the latents and
every stage after, so the same request with the same seed on the same device gives the same
images. (In a batch of another size the UNet's batched math rounds differently, so the same
seed there is not guaranteed to give the same image.)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from backends.local import faces, upscale
from backends.local.errors import Aborted, GenerationError
from backends.local.levers import enable_vae_memory_savers
from backends.local.models import LoadedModel, ModelCache
from backends.local.params import PromptParams
from backends.local.tune_binding import TuneCache, tune_applied

log = logging.getLogger(__name__)

FACE_STRENGTH = 0.4


Progress = Callable[[float], None]
"""Called with the finished fraction 0..1 at every check (each denoising step of every pipeline
call, each stage and face); raises Aborted to stop the work (the job was deleted)."""

OnImage = Callable[[int, Image.Image], None]
"""Called with (index, image) as soon as an image is final (before `run_prompt` returns)."""


@dataclass(frozen=True)
class PromptJob:
    """What the queue hands the engine: validated params, base model, tune folder if any."""

    prompt_id: int
    params: PromptParams
    base_tune_id: int
    tune_dir: Path | None
    training_photos: tuple[Path, ...] = ()
    """The tune's training photos on this machine, as its row names them (best-of's likeness
    references); empty where they are elsewhere (the fleet's bucket) or already swept."""


def make_scheduler(name: str, config: Any) -> Any:
    """Our scheduler names -> diffusers schedulers, from the model's own scheduler config.

    `dpm++sde*` use DPM-Solver++ in its SDE form (diffusers' `sde-dpmsolver++`, A1111's
    "DPM++ 2M SDE"): seeded like the rest, and without the `torchsde` dependency that
    DPMSolverSDEScheduler would add.
    """
    from diffusers import (
        DPMSolverMultistepScheduler,
        EulerAncestralDiscreteScheduler,
        EulerDiscreteScheduler,
    )

    if name == "euler_a":
        return EulerAncestralDiscreteScheduler.from_config(config)
    if name == "euler":
        return EulerDiscreteScheduler.from_config(config)
    karras = name.endswith("_karras")
    algorithm = "sde-dpmsolver++" if name.startswith("dpm++sde") else "dpmsolver++"
    if name in ("dpm++2m", "dpm++2m_karras", "dpm++sde", "dpm++sde_karras"):
        return DPMSolverMultistepScheduler.from_config(
            config, algorithm_type=algorithm, solver_order=2, use_karras_sigmas=karras
        )
    raise GenerationError(f"unknown scheduler {name!r}")


class Engine:
    """Runs prompts on the GPU (or CPU). Not thread-safe: the queue calls it from one thread."""

    def __init__(
        self,
        models: ModelCache,
        *,
        sr_scale: float = 2.0,
        upscaler_model: str | None = None,
    ) -> None:
        self.models = models
        self.sr_scale = sr_scale
        self.upscaler_model = upscaler_model
        self._upscaler: upscale.SpandrelUpscaler | None = None
        self.tunes = TuneCache()
        self.abort = threading.Event()
        self.binds = 0
        """Times a tune's LoRA was written into the model (a slot copy or a PEFT load): once per
        change of tune (or, with the slot, of strength), not once per prompt."""

    # -- public --------------------------------------------------------------------------

    def run_prompt(
        self, job: PromptJob, progress: Progress, on_image: OnImage | None = None
    ) -> list[Image.Image]:
        """All stages of one prompt; returns the final images, in seed order."""
        params = job.params
        # a load is only cut short by a stop: the next job would need the same model anyway
        model = self.models.get(job.base_tune_id, check=self._check_stop)
        if model.is_noise:
            log.warning("prompt %s: the %s model makes noise images", job.prompt_id, model.spec)
        tune, key = self.tunes.load(job.tune_dir) if job.tune_dir else (None, None)
        if model.accel.low_memory != "off":
            enable_vae_memory_savers(model.pipe.vae)  # the hires pass turns tiling off after it
        emit = on_image or (lambda index, image: None)
        stages = [("txt2img", 1.0)]
        if params.super_resolution:
            stages.append(("sr", 0.6))
        if params.inpaint_faces:
            stages.append(("faces", 0.4))
        plan = StagePlan(stages, progress, self.abort)
        plan.check()
        with tune_applied(model, tune, params.lora_strength, key=key) as bound:
            self.binds += bound
            self._set_scheduler(model, params.scheduler)
            images = self._txt2img(model, params, plan)
            if params.super_resolution:
                plan.check()
                images = self._super_resolve(model, params, images, plan)
            if params.inpaint_faces:
                plan.check()
                redrawn = []
                for i, image in enumerate(images):
                    redrawn.append(self.redraw_faces(model, params, image, params.seed + i, plan))
                    emit(i, redrawn[-1])
                images = redrawn
            else:
                for i, image in enumerate(images):
                    emit(i, image)
        plan.done()
        return images

    def redraw_faces(
        self,
        model: LoadedModel,
        params: PromptParams,
        image: Image.Image,
        seed: int,
        plan: StagePlan | None = None,
    ) -> Image.Image:
        """The face stage alone, on any image (the caller applies the tune). Test seam too:
        the tiny model draws no faces, so tests feed a drawn face through this stage."""
        boxes = faces.detect_faces(image)
        if not boxes:
            if plan:
                plan.step("faces", 1, 1)
            return image
        log.info("inpaint_faces: %d face(s) in a %dx%d image", len(boxes), *image.size)

        def redraw(crop: Image.Image, index: int) -> Image.Image:
            kwargs = self._call_kwargs(model, params, [seed + 1000 * (index + 1)])
            if plan:
                plan.check()
                kwargs["callback_on_step_end"] = plan.checker()
            out = model.img2img(
                image=crop,
                strength=FACE_STRENGTH,
                num_inference_steps=max(params.steps, 5),
                width=crop.width,
                height=crop.height,
                **kwargs,
            ).images[0]
            if plan:
                plan.step("faces", index + 1, len(boxes))
            return out

        result, _ = faces.inpaint_faces(image, redraw, native_size=model.native_size, boxes=boxes)
        return result

    # -- stages --------------------------------------------------------------------------

    def _txt2img(
        self, model: LoadedModel, params: PromptParams, plan: StagePlan
    ) -> list[Image.Image]:
        seeds = [params.seed + i for i in range(params.num_images)]
        kwargs = self._call_kwargs(model, params, seeds)

        def on_step(pipe: Any, step: int, timestep: Any, tensors: dict) -> dict:
            plan.step("txt2img", step + 1, params.steps)
            return tensors

        result = model.pipe(
            width=params.w,
            height=params.h,
            num_inference_steps=params.steps,
            callback_on_step_end=on_step,
            **kwargs,
        )
        return list(result.images)

    def _super_resolve(
        self, model: LoadedModel, params: PromptParams, images: list[Image.Image], plan: StagePlan
    ) -> list[Image.Image]:
        size = upscale.target_size(params.w, params.h, self.sr_scale)
        strength = upscale.DETAIL_STRENGTH if params.hires_fix else upscale.STRENGTH
        seeds = [params.seed + i for i in range(len(images))]
        kwargs = self._call_kwargs(model, params, seeds)
        total = max(1, int(max(params.steps, round(2 / strength)) * strength))

        def on_step(pipe: Any, step: int, timestep: Any, tensors: dict) -> dict:
            plan.step("sr", step + 1, total)
            return tensors

        return upscale.hires_fix(
            model.img2img,
            images,
            size=size,
            strength=strength,
            steps=params.steps,
            call_kwargs={**kwargs, "callback_on_step_end": on_step},
            native_size=model.native_size,
            upscaler=self._get_upscaler(model),
        )

    # -- helpers -------------------------------------------------------------------------

    def _call_kwargs(
        self, model: LoadedModel, params: PromptParams, seeds: list[int]
    ) -> dict[str, Any]:
        import torch

        generators = [torch.Generator(model.device).manual_seed(s) for s in seeds]
        return {
            "prompt": [params.clean_text] * len(seeds),
            "negative_prompt": [params.negative_prompt] * len(seeds),
            "guidance_scale": params.cfg_scale,
            "generator": generators,
        }

    def _check_stop(self) -> None:
        if self.abort.is_set():
            raise Aborted("the worker is stopping")

    def _set_scheduler(self, model: LoadedModel, name: str) -> None:
        scheduler = make_scheduler(name, model.scheduler_config)
        model.pipe.scheduler = scheduler
        model.img2img.scheduler = scheduler

    def _get_upscaler(self, model: LoadedModel) -> upscale.SpandrelUpscaler | None:
        if not self.upscaler_model:
            return None
        if self._upscaler is None:
            self._upscaler = upscale.SpandrelUpscaler(self.upscaler_model, model.device)
        return self._upscaler


class StagePlan:
    """Maps stage-local step counts onto one 0..1 progress figure and checks for abort: the
    worker's stop flag here, the job's own cancellation in `report` (the queue's)."""

    def __init__(
        self, stages: list[tuple[str, float]], report: Progress, abort: threading.Event
    ) -> None:
        total = sum(w for _, w in stages)
        self._start: dict[str, float] = {}
        self._weight: dict[str, float] = {}
        acc = 0.0
        for name, weight in stages:
            self._start[name] = acc / total
            self._weight[name] = weight / total
            acc += weight
        self._report = report
        self._abort = abort
        self._fraction = 0.0

    def check(self) -> None:
        """Raise Aborted if the worker stops or the job was cancelled (progress unchanged)."""
        if self._abort.is_set():
            raise Aborted("the worker is stopping")
        self._report(self._fraction)

    def checker(self) -> Callable[..., dict]:
        """A `callback_on_step_end` that only checks: for calls without their own progress."""

        def on_step(pipe: Any, step: int, timestep: Any, tensors: dict) -> dict:
            self.check()
            return tensors

        return on_step

    def step(self, stage: str, done: int, total: int) -> None:
        if stage in self._start:
            fraction = self._start[stage] + self._weight[stage] * min(1.0, done / max(1, total))
            self._fraction = min(0.99, fraction)
        self.check()

    def done(self) -> None:
        self._report(1.0)
