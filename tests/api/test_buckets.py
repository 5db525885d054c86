"""/buckets, the `facegate buckets` commands, the daily cleanup task and the image store health check."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from app.cli import main
from app.image_store import service as image_store
from app.image_store.backends import LocalStore
from app.image_store.backends.buckets import DEFAULT_BUCKETS, IMAGE_ORIGIN
from app.image_store.backends.cleanup import DEFAULT_LOCK_KEY, RedisLock
from tests.api.store_fixtures import advance_store_clock, empty_backend, encode, expiry_of, moto_endpoint  # noqa: F401
from tests.conftest import bearer
from tests.storage.conftest import s3_client  # noqa: F401 - fixture

PLATFORM = sorted(spec.name for spec in DEFAULT_BUCKETS)


@pytest.fixture(scope="module")
def operators(app):
    """An advanced user and an admin (admins are only made by the CLI or the service)."""
    from app.accounts.service import create_account
    from app.db import session_scope
    from tests.conftest import Account

    client = app.test_client()
    advanced = Account(client, "advanced_user")
    admin = Account.__new__(Account)
    admin.login, admin.password, admin.client = f"admin-{uuid.uuid4().hex[:8]}@example.com", "admin password", client
    with session_scope() as session:
        admin.account_id = str(create_account(session, login=admin.login, password=admin.password,
                                              account_type="admin").account_id)
    return advanced, admin


def test_create_list_and_set_ttl(client, operators, empty_backend):
    adv = operators[0]
    r = client.post("/buckets", json={"bucket": "team-reports", "ttl": 30}, headers=adv.auth)
    assert r.status_code == 201 and r.json == {"bucket": "team-reports", "ttl": 30}
    r = client.post("/buckets", json={"bucket": "team-reports"}, headers=adv.auth)
    assert r.status_code == 409 and r.json["error_code"] == 23003
    r = client.post("/buckets", json={"bucket": "archive"}, headers=adv.auth)
    assert r.status_code == 201 and r.json["ttl"] is None  # bucket_ttl_days is -1: no default recorded
    r = client.get("/buckets", headers=adv.auth)
    assert r.status_code == 200
    assert r.json["buckets"] == [{"bucket": "archive", "ttl": None}, {"bucket": "team-reports", "ttl": 30}]
    r = client.get("/buckets?page=2&page_size=1", headers=adv.auth)
    assert r.json["buckets"] == [{"bucket": "team-reports", "ttl": 30}] and r.json["page"] == 2

    r = client.put("/buckets/archive", json={"ttl": 365}, headers=adv.auth)
    assert r.status_code == 200 and r.json == {"bucket": "archive", "ttl": 365}
    assert {"bucket": "archive", "ttl": 365} in client.get("/buckets", headers=adv.auth).json["buckets"]
    r = client.put("/buckets/nowhere", json={"ttl": 7}, headers=adv.auth)
    assert r.status_code == 404 and r.json["error_code"] == 23001


@pytest.mark.parametrize("body, code", [
    ({"bucket": "Upper-Case"}, 23007),
    ({"bucket": "ab"}, 23007),
    ({"bucket": "dots.in.name"}, 23007),
    ({"bucket": "fine-name", "ttl": 8}, 10005),
    ({"bucket": "fine-name", "ttl": "-1x"}, 10005),
    ({"name": "fine-name"}, 10005),
])
def test_bad_bucket_requests(client, operators, empty_backend, body, code):
    r = client.post("/buckets", json=body, headers=operators[0].auth)
    assert r.status_code == 400 and r.json["error_code"] == code, r.json
    assert client.get("/buckets", headers=operators[0].auth).json["buckets"] == []


def test_setting_gives_new_buckets_a_ttl(client, operators, empty_backend, settings_override):
    settings_override(**empty_backend, bucket_ttl_days=14)
    assert client.post("/buckets", json={"bucket": "defaulted"}, headers=operators[1].auth).json["ttl"] == 14
    image_store.create_platform_buckets()
    assert dict(image_store.list_buckets())[IMAGE_ORIGIN] == 14


def test_who_manages_buckets(client, operators, account, empty_backend):
    adv, admin = operators
    assert client.post("/buckets", json={"bucket": "by-admin"}, headers=admin.auth).status_code == 201
    r = client.post("/buckets", json={"bucket": "by-user"}, headers=account.auth)
    assert r.status_code == 403 and r.json["error_code"] == 11006
    assert client.get("/buckets", headers=account.auth).status_code == 403
    token = adv.token({"object": ["view", "creation", "deletion"]})
    r = client.post("/buckets", json={"bucket": "by-token"}, headers=bearer(token))
    assert r.status_code == 403 and r.json["error_code"] == 11005
    assert client.post("/buckets", json={"bucket": "anonymous"}).status_code == 401
    assert [b["bucket"] for b in client.get("/buckets", headers=adv.auth).json["buckets"]] == ["by-admin"]


def test_bucket_ttl_reaches_objects(client, operators, account, empty_backend):
    image_store.create_platform_buckets()
    before = client.post("/images", data=encode(Image.new("RGB", (8, 8))), content_type="image/jpeg",
                         headers=account.auth).json["url"]
    r = client.put(f"/buckets/{IMAGE_ORIGIN}", json={"ttl": 2}, headers=operators[0].auth)
    assert r.status_code == 200
    after = client.post("/images", data=encode(Image.new("RGB", (8, 8))), content_type="image/jpeg",
                        headers=account.auth)
    in_2 = datetime.now(timezone.utc) + timedelta(days=2)
    assert abs(expiry_of(after) - in_2) < timedelta(minutes=2)
    own = client.post("/images?ttl=5", data=encode(Image.new("RGB", (8, 8))), content_type="image/jpeg",
                      headers=account.auth)
    assert abs(expiry_of(own) - (in_2 + timedelta(days=3))) < timedelta(minutes=2)  # its own TTL wins
    earlier = expiry_of(client.head(before, headers=account.auth))
    if empty_backend["storage_type"] == "local":
        assert abs(earlier - in_2) < timedelta(minutes=2)  # a local bucket's TTL reaches older objects
    else:
        assert earlier is None  # on S3 only tagged objects expire: `facegate buckets migrate-s3` tags them


def _invoke(settings_values: dict, *args: str):
    """Run `facegate buckets ...` configured through its environment, as an operator would. The CLI
    reloads the settings from it; tests that call this take ``settings_override``, whose teardown
    puts the suite's settings back."""
    env = {f"FACEGATE_{name.upper()}": str(value) for name, value in settings_values.items()}
    return CliRunner().invoke(main, ["buckets", *args], env=env)


