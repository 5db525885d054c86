"""facegate: the Flask application factory."""
from __future__ import annotations

import importlib.util
import time
import uuid
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote_to_bytes

import flask
from flask import Flask, Response, g, request, send_from_directory
from flask.json.provider import DefaultJSONProvider
from flask_smorest import Api
from werkzeug.exceptions import BadRequest
from werkzeug.routing import BaseConverter
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream, get_input_stream

from app import jsonparse, settings

__version__ = "0.1.0"

# One package per service, each with its blueprints in ``api.BLUEPRINTS``, beside the small core
# (db, errors, auth, settings, scope, dispatch, pagination). The order is the OpenAPI tags' order.
SERVICES = ("system", "accounts", "image_store", "attributes", "faces", "sdk", "matching", "verifiers", "handlers",
            "events", "notifications", "tasks")


class BadUUID(BadRequest):
    description = "path id is not a valid UUID"
    error_kind = "bad_uuid"  # tells the error handler which stable code to answer with


class UUIDConverter(BaseConverter):
    """Accept any path segment and reject a malformed UUID with 400, not a confusing 404."""

    regex = r"[^/]+"

    def to_python(self, value: str) -> uuid.UUID:
        try:
            return uuid.UUID(value)
        except ValueError:
            raise BadUUID(f"'{value}' is not a valid UUID") from None

    def to_url(self, value: Any) -> str:
        return str(value)


class _MaxStream(LimitedStream):
    """A streamed body capped at max_content_length. werkzeug's ``readall`` (``get_data``) stops
    at the cap and returns what it has, so a chunked body past the limit reached handlers cut
    short, as a truncated image or broken JSON; this one refuses it with 413."""

    def __init__(self, source: IO[bytes], limit: int) -> None:
        super().__init__(source, limit, is_max=True)
        self._source = source

    def readall(self) -> bytes:
        data = super().readall()
        if self.is_exhausted and self._source.read(1):
            self.on_exhausted()
        return data


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON, reading with :func:`app.jsonparse.loads` (``request.get_json()`` among
    others; Flask hands each request the app's provider as its ``json_module``)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return jsonparse.loads(s)


class Request(flask.Request):
    """Flask's request with the body limits of docs/architecture.md (Request limits)."""

    @cached_property
    def stream(self) -> IO[bytes]:
        limit = self.max_content_length
        if limit is not None and self.content_length is None and "wsgi.input_terminated" in self.environ:
            return _MaxStream(self.environ["wsgi.input"], limit)
        return get_input_stream(self.environ, max_content_length=limit)

    def on_json_loading_failed(self, e: ValueError | None) -> Any:
        from app.errors import APIError

        detail = f"request body: {e}" if isinstance(e, jsonparse.JSONRejected) else "request body is not JSON"
        raise APIError("bad_json", detail)


def _view_locations(app: Flask) -> set[str]:
    """Argument locations a view declares through flask-smorest (json, query, files, ...)."""
    view = app.view_functions.get(request.endpoint or "")
    doc = getattr(view, "_apidoc", {}) or {}
    params = doc.get("arguments", {}).get("parameters", [])
    return {p.get("in", "json") for p in params}


def _not_utf8() -> str | None:
    """What of the URL is not UTF-8, or None. Werkzeug would quietly keep such query bytes
    percent-encoded and turn such path bytes into U+FFFD (``%ED%A0%80``, a lone surrogate, for one):
    a filter or name the client did not send."""
    try:
        request.environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8")
    except UnicodeError:
        return "the path"
    for pair in request.query_string.split(b"&"):
        name = pair.partition(b"=")[0]
        try:
            unquote_to_bytes(pair.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            return f"query parameter '{unquote_to_bytes(name).decode('utf-8', 'replace')[:80]}'"
    return None


def _has_body() -> bool:
    return (request.content_length or 0) > 0 or "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    from app import observability, openapi
    from app.auth import authenticate_request
    from app.errors import APIError, register_error_handlers

    if overrides:
        settings.set_overrides(overrides)
    s = settings.current()
    observability.configure_logging()

    app = Flask(__name__)
    app.request_class = Request
    app.json = JSONProvider(app)
    app.url_map.converters["uuid"] = UUIDConverter
    app.config.update(
        API_TITLE="facegate",
        API_VERSION=__version__,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        # Swagger UI's files come from a package, not a CDN: many sites have no internet.
        OPENAPI_SWAGGER_UI_URL="/docs/static/",
        MAX_CONTENT_LENGTH=int(s.max_request_mb * 1024 * 1024),
        JSON_SORT_KEYS=False,
    )
    settings.on_change(lambda old, new: app.config.update(MAX_CONTENT_LENGTH=int(new.max_request_mb * 1024 * 1024)))
    api = Api(app, spec_kwargs=openapi.spec_kwargs())
    swagger_dist = Path(importlib.util.find_spec("flask_swagger_ui").origin).parent / "dist"
    app.add_url_rule("/docs/static/<path:filename>", "swagger_static",
                     lambda filename: send_from_directory(swagger_dist, filename))
    api.register_converter(UUIDConverter, lambda _c: {"type": "string", "format": "uuid"})
    for name in SERVICES:
        for blp in importlib.import_module(f"app.{name}.api").BLUEPRINTS:
            api.register_blueprint(blp)
    openapi.document(api)
    register_error_handlers(app)

    @app.before_request
    def _request_id() -> None:
        given = request.headers.get(observability.REQUEST_ID_HEADER)
        rid = given if given and observability.valid_request_id(given) else observability.new_request_id()
        g.request_id = rid
        g.started = time.monotonic()
        observability.request_id_var.set(rid)
        if given and rid != given:
            raise APIError("bad_request_id", f"expected '<unix time>,<uuid4>', got '{given[:80]}'")

    @app.before_request
    def _request_shape() -> None:
        not_utf8 = _not_utf8()
        if not_utf8:
            raise APIError("validation", f"{not_utf8} is not valid UTF-8 once percent-decoded")
        if b"\x00" in unquote_to_bytes(request.query_string):  # no text column (PostgreSQL's least) holds one
            raise APIError("validation", "the query string holds a NUL character")
        if request.routing_exception is not None or request.endpoint is None:
            return
        locations = _view_locations(app)
        if request.args and "query" not in locations:
            raise APIError("unknown_query_param",
                           f"unknown query parameter(s): {', '.join(sorted(request.args))}")
        if request.method in {"POST", "PUT", "PATCH"} and _has_body() and "json" in locations and not request.is_json:
            raise APIError("unsupported_media_type",
                           f"expected application/json, got '{request.content_type or 'none'}'")

    app.before_request(authenticate_request)

    @app.before_request
    def _json_body() -> None:
        # Every JSON body a view reads meets the strict parser here, before webargs (which parses
        # with the standard library) reads it; a JSON object stored as it came is not parsed at all.
        # After authentication, so anonymous callers cannot make the API parse bodies for endpoints
        # they may not use.
        if (request.routing_exception is None and request.is_json and "json" in _view_locations(app)
                and request.get_data(cache=True)):
            request.get_json()

    @app.after_request
    def _stamp(response: Response) -> Response:
        response.headers[observability.REQUEST_ID_HEADER] = g.get("request_id") or observability.new_request_id()
        return response

    settings.start_watcher()
    return app
