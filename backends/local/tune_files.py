"""A trained tune's model files, downloadable by its owner: take your model to A1111/ComfyUI.

`ckpt_url` (Astria's field for "the model file") is the kohya-format LoRA, the format A1111 and
ComfyUI load; `ckpt_urls` lists it with the diffusers-format LoRA and the embeddings
(`clip_l`/`clip_g`, the SDXL embedding convention of both UIs). Their URLs are under the worker's
`/files/` route, so the same Bearer key as every other call guards them; only these three names
are served, and only for a trained tune.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backends.local.artefacts import EMBEDDINGS_FILE, KOHYA_FILE, LORA_FILE
from backends.local.errors import HTTPError
from backends.local.records import JobState, Row

MODEL_FILES = (KOHYA_FILE, LORA_FILE, EMBEDDINGS_FILE)
"""What a tune's folder offers for download, `ckpt_url` first."""
ROUTE = "/files/models/{tune_id:int}/{name}"


def model_file_urls(row: Row, base: str) -> dict[str, Any]:
    """`ckpt_url` and `ckpt_urls` of a tune: null and empty until it is trained."""
    if row["state"] != JobState.DONE:
        return {"ckpt_url": None, "ckpt_urls": []}
    urls = [f"{base.rstrip('/')}/files/models/{row['id']}/{name}" for name in MODEL_FILES]
    return {"ckpt_url": urls[0], "ckpt_urls": urls}


def check_downloadable(row: Row | None, name: str) -> Row:
    """A 404 unless `row` is a trained tune and `name` one of its model files' names."""
    if row is None or row["state"] != JobState.DONE or name not in MODEL_FILES:
        raise HTTPError(404, "Not found")
    return row


def model_file(row: Row | None, tunes_dir: Path, name: str) -> Path:
    """The path of one of a trained tune's model files; a 404 for anything else."""
    path = tunes_dir / str(check_downloadable(row, name)["id"]) / name
    if not path.is_file():
        raise HTTPError(404, "Not found")
    return path
