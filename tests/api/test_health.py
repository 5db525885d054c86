"""/healthcheck: every part answers, or a 503 that names the failing part without internals."""
from __future__ import annotations


def test_healthy_platform(client, celery_worker):
    from app.image_store import service as image_store

    image_store.create_platform_buckets()
    r = client.get("/healthcheck")
    assert r.status_code == 200, r.json
    assert r.json == {"status": "ok", "checks": {"database": "ok", "broker": "ok", "redis": "ok", "image_store": "ok"}}


def test_a_part_down_is_a_503_naming_it(client, settings_override):
    settings_override(redis_url="redis://127.0.0.1:1/0")  # nothing listens there
    r = client.get("/healthcheck")
    assert r.status_code == 503 and r.json["error_code"] == 13003
    assert "redis: error: ConnectionError" in r.json["detail"]
    assert "127.0.0.1" not in r.json["detail"]  # where things run is not the caller's business


def test_health_is_public(client):
    assert client.get("/healthcheck").status_code in (200, 503)  # no credentials asked for
