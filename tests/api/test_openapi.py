"""The OpenAPI document is true: schemathesis drives every operation of GET /openapi.json against the
app in-process (with credentials and a real worker) and checks each answer against the document;
a plain test checks that every route of the app is documented with its methods and security."""
from __future__ import annotations

import re
import uuid
from collections import Counter
from typing import Any

import pytest
import schemathesis
from schemathesis.engine import Status, events, from_schema
from schemathesis.openapi.checks import RejectedPositiveData

from app.accounts.tokens import PERMISSIONS
from tests.conftest import Account, bearer, first_admin

CHECKS = ["not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "response_headers_conformance", "positive_data_acceptance"]

# Requests that follow the document and are still refused with 400, by rules OpenAPI 3.0 cannot
# state; positive_data_acceptance drops exactly these answers (error_code, a fragment of detail)
# and fails on any other refusal of valid data. Each rule is in the descriptions instead.
UNSTATABLE = [
    # A descriptor's bytes: the SDK signature and version inside the base64, finite values of a
    # bounded norm, one descriptor per version (the document gives each format's size as a pattern).
    (20004, "signature"), (20004, "NaN"), (20004, "unknown descriptor version"), (20004, "two descriptors"),
    (20004, "given but the SDK descriptor"), (20004, "values too large"),
    # References and candidates must share one descriptor version: a rule across array items.
    (40002, ""),
    # An image body must decode as an image of an allowed format, judged by content.
    (23011, ""), (23013, ""),
    # A URL must answer with an image; the test machine has no network.
    (30006, ""),
    # A time relative to the request's ("in the future").
    (10005, "must be in the future"),
    # Rules between query parameters (/sdk, /detector: detect_face or detect_body; face estimations
    # need detect_face=1) and the shape of each ISO check's threshold (inference.iso).
    (10005, "detect_face: "), (30007, ""),
    # A stored object's body comes with its own Content-Type and is not a multipart form; the
    # document's `*/*` cannot exclude a missing header or multipart.
    (10002, "multipart forms are not unpacked"),
    # The events' geo box: both origin fields or none, and a box within one hemisphere's span, off
    # the date line and the poles, given the deltas or their default (a setting).
    (60001, "geo filter: "),
    # Rules between a handler's policies (extraction needs detection, a match needs a descriptor,
    # filters name existing match labels); each is in the policy fields' descriptions.
    (50002, ""),
    # GET /ws exists only as a websocket: a plain HTTP request, which is all the tool sends, is
    # refused before the query is read.
    (10010, "this resource is a websocket"),
    # No text takes a NUL character (PostgreSQL's text cannot hold one), in a query string or a JSON
    # body; the document would have to say so of every string.
    (10005, "NUL character"), (10001, "NUL character"),
    # Verifying images needs candidates or a second image: a rule between the body and its files.
    (10005, "at least two images to compare"),
    # A long task's filters are those of the resource its objects_type names (GET /faces or GET
    # /events): a rule between two fields.
    (10005, ".filters."),
    # A ROC markup needs a pair of one label and a pair of two: a rule across array items.
    (10005, "faces of one label and faces of two labels"), (10005, "each face once"),
    # Only events have stored source images for the garbage collector to remove with them.
    (10005, "only events have source images"),
    # The reporter reads a done clustering task of the account: a rule about a stored row.
    (10005, "clustering task"),
    # An estimator's image source must answer, know the credentials and hold the path or bucket.
    (70009, ""), (70010, ""), (70011, ""),
    # A cron expression's fields must name minutes, hours, days, months and weekdays in range.
    (70006, ""),
]

# Operations only an operator may call (admin, or advanced_user for buckets): a user's credentials
# would only ever see the 403, and nothing of the operation's answers would be checked.
OPERATOR_PATHS = re.compile(r"^/(configs|matcher/status|buckets.*)$")


@pytest.fixture(scope="module")
def credentials(app: Any, celery_worker: Any) -> dict[str, dict[str, str]]:
    """A user with a token holding every permission (most operations), the same user's Basic auth
    (operations that manage credentials take Basic only) and the admin (operator resources)."""
    from app.image_store import service as image_store

    image_store.create_platform_buckets()
    user = Account(app.test_client())
    token = user.token({resource: list(actions) for resource, actions in PERMISSIONS.items()})
    return {"bearer": bearer(token), "basic": user.auth, "admin": first_admin().auth}


def _headers(operation: Any, credentials: dict[str, dict[str, str]]) -> dict[str, str]:
    security = operation.definition.raw.get("security")
    if security == []:
        return {}
    if OPERATOR_PATHS.match(operation.path):
        return credentials["admin"]
    if security == [{"basic": []}]:
        return credentials["basic"]
    return credentials["bearer"]


def _unstatable(response: Any) -> bool:
    try:
        error = response.json()
    except ValueError:
        return False
    return isinstance(error, dict) and any(
        error.get("error_code") == code and fragment in str(error.get("detail")) for code, fragment in UNSTATABLE)


def _answer(recorder: Any, case_id: str) -> str:
    """The request and the answer, short: enough to tell the failures apart in the report."""
    interaction = recorder.interactions.get(case_id)
    if interaction is None or interaction.response is None:
        return "no answer"
    request, response = interaction.request, interaction.response
    body = (request.body or b"")[:1000]
    return f"{request.method} {request.uri} {body!r} -> {response.status_code} {response.content[:200]!r}"


def test_every_operation_answers_as_documented(app: Any, credentials: dict[str, dict[str, str]]) -> None:
    from tests.conftest import suite_task_paths

    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    for path in suite_task_paths():
        schema = schema.exclude(path=path)
    # Bounded so the run stays within a few minutes on two cores; deterministic so a failure in CI
    # replays exactly. Stateful testing needs OpenAPI links, which the document does not declare.
    schema.config.phases.update(phases=["examples", "coverage", "fuzzing"])
    schema.config.generation.update(max_examples=8, deterministic=True, database="none",
                                    with_security_parameters=False)
    schema.config.checks.update(included_check_names=CHECKS)

    class PerOperation:
        def get(self, case: Any, ctx: Any) -> dict[str, dict[str, str]]:
            return credentials

        def set(self, case: Any, data: dict[str, dict[str, str]], ctx: Any) -> None:
            case.headers = {**(case.headers or {}), **_headers(case.operation, data)}

    schema.auth(refresh_interval=None)(PerOperation)

    @schema.hook
    def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
        return not (isinstance(failure, RejectedPositiveData) and _unstatable(response))

    operations: set[str] = set()
    cases = 0
    failures: Counter[str] = Counter()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            operations.add(event.recorder.label)
            cases += len(event.recorder.interactions)
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    if check.status == Status.FAILURE:
                        failure = check.failure_info.failure if check.failure_info else None
                        why = failure.title if failure else ""
                        failures[f"{event.recorder.label} {check.name} ({why}): {_answer(event.recorder, case_id)}"] += 1
        elif isinstance(event, events.NonFatalError):
            failures[f"{event.label} error: {event.info.title}: {event.info.message}"] += 1
        elif isinstance(event, events.FatalError):
            raise event.exception
    print(f"\nschemathesis: {len(operations)} operations, {cases} cases, {sum(failures.values())} failures")
    assert not failures, "\n".join(f"{n:4} x {f}" for f, n in sorted(failures.items()))


# The document and Swagger UI themselves: not operations of the API.
DOCS_ENDPOINTS = {"api-docs.openapi_json", "api-docs.openapi_swagger_ui", "swagger_static", "static"}


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


# Ids that are numbers (tasks and schedules count up); every other id is a UUID.
INTEGER_IDS = re.compile(r"{(task_id|schedule_id)}")


def _example_url(path: str) -> str:
    """``path`` with its parameters filled in: ids that exist nowhere, a well-formed bucket name."""
    path = INTEGER_IDS.sub(str(2**31 - 1), path.replace("{bucket}", "no-such-bucket"))
    return re.sub(r"{\w+_id}", str(uuid.uuid4()), path)


def test_every_route_is_documented_with_its_methods_and_security(app: Any, client: Any) -> None:
    doc = client.get("/openapi.json").json
    schemes = set(doc["components"]["securitySchemes"])
    routed: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint in DOCS_ENDPOINTS:
            continue
        path = _openapi_path(rule.rule)
        assert path in doc["paths"], f"{rule.rule} ({rule.endpoint}) is not in the document"
        routed.setdefault(path, set()).update(rule.methods)
        for method in rule.methods - {"OPTIONS"}:
            operation = doc["paths"][path].get(method.lower())
            if operation is None:
                continue  # HEAD beside GET; checked below
            security = operation.get("security", doc["security"])
            assert all(set(requirement) <= schemes for requirement in security), (method, path, security)
            # What app.auth does with a caller without credentials: 401 exactly where security is declared.
            r = client.open(_example_url(path), method=method)
            assert (r.status_code == 401) == (security != []), (method, path, security, r.status_code)
    for path, methods in routed.items():
        documented = {m.upper() for m in doc["paths"][path] if m != "parameters"}
        # Flask answers OPTIONS everywhere and HEAD wherever there is GET; HEAD is documented
        # where it is part of the resource (the image store).
        assert methods - {"OPTIONS", "HEAD"} <= documented <= methods, (path, documented, methods)
    assert set(routed) == set(doc["paths"])
    assert {("POST", "/accounts"), ("GET", "/version"), ("GET", "/healthcheck")} <= {
        (m.upper(), p) for p, ops in doc["paths"].items() for m, op in ops.items()
        if m != "parameters" and op.get("security") == []}


def test_every_error_is_documented_as_the_error_body(client: Any) -> None:
    doc = client.get("/openapi.json").json
    error = doc["components"]["schemas"]["Error"]
    assert set(error["properties"]) == set(error["required"]) == {"error_code", "desc", "detail"}
    assert error["additionalProperties"] is False
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            assert operation["responses"]["default"] == {"$ref": "#/components/responses/DEFAULT_ERROR"}, (method, path)
            assert "422" not in operation["responses"], (method, path)  # bad arguments answer 400


def test_a_json_body_is_required_exactly_where_the_document_says(client: Any, account: Account) -> None:
    """No body at all: a 400 in the error shape where the document requires one, never a 400 where
    it does not (the operation then runs on its defaults, or refuses for another reason)."""
    doc = client.get("/openapi.json").json
    checked = 0
    for path, operations in doc["paths"].items():
        url = _example_url(path)
        for method, operation in operations.items():
            body = operation.get("requestBody") if method != "parameters" else None
            if not body or set(body["content"]) != {"application/json"}:
                continue
            r = client.open(url, method=method.upper(), headers=account.auth)
            if body["required"]:
                assert r.status_code == 400 and r.json["error_code"] == 10005, (method, path, r.json)
                assert set(r.json) == {"error_code", "desc", "detail"}
            else:
                assert r.status_code != 400, (method, path, r.json)
            checked += 1
    assert checked >= 20


def test_descriptors_too_large_for_the_index_are_refused_not_a_500(client: Any, account: Account,
                                                                  celery_worker: Any) -> None:
    """Found by the schemathesis run: float32 values whose squared norm overflows made the index
    answer a candidate without an id, and /matcher/faces and /matcher/raw answered 500."""
    import base64

    import numpy as np

    huge = base64.b64encode(np.full(128, 3e38, dtype="<f4").tobytes()).decode()
    small = base64.b64encode(np.full(128, 0.1, dtype="<f4").tobytes()).decode()

    def ref(descriptor: str) -> dict[str, Any]:
        return {"type": "descriptor", "format": "raw", "descriptor": descriptor}

    raw = [{"format": "raw", "descriptor": small}]
    for url, body in (("/matcher/faces", {"references": [ref(huge)], "candidates": {}}),
                      ("/matcher/raw", {"references": raw, "candidates": [{"format": "raw", "descriptor": huge}]}),
                      ("/faces", {"descriptors": [{"format": "raw", "descriptor": huge}]}),
                      ("/attributes", {"descriptors": [{"format": "raw", "descriptor": huge}]})):
        r = client.post(url, json=body, headers=account.auth)
        assert r.status_code == 400 and r.json["error_code"] == 20004 and "too large" in r.json["detail"], r.json
    # A row stored before descriptors were checked for this is no candidate, not a 500.
    from sqlalchemy import update

    from app.db import session_scope
    from app.faces.models import FaceDescriptor

    r = client.post("/faces", json={"descriptors": [{"format": "raw", "descriptor": small}]}, headers=account.auth)
    with session_scope() as session:
        session.execute(update(FaceDescriptor).where(FaceDescriptor.face_id == uuid.UUID(r.json["face_id"]))
                        .values(descriptor=base64.b64decode(huge)))
    r = client.post("/matcher/faces", json={"references": [ref(small)], "candidates": {}}, headers=account.auth)
    assert r.status_code == 200 and r.json["results"][0]["matches"] == [], r.json
