"""The permission matrix: a token may do exactly what it was granted, on every resource."""
from __future__ import annotations

import itertools

import pytest
from flask import Blueprint

from app.accounts.tokens import PERMISSIONS
from app.auth import current_principal, require
from tests.conftest import bearer

PAIRS = [(resource, action) for resource, actions in PERMISSIONS.items() for action in actions]


@pytest.fixture(scope="module")
def matrix_client(database, redis_client):
    """An app with one probe endpoint per (resource, action), guarded by the real decorator."""
    from app import create_app

    app = create_app()
    probes = Blueprint("probes", __name__)
    for resource, action in PAIRS:
        def view(resource=resource, action=action):
            return {"account_id": str(current_principal().account_id)}

        view.__name__ = f"probe_{resource}_{action}"
        probes.add_url_rule(f"/_probe/{resource}/{action}", view_func=require(resource, action)(view))
    app.register_blueprint(probes)
    return app.test_client()


def test_every_single_permission_opens_exactly_its_door(matrix_client):
    from tests.conftest import Account

    acc = Account(matrix_client)
    for granted in PAIRS:
        token = acc.token({granted[0]: [granted[1]]})
        for probe in PAIRS:
            r = matrix_client.get(f"/_probe/{probe[0]}/{probe[1]}", headers=bearer(token))
            expected = 200 if probe == granted else 403
            assert r.status_code == expected, (granted, probe, r.json)


def test_basic_auth_has_every_permission(matrix_client):
    from tests.conftest import Account

    acc = Account(matrix_client)
    for resource, action in PAIRS:
        assert matrix_client.get(f"/_probe/{resource}/{action}", headers=acc.auth).status_code == 200


def test_patch_changes_rights_of_issued_token(matrix_client):
    import jwt

    from tests.conftest import Account

    acc = Account(matrix_client)
    token = acc.token({"face": ["view"]})
    token_id = jwt.decode(token, options={"verify_signature": False})["token_id"]
    assert matrix_client.get("/_probe/face/deletion", headers=bearer(token)).status_code == 403
    r = matrix_client.patch(f"/tokens/{token_id}", json={"permissions": {"face": ["deletion"]}}, headers=acc.auth)
    assert r.status_code == 200
    assert matrix_client.get("/_probe/face/deletion", headers=bearer(token)).status_code == 200
    assert matrix_client.get("/_probe/face/view", headers=bearer(token)).status_code == 403


def test_admin_accounts_use_admin_resources_only(matrix_client, database):
    import uuid

    from app.accounts.service import create_account
    from app.db import session_scope
    from tests.conftest import basic

    login = f"adm-{uuid.uuid4().hex[:8]}@x.io"
    with session_scope() as session:
        create_account(session, login=login, password="adminpass1", account_type="admin")
    r = matrix_client.get("/_probe/face/view", headers=basic(login, "adminpass1"))
    assert r.status_code == 403 and r.json["error_code"] == 11006


def test_advanced_user_reads_across_accounts_user_does_not():
    import uuid

    from app.auth import Principal
    from app.errors import APIError
    from app.scope import ALL_ACCOUNTS, Scope

    me, other = uuid.uuid4(), uuid.uuid4()
    user = Principal(me, "user", None)
    assert user.read_scope(None) == Scope.of(me) == user.scope
    with pytest.raises(APIError):
        user.read_scope(other)
    advanced = Principal(me, "advanced_user", None)
    assert advanced.read_scope(None) is ALL_ACCOUNTS and advanced.read_scope(other) == Scope.of(other)
    assert advanced.scope == Scope.of(me)  # writes always belong to the caller
    narrow = Principal(me, "advanced_user", {"face": ["view"]}, visibility_area="account")
    assert narrow.read_scope(None) == Scope.of(me)
    wide = Principal(me, "advanced_user", {"face": ["view"]}, visibility_area="all")
    assert wide.read_scope(None) is ALL_ACCOUNTS


def test_permission_table_has_no_unknown_actions():
    known = {"view", "creation", "modification", "deletion", "matching"}
    assert set(itertools.chain.from_iterable(PERMISSIONS.values())) <= known
    with pytest.raises(ValueError):
        require("face", "fly")
