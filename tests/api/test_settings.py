"""Settings: precedence, validation, live reload, masking, generated reference."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from app import settings

ROOT = Path(__file__).resolve().parents[2]


def test_precedence_default_file_env(tmp_path):
    cfg = tmp_path / "facegate.toml"
    cfg.write_text('api_port = 6000\nlog_level = "DEBUG"\n')
    s = settings.load(config_file=cfg, env={})
    assert s.api_port == 6000 and s.log_level == "DEBUG" and s.flower_port == 5555
    s = settings.load(config_file=cfg, env={"FACEGATE_API_PORT": "7000"})
    assert s.api_port == 7000 and s.log_level == "DEBUG"
    s = settings.load(config_file=cfg, env={"FACEGATE_API_PORT": "7000"}, overrides={"api_port": 8000})
    assert s.api_port == 8000


@pytest.mark.parametrize("content, message", [
    ("api_port = 'abc'", "api_port"),
    ("no_such_setting = 1", "no_such_setting"),
    ("log_level = 'LOUD'", "log_level"),
    ("api_port = ", "facegate.toml"),
])
def test_invalid_values_name_the_setting(tmp_path, content, message):
    cfg = tmp_path / "facegate.toml"
    cfg.write_text(content)
    with pytest.raises(settings.SettingsError, match=message):
        settings.load(config_file=cfg, env={})


def test_env_booleans():
    assert settings.load(env={"FACEGATE_S3_VERIFY_SSL": "0"}).s3_verify_ssl is False
    with pytest.raises(settings.SettingsError):
        settings.load(env={"FACEGATE_S3_VERIFY_SSL": "maybe"})


def test_reload_applies_changes_and_keeps_old_on_broken_file(tmp_path, caplog):
    cfg = tmp_path / "facegate.toml"
    cfg.write_text("page_size_max = 50\npulling_time = 1\nconfig_reload = true\n")
    original = settings.current()
    settings.replace(settings.load(config_file=cfg))
    watcher = settings.ConfigWatcher()
    watcher.start()
    try:
        assert settings.current().page_size_max == 50
        cfg.write_text("page_size_max = 70\npulling_time = 1\nconfig_reload = true\n")
        deadline = time.time() + 10
        while settings.current().page_size_max != 70 and time.time() < deadline:
            time.sleep(0.1)
        assert settings.current().page_size_max == 70
        with caplog.at_level(logging.ERROR, logger="app.settings"):
            cfg.write_text("page_size_max = 'many'\n")
            deadline = time.time() + 5
            while "reload failed" not in caplog.text and time.time() < deadline:
                time.sleep(0.1)
        assert "reload failed" in caplog.text and "page_size_max" in caplog.text
        assert settings.current().page_size_max == 70
    finally:
        watcher.stop()
        settings.replace(original)


def test_reload_reaches_requests(client, account, settings_override):
    settings_override(page_size_max=3)
    r = client.get("/tokens?page_size=4", headers=account.auth)
    assert r.status_code == 400 and "at most 3" in r.json["detail"]


def test_configs_masks_secrets_admin_only(client, account, settings_override):
    import uuid

    from app.accounts.service import create_account
    from app.db import session_scope
    from tests.conftest import basic

    login = f"cfg-{uuid.uuid4().hex[:8]}@x.io"
    with session_scope() as session:
        create_account(session, login=login, password="adminpass1", account_type="admin")
    settings_override(jwt_secret="super-secret-value", s3_secret_key="s3-secret")
    assert client.get("/configs", headers=account.auth).status_code == 403
    r = client.get("/configs", headers=basic(login, "adminpass1"))
    assert r.status_code == 200
    body = r.get_data(as_text=True)
    assert "super-secret-value" not in body and "s3-secret" not in body
    assert r.json["jwt_secret"] == "***" and r.json["api_port"] == settings.current().api_port
    assert "dbpass" not in body


def test_mask_keeps_url_host_and_hides_every_secret_part():
    from app.settings import _mask

    assert _mask("postgresql://u:pw@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert _mask("postgresql://db/x?password=pw&sslmode=require") == "postgresql://db/x?password=***&sslmode=***"
    assert _mask("redis://token@cache:6379/0") == "redis://***@cache:6379/0"  # the user part is the secret
    assert _mask("plain-secret") == "***"


def test_configuration_reference_is_generated():
    doc = ROOT / "docs" / "configuration.md"
    assert doc.read_text() == settings.reference_markdown(), "run `make docs`"
