"""The estimator task: images of a source (``app.tasks.sources``) processed under a handler's
policies, as ``POST /handlers/{id}/events`` would process them.

- split (cpu): list the source's files, a batch of the models (``inference_batch_max``) to a
  part: a part's images fill one forward pass, and the gpu worker's threads overlap one part's
  transfers and saves with another's pass. A transient source (an
  archive) is read here, once: each part's files go to a task blob the part reads.
- part (gpu): read the part's files, decode them in memory (they go to the image store only where
  the policies keep the origin image) and run them through the gpu inference path's batcher
  (``job.models.analyze_images``) a batch at a time, then the handler steps of
  ``app.handlers.processing``: the detect policy's filter per image, matching, and the save step
  for the whole batch in one transaction (``processing.save_many``). Every id an image's
  processing writes derives from the task id and the file name (:func:`file_id`), so a part run
  twice saves each image's events once. A file that is not an image, cannot be read or has gone
  since the split is that file's error; the part goes on.
- merge: the parts' entries in file order, one per file: ``{"filename", "status": "success",
  "events"}`` or ``{"filename", "status": "error", "error": {"error_code", "detail"}}``.

A static handler made from ``policies`` in the request is created by the split, with an id derived
from the task id.
"""
from __future__ import annotations

import copy
import uuid
from datetime import datetime, timezone
from typing import Any, Iterator

from marshmallow import ValidationError, fields, validate, validates_schema

from app import settings
from app.db import session_scope
from app.errors import ERRORS, APIError
from app.faces import changes
from app.handlers import processing
from app.handlers.models import DYNAMIC, STATIC, Handler
from app.handlers.schemas import POLICIES_DESCRIPTION, PoliciesSchema
from app.handlers.service import check_policies
from app.image_store import service as image_store
from app.schemas import StrictSchema
from app.scope import Scope, get_or_404, scoped
from app.sdk import service as sdk
from app.tasks import registry, sources
from app.tasks.registry import Result, TaskType
from app.tasks.runner import Job
from inference import images as image_check
from inference import pipeline

RAW, SAMPLES = 0, 1
_NAMESPACE = uuid.UUID("0c6f8d52-3b7e-4a9f-b1d4-7e2a5c9f3d18")
# What a single image's decode or analysis can refuse; anything else stops the part.
_IMAGE_ERRORS = ("bad_image", "image_too_large", "image_format_not_allowed", "multiple_faces")


class HandlerRefSchema(StrictSchema):
    handler_id = fields.UUID(metadata={"description": "an existing static or dynamic handler"})
    policies = fields.Nested(PoliciesSchema, metadata={
        "description": f"with a dynamic handler_id: its policies; without handler_id: a static handler is "
                       f"made with them for this task. {POLICIES_DESCRIPTION}"})

    @validates_schema
    def _something(self, data: dict[str, Any], **_: Any) -> None:
        if "handler_id" not in data and "policies" not in data:
            raise ValidationError("give handler_id, policies, or both (a dynamic handler)", "handler_id")

    @classmethod
    def openapi_rules(cls) -> dict[str, Any]:
        return {"anyOf": [{"required": ["handler_id"]}, {"required": ["policies"]}]}


class EstimatorContentSchema(StrictSchema):
    handler = fields.Nested(HandlerRefSchema, required=True)
    image_type = fields.Integer(load_default=RAW, validate=validate.OneOf([RAW, SAMPLES]),
                                metadata={"description": "0: photos; 1: face samples (aligned face crops)"})
    source = sources.SourceField(required=True)


def file_id(task_id: int, name: str) -> uuid.UUID:
    """The id everything one image of a task writes derives from."""
    return uuid.uuid5(_NAMESPACE, f"estimator-{task_id}-{name}")


def _handler_id(job: Job) -> uuid.UUID:
    ref = job.content["handler"]
    return ref["handler_id"] if "handler_id" in ref else uuid.uuid5(_NAMESPACE, f"handler-{job.task_id}")


def check(session: Any, principal: Any, content: dict[str, Any]) -> None:
    """The handler and policies as an event request would check them, and the source reachable
    with its credentials (within estimator_source_timeout_s)."""
    scope, ref = Scope.of(principal.account_id), content["handler"]
    if "handler_id" in ref:
        processing.request_policies(session, scope, get_or_404(session, Handler, ref["handler_id"], scope),
                                    ref.get("policies"))
    else:
        check_policies(session, scope, ref["policies"])
    with sources.open_source(content["source"], scope) as source:
        source.check()


