"""The worker's file storage: one contract run against the local disk and against S3 (moto's
server on 127.0.0.1, spoken to by the real boto3 client), plus WORKER_STORAGE_URL parsing."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from backends.local.errors import ConfigError
from backends.local.fleet_config import FleetConfig
from backends.local.storage import (
    BadKey,
    FileMissing,
    FileStorage,
    LocalStorage,
    S3Storage,
    storage_from_env,
)
from tests.fakes.s3 import FakeS3


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> FileStorage:
    if request.param == "local":
        return LocalStorage(tmp_path / "files")
    bucket = request.getfixturevalue("s3_bucket")
    fake: FakeS3 = request.getfixturevalue("fake_s3")
    environ = {**fake.env, "WORKER_STORAGE_URL": f"s3://{bucket}/fleet/a"}
    return storage_from_env(tmp_path / "unused", environ)


async def test_files_round_trip_and_overwrite(storage: FileStorage) -> None:
    await storage.put("prompts/100000001/0.png", b"\x89PNG one", "image/png")
    await storage.put("prompts/100000001/1.png", b"two")
    assert await storage.read("prompts/100000001/0.png") == b"\x89PNG one"
    await storage.put("prompts/100000001/0.png", b"replaced")
    assert await storage.read("prompts/100000001/0.png") == b"replaced"
    assert await storage.exists("prompts/100000001/1.png")
    assert not await storage.exists("prompts/100000001/2.png")
    assert not await storage.exists("prompts/100000001")  # a folder is not a file


async def test_a_missing_file_is_file_missing(storage: FileStorage) -> None:
    with pytest.raises(FileMissing):
        await storage.read("prompts/1/0.png")


async def test_deleting_a_folder_keeps_its_neighbours(storage: FileStorage) -> None:
    for key in ("tunes/1/0.jpg", "tunes/1/sub/1.jpg", "tunes/10/0.jpg", "tunes/1.jpg"):
        await storage.put(key, key.encode())
    assert await storage.delete_folder("tunes/1") == 2
    assert not await storage.exists("tunes/1/0.jpg")
    assert not await storage.exists("tunes/1/sub/1.jpg")
    assert await storage.read("tunes/10/0.jpg") == b"tunes/10/0.jpg"
    assert await storage.read("tunes/1.jpg") == b"tunes/1.jpg"
    assert await storage.delete_folder("tunes/1") == 0


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../x", "tunes/../../x", "a\\b", "a\x00b.png"])
async def test_keys_never_leave_the_root(storage: FileStorage, key: str) -> None:
    with pytest.raises(BadKey):
        await storage.put(key, b"x")
    with pytest.raises(BadKey):
        await storage.read(key)


async def test_s3_gives_a_presigned_link_that_needs_no_credentials(
    s3_bucket: str, fake_s3: FakeS3, tmp_path: Path
) -> None:
    storage = storage_from_env(
        tmp_path, {**fake_s3.env, "WORKER_STORAGE_URL": f"s3://{s3_bucket}/p"}
    )
    assert isinstance(storage, S3Storage) and (storage.bucket, storage.prefix) == (s3_bucket, "p")
    await storage.put("prompts/5/0.png", b"image bytes", "image/png")
    url = await storage.presigned_url("prompts/5/0.png", expires_s=60)
    assert url is not None and "Signature" in url and f"/{s3_bucket}/p/prompts/5/0.png" in url
    async with httpx.AsyncClient() as client:
        answer = await client.get(url)
    assert answer.status_code == 200 and answer.content == b"image bytes"
    assert answer.headers["content-type"] == "image/png"


async def test_s3_prefix_keeps_fleets_apart(
    s3_bucket: str, fake_s3: FakeS3, tmp_path: Path
) -> None:
    one = storage_from_env(tmp_path, {**fake_s3.env, "WORKER_STORAGE_URL": f"s3://{s3_bucket}/one"})
    two = storage_from_env(
        tmp_path, {**fake_s3.env, "WORKER_STORAGE_URL": f"s3://{s3_bucket}/two/"}
    )
    await one.put("tunes/1/0.jpg", b"one")
    assert not await two.exists("tunes/1/0.jpg")
    assert await two.delete_folder("tunes/1") == 0
    assert await one.read("tunes/1/0.jpg") == b"one"


async def test_local_disk_serves_files_itself(tmp_path: Path) -> None:
    storage = storage_from_env(tmp_path / "files", {})
    assert isinstance(storage, LocalStorage)
    await storage.put("prompts/1/0.png", b"x")
    assert (tmp_path / "files" / "prompts" / "1" / "0.png").read_bytes() == b"x"
    assert await storage.presigned_url("prompts/1/0.png") is None
    assert not list((tmp_path / "files").rglob("*.partial"))  # written beside, then renamed


@pytest.mark.parametrize("value", ["/data/files", "http://bucket/prefix", "s3:///prefix"])
def test_a_bad_storage_url_is_refused_by_name(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="WORKER_STORAGE_URL"):
        storage_from_env(tmp_path, {"WORKER_STORAGE_URL": value})


def test_a_bad_endpoint_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="AWS_ENDPOINT_URL"):
        storage_from_env(
            tmp_path, {"WORKER_STORAGE_URL": "s3://b/p", "AWS_ENDPOINT_URL": "localhost:9000"}
        )


def test_the_fleet_config_keeps_its_secrets_out_of_its_repr() -> None:
    config = FleetConfig.from_env(
        {
            "WORKER_DATABASE_URL": "postgresql://u:db-secret@h/db",
            "WORKER_STORAGE_URL": "s3://b/p",
            "AWS_SECRET_ACCESS_KEY": "s3-secret",
            "AWS_REGION": " eu-west-3 ",
        }
    )
    assert (config.storage_url, config.s3_region) == ("s3://b/p", "eu-west-3")
    assert config.s3_secret_access_key == "s3-secret"
    assert "db-secret" not in repr(config) and "s3-secret" not in repr(config)
