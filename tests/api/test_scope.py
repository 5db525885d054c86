"""Account scope by construction: account-owned tables are read only through ``app.scope``.

The isolation suites probe the API from outside; this looks at the code itself, so a new query
that forgets the scope fails here before it can leak anything.
"""
from __future__ import annotations

import ast
import uuid
from pathlib import Path

import pytest

from app.db import load_models
from app.errors import APIError
from app.scope import ALL_ACCOUNTS, AccountOwned, Scope

APP = Path(__file__).resolve().parents[2] / "app"


def _owned() -> set[str]:
    load_models()
    return {cls.__name__ for cls in AccountOwned.__subclasses__()}


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _violations(root: Path = APP) -> list[str]:
    owned = _owned()
    found = []
    for path in sorted(root.rglob("*.py")):
        if path == root / "scope.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            where = f"{path.relative_to(root.parent)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "select":
                hit = owned & set().union(*(_names(a) for a in node.args)) if node.args else set()
                if hit:
                    found.append(f"{where}: select() over {sorted(hit)}; use app.scope.scoped()")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                    and node.args and isinstance(node.args[0], ast.Name) and node.args[0].id in owned):
                found.append(f"{where}: session.get({node.args[0].id}); use app.scope.get_or_404()")
            if (isinstance(node, ast.Compare) and isinstance(node.left, ast.Attribute)
                    and node.left.attr == "account_id" and _names(node.left) & owned):
                found.append(f"{where}: compares {ast.unparse(node.left)}; the scope does that")
    return found


def test_account_owned_tables_are_read_through_the_scope():
    assert {"Face", "FaceList", "Verifier", "Token"} <= _owned()
    assert _violations() == []


def test_the_check_catches_an_unscoped_query(tmp_path):
    """The scan above must be able to fail: a module with each forbidden form is reported."""
    (tmp_path / "leak.py").write_text(
        "def f(session, face_id, account_id):\n"
        "    session.get(Face, face_id)\n"
        "    session.scalars(select(Face).where(Face.account_id == account_id))\n")
    assert len(_violations(tmp_path)) == 3


def test_scope_values():
    me = uuid.uuid4()
    assert Scope.of(str(me)) == Scope.of(me) and Scope.of(me).owner == me
    assert Scope.from_wire(Scope.of(me).wire()) == Scope.of(me)
    assert Scope.from_wire(ALL_ACCOUNTS.wire()) is ALL_ACCOUNTS
    assert ALL_ACCOUNTS.allows(uuid.uuid4()) and not Scope.of(me).allows(uuid.uuid4())
    with pytest.raises(ValueError):
        Scope.of(None)  # no None that quietly means "everyone"
    with pytest.raises(ValueError):
        ALL_ACCOUNTS.owner  # noqa: B018 - a write needs one owner


def test_get_or_404_hides_other_accounts_rows(client, account_factory):
    from app.db import session_scope
    from app.faces.models import FaceList
    from app.scope import get_or_404

    a, b = account_factory(), account_factory()
    list_id = uuid.UUID(client.post("/lists", json={}, headers=a.auth).json["list_id"])
    with session_scope() as session:
        assert get_or_404(session, FaceList, list_id, Scope.of(a.account_id)).list_id == list_id
        assert get_or_404(session, FaceList, list_id, ALL_ACCOUNTS).list_id == list_id
        with pytest.raises(APIError) as exc:
            get_or_404(session, FaceList, list_id, Scope.of(b.account_id))
    assert exc.value.kind == "list_not_found" and exc.value.status == 404
