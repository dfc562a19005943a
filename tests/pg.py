"""PostgreSQL for tests: the real server that TEST_DATABASE_URL names (`.ci/run` starts it).

Each test gets a throwaway database of its own, dropped afterwards. Where no server can be
reached the PostgreSQL tests are skipped with the reason, except in CI (`CI=true`), where a
missing server fails them: CI must never pass by skipping the fleet's store.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

DEFAULT_URL = "postgresql://photoshoot:photoshoot@127.0.0.1:5432/photoshoot_test"
"""What `.ci/run` creates; used when TEST_DATABASE_URL is not set."""


def server_url() -> str:
    return os.environ.get("TEST_DATABASE_URL") or DEFAULT_URL


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unreachable_reason(url: str) -> str | None:
    """None when the server answers; otherwise why not, without the password."""
    try:
        with psycopg.connect(url, connect_timeout=3):
            return None
    except psycopg.Error as error:
        where = conninfo_to_dict(url)
        return (
            f"no PostgreSQL at {where.get('host')}:{where.get('port', 5432)} "
            f"as {where.get('user')} ({type(error).__name__}: {str(error).strip()[:200]}); "
            "start it with `pg_ctlcluster 15 main start` or run .ci/run"
        )


def require_server(url: str) -> None:
    """Skip the test (fail it in CI) when the server cannot be reached."""
    reason = unreachable_reason(url)
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


@contextmanager
def throwaway_database(url: str) -> Iterator[str]:
    """A new empty database on the server at `url`; yields its URL, drops it afterwards."""
    name = f"pstest_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(url, dbname=name)
    finally:
        drop_database(url, name)


def drop_database(url: str, name: str, tries: int = 40) -> None:
    """DROP DATABASE ... WITH (FORCE), tried again while it cannot end a session that is not
    ours to end: the server's autovacuum worker, busy on a new database's tables for a moment."""
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    for attempt in range(tries):
        try:
            with psycopg.connect(url, autocommit=True) as admin:
                admin.execute(drop)
            return
        except psycopg.errors.InsufficientPrivilege:
            if attempt == tries - 1:
                raise
            time.sleep(0.25)


def server_programs() -> Path:
    """Where initdb and pg_ctl live: PG_BIN, else Debian's newest /usr/lib/postgresql/N/bin,
    else wherever PATH finds initdb."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if debian:
        return debian[-1].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else Path("/usr/lib/postgresql/15/bin")


class PrivateCluster:
    """A PostgreSQL server of one test's own, which the test may stop and start (the shared
    server of TEST_DATABASE_URL is never restarted: other tests use it). initdb refuses to run
    as root, so as root the cluster runs as the `postgres` user, in a folder it owns."""

    def __init__(self, folder: Path, port: int) -> None:
        self.bin = server_programs()
        self.folder = folder
        self.data = folder / "data"
        self.port = port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self.log = folder / "server.log"

    def _run(self, *command: str) -> None:
        as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*as_user, *command], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "-N", "-E", "UTF8",
        )  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
            "-o", options, "-w", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """`fast`: sessions are ended, as a restart of the service does."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")


@contextmanager
def private_cluster(port: int) -> Iterator[PrivateCluster]:
    """A new cluster on `port`, started; stopped and removed afterwards. Skipped (failed in
    CI) where PostgreSQL's programs are not installed."""
    programs = server_programs()
    if not (programs / "initdb").is_file():
        message = f"no PostgreSQL programs in {programs} (set PG_BIN)"
        if in_ci():
            pytest.fail(f"CI=true and {message}", pytrace=False)
        pytest.skip(message)
    folder = Path(tempfile.mkdtemp(prefix="pg-private-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    cluster = PrivateCluster(folder, port)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            cluster.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)
