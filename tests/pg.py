"""PostgreSQL for tests: the real server that TEST_DATABASE_URL names (`.ci/run` starts it).

Each test gets a throwaway database of its own, dropped afterwards. Where no server can be
reached the PostgreSQL tests are skipped with the reason, except in CI (`CI=true`), where a
missing server fails them: CI must never pass by skipping the fleet's store.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

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
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
