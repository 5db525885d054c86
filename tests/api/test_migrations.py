"""Migrations run from empty to head and one step back, on PostgreSQL and on SQLite."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text

from app import settings


def _alembic(url: str, *steps: tuple[str, str]) -> None:
    from alembic import command

    from app.cli import _alembic_config

    original = settings.current()
    settings.replace(settings.Settings({**original.as_dict(mask_secrets=False), "database_url": url}))
    try:
        for op, rev in steps:
            getattr(command, op)(_alembic_config(), rev)
    finally:
        settings.replace(original)


def _heads() -> list[str]:
    from alembic.script import ScriptDirectory

    from app.cli import _alembic_config

    return list(ScriptDirectory.from_config(_alembic_config()).get_heads())


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_db(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    from tests.conftest import PG_ADMIN_URL

    name = f"facegate_mig_{tmp_path.name[-12:].replace('-', '_').lower()}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _tables(url: str) -> set[str]:
    eng = create_engine(url)
    try:
        return set(inspect(eng).get_table_names())
    finally:
        eng.dispose()


def _columns(url: str) -> set[tuple[str, str]]:
    """(table, column) pairs: a step may add a column and no table."""
    eng = create_engine(url)
    try:
        found = inspect(eng)
        return {(table, c["name"]) for table in found.get_table_names() for c in found.get_columns(table)}
    finally:
        eng.dispose()


def test_upgrade_from_empty_and_downgrade_one_step(empty_db):
    from app.db import Base, load_models

    load_models()

    _alembic(empty_db, ("upgrade", "head"))
    tables = _tables(empty_db)
    assert set(Base.metadata.tables) <= tables
    eng = create_engine(empty_db)
    with eng.connect() as conn:
        assert conn.execute(text("select version_num from alembic_version")).scalar() in _heads()
    eng.dispose()
    columns = _columns(empty_db)
    _alembic(empty_db, ("downgrade", "-1"))
    assert _columns(empty_db) != columns  # the newest step changed the schema
    _alembic(empty_db, ("upgrade", "head"))
    assert _columns(empty_db) == columns


def test_models_match_migrations(database):
    """Autogenerate finds nothing to do: the models and the migrations describe the same schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from app.db import Base, engine, load_models

    load_models()

    with engine().connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
