"""The text half of pivotal tuning: new token embeddings in both SDXL text encoders.

The user's token (`ohwx`) is added to each tokenizer exactly as generation adds it
(`load_textual_inversion` with an [n, dim] tensor: `ohwx`, `ohwx_1`, ... as fresh added tokens
with their own embedding rows), so a caption is tokenised in training the way a prompt is at
generation, and every tune can use `ohwx` because each binds its own rows only while it runs.

While training, each encoder's token embedding is wrapped: the original table stays frozen in
the base dtype (bf16 on a GPU) and only the n new rows are an fp32 Parameter. Rows of existing
tokens therefore cannot drift (the "retract" of cog-sdxl, which restores them after every step,
holds by construction and costs no optimizer state for 49k rows); `retract()` keeps the new rows'
spread near the vocabulary's, as cog-sdxl and diffusers' advanced script do, so the token stays
in the range the encoder was trained on.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

RENORM_POWER = 0.1
"""cog-sdxl's gentle pull of the new rows' std towards the vocabulary's, applied every step."""


class NewRowsEmbedding(nn.Module):
    """An embedding table whose rows `first..first+n` come from a trainable fp32 Parameter."""

    def __init__(self, base: nn.Embedding, first: int, rows: torch.Tensor) -> None:
        super().__init__()
        self.base = base
        self.first = first
        self.rows = nn.Parameter(rows.detach().float().clone())

    @property
    def weight(self) -> torch.Tensor:  # some callers read `.weight` (e.g. dtype/device probes)
        return self.base.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.base(ids)
        offset = ids - self.first
        is_new = (offset >= 0) & (offset < self.rows.shape[0])
        new = self.rows[offset.clamp(0, self.rows.shape[0] - 1)].to(out.dtype)
        return torch.where(is_new[..., None], new, out)


class TokenEmbeddings:
    """Adds the token to both encoders, trains its rows, and writes them back when done."""

    def __init__(self, pipe: Any, token: str, n_tokens: int, generator: torch.Generator) -> None:
        self.pipe = pipe
        self.token = token
        self.n_tokens = n_tokens
        self.tokens = [token] + [f"{token}_{i}" for i in range(1, n_tokens)]
        self.encoders = [
            (pipe.text_encoder, pipe.tokenizer),
            (pipe.text_encoder_2, pipe.tokenizer_2),
        ]
        self.wrappers: list[NewRowsEmbedding] = []
        self.target_std: list[float] = []
        for encoder, tokenizer in self.encoders:
            table = encoder.get_input_embeddings().weight
            std = float(table.detach().float().std())
            init = torch.randn(n_tokens, table.shape[1], generator=generator) * std
            pipe.load_textual_inversion(
                init.to(table.dtype), token=token, text_encoder=encoder, tokenizer=tokenizer
            )
            ids = tokenizer.convert_tokens_to_ids(self.tokens)
            if ids != list(range(ids[0], ids[0] + n_tokens)):
                raise RuntimeError(f"token rows of {token!r} are not contiguous: {ids}")
            base = encoder.get_input_embeddings()
            base.requires_grad_(False)
            wrapper = NewRowsEmbedding(base, ids[0], init.to(table.device))
            encoder.set_input_embeddings(wrapper)
            self.wrappers.append(wrapper)
            self.target_std.append(std)

    def parameters(self) -> list[nn.Parameter]:
        return [w.rows for w in self.wrappers]

    def caption(self, template: str, class_word: str) -> str:
        """A caption with the token expanded to its n tokens by the same code that expands a
        prompt at generation (`maybe_convert_prompt`: `ohwx` -> `ohwx ohwx_1`)."""
        text = template.format(token=self.token, cls=class_word).strip()
        return str(self.pipe.maybe_convert_prompt(text, self.pipe.tokenizer))

    @torch.no_grad()
    def retract(self) -> None:
        """Pull the new rows' spread towards the vocabulary's (old rows are frozen anyway)."""
        for wrapper, std in zip(self.wrappers, self.target_std, strict=True):
            current = float(wrapper.rows.std())
            if current > 0:
                wrapper.rows.mul_((std / current) ** RENORM_POWER)

    def freeze(self) -> None:
        """The pivot: from here on only the UNet LoRA learns."""
        for row in self.parameters():
            row.requires_grad_(False)
            row.grad = None

    def export(self) -> dict[str, torch.Tensor]:
        """`clip_l` / `clip_g` [n, dim] fp32 on the CPU: the artefact format."""
        return {
            key: w.rows.detach().float().cpu().clone()
            for key, w in zip(("clip_l", "clip_g"), self.wrappers, strict=True)
        }

    @torch.no_grad()
    def bind(self) -> None:
        """Unwrap: write the trained rows into the tables, so the pipeline generates with them."""
        for (encoder, _), wrapper in zip(self.encoders, self.wrappers, strict=True):
            base = wrapper.base
            base.weight[wrapper.first : wrapper.first + self.n_tokens] = wrapper.rows.to(
                base.weight.dtype
            )
            encoder.set_input_embeddings(base)
