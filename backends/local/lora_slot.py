"""LoRA hot-swap: one PEFT adapter slot, at a fixed max rank, that tunes are copied into.

Why not load/unload a PEFT adapter per prompt: injecting or deleting LoRA layers changes the
UNet's modules, so a compiled UNet recompiles (minutes) and CUDA graphs are re-captured. The
slot's layers are created once, before compile; a tune switch only writes into the slot's
tensors in place (the graph and its guards see the same modules and shapes).

Why our own copy instead of diffusers' `load_lora_weights(..., hotswap=True)`: (1) strength.
PEFT's `set_adapters` stores the scale as a new Python float on every layer, which dynamo guards
on, so each new strength recompiles; here strength and alpha/rank are folded into B and the
layer scale stays 1.0. (2) Fused QKV: the tune is trained on `to_q/to_k/to_v`; the slot sits on
the fused `to_qkv` (`to_kv` for cross-attention) and each part's A/B go into their own block
of its rank, so `B_qkv @ A_qkv` equals the three separate LoRAs exactly. (3) Exactness:
unused rank rows and layers the tune does not touch hold zeros, so strength 0 or no tune gives
the base model's output bit for bit (the LoRA branch adds exact zeros).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from backends.local.errors import SlotMisfit

SLOT = "slot"
_UNKNOWN = object()
"""`loaded` while the slot holds weights that no key names (a load without a key)."""
PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")
PREFIX = "unet."


@dataclass(frozen=True)
class _Part:
    """One of the tune's projections inside a slot layer: its rank block and output rows."""

    source: str  # the tune's module name, e.g. `down_blocks.1....attn1.to_k`
    rank_offset: int
    out_offset: int
    out_features: int


@dataclass(frozen=True)
class _Target:
    module: str  # the slot layer's module name (`...attn1.to_qkv` when fused)
    parts: tuple[_Part, ...]


class LoraSlot:
    """The slot inside a UNet; `load` a tune into it, `clear` it back to the base model.

    `resizable` (an eager UNet): a tune of another rank rebuilds the slot at exactly its rank
    (no padding, so the math is the plain PEFT adapter's). A compiled UNet's slot is fixed at
    the max rank: smaller ranks are zero-padded, larger ones refused."""

    def __init__(self, unet: Any, rank: int, dtype: Any, *, resizable: bool = False) -> None:
        self.unet = unet
        self.dtype = dtype
        self.resizable = resizable
        self._build(rank)

    def _build(self, rank: int) -> None:
        from peft import LoraConfig

        unet, dtype = self.unet, self.dtype
        if SLOT in getattr(unet, "peft_config", {}):
            unet.delete_adapters(SLOT)
        self.rank = rank
        self.targets = _targets(unet, rank)
        self._by_source = {p.source: t for t in self.targets for p in t.parts}
        patterns = {t.module: len(t.parts) * rank for t in self.targets if len(t.parts) > 1}
        config = LoraConfig(
            r=rank,
            lora_alpha=rank,
            target_modules=[t.module for t in self.targets],
            rank_pattern=patterns,
            alpha_pattern=patterns,
            init_lora_weights=False,
        )
        unet.add_adapter(config, adapter_name=SLOT)
        self._layers = [unet.get_submodule(t.module) for t in self.targets]
        for layer in self._layers:
            layer.lora_A[SLOT].to(dtype)
            layer.lora_B[SLOT].to(dtype)
        self.loaded: Hashable | None = _UNKNOWN
        self.clear()

    @property
    def _weights(self) -> list[tuple[Any, Any]]:
        """(A, B) per target, looked up each time: offload hooks and `.to()` may swap the
        tensors under a module, the modules stay."""
        return [(layer.lora_A[SLOT].weight, layer.lora_B[SLOT].weight) for layer in self._layers]

    def clear(self) -> None:
        """Zero the slot: the UNet computes the base model again."""
        if self.loaded is None:
            return
        import torch

        with torch.no_grad():
            for a, b in self._weights:
                a.zero_()
                b.zero_()
        self.loaded = None

    def load(self, lora: Mapping[str, Any], scale: float, key: Hashable | None = None) -> None:
        """Write a tune's LoRA (PEFT keys, `unet.` prefixed) into the slot at `scale`
        (strength x alpha/rank). A repeat of the loaded `key` costs nothing."""
        if key is not None and key == self.loaded:
            return
        pairs = _pairs(lora)
        ranks = {a.shape[0] for a, _ in pairs.values()}
        if self.resizable and ranks and ranks != {self.rank}:
            self._build(max(ranks))
        for source, (a, _) in pairs.items():
            if source not in self._by_source:
                raise SlotMisfit(f"the tune's LoRA has a layer the slot lacks: {source}")
            if a.shape[0] > self.rank:
                raise SlotMisfit(
                    f"the tune's LoRA rank {a.shape[0]} is above the slot's {self.rank}"
                    " (WORKER_LORA_MAX_RANK)"
                )
        self.loaded = _UNKNOWN
        self._write(pairs, scale)
        self.loaded = _UNKNOWN if key is None else key

    def _write(self, pairs: dict[str, tuple[Any, Any]], scale: float) -> None:
        import torch

        with torch.no_grad():
            for target, (slot_a, slot_b) in zip(self.targets, self._weights, strict=True):
                slot_a.zero_()
                slot_b.zero_()
                for part in target.parts:
                    if part.source not in pairs:
                        continue
                    a, b = pairs[part.source]
                    r = a.shape[0]
                    rows = slice(part.rank_offset, part.rank_offset + r)
                    outs = slice(part.out_offset, part.out_offset + part.out_features)
                    slot_a[rows].copy_(a)
                    slot_b[outs, rows].copy_(b.to(slot_b.device, torch.float32) * scale)


def _pairs(lora: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """`unet.X.lora_A.weight` / `unet.X.lora_B.weight` -> {X: (A, B)}."""
    out: dict[str, list[Any]] = {}
    for key, value in lora.items():
        name = key.removeprefix(PREFIX)
        for index, suffix in enumerate((".lora_A.weight", ".lora_B.weight")):
            if name.endswith(suffix):
                out.setdefault(name.removesuffix(suffix), [None, None])[index] = value
                break
        else:
            raise SlotMisfit(f"not a LoRA A/B weight: {key}")
    broken = [name for name, ab in out.items() if ab[0] is None or ab[1] is None]
    if broken:
        raise SlotMisfit(f"LoRA layer without its A or B weight: {broken[0]}")
    return {name: (ab[0], ab[1]) for name, ab in out.items()}


def _targets(unet: Any, rank: int) -> list[_Target]:
    """Every attention projection of the UNet, as the attention processors use them."""
    from diffusers.models.attention_processor import Attention

    targets = []
    for name, module in unet.named_modules():
        if not isinstance(module, Attention):
            continue
        fused = "Fused" in type(module.processor).__name__
        if fused and hasattr(module, "to_qkv"):
            groups = [("to_qkv", ("to_q", "to_k", "to_v")), ("to_out.0", ("to_out.0",))]
        elif fused and hasattr(module, "to_kv"):
            groups = [("to_q", ("to_q",)), ("to_kv", ("to_k", "to_v")), ("to_out.0", ("to_out.0",))]
        else:
            groups = [(p, (p,)) for p in PROJECTIONS]
        for slot_name, sources in groups:
            parts, out_offset = [], 0
            for index, source in enumerate(sources):
                features = module.get_submodule(source).out_features
                parts.append(_Part(f"{name}.{source}", index * rank, out_offset, features))
                out_offset += features
            targets.append(_Target(f"{name}.{slot_name}", tuple(parts)))
    return targets
