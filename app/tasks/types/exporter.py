"""The exporter task: faces or events chosen by their resource's filters, as one CSV file (and
their samples, when asked) in a ZIP archive.

Memory stays flat however many objects there are: each part writes the CSV rows of its own id
range (about :data:`PART_SIZE` objects) to a blob, and the merge streams those blobs one after the
other into the archive's single CSV entry on a temporary file, then adds the samples one at a time.
"""
from __future__ import annotations

import csv
import io
import json
import tempfile
import zipfile
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from marshmallow import ValidationError, fields, post_load, validate
from sqlalchemy import String, cast, func, select

from app.db import session_scope
from app.errors import APIError
from app.events.models import Event
from app.faces.models import Face, ListFace
from app.image_store import service as image_store
from app.tasks import objects, registry
from app.tasks.registry import Result, TaskType
from app.tasks.runner import Job

PART_SIZE = 10_000
ROWS_PER_READ = 1000

FACE_COLUMNS = ("face_id", "account_id", "external_id", "user_data", "event_id", "avatar", "create_time",
                "basic_attributes", "sample_ids", "lists")
EVENT_COLUMNS = tuple(c.key for c in Event.__table__.columns)
COLUMNS = {"faces": FACE_COLUMNS, "events": EVENT_COLUMNS}


# ---- the exporter ---------------------------------------------------------------------------------
class ExporterSchema(objects.SelectionSchema):
    columns = fields.List(fields.String(validate=validate.OneOf(sorted(set(FACE_COLUMNS) | set(EVENT_COLUMNS)))),
                          validate=validate.Length(min=1, max=64), metadata={
                              "description": "the fields to export, in this order; default: all of the objects' "
                                             "fields (faces: " + ", ".join(FACE_COLUMNS) + "; events: "
                                             + ", ".join(EVENT_COLUMNS) + ")"})
    with_samples = fields.Boolean(load_default=False, metadata={"description": "add the objects' samples"})

    @post_load
    def _known_columns(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        known = COLUMNS[data["objects_type"]]
        unknown = [c for c in data.get("columns") or () if c not in known]
        if unknown:
            raise ValidationError({"columns": [f"unknown {data['objects_type']} fields {unknown}; "
                                               f"known: {', '.join(known)}"]})
        data["columns"] = list(dict.fromkeys(data.get("columns") or known))
        return data

    @classmethod
    def openapi_rules(cls) -> dict[str, Any]:
        by_type = {"oneOf": [{"properties": {"objects_type": {"enum": [name]},
                                             "columns": {"items": {"enum": list(known)}}}}
                             for name, known in COLUMNS.items()]}
        inherited = super().openapi_rules()
        return {"allOf": [inherited, by_type]} if inherited else by_type


def _column(objects_type: str, name: str) -> Any:
    if name == "lists":
        return (select(func.aggregate_strings(cast(ListFace.list_id, String), ","))
                .where(ListFace.face_id == Face.face_id).scalar_subquery())
    return getattr(Face if objects_type == "faces" else Event, name)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return value


def _samples(objects_type: str, value: Any) -> list[tuple[str, str]]:
    """(image store kind, sample id) of one object's samples: a face's ``sample_ids``, an event's
    detections' ``sample_id``."""
    if objects_type == "faces":
        return [("face_sample", str(s)) for s in value or ()]
    return [(image_store.SAMPLE_KINDS[d["type"]], str(d["sample_id"])) for d in value or ()
            if d.get("sample_id") and d.get("type") in image_store.SAMPLE_KINDS]


def split(job: Job) -> list[dict[str, Any]]:
    key = objects.key_of(job.content["objects_type"])
    with session_scope() as session:
        return objects.id_ranges(session, objects.selected(session, job.scope, job.content, key), key, PART_SIZE)


def part(job: Job, bounds: dict[str, Any]) -> dict[str, Any]:
    """Write the CSV rows (no header) of the range to ``part-<n>``, its samples' ids to ``part-<n>-samples``."""
    objects_type, names = job.content["objects_type"], job.content["columns"]
    key = objects.key_of(objects_type)
    columns = [_column(objects_type, name) for name in names]
    if job.content["with_samples"]:
        columns.append(Face.sample_ids if objects_type == "faces" else Event.detections)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    samples: list[str] = []
    rows = 0
    with session_scope() as session:
        query = objects.in_range(objects.selected(session, job.scope, job.content, *columns), key, bounds)
        query = query.order_by(key)
        for row in session.execute(query.execution_options(yield_per=ROWS_PER_READ)):
            writer.writerow([_cell(v) for v in row[:len(names)]])
            if job.content["with_samples"]:
                samples += [f"{kind} {sample_id}" for kind, sample_id in _samples(objects_type, row[-1])]
            rows += 1
            if rows % ROWS_PER_READ == 0:
                job.progress(rows, PART_SIZE)
    if rows:  # a range may have emptied since the split, and the store keeps no empty objects
        job.put_blob(f"part-{job.part}", text.getvalue().encode(), "text/csv")
    if samples:
        job.put_blob(f"part-{job.part}-samples", "\n".join(samples).encode(), "text/plain")
    return {"part": job.part, "rows": rows, "samples": len(samples)}


def _header(names: list[str]) -> bytes:
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerow(names)
    return text.getvalue().encode()


def _add_samples(job: Job, archive: zipfile.ZipFile, part: int) -> None:
    for line in job.get_blob(f"part-{part}-samples").decode().splitlines():
        kind, sample_id = line.split(" ", 1)
        try:
            data, _ = image_store.get(image_store.KINDS[kind], job.scope, sample_id)
        except APIError as exc:  # expired since the part ran, or deleted
            job.error(exc.kind, f"sample {sample_id} could not be read: {exc.error.desc}", sample_id)
            continue
        folder = "samples" if kind == "face_sample" else "body_samples"
        archive.writestr(f"{folder}/{sample_id}.jpg", data)


def merge(job: Job, partials: Iterator[Any]) -> Result:
    """One CSV entry (header, then every part's rows in id order), then the samples, into a ZIP
    archive on a temporary file; the parts' blobs are deleted once it is written."""
    objects_type = job.content["objects_type"]
    done: list[dict[str, Any]] = []
    with tempfile.TemporaryFile() as file:
        with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            with archive.open(f"{objects_type}.csv", "w", force_zip64=True) as out:
                out.write(_header(job.content["columns"]))
                for partial in partials:
                    if partial["rows"]:
                        out.write(job.get_blob(f"part-{partial['part']}"))
                        done.append(partial)
            for partial in done:
                if partial["samples"]:
                    _add_samples(job, archive, partial["part"])
        file.seek(0)
        data = file.read()
    for partial in done:
        job.delete_blob(f"part-{partial['part']}")
        if partial["samples"]:
            job.delete_blob(f"part-{partial['part']}-samples")
    return Result(data, "application/zip", f"{objects_type}.zip")


registry.register(TaskType(
    "exporter", ExporterSchema, split, part, merge,
    description="Export faces or events chosen by filters as a CSV file in a ZIP archive, with their samples "
                "when asked (`with_samples`). The result is the archive."))
