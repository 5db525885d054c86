"""Bad input answers 4xx with the one error shape, and every response carries a request id."""
from __future__ import annotations

import re
import uuid

from app.errors import ERRORS

SHAPE = {"error_code", "desc", "detail"}
RID = re.compile(r"^\d{10},[0-9a-f-]{36}$")


def _is_error(r, status, code):
    assert r.status_code == status, (r.status_code, r.json)
    assert set(r.json) == SHAPE
    assert r.json["error_code"] == code
    assert RID.match(r.headers["Luna-Request-Id"])


def test_malformed_json(client):
    _is_error(client.post("/accounts", data="{not json", content_type="application/json"), 400, 10001)


def test_wrong_content_type(client):
    _is_error(client.post("/accounts", data="login=a", content_type="application/x-www-form-urlencoded"), 415, 10002)


def test_oversized_body(client, settings_override):
    settings_override(max_request_mb=0.001)
    client.application.config["MAX_CONTENT_LENGTH"] = 1024
    try:
        _is_error(client.post("/accounts", data="x" * 5000, content_type="application/json"), 413, 10003)
    finally:
        client.application.config["MAX_CONTENT_LENGTH"] = 20 * 1024 * 1024


def test_unknown_query_parameter(client, account):
    _is_error(client.get("/version?verbose=1"), 400, 10004)
    r = client.get("/tokens?page=1&pgae_size=3", headers=account.auth)
    _is_error(r, 400, 10004)
    assert "pgae_size" in r.json["detail"]


def test_validation_names_the_field(client):
    r = client.post("/accounts", json={"login": "not-an-email", "password": "12345678"})
    _is_error(r, 400, 10005)
    assert "login" in r.json["detail"]
    r = client.post("/accounts", json={"login": "a@b.io"})
    _is_error(r, 400, 10005)
    assert "password" in r.json["detail"]
    r = client.post("/accounts", json=["a", "list"])
    _is_error(r, 400, 10005)


def test_bad_pagination(client, account):
    for query in ("page=0", "page_size=0", "page_size=100000", "page=abc"):
        _is_error(client.get(f"/tokens?{query}", headers=account.auth), 400, 10005)


def test_bad_uuid_in_path(client, account):
    r = client.get("/accounts/not-a-uuid", headers=account.auth)
    _is_error(r, 400, 10006)


def test_unknown_route_and_method(client):
    _is_error(client.get("/no/such/thing"), 404, 10008)
    _is_error(client.delete("/version"), 405, 10007)


def test_request_id_is_echoed_or_made(client):
    given = f"1700000000,{uuid.uuid4()}"
    assert client.get("/version", headers={"Luna-Request-Id": given}).headers["Luna-Request-Id"] == given
    a = client.get("/version").headers["Luna-Request-Id"]
    b = client.get("/version").headers["Luna-Request-Id"]
    assert RID.match(a) and a != b
    _is_error(client.get("/version", headers={"Luna-Request-Id": "nonsense"}), 400, 10009)


def test_unexpected_errors_are_500_with_shape(database):
    from app import create_app
    from app.auth import public

    fresh = create_app()

    @fresh.route("/_boom")
    @public
    def boom():
        raise RuntimeError("kaboom")

    r = fresh.test_client().get("/_boom")
    _is_error(r, 500, 1)
    assert "kaboom" not in r.json["detail"]  # internals stay in the log


def test_error_codes_are_unique_and_documented():
    from pathlib import Path

    from app.errors import reference_markdown

    codes = [e.code for e in ERRORS.values()]
    assert len(codes) == len(set(codes))
    doc = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
    assert doc.read_text() == reference_markdown(), "run `make docs`"


def test_numbers_past_64_bits_are_400s(client, account):
    """Page numbers and descriptor versions never reach the database unbounded."""
    huge = str(2**63 - 1)
    for url in (f"/faces?page={huge}", f"/lists?page_size={huge}", f"/verifiers?page={2**70}"):
        r = client.get(url, headers=account.auth)
        assert r.status_code == 400 and r.json["error_code"] == 10005, (url, r.json)
    face = client.post("/faces", json={}, headers=account.auth).json["face_id"]
    r = client.get(f"/faces/{face}/descriptors?version={2**70}", headers=account.auth)
    assert r.status_code == 400 and r.json["error_code"] == 10005


def test_raw_descriptor_of_an_unknown_version_is_a_clear_400(client, account):
    import base64

    odd = base64.b64encode(b"\0" * 130).decode()  # not even a whole number of float32 values
    for url, body in (("/faces", {"descriptors": [{"format": "raw", "descriptor": odd, "version": 7}]}),
                      ("/attributes", {"descriptors": [{"format": "raw", "descriptor": odd, "version": 7}]})):
        r = client.post(url, json=body, headers=account.auth)
        assert r.status_code == 400 and r.json["error_code"] == 20004, (url, r.json)
        assert "unknown descriptor version 7" in r.json["detail"]
