"""/tasks/schedules: task bodies created on a cron expression (app.tasks.schedules)."""
from __future__ import annotations

from typing import Any

from marshmallow import fields, validate

from app.auth import current_principal, require
from app.blueprint import Blueprint, filtered_page
from app.db import session_scope
from app.pagination import PaginationArgs, page_of
from app.schemas import StrictSchema
from app.tasks import schedules, service
from app.tasks.schemas import TimeOrNow
from app.tasks.service import ACCOUNTS

blp = Blueprint("task_schedules", __name__, url_prefix="/tasks/schedules", description="Cron schedules of tasks")

TASK = fields.Dict(required=True, metadata={
    "description": "the body of POST /tasks/{task_type} (description, content, notification_policy, "
                   "result_storage_policy) with its task_type; now-time filters resolve at each run"})
CRON = fields.String(required=True, validate=validate.Length(min=1, max=128), metadata={
    "description": "5 fields (minute hour day month weekday), UTC, weekday 0 = Sunday; e.g. 0 3 * * *"})


class ScheduleBody(StrictSchema):
    task = TASK
    cron = CRON
    start = fields.Boolean(load_default=True, metadata={"description": "run from the next cron time; false: "
                                                                       "stopped until PATCH action start"})


class ScheduleReplaceBody(StrictSchema):
    task = TASK
    cron = CRON


class SchedulePatchBody(StrictSchema):
    action = fields.String(required=True, validate=validate.OneOf(["start", "stop"]))


class ScheduleCreatedSchema(StrictSchema):
    schedule_id = fields.Integer(required=True)
    url = fields.String(required=True)


class ScheduleSchema(StrictSchema):
    schedule_id = fields.Integer()
    account_id = fields.UUID()
    task = fields.Dict(metadata={"description": "the task body with its task_type; secrets are left out"})
    cron = fields.String()
    status = fields.String(metadata={"description": "running or stopped"})
    next_run_time = fields.DateTime(allow_none=True)
    last_run_time = fields.DateTime(allow_none=True)
    last_task_id = fields.Integer(allow_none=True)
    create_time = fields.DateTime()
    last_update_time = fields.DateTime()


class ScheduleListArgs(PaginationArgs):
    task_type = fields.String(validate=validate.Length(min=1, max=32))
    status = fields.String(validate=validate.OneOf([schedules.RUNNING, schedules.STOPPED]))
    create_time__gte = TimeOrNow()
    create_time__lt = TimeOrNow()
    next_run_time__gte = TimeOrNow()
    next_run_time__lt = TimeOrNow()
    account_id = fields.UUID(metadata={"description": "advanced users: another account's schedules"})


ScheduleListSchema = page_of("schedules", ScheduleSchema, "ScheduleListSchema")


@blp.route("", methods=["POST"])
@blp.arguments(ScheduleBody)
@blp.response(201, ScheduleCreatedSchema)
@require("task", "creation", ACCOUNTS)
def create_schedule(body: dict[str, Any]) -> dict[str, Any]:
    """The task body is checked as its POST /tasks/{task_type} would be; one-off bodies (an uploaded
    archive) cannot be scheduled."""
    schedule = schedules.create(current_principal(), body["task"], body["cron"], body["start"])
    return {"schedule_id": schedule.schedule_id, "url": f"/tasks/schedules/{schedule.schedule_id}"}


@blp.route("", methods=["GET"])
@blp.arguments(ScheduleListArgs, location="query")
@blp.response(200, ScheduleListSchema)
@require("task", "view", ACCOUNTS)
def list_schedules(args: dict[str, Any]) -> dict[str, Any]:
    return filtered_page("schedules", args, schedules.list_schedules)


@blp.route(f"/<{service.ROW_ID}:schedule_id>", methods=["GET"])
@blp.response(200, ScheduleSchema)
@require("task", "view", ACCOUNTS)
def get_schedule(schedule_id: int) -> dict[str, Any]:
    """Status, cron, next and last run, the last task created, and the task body."""
    with session_scope() as session:
        return schedules.view(schedules.get_schedule(session, current_principal().read_scope(), schedule_id))


@blp.route(f"/<{service.ROW_ID}:schedule_id>", methods=["PUT"])
@blp.arguments(ScheduleReplaceBody)
@blp.response(200, ScheduleSchema)
@require("task", "modification", ACCOUNTS)
def replace_schedule(body: dict[str, Any], schedule_id: int) -> dict[str, Any]:
    """A new cron and task body; the status stays."""
    return schedules.replace(current_principal(), schedule_id, body["task"], body["cron"])


@blp.route(f"/<{service.ROW_ID}:schedule_id>", methods=["PATCH"])
@blp.arguments(SchedulePatchBody)
@blp.response(200, ScheduleSchema)
@require("task", "modification", ACCOUNTS)
def patch_schedule(body: dict[str, Any], schedule_id: int) -> dict[str, Any]:
    """``{"action": "start"}`` runs it from the next cron time; ``stop`` stops it."""
    return schedules.act(current_principal().scope, schedule_id, body["action"])


@blp.route(f"/<{service.ROW_ID}:schedule_id>", methods=["DELETE"])
@blp.response(204)
@require("task", "deletion", ACCOUNTS)
def delete_schedule(schedule_id: int) -> None:
    """The schedule; the tasks it created stay."""
    schedules.delete(current_principal().scope, schedule_id)
