"""What a base-model spec (SDXL_MODEL, SDXL_EXTRA_MODELS) says by its name alone, without
loading anything: the two built-in random models and the side each model was trained at.

Kept apart from models.py (which loads specs into pipelines and needs torch), so request
validation and the training recipe can ask without importing the GPU stack.
"""

from __future__ import annotations

TINY = "tiny"
"""A tiny random SDXL built in code: tests and first runs; its images are noise."""
RANDOM_FULL = "random"
"""Full-size SDXL with random weights: the real cost without weights; noise too."""
TINY_NATIVE_SIZE = 128
SDXL_NATIVE_SIZE = 1024


def native_size(spec: str) -> int:
    """The side a model was trained at: default w/h and the face-redraw resolution."""
    return TINY_NATIVE_SIZE if spec == TINY else SDXL_NATIVE_SIZE


def makes_noise(spec: str) -> bool:
    """The built-in random models: whatever they are asked, their images are noise."""
    return spec in (TINY, RANDOM_FULL)
