"""Authentication: Basic, Bearer HS256/ES256 and every way a token can be wrong."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import basic, bearer


def _me(client, account, headers):
    return client.get(f"/accounts/{account.account_id}", headers=headers)


def test_public_endpoints_need_no_auth(client):
    assert client.get("/version").status_code == 200
    assert client.get("/openapi.json").status_code == 200


def test_missing_and_bad_basic_credentials(client, account):
    r = _me(client, account, {})
    assert r.status_code == 401 and r.json["error_code"] == 11001
    assert _me(client, account, basic(account.login, "wrong password")).json["error_code"] == 11002
    assert _me(client, account, basic("nobody@x.io", "whatever1")).json["error_code"] == 11002
    r = _me(client, account, {"Authorization": "Basic !!!notbase64"})
    assert r.status_code == 401 and r.json["error_code"] == 11002


def test_bearer_hs256(client, account):
    token = account.token({"account": ["view"]})
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert _me(client, account, bearer(token)).status_code == 200


def _ec_key_b64(password: bytes | None = None) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    enc = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    return base64.b64encode(pem).decode()


@pytest.mark.parametrize("password", [None, b"key password"])
def test_bearer_es256_and_algorithm_switch(client, account, settings_override, password):
    hs_token = account.token({"account": ["view"]})
    settings_override(jwt_ecdsa_key=_ec_key_b64(password), jwt_ecdsa_key_password=(password or b"").decode())
    es_token = account.token({"account": ["view"]})
    assert jwt.get_unverified_header(es_token)["alg"] == "ES256"
    assert _me(client, account, bearer(es_token)).status_code == 200
    # Switching algorithm invalidates tokens signed the old way.
    r = _me(client, account, bearer(hs_token))
    assert r.status_code == 401 and r.json["error_code"] == 11004


def test_es256_token_rejected_as_hs256_with_public_key_confusion(client, account, settings_override):
    settings_override(jwt_ecdsa_key=_ec_key_b64())
    es_token = account.token({"account": ["view"]})
    settings_override(jwt_ecdsa_key="")
    assert _me(client, account, bearer(es_token)).status_code == 401


def test_expired_token(client, account):
    token = account.token({"account": ["view"]})
    token_id = jwt.decode(token, options={"verify_signature": False})["token_id"]
    past = (datetime.now(timezone.utc) - timedelta(seconds=1)).isoformat()
    assert client.patch(f"/tokens/{token_id}", json={"expiration_time": past}, headers=account.auth).status_code == 200
    r = _me(client, account, bearer(token))
    assert r.status_code == 401 and r.json["error_code"] == 11003
    # Extending the expiry revives the same JWT: expiry lives in the database, not the token.
    future = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    client.patch(f"/tokens/{token_id}", json={"expiration_time": future}, headers=account.auth)
    assert _me(client, account, bearer(token)).status_code == 200


def test_forged_signature(client, account):
    token = account.token({"account": ["view"]})
    claims = jwt.decode(token, options={"verify_signature": False})
    forged = jwt.encode(claims, "not the server secret", algorithm="HS256")
    r = _me(client, account, bearer(forged))
    assert r.status_code == 401 and r.json["error_code"] == 11004
    head, payload, sig = token.split(".")
    tampered_payload = base64.urlsafe_b64encode(json.dumps({**claims, "account_id": claims["account_id"]},
                                                           separators=(",", ":")).encode()).rstrip(b"=").decode()
    flipped = sig[:-2] + ("AA" if not sig.endswith("AA") else "BB")
    for bad in (f"{head}.{tampered_payload}x.{sig}", f"{head}.{payload}.{flipped}", "not.a.jwt", "garbage"):
        assert _me(client, account, bearer(bad)).status_code == 401


def test_signed_claims_of_the_wrong_type_are_401(client, account):
    """A correctly signed token whose ids are not strings (a number, a list, an object) is invalid."""
    from app.accounts.tokens import keys

    token = account.token({"account": ["view"]})
    claims = jwt.decode(token, options={"verify_signature": False})
    k = keys()
    for bad in (12345, [claims["token_id"]], {"id": claims["token_id"]}):
        forged = jwt.encode({**claims, "token_id": bad}, k.signing, algorithm=k.algorithm)
        r = _me(client, account, bearer(forged))
        assert r.status_code == 401 and r.json["error_code"] == 11004, r.json


def test_tokens_are_not_born_expired(client, account):
    past = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
    r = client.post("/tokens", json={"permissions": {"account": ["view"]}, "expiration_time": past},
                    headers=account.auth)
    assert r.status_code == 400 and "expiration_time" in r.json["detail"]


def test_alg_none_rejected(client, account):
    token = account.token({"account": ["view"]})
    claims = jwt.decode(token, options={"verify_signature": False})

    def b64(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."
    r = _me(client, account, bearer(unsigned))
    assert r.status_code == 401 and r.json["error_code"] == 11004


def test_token_of_other_account_claims_is_rejected(client, account_factory):
    a, b = account_factory(), account_factory()
    token_b = b.token({"account": ["view"]})
    assert _me(client, a, bearer(token_b)).status_code == 404  # b's token acts as b, not as a


def test_revoked_token(client, account):
    token = account.token({"account": ["view"]})
    token_id = jwt.decode(token, options={"verify_signature": False})["token_id"]
    assert client.delete(f"/tokens/{token_id}", headers=account.auth).status_code == 204
    assert _me(client, account, bearer(token)).status_code == 401


def test_tokens_cannot_manage_tokens(client, account):
    token = account.token({"account": ["view"]})
    r = client.post("/tokens", json={"permissions": {"face": ["view"]}}, headers=bearer(token))
    assert r.status_code == 403


def test_token_validation(client, account):
    r = client.post("/tokens", json={"permissions": {"face": ["fly"]}}, headers=account.auth)
    assert r.status_code == 400 and "permissions.face" in r.json["detail"]
    r = client.post("/tokens", json={"permissions": {"spaceship": ["view"]}}, headers=account.auth)
    assert r.status_code == 400 and "spaceship" in r.json["detail"]
    r = client.post("/tokens", json={"permissions": {}, "visibility_area": "all"}, headers=account.auth)
    assert r.status_code == 403 and "visibility_area" in r.json["detail"]
    r = client.post("/tokens", json={"permissions": {}, "expiration_time": "2030-01-01T00:00:00"},
                    headers=account.auth)
    assert r.status_code == 400 and "expiration_time" in r.json["detail"]
