"""The one error shape of the API and its table of codes.

Every error leaves the API as ``{"error_code": int, "desc": str, "detail": str}``. ``desc`` is
the fixed text of the code; ``detail`` says what exactly went wrong (which field, which id).
Codes are stable: integrators match on them, so a code is never reused for another meaning.
The table in ``docs/errors.md`` is generated from :data:`ERRORS` and checked by a test.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import WebsocketMismatch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ErrorCode:
    code: int
    status: int
    desc: str


ERRORS: dict[str, ErrorCode] = {
    "internal": ErrorCode(1, 500, "Internal server error"),
    # request shape
    "bad_json": ErrorCode(10001, 400, "Malformed JSON body"),
    "unsupported_media_type": ErrorCode(10002, 415, "Unsupported content type"),
    "too_large": ErrorCode(10003, 413, "Request body too large"),
    "unknown_query_param": ErrorCode(10004, 400, "Unknown query parameter"),
    "validation": ErrorCode(10005, 400, "Bad input data"),
    "bad_uuid": ErrorCode(10006, 400, "Bad UUID"),
    "method_not_allowed": ErrorCode(10007, 405, "Method not allowed"),
    "route_not_found": ErrorCode(10008, 404, "Resource not found"),
    "bad_request_id": ErrorCode(10009, 400, "Bad Luna-Request-Id header"),
    "bad_request": ErrorCode(10010, 400, "Bad request"),
    "uri_too_long": ErrorCode(10011, 414, "Request line too long"),
    "headers_too_large": ErrorCode(10012, 431, "Request headers too large"),
    "body_timeout": ErrorCode(10013, 408, "Request body not received in time"),
    # authentication and authorization
    "auth_required": ErrorCode(11001, 401, "Authorization required"),
    "bad_credentials": ErrorCode(11002, 401, "Bad login or password"),
    "token_expired": ErrorCode(11003, 401, "Token expired"),
    "token_invalid": ErrorCode(11004, 401, "Invalid token"),
    "forbidden": ErrorCode(11005, 403, "Permission denied"),
    "account_type_forbidden": ErrorCode(11006, 403, "Account type not allowed here"),
    "registration_closed": ErrorCode(11007, 403, "Account registration is closed"),
    # accounts and tokens
    "account_not_found": ErrorCode(12001, 404, "Account not found"),
    "login_exists": ErrorCode(12002, 409, "An account with this login already exists"),
    "account_id_exists": ErrorCode(12003, 409, "An account with this id already exists"),
    "token_not_found": ErrorCode(12004, 404, "Token not found"),
    # workers
    "worker_timeout": ErrorCode(13001, 503, "No worker answered in time"),
    "task_failed": ErrorCode(13002, 500, "Task failed"),
    "unhealthy": ErrorCode(13003, 503, "Service unhealthy"),
    "broker_unavailable": ErrorCode(13004, 503, "Task queue unavailable"),
    "database_unavailable": ErrorCode(13005, 503, "Database unavailable"),
    "result_store_unavailable": ErrorCode(13006, 503, "Task result store unavailable"),
    # image store
    "bucket_not_found": ErrorCode(23001, 404, "Bucket not found"),
    "object_not_found": ErrorCode(23002, 404, "Object not found or expired"),
    "bucket_exists": ErrorCode(23003, 409, "Bucket already exists"),
    "object_exists": ErrorCode(23004, 409, "Object id taken by another account"),
    "bad_ttl": ErrorCode(23005, 400, "Bad TTL"),
    "bad_object_id": ErrorCode(23006, 400, "Bad object id"),
    "bad_bucket_name": ErrorCode(23007, 400, "Bad bucket name"),
    "bad_storage_input": ErrorCode(23008, 400, "Bad image store input"),
    "storage_error": ErrorCode(23009, 500, "Image store failure"),
    "storage_unavailable": ErrorCode(23010, 503, "Image store unavailable"),
    "bad_image": ErrorCode(23011, 400, "Not a readable image"),
    "image_too_large": ErrorCode(23012, 413, "Image has too many pixels"),
    "image_format_not_allowed": ErrorCode(23013, 415, "Image format not supported"),
    # faces, lists, temporary attributes
    "face_not_found": ErrorCode(20001, 404, "Face not found"),
    "list_not_found": ErrorCode(20002, 404, "List not found"),
    "attribute_not_found": ErrorCode(20003, 404, "Attribute not found or expired"),
    "bad_descriptor": ErrorCode(20004, 400, "Bad descriptor"),
    "face_limit_reached": ErrorCode(20005, 403, "Face limit of the installation reached"),
    "descriptor_not_found": ErrorCode(20006, 404, "Descriptor not found"),
    "attributes_unavailable": ErrorCode(20007, 503, "Attribute storage unavailable"),
    # remote SDK (detection, estimation, extraction)
    "estimator_disabled": ErrorCode(30001, 403, "Estimator disabled by configuration"),
    "estimator_unavailable": ErrorCode(30002, 503, "Estimator unavailable"),
    "no_images": ErrorCode(30003, 400, "No images in the request"),
    "too_many_images": ErrorCode(30004, 400, "Too many images in one request"),
    "url_fetch_disabled": ErrorCode(30005, 403, "Fetching images by URL is disabled"),
    "url_fetch_failed": ErrorCode(30006, 400, "Image URL could not be fetched"),
    "bad_iso_threshold": ErrorCode(30007, 400, "Bad ISO check threshold"),
    "no_face": ErrorCode(30008, 400, "No face found in an image"),
    # matcher and verifiers
    "bad_reference": ErrorCode(40001, 400, "Bad matching reference"),
    "descriptor_version_mismatch": ErrorCode(40002, 400, "Descriptor versions differ"),
    "bad_candidates": ErrorCode(40003, 400, "Bad matching candidates"),
    "verifier_not_found": ErrorCode(40004, 404, "Verifier not found"),
    # handlers
    "handler_not_found": ErrorCode(50001, 404, "Handler not found"),
    "policies_conflict": ErrorCode(50002, 400, "Handler policies contradict each other"),
    "multiple_faces": ErrorCode(50003, 400, "Several faces where the handler allows one"),
    # events and general events
    "bad_filter": ErrorCode(60001, 400, "Bad filter"),
    "event_not_found": ErrorCode(60002, 404, "Event not found"),
    "event_too_large": ErrorCode(60003, 400, "Event too large"),
    # long tasks and schedules
    "task_not_found": ErrorCode(70001, 404, "Task not found"),
    "task_finished": ErrorCode(70002, 409, "Task already ended"),
    "task_result_not_found": ErrorCode(70003, 404, "Task has no result"),
    "task_type_disabled": ErrorCode(70004, 403, "Task type disabled"),
    "schedule_not_found": ErrorCode(70005, 404, "Schedule not found"),
    "bad_cron": ErrorCode(70006, 400, "Bad cron expression"),
    "not_schedulable": ErrorCode(70007, 400, "This task cannot be scheduled"),
    "admin_only": ErrorCode(70008, 403, "Only admin accounts may do this"),
    "source_unavailable": ErrorCode(70009, 400, "Image source unreachable"),
    "source_auth_failed": ErrorCode(70010, 400, "Image source refused the credentials"),
    "source_not_found": ErrorCode(70011, 400, "Image source not found"),
    "bad_archive": ErrorCode(70012, 400, "Not a readable ZIP archive"),
    "archive_too_large": ErrorCode(70013, 400, "Archive too large"),
    "file_unreadable": ErrorCode(70014, 400, "File could not be read from the source"),
    "object_without_sample": ErrorCode(70015, 400, "Object has no stored sample"),
    "objects_not_found": ErrorCode(70016, 400, "Objects of a task not found"),
}


class APIError(Exception):
    """An error the API answers with; raise it from services as well as handlers."""

    def __init__(self, kind: str, detail: str = "", status: int | None = None) -> None:
        self.kind = kind
        self.error = ERRORS[kind]
        self.detail = detail or self.error.desc
        self.status = status or self.error.status
        super().__init__(f"{self.error.code} {self.detail}")

    def to_dict(self) -> dict[str, Any]:
        return {"error_code": self.error.code, "desc": self.error.desc, "detail": self.detail}


def error_response(exc: APIError) -> Response:
    response = jsonify(exc.to_dict())
    response.status_code = exc.status
    return response


def flatten_messages(messages: Any, prefix: str = "") -> list[str]:
    """webargs/marshmallow nest errors by location and field; name the field path in the detail."""
    if isinstance(messages, dict):
        out: list[str] = []
        for key, value in messages.items():
            name = str(key) if not prefix else f"{prefix}.{key}"
            if prefix == "" and key in {"json", "query", "form", "files", "view_args", "headers"}:
                name = ""
            out.extend(flatten_messages(value, name))
        return out
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return [f"{prefix}: {' '.join(messages)}" if prefix else " ".join(messages)]
    if isinstance(messages, list):
        return [m for item in messages for m in flatten_messages(item, prefix)]
    return [f"{prefix}: {messages}" if prefix else str(messages)]


def _from_http_exception(exc: HTTPException) -> APIError:
    data = getattr(exc, "data", None) or {}
    messages = data.get("messages")
    if messages:
        query_errors = messages.get("query", {}) if isinstance(messages, dict) else {}
        unknown = [k for k, v in query_errors.items() if v == ["Unknown field."]]
        if unknown:
            return APIError("unknown_query_param", f"unknown query parameter(s): {', '.join(sorted(unknown))}")
        json_errors = messages.get("json") if isinstance(messages, dict) else None
        if json_errors == ["Invalid JSON body."] or json_errors == {"json": ["Invalid JSON body."]}:
            return APIError("bad_json", "request body is not valid JSON")
        return APIError("validation", "; ".join(flatten_messages(messages)))
    if getattr(exc, "error_kind", None):
        return APIError(exc.error_kind, exc.description or "")
    if isinstance(exc, WebsocketMismatch):
        return APIError("bad_request", "this resource is a websocket: send Connection: Upgrade and Upgrade: websocket")
    by_status = {
        400: "bad_request",
        404: "route_not_found",
        405: "method_not_allowed",
        413: "too_large",
        415: "unsupported_media_type",
    }
    kind = by_status.get(exc.code or 500)
    if kind is None:
        if exc.code and 400 <= exc.code < 500:
            return APIError("bad_request", exc.description or "", status=exc.code)
        return APIError("internal", exc.description or "")
    return APIError(kind, exc.description or "")


# ---- dependencies that are down ----------------------------------------------------------------
# The parts the API depends on, by the 503 code that names each. Their answers carry a fixed detail
# whoever raised them (a service here, or a worker through the task envelope), so no host, port,
# query or driver text reaches a client; the log line has the cause.
DEPENDENCY_KINDS = frozenset({"database_unavailable", "broker_unavailable", "result_store_unavailable",
                              "storage_unavailable", "attributes_unavailable"})

# Exception classes that mean "this part is down". The modules that own a client register theirs
# (app.db the database, app.dispatch the broker), so this module imports none of those libraries.
_UNAVAILABLE: list[tuple[tuple[type[BaseException], ...], str]] = []


def unavailable_when(kind: str, *classes: type[BaseException]) -> None:
    """Declare that ``classes``, raised anywhere, mean the part behind ``kind`` is down."""
    if kind not in DEPENDENCY_KINDS:
        raise ValueError(f"{kind} does not name a dependency")
    _UNAVAILABLE.append((classes, kind))


def unavailable(kind: str) -> APIError:
    """The answer for a part that is down: its code and the fixed detail."""
    return APIError(kind, f"{ERRORS[kind].desc}; try again later")


def as_unavailable(exc: BaseException) -> APIError | None:
    """The 503 that ``exc`` means when it comes from a dependency that is down, else None."""
    for classes, kind in _UNAVAILABLE:
        if isinstance(exc, classes):
            return unavailable(kind)
    return None


def describe(exc: BaseException) -> str:
    """``exc`` in one log line: its type and the first line of its text (drivers write several)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__