def test_cli_buckets_create(empty_backend, settings_override):
    first = _invoke(empty_backend, "create")
    assert first.exit_code == 0, first.output
    assert sorted(line.split()[1] for line in first.output.splitlines() if line.startswith("created")) == PLATFORM
    assert image_store.missing_platform_buckets() == []
    again = _invoke(empty_backend, "create")
    assert again.exit_code == 0 and again.output.count("exists") == len(PLATFORM)
    assert all(ttl is None for _, ttl in image_store.list_buckets())
    with_ttl = _invoke(empty_backend, "create", "--bucket-ttl", "30")
    assert with_ttl.exit_code == 0 and with_ttl.output.count("ttl 30") == len(PLATFORM)
    assert dict(image_store.list_buckets()) == {name: 30 for name in PLATFORM}
    bad = _invoke(empty_backend, "create", "--bucket-ttl", "8")
    assert bad.exit_code == 1 and "ttl must be one of" in bad.output


def test_cli_migrate_s3(settings_override, moto_endpoint, s3_client):
    from tests.api.store_fixtures import s3_settings

    values = s3_settings(moto_endpoint)
    prefix = values["s3_bucket_prefix"]
    for name in ("legacy", "legacy-untagged"):  # made without facegate: no rules, no tags
        s3_client.create_bucket(Bucket=prefix + name)
        for key in ("a" * 8, "b" * 8):
            s3_client.put_object(Bucket=prefix + name, Key=key, Body=b"x")
        s3_client.put_bucket_tagging(Bucket=prefix + name, Tagging={"TagSet": [{"Key": "vl-expire", "Value": "30"}]})
    r = _invoke(values, "migrate-s3", "legacy")
    assert r.exit_code == 0, r.output
    assert "13 lifecycle rules added, 2 objects tagged" in r.output
    tags = s3_client.get_object_tagging(Bucket=prefix + "legacy", Key="a" * 8)["TagSet"]
    assert tags == [{"Key": "vl-expire", "Value": "30"}]
    rules = s3_client.get_bucket_lifecycle_configuration(Bucket=prefix + "legacy")["Rules"]
    assert sorted(rule["ID"] for rule in rules) == sorted(f"vl-expire-{d}" for d in (1, 2, 3, 4, 5, 6, 7, 14, 30,
                                                                                      60, 90, 180, 365))
    assert "0 lifecycle rules added, 0 objects tagged" in _invoke(values, "migrate-s3", "legacy").output
    r = _invoke(values, "migrate-s3", "legacy-untagged", "--no-tagging")
    assert r.exit_code == 0 and "13 lifecycle rules added, 0 objects tagged" in r.output
    assert s3_client.get_object_tagging(Bucket=prefix + "legacy-untagged", Key="a" * 8)["TagSet"] == []
    r = _invoke(values, "migrate-s3", "missing-bucket")
    assert r.exit_code == 1 and "does not exist" in r.output


