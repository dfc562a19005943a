"""The worker fleet's settings (issue #16): where the shared PostgreSQL and the S3 bucket are.

None of them is set in single-machine mode, the default. The S3 names are the standard AWS ones,
so the same variables serve the aws CLI and boto3's other tools.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from backends.local.env import EnvReader

DATABASE_VARIABLE = "WORKER_DATABASE_URL"
STORAGE_VARIABLE = "WORKER_STORAGE_URL"
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class FleetConfig:
    """WORKER_DATABASE_URL, WORKER_STORAGE_URL and the S3 client's AWS_* variables.

    The database URL and the secret key stay out of `repr` (and so out of logs)."""

    database_url: str | None = field(default=None, repr=False)
    storage_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = field(default=None, repr=False)
    s3_region: str = DEFAULT_REGION

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FleetConfig:
        env = EnvReader(environ)
        return cls(
            database_url=env.optional(DATABASE_VARIABLE),
            storage_url=env.optional(STORAGE_VARIABLE),
            s3_endpoint_url=env.url("AWS_ENDPOINT_URL"),
            s3_access_key_id=env.optional("AWS_ACCESS_KEY_ID"),
            s3_secret_access_key=env.optional("AWS_SECRET_ACCESS_KEY"),
            s3_region=env.text("AWS_REGION", DEFAULT_REGION),
        )
