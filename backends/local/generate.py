"""Generation: a validated prompt plus (optionally) a tune's LoRA+TI -> finished images.

Order of stages (as ADetailer after a hires fix, and Astria's own flags):
txt2img (one batch, a seed per image) -> super_resolution (hires fix) -> inpaint_faces.

The tune's LoRA is copied into the model's hot-swap slot (`lora_slot`: no recompilation, a
few milliseconds) at the prompt's strength, or, with the slot switched off, loaded as a PEFT
adapter. Its embeddings are bound to its token in both text encoders. Both stay bound after the
prompt while the next prompt uses the same tune (a pack's 40 images bind once: `binds` counts);
a prompt of another tune, or of none, unbinds them first, so it starts from the clean base
model. Finished images are handed to `on_image` as soon as each is final,
so the caller can encode and write them while the GPU works on the next one.

Determinism: image i uses seed `params.seed + i` on its own torch.Generator, for the latents and
every stage after, so the same request with the same seed on the same device gives the same
images. (In a batch of another size the UNet's batched math rounds differently, so the same
seed there is not guaranteed to give the same image.)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from backends.local import faces, upscale
from backends.local.accel import enable_vae_memory_savers
from backends.local.artefacts import LORA_FILE, ArtefactError, TuneArtefacts, load_artefacts
from backends.local.lora_slot import SlotMisfit
from backends.local.models import LoadedModel, ModelCache
from backends.local.params import PromptParams

log = logging.getLogger(__name__)

FACE_STRENGTH = 0.4
ADAPTER = "tune"
TUNE_CACHE_SIZE = 8
"""Tunes kept in host memory (a rank-32 SDXL LoRA is ~90 MB): a user's next prompt re-reads
nothing from disk."""


class JobAborted(Exception):
    """The worker is stopping (or the prompt was deleted): drop the work, keep the job."""


class GenerationError(Exception):
    """The prompt cannot be run; the message becomes the prompt's `user_error`."""


Progress = Callable[[float], None]
"""Called with the finished fraction 0..1; raises JobAborted to stop the work."""

OnImage = Callable[[int, Image.Image], None]
"""Called with (index, image) as soon as an image is final (before `run_prompt` returns)."""


