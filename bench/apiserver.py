"""What the database-backed API benches share (faces, events): a PostgreSQL database of their own,
migrated by ``facegate db upgrade``, and ``facegate api`` (2 gunicorn workers) serving it."""
from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("FACEGATE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
FACEGATE = str(ROOT / ".venv/bin/facegate")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BenchDatabase:
    """A bench's database ``name`` (dropped and made anew by :meth:`fresh`) and the environment
    that points the platform's commands at it."""

    def __init__(self, name: str, redis_url: str) -> None:
        self.name = name
        self.url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
        self.psycopg_url = self.url.replace("postgresql+psycopg", "postgresql")
        data_dir = tempfile.mkdtemp(prefix=f"{name}-")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FACEGATE_")}
        self.env.update({"FACEGATE_DATABASE_URL": self.url, "FACEGATE_DATA_DIR": data_dir,
                         "FACEGATE_API_WORKERS": "2", "FACEGATE_LOG_LEVEL": "WARNING",
                         "FACEGATE_REDIS_URL": redis_url})

    def fresh(self) -> None:
        from sqlalchemy import create_engine, text

        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        admin.dispose()
        subprocess.run([FACEGATE, "db", "upgrade"], check=True, env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL)

    def start_api(self, port: int) -> subprocess.Popen[bytes]:
        """``facegate api`` on the database, once it answers."""
        proc = subprocess.Popen([FACEGATE, "api", "--host", "127.0.0.1", "--port", str(port)],
                                env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/version", timeout=1).ok:
                    return proc
            except requests.RequestException:
                time.sleep(0.2)
        proc.kill()
        raise RuntimeError("the API did not start")
