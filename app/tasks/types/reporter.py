"""Reporter: a clustering task's result as a ZIP archive, one CSV row per object (its cluster and
the chosen columns of the face or event) and, when asked, each object's image (a face's first
sample, an event's first detection's sample) as ``images/<object id>.jpg``.

Parts are slices of the clusters' objects, their rows carried in the part's content; each part
writes its CSV rows and images as a small ZIP blob, which the merge copies into the archive.
"""
from __future__ import annotations

import csv
import io
import json
import uuid
import zipfile
from datetime import datetime
from typing import Any, Iterator

from marshmallow import fields, validate

from app.db import session_scope
from app.errors import APIError
from app.events.models import Event
from app.faces import service as faces
from app.faces.models import Face
from app.image_store import service as image_store
from app.schemas import INT32, StrictSchema
from app.scope import Scope, get_or_404, scoped
from app.tasks import registry
from app.tasks.models import DONE, Task
from app.tasks.registry import Result, TaskType
from app.tasks.runner import Job

COLUMNS = {
    "faces": ("face_id", "external_id", "user_data", "event_id", "avatar", "create_time", "lists"),
    "events": ("event_id", "handler_id", "create_time", "end_time", "source", "tags", "external_id", "user_data",
               "track_id", "stream_id", "face_id", "top_candidate_id", "top_similarity", "city", "area", "district",
               "street", "house_number", "longitude", "latitude"),
}
ID_COLUMN = {"faces": "face_id", "events": "event_id"}
PART_ROWS = {False: 5000, True: 500}  # objects per part, without and with images


class ReporterSchema(StrictSchema):
    task_id = fields.Integer(required=True, validate=INT32, metadata={"description": "a done clustering task"})
    columns = fields.List(fields.String(validate=validate.OneOf(sorted({c for cs in COLUMNS.values() for c in cs}))),
                          load_default=None, validate=validate.Length(max=64),
                          metadata={"description": "fields of the clustered faces or events (default: all of "
                                                   "them); the object's id and its cluster always come first"})
    with_images = fields.Boolean(load_default=False, metadata={"description": "add each object's image"})


def _clustering(session: Any, scope: Scope, content: dict[str, Any]) -> Task:
    """The done clustering task the report is of, with the columns fitting its objects."""
    task = get_or_404(session, Task, content["task_id"], scope)
    if task.task_type != "clustering":
        raise APIError("validation", f"task {task.task_id} is a {task.task_type} task, not a clustering task")
    if task.status != DONE or task.result_id is None:
        raise APIError("validation", f"clustering task {task.task_id} is not done")
    objects_type = task.content["objects_type"]
    wrong = [c for c in content["columns"] or () if c not in COLUMNS[objects_type]]
    if wrong:
        raise APIError("validation", f"columns {', '.join(wrong)} are no fields of {objects_type}; "
                                     f"known: {', '.join(COLUMNS[objects_type])}")
    return task


def check(session: Any, principal: Any, content: dict[str, Any]) -> None:
    _clustering(session, principal.scope, content)


def split(job: Job) -> list[dict[str, Any]]:
    with session_scope() as session:
        task = _clustering(session, job.scope, job.content)
        objects_type, result_id = task.content["objects_type"], task.result_id
    clusters = json.loads(image_store.get(image_store.KINDS["task_result"], job.scope, result_id)[0])["result"]["clusters"]
    rows = [[n, object_id] for n, cluster in enumerate(clusters) for object_id in cluster]
    size = PART_ROWS[job.content["with_images"]]
    return [{"objects_type": objects_type, "rows": rows[i:i + size]} for i in range(0, len(rows), size)]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def _views(session: Any, scope: Scope, objects_type: str, ids: list[uuid.UUID]) -> dict[str, dict[str, Any]]:
    """The objects' fields by id (gone ones absent), with what their image is read from."""
    if objects_type == "faces":
        rows = list(session.scalars(scoped(Face, scope).where(Face.face_id.in_(ids))))
        return {str(v["face_id"]): {**v, "sample": ("face", (v["sample_ids"] or [None])[0])}
                for v in faces.face_views(session, rows)}
    out = {}
    for e in session.scalars(scoped(Event, scope).where(Event.event_id.in_(ids))):
        sampled = [d for d in e.detections or () if d.get("sample_id")]
        out[str(e.event_id)] = {**{c: getattr(e, c) for c in COLUMNS["events"]},
                                "sample": (sampled[0]["type"], sampled[0]["sample_id"]) if sampled else (None, None)}
    return out


def _columns(job: Job, objects_type: str) -> list[str]:
    """The chosen columns after the id and the cluster, which every row starts with."""
    return [c for c in job.content["columns"] or COLUMNS[objects_type] if c != ID_COLUMN[objects_type]]


def part(job: Job, content: dict[str, Any]) -> dict[str, Any]:
    objects_type = content["objects_type"]
    columns = _columns(job, objects_type)
    with session_scope() as session:
        views = _views(session, job.scope, objects_type, [uuid.UUID(i) for _, i in content["rows"]])
    text = io.StringIO()
    writer = csv.writer(text)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for done, (cluster, object_id) in enumerate(content["rows"]):
            view = views.get(object_id)
            if view is None:
                job.error("objects_not_found", f"{objects_type[:-1]} {object_id} no longer exists", object_id)
                continue
            writer.writerow([cluster, object_id, *(_text(view[c]) for c in columns)])
            if job.content["with_images"]:
                kind, sample_id = view["sample"]
                try:
                    if sample_id is None:
                        raise APIError("object_without_sample", f"{objects_type[:-1]} {object_id} has no sample")
                    out.writestr(f"images/{object_id}.jpg", image_store.load_sample(kind, job.scope, sample_id),
                                 zipfile.ZIP_STORED)  # JPEG: deflating gains nothing
                except APIError as exc:
                    job.error("object_without_sample", exc.detail, object_id)
            if done % 100 == 99:
                job.progress(done + 1, len(content["rows"]))
        out.writestr("rows.csv", text.getvalue())
    name = f"part-{job.part}"
    job.put_blob(name, archive.getvalue(), "application/zip")
    return {"blob": name}


def merge(job: Job, partials: Iterator[Any]) -> Result:
    with session_scope() as session:
        objects_type = _clustering(session, job.scope, job.content).content["objects_type"]
    header = io.StringIO()
    csv.writer(header).writerow(["cluster_id", ID_COLUMN[objects_type], *_columns(job, objects_type)])
    rows = [header.getvalue().encode()]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for p in partials:  # one part's blob in memory at a time
            with zipfile.ZipFile(io.BytesIO(job.get_blob(p["blob"]))) as piece:
                rows.append(piece.read("rows.csv"))
                for info in piece.infolist():
                    if info.filename != "rows.csv":
                        out.writestr(info.filename, piece.read(info), zipfile.ZIP_STORED)
        out.writestr("report.csv", b"".join(rows))
    return Result(archive.getvalue(), "application/zip", f"report-{job.content['task_id']}.zip")


registry.register(TaskType("reporter", ReporterSchema, split, part, merge, check=check,
                           description="a clustering task's objects as CSV rows, with their images if asked"))
