import sqlalchemy as sa

from tasador.core import db


def test_configured_url_is_used_and_engine_connects(settings):
    url = db.database_url("raw", settings.databases)
    assert url == settings.databases.raw_db_url.get_secret_value()
    with db.engine("raw", settings.databases).connect() as conn:
        assert conn.execute(sa.text("select 1")).scalar() == 1


def test_sqlalchemy_url_pins_the_driver():
    assert db.sqlalchemy_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert db.sqlalchemy_url("postgresql+psycopg2://u@h/d") == "postgresql+psycopg://u@h/d"
    assert db.sqlalchemy_url("sqlite:///x.db") == "sqlite:///x.db"


def _used(url: str) -> tuple[sa.Engine, sa.pool.Pool]:
    """The process's engine of ``url`` after one connection went back to its pool."""
    engine = db.engine_for(url)
    with engine.connect() as conn:
        conn.execute(sa.text("select 1"))
    assert engine.pool.checkedin() == 1
    return engine, engine.pool


def test_one_engine_per_url_until_its_owner_disposes_of_it(make_database):
    url = make_database("engines")
    with db.owning_engines():
        engine, pool = _used(url)
        assert db.engine_for(url) is engine  # asked again: the same engine, no new pool
    assert pool.checkedin() == 0  # its pooled connection is closed
    with db.owning_engines():
        assert db.engine_for(url) is not engine  # a new engine for the next owner


def test_owners_nest_and_leave_the_enclosing_owners_engines_alone(make_database):
    outer_url, inner_url = make_database("outer"), make_database("inner")
    with db.owning_engines():
        outer, outer_pool = _used(outer_url)
        with db.owning_engines():
            assert db.engine_for(outer_url) is outer
            _, inner_pool = _used(inner_url)
        assert inner_pool.checkedin() == 0
        assert outer_pool.checkedin() == 1
        assert db.engine_for(outer_url) is outer
    assert outer_pool.checkedin() == 0


def test_dispose_engines_closes_every_pool(make_database):
    url = make_database("disposed")
    with db.owning_engines():
        engine, pool = _used(url)
        db.dispose_engines()
        assert pool.checkedin() == 0
        assert db.engine_for(url) is not engine
