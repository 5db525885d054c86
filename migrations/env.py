"""Alembic environment: runs against the database in facegate's settings (PostgreSQL or SQLite)."""
from __future__ import annotations

from alembic import context

from app.db import Base, engine, load_models

load_models()

target_metadata = Base.metadata


def run_migrations_online() -> None:
    with engine().connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
