"""The data folder and the SQLite database are their owner's alone, whatever the umask."""
from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import text

from app.db import make_engine
from app.settings import private_dir


def test_sqlite_database_and_its_journal_files_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'facegate.db'}")
        with engine.begin() as conn:
            conn.execute(text("create table t (x int)"))
            conn.execute(text("insert into t values (1)"))
        files = sorted(p.name for p in (tmp_path / "data").iterdir())
        assert files == ["facegate.db", "facegate.db-shm", "facegate.db-wal"]  # WAL mode, still open
        assert {(tmp_path / "data" / f).stat().st_mode & 0o777 for f in files} == {0o600}
        assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700
        engine.dispose()
    finally:
        os.umask(old)


def test_a_data_folder_left_open_by_an_older_version_is_closed(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir(mode=0o755)
    os.chmod(tmp_path / "data", 0o755)
    assert private_dir(tmp_path / "data").stat().st_mode & 0o777 == 0o700