@dataclass(frozen=True)
class PromptJob:
    """What the queue hands the engine: validated params, base model, tune folder if any."""

    prompt_id: int
    params: PromptParams
    base_tune_id: int
    tune_dir: Path | None


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
        self._tunes: dict[tuple[str, int, int], TuneArtefacts] = {}
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
        model = self.models.get(job.base_tune_id)
        if model.is_noise:
            log.warning("prompt %s: the %s model makes noise images", job.prompt_id, model.spec)
        tune, key = self._load_tune(job.tune_dir) if job.tune_dir else (None, None)
        if model.accel.low_memory != "off":
            enable_vae_memory_savers(model.pipe.vae)  # the hires pass turns tiling off after it
        emit = on_image or (lambda index, image: None)
        stages = [("txt2img", 1.0)]
        if params.super_resolution:
            stages.append(("sr", 0.6))
        if params.inpaint_faces:
            stages.append(("faces", 0.4))
        plan = _Plan(stages, progress, self.abort)
        with self.tune_applied(model, tune, params.lora_strength, key=key):
            self._set_scheduler(model, params.scheduler)
            images = self._txt2img(model, params, plan)
            if params.super_resolution:
                images = self._super_resolve(model, params, images, plan)
            if params.inpaint_faces:
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
        plan: _Plan | None = None,
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
            if plan:
                plan.check()
            out = model.img2img(
                image=crop,
                strength=FACE_STRENGTH,
                num_inference_steps=max(params.steps, 5),
                width=crop.width,
                height=crop.height,
                **self._call_kwargs(model, params, [seed + 1000 * (index + 1)]),
            ).images[0]
            if plan:
                plan.step("faces", index + 1, len(boxes))
            return out

        result, _ = faces.inpaint_faces(image, redraw, native_size=model.native_size, boxes=boxes)
        return result

    @contextmanager
    def tune_applied(
        self,
        model: LoadedModel,
        tune: TuneArtefacts | None,
        strength: float,
        key: Hashable | None = None,
    ) -> Iterator[None]:
        """Have the tune's LoRA (at `strength`) and embeddings bound for a prompt (None: the
        clean base model). `key` names the tune's files: what is bound stays bound after the
        prompt, and a next prompt of the same key binds nothing again."""
        if model.slot is not None:
            with self._slot_applied(model, tune, strength, key):
                yield
            return
        if tune is None or model.bound_tune != key:
            self._release_adapter(model)
        if tune is not None and model.bound_tune != key:
            pipe = model.pipe
            try:
                model.bound_tokens = self._load_embeddings(model, tune)
                pipe.load_lora_weights(_scaled_lora(tune), adapter_name=ADAPTER)
            except BaseException:
                self._release_adapter(model)
                raise
            model.bound_tune = key
            self.binds += 1
        if tune is not None:
            model.pipe.set_adapters([ADAPTER], adapter_weights=[strength])
        yield

    def _release_adapter(self, model: LoadedModel) -> None:
        """The PEFT path's unbind: the LoRA layers out of the UNet, the tokens out of CLIP."""
        if ADAPTER in _adapters(model.pipe):
            model.pipe.unload_lora_weights()  # takes the LoRA layers out too: a clean UNet
        self._unbind_tokens(model)
        model.bound_tune = None

    @contextmanager
    def _slot_applied(
        self, model: LoadedModel, tune: TuneArtefacts | None, strength: float, key: Hashable
    ) -> Iterator[None]:
        """The hot-swap path: the LoRA stays in the slot after the prompt (the next prompt of
        the same tune and strength copies nothing), and so do the tune's tokens (the next tune
        with the same token overwrites their embedding rows instead of resizing both
        encoders' vocabularies twice); a prompt without a tune clears both."""
        slot = model.slot
        assert slot is not None
        if tune is None:
            slot.clear()
            self._unbind_tokens(model)
            model.bound_tune = None
            yield
            return
        scale = strength * tune.manifest.lora_alpha / tune.manifest.rank
        slot_key = None if key is None else (key, scale)
        try:
            if slot_key is None or slot_key != slot.loaded:
                self.binds += 1
            slot.load(tune.lora, scale, slot_key)
        except SlotMisfit as exc:
            slot.clear()
            raise GenerationError(f"the tune's LoRA does not fit this worker: {exc}") from exc
        except BaseException:
            slot.clear()
            raise
        try:
            if key is None or model.bound_tune != key:
                model.bound_tune = None
                self._bind_tokens(model, tune)
                model.bound_tune = key
        except BaseException:
            self._unbind_tokens(model)
            raise
        yield

    def _bind_tokens(self, model: LoadedModel, tune: TuneArtefacts) -> None:
        if model.bound_tokens != _token_names(tune):
            self._unbind_tokens(model)
            model.bound_tokens = self._load_embeddings(model, tune)
            return
        for key, (encoder, tokenizer) in zip(
            ("clip_l", "clip_g"), _encoders(model.pipe), strict=True
        ):
            emb = _checked_embedding(tune, key, encoder)
            ids = tokenizer.convert_tokens_to_ids(model.bound_tokens)
            weight = encoder.get_input_embeddings().weight
            weight.data[ids] = emb.to(device=weight.device, dtype=weight.dtype)

    def _unbind_tokens(self, model: LoadedModel) -> None:
        tokens, model.bound_tokens = model.bound_tokens, []
        model.bound_tune = None
        if tokens:
            for encoder, tokenizer in _encoders(model.pipe):
                model.pipe.unload_textual_inversion(
                    tokens=tokens, text_encoder=encoder, tokenizer=tokenizer
                )

    # -- stages --------------------------------------------------------------------------

    def _txt2img(self, model: LoadedModel, params: PromptParams, plan: _Plan) -> list[Image.Image]:
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
        self, model: LoadedModel, params: PromptParams, images: list[Image.Image], plan: _Plan
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

    def _set_scheduler(self, model: LoadedModel, name: str) -> None:
        scheduler = make_scheduler(name, model.scheduler_config)
        model.pipe.scheduler = scheduler
        model.img2img.scheduler = scheduler

    def _load_tune(self, folder: Path) -> tuple[TuneArtefacts, tuple[str, int, int]]:
        """The tune's artefacts from a small in-memory cache keyed by path and file times (a
        retrained tune has new files, hence a new key)."""
        try:
            stat = (folder / LORA_FILE).stat()
            key = (str(folder.resolve()), stat.st_mtime_ns, stat.st_size)
            if key not in self._tunes:
                while len(self._tunes) >= TUNE_CACHE_SIZE:
                    self._tunes.pop(next(iter(self._tunes)))
                self._tunes[key] = load_artefacts(folder)
            return self._tunes[key], key
        except (ArtefactError, OSError) as exc:
            raise GenerationError(f"the tune's model files are unusable: {exc}") from exc

    def _load_embeddings(self, model: LoadedModel, tune: TuneArtefacts) -> list[str]:
        """Bind `token`, `token_1`, ... to the embedding rows in both encoders."""
        pipe = model.pipe
        token = tune.manifest.token
        tokens = _token_names(tune)
        loaded: list[tuple[Any, Any]] = []
        try:
            for key, (encoder, tokenizer) in zip(
                ("clip_l", "clip_g"), _encoders(pipe), strict=True
            ):
                emb = _checked_embedding(tune, key, encoder)
                pipe.load_textual_inversion(
                    emb.to(model.dtype), token=token, text_encoder=encoder, tokenizer=tokenizer
                )
                loaded.append((encoder, tokenizer))
        except Exception:
            for encoder, tokenizer in loaded:
                pipe.unload_textual_inversion(
                    tokens=tokens, text_encoder=encoder, tokenizer=tokenizer
                )
            raise
        return tokens

    def _get_upscaler(self, model: LoadedModel) -> upscale.SpandrelUpscaler | None:
        if not self.upscaler_model:
            return None
        if self._upscaler is None:
            self._upscaler = upscale.SpandrelUpscaler(self.upscaler_model, model.device)
        return self._upscaler