def _log_failure(exc: APIError, cause: str) -> None:
    # One line per failed request, never a traceback: an outage of a few minutes must not bury the
    # log under thousands of identical stacks. The request id on the line finds the rest.
    log.warning("%s %s answered %d %s (%s)", request.method, request.path, exc.error.code, exc.kind, cause)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(APIError)
    def _api_error(exc: APIError) -> Response:
        if exc.status >= 500:
            _log_failure(exc, exc.detail if exc.__cause__ is None else f"{exc.detail}; {describe(exc.__cause__)}")
        if exc.kind in DEPENDENCY_KINDS:
            exc = unavailable(exc.kind)
        return error_response(exc)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return error_response(_from_http_exception(exc))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        down = as_unavailable(exc)
        if down is not None:
            _log_failure(down, describe(exc))
            return error_response(down)
        log.exception("unhandled error")
        return error_response(APIError("internal", "unexpected error; see the service log with this request id"))


def reference_markdown() -> str:
    lines = [
        "# Error codes",
        "",
        "Generated from `app/errors.py`. Every error body is "
        '`{"error_code": int, "desc": str, "detail": str}`; `desc` is fixed per code, `detail` '
        "names the field, id or reason.",
        "",
        "| error_code | HTTP status | desc |",
        "| --- | --- | --- |",
    ]
    for e in sorted(ERRORS.values(), key=lambda e: e.code):
        lines.append(f"| {e.code} | {e.status} | {e.desc} |")
    return "\n".join(lines) + "\n"