def unschedulable(content: dict[str, Any]) -> str | None:
    source = content.get("source") or {}
    if source.get("type") == "zip":
        return "an estimator task reading a ZIP archive cannot be scheduled: the archive is read once"
    return None


# ---- split -------------------------------------------------------------------------------------
def split(job: Job) -> list[dict[str, Any]]:
    ref = job.content["handler"]
    if "handler_id" not in ref:
        with session_scope() as session:
            if session.scalar(scoped(Handler, job.scope).where(Handler.handler_id == _handler_id(job))) is None:
                session.add(Handler(handler_id=_handler_id(job), account_id=job.account_id, handler_type=STATIC,
                                    description=f"estimator task {job.task_id}",
                                    policies=PoliciesSchema().dump(ref["policies"])))
    with sources.open_source(job.content["source"], job.scope) as source:
        names = [f.name for f in source.files()]
        size = pipeline.batch_limit(settings.current().inference_batch_max)
        parts = [names[i:i + size] for i in range(0, len(names), size)]
        if source.transient:
            for n, files in enumerate(parts):
                job.put_blob(f"part-{n}", sources.pack(source, files), "application/zip")
    return [{"files": files} for files in parts]


# ---- parts -------------------------------------------------------------------------------------
def _policies(job: Job) -> tuple[dict[str, Any], dict[str, Any]]:
    """The policies the part runs under (re-read: a static handler may have changed since the
    split, as its events would), and the events' origin."""
    ref = job.content["handler"]
    with session_scope() as session:
        handler = get_or_404(session, Handler, _handler_id(job), job.scope)
        given = ref.get("policies") if handler.handler_type == DYNAMIC else None
        policies = processing.request_policies(session, job.scope, handler, given)
        origin = {"handler_id": str(handler.handler_id), "version": handler.version}
    if job.content["source"].get("save_origin"):
        policies = copy.deepcopy(policies)
        policies["storage_policy"]["image_origin_policy"]["store_image"] = True
    return policies, origin


def _failure(job: Job, name: str, kind: str, detail: str) -> dict[str, Any]:
    job.error(kind, detail, name)
    return {"filename": name, "status": "error", "error": {"error_code": ERRORS[kind].code, "detail": detail}}


class _Image:
    """One file of a part on its way through the steps."""

    def __init__(self, job: Job, name: str, data: bytes, header: image_check.ImageHeader) -> None:
        self.name = name
        self.id = str(file_id(job.task_id, name))
        self.data = data
        self.header = header
        self.refs: list[dict[str, Any]] = []  # the stored source image, only where its origin is kept
        self.found: dict[str, Any] | None = None


def _read(job: Job, reader: Any, names: list[str], results: dict[str, dict[str, Any]]) -> list[_Image]:
    """Read the files and check their headers; the files that are no image get their error."""
    s = settings.current()
    kept = []
    for name in names:
        try:
            data = reader.read(name)
            with image_store.image_errors(name):
                header = image_check.read_header(data, s.inference_max_image_pixels, s.image_decode_budget_mb)
        except sources.FileUnreadable as exc:
            results[name] = _failure(job, name, "file_unreadable", str(exc))
            continue
        except APIError as exc:
            results[name] = _failure(job, name, exc.kind, exc.detail)
            continue
        kept.append(_Image(job, name, data, header))
    return kept


