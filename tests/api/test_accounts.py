"""Accounts: registration, own-account access, deletion, isolation."""
from __future__ import annotations

import uuid

from tests.conftest import basic, bearer, first_admin


def test_register_and_read_own_account(client, account):
    r = client.get(f"/accounts/{account.account_id}", headers=account.auth)
    assert r.status_code == 200
    assert r.json["login"] == account.login
    assert r.json["account_type"] == "user"
    assert "password" not in r.json and "password_hash" not in r.json


def test_account_id_may_be_given(client):
    wanted = str(uuid.uuid4())
    r = client.post("/accounts", json={"login": f"{wanted[:8]}@x.io", "password": "12345678", "account_id": wanted})
    assert r.status_code == 201 and r.json["account_id"] == wanted
    r = client.post("/accounts", json={"login": f"{wanted[:8]}b@x.io", "password": "12345678", "account_id": wanted})
    assert r.status_code == 409 and r.json["error_code"] == 12003


def test_duplicate_login_is_409_case_insensitive(client, account):
    r = client.post("/accounts", json={"login": account.login.upper(), "password": "whatever123"})
    assert r.status_code == 409 and r.json["error_code"] == 12002


def test_only_user_accounts_register_themselves(client, account):
    for account_type in ("admin", "advanced_user"):
        body = {"login": f"{account_type}@x.io", "password": "12345678", "account_type": account_type}
        r = client.post("/accounts", json=body)
        assert r.status_code == 403 and r.json["error_code"] == 11006, r.json
        assert client.post("/accounts", json=body, headers=account.auth).status_code == 403  # a user is no admin
    r = client.post("/accounts", json={"login": "x@x.io", "password": "12345678", "account_type": "root"})
    assert r.status_code == 400 and "account_type" in r.json["detail"]


def test_an_admin_creates_advanced_users_also_with_registration_closed(client, settings_override):
    settings_override(open_registration=False)
    body = {"login": f"adv-{uuid.uuid4().hex[:8]}@x.io", "password": "12345678", "account_type": "advanced_user"}
    r = client.post("/accounts", json=body, headers=first_admin().auth)
    assert r.status_code == 201, r.json
    me = client.get(f"/accounts/{r.json['account_id']}", headers=basic(body["login"], body["password"]))
    assert me.json["account_type"] == "advanced_user"


def test_registration_can_be_closed(client, settings_override):
    settings_override(open_registration=False)
    r = client.post("/accounts", json={"login": "late@x.io", "password": "12345678"})
    assert r.status_code == 403 and r.json["error_code"] == 11007


def test_password_change_invalidates_old_password(client, account):
    r = client.patch(f"/accounts/{account.account_id}", json={"password": "a new password"}, headers=account.auth)
    assert r.status_code == 200
    assert client.get(f"/accounts/{account.account_id}", headers=account.auth).status_code == 401
    assert client.get(f"/accounts/{account.account_id}",
                      headers=basic(account.login, "a new password")).status_code == 200


def test_other_account_is_invisible(client, account_factory):
    a, b = account_factory(), account_factory()
    for method in ("get", "patch", "delete"):
        kwargs = {"json": {"description": "x"}} if method == "patch" else {}
        r = getattr(client, method)(f"/accounts/{a.account_id}", headers=b.auth, **kwargs)
        assert r.status_code == 404, method
    token_a = client.post("/tokens", json={"permissions": {}}, headers=a.auth).json["token_id"]
    assert client.get(f"/tokens/{token_a}", headers=b.auth).status_code == 404
    assert client.delete(f"/tokens/{token_a}", headers=b.auth).status_code == 404
    listed = client.get("/tokens", headers=b.auth).json["tokens"]
    assert all(t["account_id"] == b.account_id for t in listed)


def test_delete_account_revokes_everything(client, account):
    token = account.token({"account": ["view"]})
    assert client.get(f"/accounts/{account.account_id}", headers=bearer(token)).status_code == 200
    assert client.delete(f"/accounts/{account.account_id}", headers=account.auth).status_code == 204
    r = client.get(f"/accounts/{account.account_id}", headers=bearer(token))
    assert r.status_code == 401 and r.json["error_code"] == 11004
    assert client.get(f"/accounts/{account.account_id}", headers=account.auth).status_code == 401


def test_create_admin_cli(database):
    from click.testing import CliRunner

    from app.cli import main

    login = f"admin-{uuid.uuid4().hex[:6]}@x.io"
    result = CliRunner().invoke(main, ["create-admin", "--login", login, "--password", "adminpass1"])
    assert result.exit_code == 0, result.output
    uuid.UUID(result.output.strip())
    again = CliRunner().invoke(main, ["create-admin", "--login", login, "--password", "adminpass1"])
    assert again.exit_code != 0 and "taken" in again.output
