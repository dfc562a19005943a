"""The optimisation loop of pivotal tuning: LoRA injection, AdamW, noise, loss, pivot.

Kept apart from train.py (the hook) and training_recipe.py (what is trained, with which
numbers), so the mechanics (how one step runs) read separately. One step: pick crops (with
mirrored variants) and caption templates, take their cached latents, add noise at a uniform
timestep, predict it with the UNet conditioned on the captions, MSE, clip, step, retract the
token rows.

After the pivot the text encoders are frozen entirely, so the caption embeddings are computed
once and reused: the steps after the pivot run the UNet only.

`state()`/`restore()` take and put back everything the next step depends on (checkpoint.py):
a loop restored from step k takes the steps an uninterrupted one would have taken from k.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from backends.local.checkpoint import TrainingState
from backends.local.training_data import CAPTION_TEMPLATES, LatentCache
from backends.local.training_recipe import LORA_TARGETS, TrainingDefaults

if TYPE_CHECKING:
    from backends.local.models import LoadedModel
    from backends.local.pivotal import TokenEmbeddings


class Loop:
    """One training run over a loaded model (modified in place: the LoRA stays injected)."""

    def __init__(
        self,
        model: LoadedModel,
        tokens: TokenEmbeddings,
        latents: LatentCache,
        class_word: str,
        settings: TrainingDefaults,
        generator: torch.Generator,
    ) -> None:
        from diffusers import DDPMScheduler
        from peft import LoraConfig

        self.model = model
        self.pipe = model.pipe
        self.tokens = tokens
        self.latents = latents
        self.settings = settings
        self.generator = generator
        self.device = torch.device(model.device)
        self.cuda = self.device.type == "cuda"
        pipe = self.pipe
        for module in (pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2):
            module.requires_grad_(False)
        for row in tokens.parameters():  # the freeze above reached the token rows too
            row.requires_grad_(True)
        with torch.random.fork_rng(devices=[]):
            # PEFT builds (and inits) the LoRA layers on the CPU from the global RNG, then moves
            # them to the base layer's device: seed that, without disturbing anyone else's draws
            torch.manual_seed(settings.seed)
            pipe.unet.add_adapter(
                LoraConfig(
                    r=settings.rank,
                    lora_alpha=settings.lora_alpha,
                    init_lora_weights="gaussian",
                    target_modules=list(LORA_TARGETS),
                )
            )
        self.lora_params = [p for p in pipe.unet.parameters() if p.requires_grad]
        for param in self.lora_params:
            param.data = param.data.float()
        if settings.low_memory:
            pipe.unet.enable_gradient_checkpointing()
        self.noise = DDPMScheduler.from_config(pipe.scheduler.config)
        captions = [tokens.caption(t, class_word) for t in CAPTION_TEMPLATES]
        self.ids = [
            _tokenize(tok, captions, self.device) for tok in (pipe.tokenizer, pipe.tokenizer_2)
        ]
        self.cached_text: tuple[torch.Tensor, torch.Tensor] | None = None
        self.start = 0
        """The first step to take: 0, or the step a checkpoint was restored at."""
        self.recent: list[float] = []
        """The last losses (their mean is logged at the end)."""
        size = settings.resolution or model.native_size
        self.time_ids = torch.tensor([[size, size, 0, 0, size, size]], device=self.device)
        self.optimizer = torch.optim.AdamW(
            [
                {
                    "params": self.lora_params,
                    "lr": settings.unet_lr,
                    "weight_decay": settings.weight_decay,
                },
                {
                    "params": tokens.parameters(),
                    "lr": settings.embedding_lr,
                    "weight_decay": settings.embedding_weight_decay,
                },
            ],
            fused=self.cuda or None,
            foreach=None if self.cuda else True,
        )

    @property
    def pivot(self) -> int:
        return int(self.settings.steps * self.settings.pivot)

    def run(
        self,
        between_steps: Callable[[float], None],
        checkpoint: Callable[[TrainingState], None] | None = None,
    ) -> float:
        """The steps from `start` on; returns the mean loss of the last few (for the log).
        `checkpoint` gets the state every `checkpoint_steps` steps (before the GPU is handed
        to prompts, where a stop lands)."""
        steps, every = self.settings.steps, self.settings.checkpoint_steps
        unet = self.pipe.unet
        unet.train()
        self.pipe.text_encoder.train(False)
        self.pipe.text_encoder_2.train(False)
        try:
            for step in range(self.start, steps):
                if step == self.pivot:
                    self.freeze_embeddings()
                loss = self.step(embeddings_learn=step < self.pivot)
                self.recent = [*self.recent, loss][-20:]
                done = step + 1
                if checkpoint is not None and every and done % every == 0 and done < steps:
                    checkpoint(self.state(done))
                between_steps(done / steps)
        finally:
            unet.eval()
            if self.settings.low_memory:
                unet.disable_gradient_checkpointing()
        return sum(self.recent) / max(1, len(self.recent))

    def state(self, step: int) -> TrainingState:
        """A copy (on the CPU) of everything step `step` depends on."""

        def cpu(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
            return [t.detach().cpu().clone() for t in tensors]

        return TrainingState(
            step=step,
            lora=cpu(self.lora_params),
            tokens=cpu(self.tokens.parameters()),
            optimizer=self.optimizer.state_dict(),
            generator=self.generator.get_state(),
            recent_losses=list(self.recent),
        )

    @torch.no_grad()
    def restore(self, state: TrainingState) -> None:
        """Continue at `state.step` (the caller checked it belongs to this training)."""
        for param, saved in zip(self.lora_params, state.lora, strict=True):
            param.copy_(saved)
        for row, saved in zip(self.tokens.parameters(), state.tokens, strict=True):
            row.copy_(saved)
        self.optimizer.load_state_dict(state.optimizer)
        self.generator.set_state(state.generator)
        self.recent = list(state.recent_losses)
        self.start = state.step
        if state.step > self.pivot:  # the pivot step itself freezes them in run()
            self.freeze_embeddings()

    def step(self, *, embeddings_learn: bool) -> float:
        batch = self.settings.batch_size
        index = torch.randint(len(self.latents), (batch,), generator=self.generator)
        captions = torch.randint(len(CAPTION_TEMPLATES), (batch,), generator=self.generator)
        latents = self.latents.latents[index.to(self.device)]
        noise = _randn(latents.shape, self.generator, self.device)
        timesteps = torch.randint(
            self.noise.config.num_train_timesteps, (batch,), generator=self.generator
        ).to(self.device)
        noisy = self.noise.add_noise(latents, noise, timesteps)
        if self.noise.config.prediction_type == "v_prediction":
            target = self.noise.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        dtype = self.model.dtype
        with self._autocast():
            embeds, pooled = self.text(captions.to(self.device), grad=embeddings_learn)
            pred = self.pipe.unet(
                noisy.to(dtype),
                timesteps,
                encoder_hidden_states=embeds.to(dtype),
                added_cond_kwargs={
                    "text_embeds": pooled.to(dtype),
                    "time_ids": self.time_ids.expand(batch, -1).to(dtype),
                },
            ).sample
        loss = F.mse_loss(pred.float(), target.float())
        loss.backward()
        params = self.lora_params + (self.tokens.parameters() if embeddings_learn else [])
        torch.nn.utils.clip_grad_norm_(params, self.settings.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if embeddings_learn:
            self.tokens.retract()
        return float(loss.detach())

    def text(self, captions: torch.Tensor, *, grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Caption embeddings as SDXL's encode_prompt builds them (penultimate hidden states of
        both encoders, concatenated; pooled output of the second), for the chosen templates."""
        if grad:
            return self._encode(captions)
        if self.cached_text is None:
            with torch.no_grad():
                all_captions = torch.arange(len(CAPTION_TEMPLATES), device=self.device)
                self.cached_text = self._encode(all_captions)
        embeds, pooled = self.cached_text
        return embeds[captions], pooled[captions]

    def _encode(self, captions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out_l = self.pipe.text_encoder(self.ids[0][captions], output_hidden_states=True)
        out_g = self.pipe.text_encoder_2(self.ids[1][captions], output_hidden_states=True)
        embeds = torch.cat([out_l.hidden_states[-2], out_g.hidden_states[-2]], dim=-1)
        return embeds, out_g[0]

    def freeze_embeddings(self) -> None:
        """The pivot: embeddings stop learning (AdamW skips parameters without a gradient)."""
        self.tokens.freeze()
        self.optimizer.param_groups[1]["lr"] = 0.0

    def lora_state_dict(self) -> dict[str, torch.Tensor]:
        """The UNet LoRA in PEFT keys without the adapter name (`...to_q.lora_A.weight`)."""
        from peft.utils import get_peft_model_state_dict

        return get_peft_model_state_dict(self.pipe.unet)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.cuda and self.model.dtype == torch.bfloat16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


def _tokenize(tokenizer: Any, captions: list[str], device: torch.device) -> torch.Tensor:
    ids = tokenizer(
        captions,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    return ids.to(device)


def _randn(shape: torch.Size, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """CPU-seeded noise moved to the device: the same run on any device draws the same numbers."""
    return torch.randn(shape, generator=generator).to(device)