def test_cli_migrate_refuses_local(tmp_path, settings_override):
    r = _invoke({"storage_type": "local", "storage_local_path": tmp_path}, "migrate-s3", "anything")
    assert r.exit_code == 1 and "S3 only" in r.output


def test_cleanup_is_scheduled_daily_at_one():
    from tasks import celery

    celery.loader.import_default_modules()  # what a worker does with TASK_MODULES at start
    entry = celery.conf.beat_schedule["storage-cleanup"]
    assert entry["task"] == "storage.cleanup" and "storage.cleanup" in celery.tasks
    schedule = entry["schedule"]
    assert schedule.hour == {1} and schedule.minute == {0} and schedule.day_of_week == set(range(7))
    assert celery.conf.timezone == "UTC"
    assert celery.amqp.router.route({}, "storage.cleanup")["queue"].name == "cpu"


def _files(root: Path, object_id: str) -> list[Path]:
    return sorted((root / IMAGE_ORIGIN / object_id[:4]).glob(f"{object_id}*"))


def test_cleanup_task_deletes_expired_local_objects(client, account, settings_override, tmp_path, celery_worker,
                                                    monkeypatch):
    from tasks.storage import cleanup

    root = tmp_path / "store"
    settings_override(storage_type="local", storage_local_path=str(root))
    image_store.create_platform_buckets()
    post = lambda q: client.post(f"/images{q}", data=encode(Image.new("RGB", (16, 16))),  # noqa: E731
                                 content_type="image/jpeg", headers=account.auth).json["image_id"]
    short, long, forever = post("?ttl=1&thumbnail=1"), post("?ttl=7"), post("")
    assert len(_files(root, short)) == 4  # image and thumbnail, each with its meta
    advance_store_clock(monkeypatch, days=2)

    # Another worker holds the lock: this one leaves everything alone.
    held = image_store.cleanup_lock()
    assert held.acquire()
    try:
        assert cleanup.delay().get(timeout=30) == {"removed": 0, "skipped": True}
        assert len(_files(root, short)) == 4
    finally:
        held.release()

    assert cleanup.delay().get(timeout=30) == {"removed": 2, "skipped": False}
    assert _files(root, short) == []
    assert len(_files(root, long)) == 2 and len(_files(root, forever)) == 2
    assert client.head(f"/images/{long}", headers=account.auth).status_code == 200


def test_cleanup_lock_lives_in_redis():
    lock = image_store.cleanup_lock()
    assert isinstance(lock, RedisLock) and lock._key == DEFAULT_LOCK_KEY
    other = image_store.cleanup_lock()
    assert lock.acquire() and not other.acquire()  # every worker's cleaner contends for the same key
    lock.release()


def test_health_check_needs_the_buckets(empty_backend):
    from app.system.health import Unhealthy, check_image_store

    with pytest.raises(Unhealthy, match="facegate buckets create"):
        check_image_store()
    image_store.create_platform_buckets()
    check_image_store()


def test_missing_bucket_answers_404_with_a_hint(client, account, empty_backend):
    r = client.post("/objects", data=b"x", content_type="text/plain", headers=account.auth)
    assert r.status_code == 404 and r.json["error_code"] == 23001
    assert "facegate buckets create" in r.json["detail"]


def test_local_files_follow_the_product_layout(client, account, settings_override, tmp_path):
    settings_override(storage_type="local", storage_local_path=str(tmp_path))
    image_store.create_platform_buckets()
    object_id = client.post("/objects", data=b"{}", content_type="application/json",
                            headers=account.auth).json["object_id"]
    assert (tmp_path / "facegate-objects" / object_id[:4] / object_id).read_bytes() == b"{}"
    assert LocalStore(tmp_path).head("facegate-objects", object_id, account.account_id).content_type == \
        "application/json"
