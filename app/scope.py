"""Account scope: whose rows a read or write may touch, required by every account-owned query.

Isolation holds by construction rather than by each service remembering a ``WHERE``: services
take a :class:`Scope`, and reach account-owned tables only through :func:`scoped` (a SELECT
restricted to the scope) and :func:`get_or_404` (one row by id, absent when out of scope). A
scope is one account, or :data:`ALL_ACCOUNTS`, which only admin paths (CLI, maintenance tasks)
and advanced users reading across accounts are handed (``Principal.read_scope``). There is no
``None`` that quietly means "everything".

Tasks receive a scope as text (:meth:`Scope.wire`, :meth:`Scope.from_wire`): ``"*"`` or an
account id.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.errors import APIError

M = TypeVar("M")
_ALL = "*"


class AccountOwned:
    """Mixin of models whose rows belong to one account (an ``account_id`` column)."""

    # The error kind a missing or foreign row answers with (a foreign row is as absent as a missing
    # one), and what the error's detail calls the row.
    not_found: ClassVar[str]
    label: ClassVar[str]


@dataclass(frozen=True)
class Scope:
    """One account (``account_id`` set) or every account (:data:`ALL_ACCOUNTS`)."""

    account_id: uuid.UUID | None

    @classmethod
    def of(cls, account_id: uuid.UUID | str) -> Scope:
        if account_id is None:
            raise ValueError("an account scope needs an account id; use ALL_ACCOUNTS deliberately")
        return cls(account_id if isinstance(account_id, uuid.UUID) else uuid.UUID(str(account_id)))

    @property
    def all_accounts(self) -> bool:
        return self.account_id is None

    @property
    def owner(self) -> uuid.UUID:
        """The account new rows belong to; a write always has exactly one owner."""
        if self.account_id is None:
            raise ValueError("writing needs one account's scope, not all accounts")
        return self.account_id

    def allows(self, account_id: uuid.UUID | str | None) -> bool:
        return self.account_id is None or (account_id is not None and str(account_id) == str(self.account_id))

    def filter(self, query: Select[Any], model: type[AccountOwned]) -> Select[Any]:
        """``query`` restricted to the scope's rows of ``model``."""
        if self.account_id is None:
            return query
        return query.where(model.account_id == self.account_id)  # type: ignore[attr-defined]

    def wire(self) -> str:
        """The scope as a task argument."""
        return _ALL if self.account_id is None else str(self.account_id)

    @classmethod
    def from_wire(cls, text: str) -> Scope:
        return ALL_ACCOUNTS if text == _ALL else cls.of(text)

    def __str__(self) -> str:
        return "all accounts" if self.account_id is None else f"account {self.account_id}"


ALL_ACCOUNTS = Scope(None)


def scoped(model: type[M], scope: Scope, *columns: Any) -> Select[Any]:
    """``SELECT model`` (or ``columns`` of it) restricted to ``scope``: the one way to read an
    account-owned table."""
    return scope.filter(select(*(columns or (model,))), model)  # type: ignore[arg-type]


def get_or_404(session: Session, model: type[M], object_id: Any, scope: Scope) -> M:
    """The row of ``model`` with this primary key if ``scope`` may see it, else the model's 404."""
    row = session.get(model, object_id)
    if row is None or not scope.allows(row.account_id):  # type: ignore[attr-defined]
        raise APIError(model.not_found, f"{model.label} {object_id} not found")  # type: ignore[attr-defined]
    return row


def owned_ids(session: Session, model: type[M], ids: Iterable[Any], scope: Scope) -> list[Any]:
    """Those of ``ids`` (primary keys of ``model``) that exist within ``scope``, in the given order.

    Looked up by primary key alone, the account compared here: with an account condition in SQL,
    a planner without fresh statistics (right after a bulk load) may walk the account's whole
    index, testing each entry against the id list.
    """
    wanted = list(dict.fromkeys(ids))
    key = model.__mapper__.primary_key[0]  # type: ignore[attr-defined]
    found = {pk for pk, owner in session.execute(select(key, model.account_id)  # type: ignore[attr-defined]
                                                 .where(key.in_(wanted))) if scope.allows(owner)}
    return [i for i in wanted if i in found]
