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
