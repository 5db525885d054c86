"""/tasks: long tasks (one ``POST /tasks/<type>`` per registered type), their subtasks, errors,
results and notification policies."""
from __future__ import annotations

from typing import Any, Callable

from flask import Response, request

from app.auth import current_principal, require
from app.blueprint import Blueprint, filtered_page
from app.db import session_scope
from app.pagination import PaginationArgs, page_answer
from app.tasks import registry, service
from app.tasks.schedules_api import blp as schedules_blp
from app.tasks.schemas import (
    ErrorListArgs,
    NotificationPolicyAnswerSchema,
    NotificationPolicySchema,
    SubtaskListSchema,
    TaskCreatedSchema,
    TaskErrorListSchema,
    TaskListArgs,
    TaskListSchema,
    TaskPatchSchema,
    TaskSchema,
    task_body,
)
from app.tasks.service import ACCOUNTS

blp = Blueprint("tasks", __name__, url_prefix="/tasks", description="Long tasks")



def _creator(name: str, description: str) -> Callable[..., Any]:
    def create(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        task = service.create_task(current_principal(), name, request.get_json())
        return {"task_id": task.task_id, "url": f"/tasks/{task.task_id}"}, 201

    create.__name__ = f"create_{name}_task"
    create.__doc__ = description
    return create


for _name, _type in sorted(registry.types().items()):
    blp.route(f"/{_name}", methods=["POST"])(
        blp.arguments(task_body(_name, _type.schema))(
            blp.response(201, TaskCreatedSchema)(
                require("task", "creation", ACCOUNTS)(_creator(_name, _type.description)))))


@blp.route("", methods=["GET"])
@blp.arguments(TaskListArgs, location="query")
@blp.response(200, TaskListSchema)
@require("task", "view", ACCOUNTS)
def list_tasks(args: dict[str, Any]) -> dict[str, Any]:
    return filtered_page("tasks", args, service.list_tasks)


@blp.route("/errors", methods=["GET"])
@blp.arguments(ErrorListArgs, location="query")
@blp.response(200, TaskErrorListSchema)
@require("task", "view", ACCOUNTS)
def list_errors(args: dict[str, Any]) -> dict[str, Any]:
    """Errors of every task in the caller's scope."""
    return filtered_page("errors", args, service.list_errors)


@blp.route(f"/<{service.ROW_ID}:task_id>", methods=["GET"])
@blp.response(200, TaskSchema)
@require("task", "view", ACCOUNTS)
def get_task(task_id: int) -> dict[str, Any]:
    """The task's status and progress (``parts_done`` of ``parts_total``)."""
    with session_scope() as session:
        return service.task_view(service.get_task(session, current_principal().read_scope(), task_id))


@blp.route(f"/<{service.ROW_ID}:task_id>", methods=["PATCH"])
@blp.arguments(TaskPatchSchema)
@blp.response(200, TaskSchema)
@require("task", "modification", ACCOUNTS)
def patch_task(body: dict[str, Any], task_id: int) -> dict[str, Any]:
    """``{"action": "cancel"}``: queued subtasks never start, running ones stop at their next batch."""
    return service.task_view(service.cancel(current_principal().scope, task_id))


@blp.route(f"/<{service.ROW_ID}:task_id>", methods=["DELETE"])
@blp.response(204)
@require("task", "deletion", ACCOUNTS)
def delete_task(task_id: int) -> None:
    """The task, its subtasks, errors and result; a running task is cancelled first."""
    service.delete_task(current_principal().scope, task_id)


@blp.route(f"/<{service.ROW_ID}:task_id>/subtasks", methods=["GET"])
@blp.arguments(PaginationArgs, location="query")
@blp.response(200, SubtaskListSchema)
@require("task", "view", ACCOUNTS)
def list_subtasks(args: dict[str, Any], task_id: int) -> dict[str, Any]:
    page, page_size = args["page"], args["page_size"]
    with session_scope() as session:
        rows = service.list_subtasks(session, current_principal().read_scope(), task_id, page, page_size)
        return page_answer("subtasks", rows, page, page_size)


@blp.route(f"/<{service.ROW_ID}:task_id>/errors", methods=["GET"])
@blp.arguments(PaginationArgs, location="query")
@blp.response(200, TaskErrorListSchema)
@require("task", "view", ACCOUNTS)
def list_task_errors(args: dict[str, Any], task_id: int) -> dict[str, Any]:
    page, page_size = args["page"], args["page_size"]
    scope = current_principal().read_scope()
    with session_scope() as session:
        service.get_task(session, scope, task_id)
        return page_answer("errors", service.list_errors(session, scope, {"task_id": task_id}, page, page_size),
                           page, page_size)


@blp.route(f"/<{service.ROW_ID}:task_id>/result", methods=["GET"])
@blp.doc(responses={"200": {"description": "JSON (`{\"result\", \"errors\"}`), or a file to download",
                            "content": {"application/json": {"schema": {"type": "object"}},
                                        "application/zip": {"schema": {"type": "string", "format": "binary"}},
                                        "text/csv": {"schema": {"type": "string"}}}}})
@require("task", "view", ACCOUNTS)
def get_result(task_id: int) -> Response:
    data, content_type, filename = service.result(current_principal().read_scope(), task_id)
    headers = {} if content_type == "application/json" else {
        "Content-Disposition": f'attachment; filename="{filename}"'}
    return Response(data, content_type=content_type, headers=headers)


@blp.route(f"/<{service.ROW_ID}:task_id>/notification_policy", methods=["GET"])
@blp.response(200, NotificationPolicyAnswerSchema)
@require("task", "view", ACCOUNTS)
def get_notification_policy(task_id: int) -> dict[str, Any]:
    """The task's policy, secrets left out; ``{}`` when it has none."""
    return service.notification_policy(current_principal().read_scope(), task_id) or {}


@blp.route(f"/<{service.ROW_ID}:task_id>/notification_policy", methods=["PUT"])
@blp.arguments(NotificationPolicySchema)
@blp.response(200, NotificationPolicySchema)
@require("task", "modification", ACCOUNTS)
def replace_notification_policy(body: dict[str, Any], task_id: int) -> dict[str, Any]:
    return service.replace_notification_policy(current_principal().scope, task_id, body) or {}


BLUEPRINTS = [blp, schedules_blp]
