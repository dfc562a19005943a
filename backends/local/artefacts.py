"""The on-disk format of a trained tune, fixed here so the trainer writes what generation reads.

A tune folder holds three files:

- `lora.safetensors`: the UNet LoRA in diffusers/PEFT format, i.e. the state dict that
  `StableDiffusionXLPipeline.save_lora_weights(unet_lora_layers=...)` writes: keys like
  `unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight`. Alpha is not
  in the keys; the manifest carries it (alpha == rank unless it says otherwise), and so does the
  safetensors metadata, so any diffusers-based tool loads the file as is.
- `embeddings.safetensors`: the pivotal-tuning token embeddings, `clip_l` [n_tokens, 768] for
  text_encoder and `clip_g` [n_tokens, 1280] for text_encoder_2 (the A1111/ComfyUI SDXL
  embedding convention, also what diffusers' advanced SDXL script writes).
- `manifest.json`: token, class word, n_tokens, base model, rank, alpha, created, version.

The prompt names the tune by its `token` (`ohwx`); at generation the token is bound to the
n embedding rows (it expands to `ohwx ohwx_1 ...`), so the same text works here and on Astria.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backends.local.errors import ArtefactError

if TYPE_CHECKING:
    import torch

FORMAT_VERSION = 1
LORA_FILE = "lora.safetensors"
EMBEDDINGS_FILE = "embeddings.safetensors"
KOHYA_FILE = "lora_kohya.safetensors"
"""The LoRA again in kohya's key format, what A1111 and ComfyUI load (`tune_files`)."""
MANIFEST_FILE = "manifest.json"
EMBEDDING_KEYS = ("clip_l", "clip_g")
LORA_KEY_PREFIX = "unet."


@dataclass(frozen=True)
class Manifest:
    """What a tune folder says about itself."""

    token: str
    class_word: str
    n_tokens: int
    base_model: str
    rank: int
    alpha: float | None = None
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    format_version: int = FORMAT_VERSION

    @property
    def lora_alpha(self) -> float:
        return float(self.alpha if self.alpha is not None else self.rank)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["class"] = data.pop("class_word")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        try:
            return cls(
                token=str(data["token"]),
                class_word=str(data.get("class", "")),
                n_tokens=int(data["n_tokens"]),
                base_model=str(data.get("base_model", "")),
                rank=int(data["rank"]),
                alpha=None if data.get("alpha") is None else float(data["alpha"]),
                created_at=str(data.get("created_at", "")),
                format_version=int(data.get("format_version", FORMAT_VERSION)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtefactError(f"bad {MANIFEST_FILE}: {exc}") from exc


@dataclass
class TuneArtefacts:
    """A loaded tune: LoRA state dict (unet.* PEFT keys), embeddings, manifest."""

    manifest: Manifest
    lora: dict[str, torch.Tensor]
    embeddings: dict[str, torch.Tensor]


def save_artefacts(
    folder: Path,
    manifest: Manifest,
    lora: dict[str, torch.Tensor],
    embeddings: dict[str, torch.Tensor],
) -> None:
    """Write the three files (LoRA keys without the `unet.` prefix get it), atomically each."""
    from safetensors.torch import save_file

    _check_embeddings(embeddings, manifest.n_tokens)
    folder.mkdir(parents=True, exist_ok=True)
    lora = {
        (k if k.startswith(LORA_KEY_PREFIX) else LORA_KEY_PREFIX + k): v.contiguous()
        for k, v in lora.items()
    }
    metadata = {"format": "pt", "rank": str(manifest.rank), "alpha": str(manifest.lora_alpha)}
    _atomic(folder / LORA_FILE, lambda p: save_file(lora, str(p), metadata=metadata))
    emb = {k: embeddings[k].contiguous() for k in EMBEDDING_KEYS}
    _atomic(folder / EMBEDDINGS_FILE, lambda p: save_file(emb, str(p), metadata={"format": "pt"}))
    text = json.dumps(manifest.to_json(), indent=2)
    _atomic(folder / MANIFEST_FILE, lambda p: p.write_text(text, encoding="utf-8"))


def load_artefacts(folder: Path) -> TuneArtefacts:
    """Read and check a tune folder. Accepts cog-sdxl's `text_encoders_0/1` keys as an alias."""
    from safetensors.torch import load_file

    try:
        manifest = Manifest.from_json(json.loads((folder / MANIFEST_FILE).read_text("utf-8")))
        lora = load_file(str(folder / LORA_FILE))
        raw = load_file(str(folder / EMBEDDINGS_FILE))
    except (OSError, ValueError) as exc:
        raise ArtefactError(f"cannot read tune artefacts in {folder}: {exc}") from exc
    alias = {"text_encoders_0": "clip_l", "text_encoders_1": "clip_g"}
    embeddings = {alias.get(k, k): v for k, v in raw.items()}
    _check_embeddings(embeddings, manifest.n_tokens)
    if not lora or not all(k.startswith(LORA_KEY_PREFIX) for k in lora):
        raise ArtefactError(f"{LORA_FILE} holds no diffusers-format UNet LoRA (unet.* keys)")
    return TuneArtefacts(manifest=manifest, lora=lora, embeddings=embeddings)


def has_artefacts(folder: Path) -> bool:
    return all((folder / name).is_file() for name in (LORA_FILE, EMBEDDINGS_FILE, MANIFEST_FILE))


def _check_embeddings(embeddings: dict[str, Any], n_tokens: int) -> None:
    for key in EMBEDDING_KEYS:
        tensor = embeddings.get(key)
        if tensor is None or tensor.ndim != 2 or tensor.shape[0] != n_tokens:
            shape = None if tensor is None else tuple(tensor.shape)
            raise ArtefactError(f"embedding {key!r} must be [{n_tokens}, dim], got {shape}")


def _atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    tmp.replace(path)
