"""`twinflow db migrate` and `twinflow db status` against a real PostgreSQL."""

from __future__ import annotations

import pytest

from tests.services.postgres import Postgres
from twinflow.flows.cli import main


@pytest.mark.services
@pytest.mark.timeout(120)
def test_db_migrate_is_idempotent_and_status_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with Postgres() as pg:
        url = pg.create_database("cli")
        assert main(["db", "status", "--url", url]) == 1, "nothing applied yet: behind"
        capsys.readouterr()
        assert main(["db", "migrate", "--url", url]) == 0
        first = capsys.readouterr().out
        assert "applied 0001_base" in first
        monkeypatch.setenv("DATABASE_URL", url)
        assert main(["db", "migrate"]) == 0
        assert "nothing to apply" in capsys.readouterr().out
        assert main(["db", "status"]) == 0
        assert "postgresql" in capsys.readouterr().out.lower()


def test_db_without_a_url_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["db", "migrate"]) == 2
    assert "pass --url or set DATABASE_URL" in capsys.readouterr().err