class _Plan:
    """Maps stage-local step counts onto one 0..1 progress figure and checks for abort."""

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

    def check(self) -> None:
        if self._abort.is_set():
            raise JobAborted("the worker is stopping")

    def step(self, stage: str, done: int, total: int) -> None:
        self.check()
        if stage in self._start:
            fraction = self._start[stage] + self._weight[stage] * min(1.0, done / max(1, total))
            self._report(min(0.99, fraction))

    def done(self) -> None:
        self._report(1.0)


def _encoders(pipe: Any) -> list[tuple[Any, Any]]:
    return [(pipe.text_encoder, pipe.tokenizer), (pipe.text_encoder_2, pipe.tokenizer_2)]


def _token_names(tune: TuneArtefacts) -> list[str]:
    """What `load_textual_inversion` binds for n rows: `ohwx`, `ohwx_1`, ..."""
    token = tune.manifest.token
    return [token] + [f"{token}_{i}" for i in range(1, tune.manifest.n_tokens)]


def _checked_embedding(tune: TuneArtefacts, key: str, encoder: Any) -> Any:
    emb = tune.embeddings[key]
    dim = encoder.get_input_embeddings().weight.shape[1]
    if emb.shape[1] != dim:
        raise GenerationError(
            f"the tune's {key} embedding has width {emb.shape[1]}, this base model"
            f" {dim}: it was trained for another model"
        )
    return emb


def _adapters(pipe: Any) -> set[str]:
    try:
        return {name for names in pipe.get_list_adapters().values() for name in names}
    except Exception:  # no PEFT layers injected yet
        return set()


def _scaled_lora(tune: TuneArtefacts) -> dict[str, Any]:
    """The LoRA state dict with alpha/rank folded into the up weights (diffusers assumes 1)."""
    factor = tune.manifest.lora_alpha / tune.manifest.rank
    if factor == 1.0:
        return dict(tune.lora)
    return {k: (v * factor if ".lora_B." in k else v) for k, v in tune.lora.items()}
