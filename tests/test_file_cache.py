"""A GPU worker's tune cache: fetched from storage once, kept on disk, least recently used
evicted first (real files on the local storage; the S3 side is the same interface)."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.local.artefacts import has_artefacts
from backends.local.file_cache import TuneFileCache, upload_tune
from backends.local.storage import FileMissing, LocalStorage


def trained(folder: Path, marker: str) -> Path:
    folder.mkdir(parents=True)
    for name in ("lora.safetensors", "embeddings.safetensors", "manifest.json"):
        (folder / name).write_text(f"{marker} {name}")
    return folder


async def test_tunes_are_fetched_once_and_the_least_recently_used_is_evicted(
    tmp_path: Path,
) -> None:
    storage = LocalStorage(tmp_path / "bucket")
    for tune_id in (1, 2, 3):
        await upload_tune(storage, tune_id, trained(tmp_path / f"made-{tune_id}", str(tune_id)))
    cache = TuneFileCache(storage, tmp_path / "cache", capacity=2)

    one = await cache.folder(1)
    assert has_artefacts(one) and (one / "lora.safetensors").read_text() == "1 lora.safetensors"
    await cache.folder(2)
    assert await cache.folder(1) == one and cache.fetches == 2  # a hit fetches nothing
    await cache.folder(3)  # over capacity: 2 was used least recently
    assert cache.fetches == 3
    assert has_artefacts(one) and not (tmp_path / "cache" / "2").exists()
    await cache.folder(2)
    assert cache.fetches == 4 and not (tmp_path / "cache" / "1").exists()


async def test_a_tune_missing_from_storage_leaves_nothing_behind(tmp_path: Path) -> None:
    cache = TuneFileCache(LocalStorage(tmp_path / "bucket"), tmp_path / "cache", capacity=2)
    with pytest.raises(FileMissing):
        await cache.folder(7)
    assert not (tmp_path / "cache" / "7").exists()