def _analyze(job: Job, images: list[_Image], policies: dict[str, Any],
             results: dict[str, dict[str, Any]]) -> list[_Image]:
    """Decode a batch in memory (never through the image store) and run detection, estimation and
    extraction on it in the batcher, then the detect policy's filter and samples per image; a
    batch the models refuse is retried one image at a time to find the image at fault. The images
    that came through."""
    def refused(image: _Image, exc: APIError) -> None:
        if exc.kind not in _IMAGE_ERRORS:
            raise exc
        results[image.name] = _failure(job, image.name, exc.kind, exc.detail)

    s = settings.current()
    options = {**processing.detect_options(policies), "sample": job.content["image_type"] == SAMPLES}
    # the decode budget holds until the models are done with the pixels, as for an API request
    with image_check.decode_budget([i.header for i in images], s.image_decode_budget_mb,
                                   sdk.ANALYSIS_BYTES_PER_PIXEL):
        decoded: list[tuple[_Image, Any]] = []
        for image in images:
            try:
                with image_store.image_errors(image.name):
                    decoded.append((image, image_check.decode(image.data, image.header)))
            except APIError as exc:
                refused(image, exc)
        failed: APIError | None = None
        try:
            found = job.models.analyze_images([(pixels, options) for _, pixels in decoded]) if decoded else []
        except APIError as exc:
            if exc.kind not in _IMAGE_ERRORS:
                raise
            found, failed = [], exc
        sizes = [pixels.shape[:2] for _, pixels in decoded]
        decoded_images = [image for image, _ in decoded]
        decoded.clear()  # the pixels go with the budget
    if failed is not None:  # one at a time to find the image at fault, each under a budget of its own
        if len(decoded_images) > 1:
            return [done for image in decoded_images for done in _analyze(job, [image], policies, results)]
        refused(decoded_images[0], failed)
        return []
    kept = []
    for image, size, analysis in zip(decoded_images, sizes, found):
        try:
            image.found = processing.detect(image.id, job.scope, [{"filename": image.name}], policies, False,
                                            [size], [analysis])
        except APIError as exc:
            refused(image, exc)
            continue
        kept.append(image)
    return kept


def _match(job: Job, images: list[_Image], match_policy: list[dict[str, Any]]) -> None:
    """Every face of the batch against the match policy's candidates in one search per match
    (``processing.match`` adds the matches to the faces in place)."""
    together = {"images": [image.found["images"][0] for image in images]}
    with session_scope() as session:
        processing.match(session, job.scope, together, match_policy, changes.last_seq(session))


def _reader(job: Job) -> Any:
    source_config = job.content["source"]
    if sources.sources()[source_config["type"]].transient:
        return sources.Packed(job.get_blob(f"part-{job.part}"))
    return sources.open_source(source_config, job.scope)


def part(job: Job, content: dict[str, Any]) -> list[dict[str, Any]]:
    policies, origin = _policies(job)
    names: list[str] = content["files"]
    results: dict[str, dict[str, Any]] = {}
    # Every file is read first and the source closed before the models run: a part holds a
    # session of the server (FTP's max_sessions) for the transfers only, not through the models.
    reader = _reader(job)
    try:
        images = _read(job, reader, names, results)
    finally:
        reader.close()
    request_time = datetime.now(timezone.utc).isoformat()
    keep_origin = policies["storage_policy"]["image_origin_policy"]["store_image"]
    step = pipeline.batch_limit(settings.current().inference_batch_max)
    for start in range(0, len(images), step):
        batch = _analyze(job, images[start:start + step], policies, results)
        if batch and policies["match_policy"]:
            _match(job, batch, policies["match_policy"])
        if keep_origin:  # the save step copies the origin from the source-image bucket
            for image in batch:
                image_store.put(sdk.SOURCE, job.scope, image.data, "application/octet-stream",
                                object_id=image.id, ttl=sdk.SOURCE_TTL_DAYS)
                image.refs = [{"image_id": image.id, "filename": image.name}]
        saved = processing.save_many(job.scope, origin, policies, [
            (image.found, {"images": [{"filename": image.name}], "time": request_time}, image.refs)
            for image in batch]) if batch else []
        for image, events in zip(batch, saved):
            results[image.name] = {"filename": image.name, "status": "success", "events": events}
        job.progress(min(start + step, len(images)), len(images))
    return [results[name] for name in names]


def merge(job: Job, partials: Iterator[list[dict[str, Any]]]) -> Result:
    entries: list[dict[str, Any]] = []
    parts = 0
    for partial in partials:
        entries += partial
        parts += 1
    if sources.sources()[job.content["source"]["type"]].transient:
        for n in range(parts):
            job.delete_blob(f"part-{n}")
    return Result(entries)


registry.register(TaskType(
    "estimator", EstimatorContentSchema, split, part, merge,
    description="process the images of a ZIP archive, S3 bucket, network disk, FTP or Samba folder with a "
                "handler's policies: events per image",
    queue="gpu", check=check, unschedulable=unschedulable,
    secrets=tuple(f"source.{path}" for path in sources.secrets())))
