"""Long tasks: the body every task type shares, "now-time" filters, and the views of tasks,
subtasks and errors."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from app.errors import flatten_messages
from app.faces.models import utcnow
from app.handlers.schemas import DESCRIPTION, URL, CallbackHeaderSchema
from app.pagination import PaginationArgs, page_of
from app.schemas import StrictSchema
from app.tasks.models import STATUS_NAMES

STATUSES = validate.OneOf(sorted(STATUS_NAMES))

# ---- "now-time" ----------------------------------------------------------------------------------
# "now-1d" in a time filter means one day before the task is created: a schedule's tasks each
# resolve it when they are created (app.tasks.service.create_task), not when the schedule was made.
_NOW = re.compile(r"^now(?:-(\d{1,6})([smhdwMy]))?$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "M": 30 * 86400, "y": 365 * 86400}


def now_time(text: str, now: datetime) -> datetime | None:
    """The moment a now-time string names, or None when ``text`` is not one."""
    match = _NOW.match(text)
    if match is None:
        return None
    amount, unit = match.groups()
    return now - timedelta(seconds=int(amount) * _UNIT_S[unit]) if amount else now


def resolve_now(value: Any, now: datetime) -> Any:
    """``value`` (a task body as JSON) with every now-time string of a time field made absolute."""
    if isinstance(value, dict):
        return {k: (now_time(v, now).isoformat() if isinstance(v, str) and "time" in k and now_time(v, now)
                    else resolve_now(v, now)) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_now(v, now) for v in value]
    return value


class TimeOrNow(fields.DateTime):
    """An ISO 8601 time, or a now-time: ``now`` or ``now-<N><unit>`` (unit s, m, h, d, w, M = 30 d,
    y = 365 d). Times without an offset are UTC."""

    def __init__(self, **kwargs: Any) -> None:
        meta = kwargs.pop("metadata", {})
        meta.setdefault("description", "ISO 8601 time, or now-time such as now-1d (resolved when the task is created)")
        super().__init__(metadata=meta, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if isinstance(value, str):
            relative = now_time(value, utcnow())
            if relative is not None:
                return relative
        moment = super()._deserialize(value, attr, data, **kwargs)
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)

    def _jsonschema_type_mapping(self) -> dict[str, Any]:
        return {"type": "string"}


# ---- the shared body ---------------------------------------------------------------------------------
class TaskCallbackAuthSchema(StrictSchema):
    type = fields.String(required=True, validate=validate.OneOf(["basic", "bearer"]))
    login = fields.String(validate=validate.Length(min=1, max=128))
    password = fields.String(validate=validate.Length(min=1, max=256), load_only=True,
                             metadata={"description": "encrypted at rest; never shown"})
    token = fields.String(validate=validate.Length(min=1, max=4096), load_only=True,
                          metadata={"description": "encrypted at rest; never shown"})


class TaskCallbackSchema(StrictSchema):
    url = fields.String(required=True, validate=URL)
    # A list of {name, value}, as handlers' callbacks take them: OpenAPI 3.0 cannot state a rule on keys.
    headers = fields.List(fields.Nested(CallbackHeaderSchema), validate=validate.Length(max=32), load_default=list,
                          metadata={"description": "extra headers"})
    authorization = fields.Nested(TaskCallbackAuthSchema)
    timeout_s = fields.Float(load_default=10.0, validate=validate.Range(min=0.1, max=60.0))


class NotificationPolicySchema(StrictSchema):
    """HTTP callbacks on status changes of a task (and, with ``subtasks``, of its subtasks)."""

    task_callbacks = fields.List(fields.Nested(TaskCallbackSchema), required=True, validate=validate.Length(min=1, max=10))
    statuses = fields.List(fields.Integer(validate=STATUSES), metadata={
        "description": "only changes to these statuses are sent; default: all"})
    subtasks = fields.Boolean(load_default=False, metadata={"description": "also send subtasks' status changes"})


class NotificationPolicyAnswerSchema(NotificationPolicySchema):
    """A task's policy as answered: ``{}`` when the task has none."""

    task_callbacks = fields.List(fields.Nested(TaskCallbackSchema), validate=validate.Length(min=1, max=10),
                                 metadata={"description": "the callbacks; absent when the task has no policy"})


