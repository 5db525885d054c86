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

from app.accounts.tokens import PERMISSIONS
from tests.conftest import Account, bearer, first_admin

CHECKS = ["not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "response_headers_conformance", "positive_data_acceptance"]

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


def _answer(recorder: Any, case_id: str) -> str:
    """The request and the answer, short: enough to tell the failures apart in the report."""
    interaction = recorder.interactions.get(case_id)
    if interaction is None or interaction.response is None:
        return "no answer"
    request, response = interaction.request, interaction.response
    body = (request.body or b"")[:200]
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
                        failures[f"{event.recorder.label} {check.name}: {_answer(event.recorder, case_id)}"] += 1
        elif isinstance(event, events.NonFatalError):
            failures[f"{event.label} error: {event.info.title}: {event.info.message}"] += 1
        elif isinstance(event, events.FatalError):
            raise event.exception
    print(f"\nschemathesis: {len(operations)} operations, {cases} cases, {sum(failures.values())} failures")
    assert not failures, "\n".join(f"{n:4} x {f}" for f, n in sorted(failures.items()))
