"""The OpenAPI document is true: schemathesis drives every operation of GET /openapi.json against the
app in-process (with credentials and a real worker) and checks each answer against the document;
a plain test checks that every route of the app is documented with its methods and security."""
from __future__ import annotations

import re
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
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
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
