"""A trained tune's model files, downloadable by its owner: take your model to A1111/ComfyUI.

`ckpt_url` (Astria's field for "the model file") is the kohya-format LoRA, the format A1111 and
ComfyUI load; `ckpt_urls` lists it with the diffusers-format LoRA and the embeddings
(`clip_l`/`clip_g`, the SDXL embedding convention of both UIs). Their URLs are under the worker's
`/files/` route, so the same Bearer key as every other call guards them; only these three names
are served, and only for a trained tune.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from backends.local.artefacts import EMBEDDINGS_FILE, LORA_FILE
from backends.local.store import DONE, Row
from backends.local.train import KOHYA_FILE

if TYPE_CHECKING:
    from backends.local import Worker

MODEL_FILES = (KOHYA_FILE, LORA_FILE, EMBEDDINGS_FILE)
"""What a tune's folder offers for download, `ckpt_url` first."""
ROUTE = "/files/models/{tune_id:int}/{name}"


def model_file_urls(row: Row, base: str) -> dict[str, Any]:
    """`ckpt_url` and `ckpt_urls` of a tune: null and empty until it is trained."""
    if row["state"] != DONE:
        return {"ckpt_url": None, "ckpt_urls": []}
    urls = [f"{base.rstrip('/')}/files/models/{row['id']}/{name}" for name in MODEL_FILES]
    return {"ckpt_url": urls[0], "ckpt_urls": urls}


async def download(worker: Worker, request: Request) -> Response:
    """GET /files/models/:tune_id/:name: one of a trained tune's model files."""
    tune_id, name = request.path_params["tune_id"], request.path_params["name"]
    row = await worker.store.get_tune(tune_id)
    path = worker.config.tunes_dir / str(tune_id) / name
    if row is None or row["state"] != DONE or name not in MODEL_FILES or not path.is_file():
        return JSONResponse({"error": "Not found"}, status_code=404)
    return FileResponse(path, media_type="application/octet-stream", filename=f"{tune_id}-{name}")
