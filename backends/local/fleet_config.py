"""The worker fleet's settings (issue #16): where the shared PostgreSQL and the S3 bucket are.

None of them is set in single-machine mode, the default. The S3 names are the standard AWS ones,
so the same variables serve the aws CLI and boto3's other tools.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from backends.local.env import EnvReader

DATABASE_VARIABLE = "WORKER_DATABASE_URL"
STORAGE_VARIABLE = "WORKER_STORAGE_URL"
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class FleetConfig:
    """WORKER_DATABASE_URL, WORKER_STORAGE_URL, the S3 client's AWS_* variables, and how the
    fleet treats dead and hung GPU workers.

    The database URL and the secret key stay out of `repr` (and so out of logs)."""

    database_url: str | None = field(default=None, repr=False)
    storage_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = field(default=None, repr=False)
    s3_region: str = DEFAULT_REGION
    stalled_s: float = 30.0
    """WORKER_STALLED_S: a GPU worker whose heartbeat is older than this is dead; its job runs
    again elsewhere (heartbeats go out every fifth of it)."""
    hung_s: float = 900.0
    """WORKER_HUNG_S: a job whose progress has not moved for this long hangs the GPU: the worker
    exits so the job moves to another machine. A base model loading reports no progress, so
    this stays above the longest model load."""
    max_tries: int = 3
    """WORKER_MAX_TRIES: a job that took down this many workers fails with a user error."""
    tune_cache: int = 20
    """WORKER_TUNE_CACHE: how many tunes' files a GPU worker keeps on its disk (least recently
    used go first)."""

    @property
    def enabled(self) -> bool:
        """Fleet mode: both the shared database and the shared storage are set."""
        return self.database_url is not None and self.storage_url is not None

    def secrets(self) -> list[str]:
        """What logs must never show: the database password (and its whole URL) and the S3
        secret key."""
        found = [value for value in (self.database_url, self.s3_secret_access_key) if value]
        password = urlsplit(self.database_url).password if self.database_url else None
        return [*found, unquote(password)] if password else found

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
            stalled_s=env.number("WORKER_STALLED_S", cls.stalled_s, minimum=2, maximum=3600),
            hung_s=env.number("WORKER_HUNG_S", cls.hung_s, minimum=1),
            max_tries=env.integer("WORKER_MAX_TRIES", cls.max_tries, minimum=1, maximum=100),
            tune_cache=env.integer("WORKER_TUNE_CACHE", cls.tune_cache, minimum=1),
        )
