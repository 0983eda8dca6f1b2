"""The leaderboard's links to optuna-dashboard: the study ids Optuna's own storage gives."""

from __future__ import annotations

from collections.abc import Callable

import optuna
from pydantic import SecretStr

from app.leaderboard import _study_ids
from tasador.core import db
from tasador.core.config import Settings
from tests.helpers.databases import disconnect


def test_study_ids_are_those_of_optuna_storage(
    settings: Settings, make_database: Callable[[str], str], pg_server_url: str
) -> None:
    url = make_database("optuna")
    storage = optuna.storages.RDBStorage(db.sqlalchemy_url(url))
    try:
        optuna.create_study(study_name="another", storage=storage)
        wanted = optuna.create_study(study_name="wanted", storage=storage)
        live = settings.updated(optuna_storage_url=SecretStr(url))
        assert _study_ids(live, {"wanted", "never-run"}) == {"wanted": wanted._study_id}
    finally:
        del storage
        disconnect(pg_server_url, url)


def test_an_unreadable_storage_gives_no_links(settings: Settings) -> None:
    # A database with no Optuna tables: the board shows, without its links.
    assert (
        _study_ids(settings.updated(optuna_storage_url=settings.databases.raw_db_url), {"x"}) == {}
    )
