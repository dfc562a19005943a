"""Where the worker keeps its files (training photos, images, tune folders), behind one small
interface: on the local disk (single-machine mode, the default) or in an S3-compatible bucket
(the fleet, `WORKER_STORAGE_URL=s3://bucket/prefix`).

Keys are relative paths such as `prompts/100000001/0.png`, the same strings the store's rows
hold. The S3 side is the real boto3 client with the standard AWS_* variables
(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION); its blocking calls run
in a thread so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from backends.local.errors import ConfigError
from backends.local.fleet_config import STORAGE_VARIABLE, FleetConfig

S3Client = Any
"""boto3's S3 client: a class boto3 builds at run time, so it has no importable type."""
PRESIGNED_SECONDS = 3600
"""How long a presigned link stays valid: long enough for a client to fetch its images."""


class FileMissing(LookupError):
    """No file under that key."""


class BadKey(ValueError):
    """A key that would leave the storage root (`..`, absolute), is empty, or holds a control
    character (a NUL: no file on disk can be named so, and none of ours in a bucket is)."""


def check_key(key: str) -> str:
    """`key` if it is a plain relative path; BadKey otherwise (never trusts a client's path)."""
    parts = PurePosixPath(key).parts
    unsafe = not key or key.startswith("/") or "\\" in key or not parts or ".." in parts
    if unsafe or any(ord(char) < 32 or char == "\x7f" for char in key):
        raise BadKey(f"not a storage key: {key!r}")
    return key


class FileStorage(ABC):
    """Put, read and remove files by key; a link a client can fetch directly where there is one."""

    @abstractmethod
    async def put(self, key: str, data: bytes, content_type: str | None = None) -> None: ...

    @abstractmethod
    async def read(self, key: str) -> bytes:
        """The file's bytes; FileMissing when there is none."""

    @abstractmethod
    async def exists(self, key: str) -> bool: ...

    @abstractmethod
    async def delete_folder(self, folder: str) -> int:
        """Remove every file under `folder/`; how many there were."""

    @abstractmethod
    async def presigned_url(self, key: str, expires_s: int = PRESIGNED_SECONDS) -> str | None:
        """A time-limited URL to fetch the file without credentials; None where the API serves
        files itself (the local disk)."""


class LocalStorage(FileStorage):
    """Files under one folder on this machine (today's single-machine layout)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    async def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        await asyncio.to_thread(_write_atomically, self.path(key), data)

    async def read(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self.path(key).read_bytes)
        except (FileNotFoundError, IsADirectoryError) as error:
            raise FileMissing(key) from error

    async def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    async def delete_folder(self, folder: str) -> int:
        target = self.path(folder)
        count = sum(1 for p in target.rglob("*") if p.is_file()) if target.is_dir() else 0
        await asyncio.to_thread(shutil.rmtree, target, True)
        return count

    async def presigned_url(self, key: str, expires_s: int = PRESIGNED_SECONDS) -> str | None:
        check_key(key)
        return None


def _write_atomically(path: Path, data: bytes) -> None:
    """Readers never see half a file: write beside it, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_bytes(data)
    partial.replace(path)


class S3Storage(FileStorage):
    """Files in an S3-compatible bucket under a prefix, through boto3 (run in a thread)."""

    def __init__(self, client: S3Client, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def object_key(self, key: str) -> str:
        return f"{self.prefix}/{check_key(key)}" if self.prefix else check_key(key)

    async def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        await asyncio.to_thread(
            self.client.put_object,
            Bucket=self.bucket,
            Key=self.object_key(key),
            Body=data,
            **extra,
        )

    async def read(self, key: str) -> bytes:
        try:
            answer = await asyncio.to_thread(
                self.client.get_object, Bucket=self.bucket, Key=self.object_key(key)
            )
        except self.client.exceptions.NoSuchKey as error:
            raise FileMissing(key) from error
        return await asyncio.to_thread(answer["Body"].read)

    async def exists(self, key: str) -> bool:
        answer = await asyncio.to_thread(
            self.client.list_objects_v2, Bucket=self.bucket, Prefix=self.object_key(key), MaxKeys=1
        )
        return any(item["Key"] == self.object_key(key) for item in answer.get("Contents", []))

    async def delete_folder(self, folder: str) -> int:
        return await asyncio.to_thread(self._delete_folder, self.object_key(folder).rstrip("/"))

    def _delete_folder(self, folder_key: str) -> int:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{folder_key}/"
        )
        count = 0
        for page in pages:  # at most 1000 keys a page: one delete_objects call each
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}
                )
                count += len(keys)
        return count

    async def presigned_url(self, key: str, expires_s: int = PRESIGNED_SECONDS) -> str | None:
        return await asyncio.to_thread(
            self.client.generate_presigned_url,
            "get_object",
            Params={"Bucket": self.bucket, "Key": self.object_key(key)},
            ExpiresIn=expires_s,
        )


def storage_from_env(files_dir: Path, environ: Mapping[str, str] | None = None) -> FileStorage:
    """The storage WORKER_STORAGE_URL names; unset: the local `files_dir` (single machine)."""
    return open_storage(files_dir, FleetConfig.from_env(environ))


def open_storage(files_dir: Path, config: FleetConfig) -> FileStorage:
    url = config.storage_url
    if url is None:
        return LocalStorage(files_dir)
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ConfigError(f"{STORAGE_VARIABLE}={url!r}: use s3://bucket/prefix")
    return S3Storage(s3_client(config), parts.netloc, parts.path)


def s3_client(config: FleetConfig) -> S3Client:
    """A boto3 S3 client from the standard variables; without AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY, boto3's own chain finds the keys (a profile, an instance role)."""
    import boto3  # the fleet extra: single-machine mode never loads it
    from botocore.config import Config

    endpoint = config.s3_endpoint_url
    options: dict[str, Any] = {"retries": {"mode": "standard"}}
    if endpoint:  # S3-compatible servers (SeaweedFS, Garage) serve buckets by path
        options["s3"] = {"addressing_style": "path"}
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=config.s3_access_key_id,
        aws_secret_access_key=config.s3_secret_access_key,
        region_name=config.s3_region,
        config=Config(**options),
    )
