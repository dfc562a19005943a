"""Store rows -> Astria's JSON shapes (docs/architecture.md §2).

Beyond Astria's fields, both objects carry `status` (`JobStatus`: queued/processing/done/failed) and
`progress` (0..1), and prompts a `queue_position` (0 = running or done), so a client can show
progress; Astria clients ignore unknown fields.
"""

from __future__ import annotations

from typing import Any

from backends.base import SDXL_BASE_TUNE_ID, JobStatus
from backends.local.records import JobState, Row
from backends.local.tune_files import model_file_urls

STATUS = {
    JobState.QUEUED: JobStatus.QUEUED,
    JobState.RUNNING: JobStatus.PROCESSING,
    JobState.DONE: JobStatus.DONE,
    JobState.FAILED: JobStatus.FAILED,
}


def file_url(base: str, rel_path: str) -> str:
    return f"{base.rstrip('/')}/files/{rel_path}"


def tune_json(row: Row, base: str, progress: float | None = None) -> dict[str, Any]:
    state = row["state"]
    return {
        "id": row["id"],
        "title": row["title"],
        "name": row["name"],
        "is_api": True,
        "token": row["token"],
        "eta": None,
        "callback": row["callback"],
        "trained_at": row["trained_at"],
        "started_training_at": row["started_training_at"],
        "expires_at": None,
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "model_type": row["model_type"],
        "base_tune_id": row["base_tune_id"],
        "branch": row["branch"] or "sdxl1",
        "args": None,
        "steps": row["steps"],
        "face_crop": None if row["face_crop"] is None else bool(row["face_crop"]),
        **model_file_urls(row, base),
        "url": f"{base.rstrip('/')}/tunes/{row['id']}.json",
        "orig_images": [file_url(base, p) for p in row["images"]],
        "error": row["error"],
        "status": STATUS[state],
        "progress": 1.0 if state == JobState.DONE else (progress or 0.0),
    }


def base_tune_json(tune_id: int, base: str, created_at: str) -> dict[str, Any]:
    """A base model, shown as Astria shows its gallery tunes: trained, no token."""
    row = {
        "id": tune_id,
        "title": "SDXL 1.0" if tune_id == SDXL_BASE_TUNE_ID else f"Base model {tune_id}",
        "name": None,
        "token": None,
        "callback": None,
        "trained_at": created_at,
        "started_training_at": created_at,
        "created_at": created_at,
        "updated_at": created_at,
        "model_type": None,
        "base_tune_id": None,
        "branch": "sdxl1",
        "steps": None,
        "face_crop": None,
        "images": [],
        "error": None,
        "state": JobState.DONE,
    }
    return tune_json(row, base)


def prompt_json(
    row: Row, base: str, progress: float | None = None, queue_position: int = 0
) -> dict[str, Any]:
    params = row["params"]
    state = row["state"]
    images = [file_url(base, p) for p in row["images"]] if state == JobState.DONE else []
    return {
        "id": row["id"],
        "callback": params.get("callback"),
        "text": params["text"],
        "negative_prompt": params.get("negative_prompt", ""),
        "cfg_scale": str(params.get("cfg_scale")),
        "steps": params.get("steps"),
        "seed": params.get("seed"),
        "trained_at": row["finished_at"] if state == JobState.DONE else None,
        "started_training_at": row["started_at"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "tune_id": row["tune_id"],
        "url": f"{base.rstrip('/')}/tunes/{row['tune_id']}/prompts/{row['id']}.json",
        "images": images,
        "user_error": row["user_error"],
        "num_images": params.get("num_images"),
        "w": params.get("w"),
        "h": params.get("h"),
        "ar": params.get("ar"),
        "scheduler": params.get("scheduler"),
        "super_resolution": params.get("super_resolution"),
        "inpaint_faces": params.get("inpaint_faces"),
        "hires_fix": params.get("hires_fix"),
        "pack_id": params.get("pack_id"),
        "orig_prompt_id": params.get("orig_prompt_id"),
        "status": STATUS[state],
        "progress": 1.0 if state == JobState.DONE else (progress or 0.0),
        "queue_position": queue_position,
        **_best_of(row if state == JobState.DONE else {}),
    }


def _best_of(row: Row) -> dict[str, Any]:
    """OVERGENERATE's choice: per delivered image (same order as `images`) its score, seed,
    face count, sharpness and likeness, and how many images were made (best_of.py)."""
    saved = row.get("scores") or {}
    return {"scores": saved.get("scores"), "generated_images": saved.get("generated")}
