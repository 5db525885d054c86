"""The Blueprint every resource module uses (query strings are as strict as JSON bodies), and the
one shape of a filtered list endpoint."""
from __future__ import annotations

from typing import Any, Callable

import flask_smorest
from sqlalchemy.orm import Session
from webargs.flaskparser import FlaskParser

from app.auth import current_principal
from app.db import session_scope
from app.pagination import page_answer
from app.scope import Scope


class StrictParser(FlaskParser):
    # webargs ignores unknown query parameters by default; a misspelt filter must be an error,
    # not a silently unfiltered result. None defers to the schema (RAISE, see StrictSchema).
    DEFAULT_UNKNOWN_BY_LOCATION = {**FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION, "query": None, "querystring": None}


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = StrictParser()


Fetch = Callable[[Session, Scope, dict[str, Any], int, int], list[Any]]


def filtered_page(items_name: str, args: dict[str, Any], fetch: Fetch) -> dict[str, Any]:
    """A list endpoint's answer: ``fetch(session, scope, filters, page, page_size)`` in the caller's
    read scope (``account_id`` among the filters asks for another account's rows: advanced users)."""
    page, page_size = args.pop("page"), args.pop("page_size")
    scope = current_principal().read_scope(args.pop("account_id", None))
    with session_scope() as session:
        return page_answer(items_name, fetch(session, scope, args, page, page_size), page, page_size)
