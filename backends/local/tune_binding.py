"""Tune binding: a tune's LoRA and token embeddings put onto a loaded base model for a prompt.

`tune_applied(model, tune, strength)` holds the tune for the length of a prompt, one of two ways:
- with the hot-swap slot (`lora_slot`, the default): the LoRA is copied into the slot at the
  prompt's strength (a few milliseconds, no recompilation) and stays there after the prompt,
  and so do the tune's tokens; the next prompt of the same tune copies nothing, a prompt
  without a tune clears both;
- without it: the LoRA is loaded as a PEFT adapter with the tune's embeddings, and both stay
  while the next prompt uses the same tune (a pack's images bind once); a prompt of another
  tune, or of none, unloads them first, so it starts from the clean base model.
The embeddings are bound to the tune's token in both text encoders (`ohwx`, `ohwx_1`, ...:
what `load_textual_inversion` names n rows), so prompts say `ohwx` here as on Astria.

`TuneCache` reads tune folders (artefacts.py) and keeps the last few in host memory.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from backends.local.artefacts import LORA_FILE, TuneArtefacts, load_artefacts
from backends.local.errors import ArtefactError, GenerationError, SlotMisfit
from backends.local.models import LoadedModel

ADAPTER = "tune"
"""The PEFT adapter name of a tune loaded without the slot."""
TUNE_CACHE_SIZE = 8
"""Tunes kept in host memory (a rank-32 SDXL LoRA is ~90 MB): a user's next prompt re-reads
nothing from disk."""
ENCODER_KEYS = ("clip_l", "clip_g")
"""The embedding of each text encoder in a tune's files, in the pipeline's encoder order."""

TuneKey = tuple[str, int, int]
"""A tune folder's identity: its path, and its LoRA file's mtime and size (a retrained tune has
new files, hence a new key)."""


class TuneCache:
    """The artefacts of the last few tunes used, keyed by `TuneKey`."""

    def __init__(self, size: int = TUNE_CACHE_SIZE) -> None:
        self.size = size
        self._tunes: dict[TuneKey, TuneArtefacts] = {}

    def load(self, folder: Path) -> tuple[TuneArtefacts, TuneKey]:
        """The tune in `folder` and its key; a GenerationError when its files are unusable."""
        try:
            stat = (folder / LORA_FILE).stat()
            key = (str(folder.resolve()), stat.st_mtime_ns, stat.st_size)
            if key not in self._tunes:
                while len(self._tunes) >= self.size:
                    self._tunes.pop(next(iter(self._tunes)))
                self._tunes[key] = load_artefacts(folder)
            return self._tunes[key], key
        except (ArtefactError, OSError) as exc:
            raise GenerationError(f"the tune's model files are unusable: {exc}") from exc


@contextmanager
def tune_applied(
    model: LoadedModel,
    tune: TuneArtefacts | None,
    strength: float,
    key: Hashable | None = None,
) -> Iterator[bool]:
    """Have the tune's LoRA (at `strength`) and embeddings bound for a prompt (None: the clean
    base model). `key` names the tune's files: what is bound stays bound after the prompt, and
    a next prompt of the same key binds nothing again. Yields whether the LoRA was written into
    the model for this prompt (the engine counts binds)."""
    if model.slot is not None:
        with _slot_applied(model, tune, strength, key) as bound:
            yield bound
        return
    bound = False
    if tune is None or model.bound_tune != key:
        _release_adapter(model)
    if tune is not None and model.bound_tune != key:
        try:
            model.bound_tokens = _load_embeddings(model, tune)
            model.pipe.load_lora_weights(_scaled_lora(tune), adapter_name=ADAPTER)
        except BaseException:
            _release_adapter(model)
            raise
        model.bound_tune = key
        bound = True
    if tune is not None:
        model.pipe.set_adapters([ADAPTER], adapter_weights=[strength])
    yield bound


def _release_adapter(model: LoadedModel) -> None:
    """The PEFT path's unbind: the LoRA layers out of the UNet, the tokens out of CLIP."""
    if ADAPTER in _adapters(model.pipe):
        model.pipe.unload_lora_weights()  # takes the LoRA layers out too: a clean UNet
    _unbind_tokens(model)


@contextmanager
def _slot_applied(
    model: LoadedModel, tune: TuneArtefacts | None, strength: float, key: Hashable
) -> Iterator[bool]:
    """The hot-swap path: the LoRA stays in the slot after the prompt (the next prompt of
    the same tune and strength copies nothing), and so do the tune's tokens (the next tune
    with the same token overwrites their embedding rows instead of resizing both
    encoders' vocabularies twice); a prompt without a tune clears both."""
    slot = model.slot
    assert slot is not None
    if tune is None:
        slot.clear()
        _unbind_tokens(model)
        yield False
        return
    scale = strength * tune.manifest.lora_alpha / tune.manifest.rank
    slot_key = None if key is None else (key, scale)
    bound = slot_key is None or slot_key != slot.loaded
    try:
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
            _bind_tokens(model, tune)
            model.bound_tune = key
    except BaseException:
        _unbind_tokens(model)
        raise
    yield bound


def _bind_tokens(model: LoadedModel, tune: TuneArtefacts) -> None:
    """Bind the tune's tokens, overwriting the rows of the same token names when bound."""
    if model.bound_tokens != _token_names(tune):
        _unbind_tokens(model)
        model.bound_tokens = _load_embeddings(model, tune)
        return
    for key, (encoder, tokenizer) in zip(ENCODER_KEYS, _encoders(model.pipe), strict=True):
        emb = _checked_embedding(tune, key, encoder)
        ids = tokenizer.convert_tokens_to_ids(model.bound_tokens)
        weight = encoder.get_input_embeddings().weight
        weight.data[ids] = emb.to(device=weight.device, dtype=weight.dtype)


def _unbind_tokens(model: LoadedModel) -> None:
    tokens, model.bound_tokens = model.bound_tokens, []
    model.bound_tune = None
    if tokens:
        for encoder, tokenizer in _encoders(model.pipe):
            model.pipe.unload_textual_inversion(
                tokens=tokens, text_encoder=encoder, tokenizer=tokenizer
            )


def _load_embeddings(model: LoadedModel, tune: TuneArtefacts) -> list[str]:
    """Bind `token`, `token_1`, ... to the embedding rows in both encoders."""
    pipe = model.pipe
    token = tune.manifest.token
    tokens = _token_names(tune)
    loaded: list[tuple[Any, Any]] = []
    try:
        for key, (encoder, tokenizer) in zip(ENCODER_KEYS, _encoders(pipe), strict=True):
            emb = _checked_embedding(tune, key, encoder)
            pipe.load_textual_inversion(
                emb.to(model.dtype), token=token, text_encoder=encoder, tokenizer=tokenizer
            )
            loaded.append((encoder, tokenizer))
    except Exception:
        for encoder, tokenizer in loaded:
            pipe.unload_textual_inversion(tokens=tokens, text_encoder=encoder, tokenizer=tokenizer)
        raise
    return tokens


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
