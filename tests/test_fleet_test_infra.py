"""The fleet's test infrastructure: a missing PostgreSQL skips locally but fails CI, and each
test's database is its own and gone afterwards."""

from __future__ import annotations

import psycopg
import pytest

from tests import pg

NOWHERE = "postgresql://nobody:secret-pw@127.0.0.1:9/none?connect_timeout=2"


def test_an_unreachable_server_is_named_without_its_password() -> None:
    reason = pg.unreachable_reason(NOWHERE)
    assert reason is not None and "127.0.0.1:9" in reason and "secret-pw" not in reason


def test_an_unreachable_server_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="pg_ctlcluster"):
        pg.require_server(NOWHERE)


def test_an_unreachable_server_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        pg.require_server(NOWHERE)


def test_each_test_gets_an_empty_database_dropped_afterwards(pg_server: str) -> None:
    with pg.throwaway_database(pg_server) as url, psycopg.connect(url) as conn:
        name = conn.execute("SELECT current_database()").fetchone()[0]
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()[0]
        assert name.startswith("pstest_") and tables == 0
    with psycopg.connect(pg_server) as conn:
        left = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    assert left is None