class ResultStoragePolicySchema(StrictSchema):
    ttl = fields.Integer(validate=validate.OneOf([1, 2, 3, 4, 5, 6, 7, 14, 30, 60, 90, 180, 365, -1]),
                         metadata={"description": "days the result is kept (-1: forever); default: the bucket's"})


def task_body(name: str, content: type[Schema]) -> type[Schema]:
    """The body of ``POST /tasks/<name>``: the type's ``content`` beside the fields all types share."""
    return StrictSchema.from_dict({
        "description": fields.String(load_default="", validate=DESCRIPTION),
        "content": fields.Nested(content, required=True),
        "notification_policy": fields.Nested(NotificationPolicySchema),
        "result_storage_policy": fields.Nested(ResultStoragePolicySchema),
    }, name=f"{''.join(p.title() for p in name.split('_'))}TaskBody")


# ---- views -----------------------------------------------------------------------------------------
class TaskCreatedSchema(StrictSchema):
    task_id = fields.Integer(required=True)
    url = fields.String(required=True)


class TaskSchema(StrictSchema):
    task_id = fields.Integer()
    task_type = fields.String()
    account_id = fields.UUID()
    description = fields.String()
    content = fields.Dict(metadata={"description": "the body's content; secrets are left out"})
    status = fields.Integer(metadata={"description": "0 pending, 1 in progress, 2 cancelled, 3 failed, "
                                                     "4 collect results, 5 done"})
    parts_total = fields.Integer()
    parts_done = fields.Integer()
    result_id = fields.String(allow_none=True)
    schedule_id = fields.Integer(allow_none=True)
    create_time = fields.DateTime()
    last_update_time = fields.DateTime()
    end_time = fields.DateTime(allow_none=True)


class TaskListArgs(PaginationArgs):
    task_type = fields.String(validate=validate.Length(min=1, max=32))
    status = fields.Integer(validate=STATUSES)
    description = fields.String(validate=DESCRIPTION, metadata={"description": "substring of description"})
    schedule_id = fields.Integer(validate=validate.Range(min=1))
    create_time__gte = TimeOrNow()
    create_time__lt = TimeOrNow()
    end_time__gte = TimeOrNow()
    end_time__lt = TimeOrNow()
    account_id = fields.UUID(metadata={"description": "advanced users: another account's tasks"})


class TaskPatchSchema(StrictSchema):
    action = fields.String(required=True, validate=validate.OneOf(["cancel"]))


class SubtaskSchema(StrictSchema):
    subtask_id = fields.Integer()
    task_id = fields.Integer()
    part = fields.Integer()
    content = fields.Dict()
    status = fields.Integer()
    create_time = fields.DateTime()
    start_time = fields.DateTime(allow_none=True)
    end_time = fields.DateTime(allow_none=True)


class TaskErrorSchema(StrictSchema):
    error_id = fields.Integer()
    task_id = fields.Integer()
    subtask_id = fields.Integer(allow_none=True)
    error_code = fields.Integer()
    description = fields.String()
    detail = fields.String()
    additional_info = fields.String(allow_none=True)
    error_time = fields.DateTime()


class ErrorListArgs(PaginationArgs):
    task_id = fields.Integer(validate=validate.Range(min=1))
    error_code = fields.Integer(validate=validate.Range(min=0))
    error_time__gte = TimeOrNow()
    error_time__lt = TimeOrNow()
    account_id = fields.UUID(metadata={"description": "advanced users: another account's errors"})


TaskListSchema = page_of("tasks", TaskSchema, "TaskListSchema")
SubtaskListSchema = page_of("subtasks", SubtaskSchema, "SubtaskListSchema")
TaskErrorListSchema = page_of("errors", TaskErrorSchema, "TaskErrorListSchema")


def validation_error(exc: ValidationError) -> str:
    """A marshmallow error as one line naming the fields."""
    return "; ".join(flatten_messages(exc.messages))
