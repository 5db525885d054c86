"""The Blueprint every resource module uses (query strings are as strict as JSON bodies, and what
the OpenAPI document says of arguments and security is what the API does), and the one shape of a
filtered list endpoint."""
from __future__ import annotations

from typing import Any, Callable

import flask_smorest
from marshmallow import Schema
from sqlalchemy.orm import Session
from webargs.flaskparser import FlaskParser

from app.auth import current_principal, is_public
from app.db import session_scope
from app.openapi import PUBLIC
from app.pagination import page_answer
from app.scope import Scope


class StrictParser(FlaskParser):
    # webargs ignores unknown query parameters by default; a misspelt filter must be an error,
    # not a silently unfiltered result. None defers to the schema (RAISE, see StrictSchema).
    DEFAULT_UNKNOWN_BY_LOCATION = {**FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION, "query": None, "querystring": None}


class Blueprint(flask_smorest.Blueprint):
    """Keeps what the OpenAPI document says of each operation true to what the API does."""

    ARGUMENTS_PARSER = StrictParser()

    def arguments(self, schema: type[Schema] | Schema, *, location: str = "json", required: bool | None = None,
                  **kwargs: Any) -> Callable[[Any], Any]:
        """Bad arguments answer 400 (app.errors), not flask-smorest's 422. A JSON body is required
        exactly when its schema has a required field: a missing body loads as ``{}``, so with only
        optional fields the API accepts it."""
        if required is None:
            instance = schema() if isinstance(schema, type) else schema
            required = any(field.required for field in instance.fields.values())
        return super().arguments(schema, location=location, required=required, error_status_code=400, **kwargs)

    def add_url_rule(self, rule: str, endpoint: str | None = None, view_func: Callable[..., Any] | None = None,
                     provide_automatic_options: bool | None = None, **kwargs: Any) -> None:
        """Public operations declare no security (the document's default is Basic or Bearer)."""
        if view_func is not None and is_public(f"{self.name}.{endpoint or view_func.__name__}", view_func):
            view_func = self.doc(security=PUBLIC)(view_func)
        super().add_url_rule(rule, endpoint, view_func, provide_automatic_options, **kwargs)


Fetch = Callable[[Session, Scope, dict[str, Any], int, int], list[Any]]


def filtered_page(items_name: str, args: dict[str, Any], fetch: Fetch) -> dict[str, Any]:
    """A list endpoint's answer: ``fetch(session, scope, filters, page, page_size)`` in the caller's
    read scope (``account_id`` among the filters asks for another account's rows: advanced users)."""
    page, page_size = args.pop("page"), args.pop("page_size")
    scope = current_principal().read_scope(args.pop("account_id", None))
    with session_scope() as session:
        return page_answer(items_name, fetch(session, scope, args, page, page_size), page, page_size)
