"""The remote SDK: detection, estimation, warping and extraction on behalf of /sdk, /detector, /iso.

Two halves share this module because they share the request's vocabulary (options, image
references, error kinds):

* API side (:func:`run`): store the uploaded images in the source-image bucket with a short TTL,
  send their ids to a ``gpu`` task, wait, and turn the task's answer back into a response or an
  :class:`APIError`. Messages carry ids, never pixels.
* worker side (:func:`load_images`, :func:`finish`): decode the stored images; the batcher in
  ``tasks.inference`` runs ``inference.analysis.analyze`` on a whole batch of images from
  concurrent requests; then store samples and temporary attributes per request, under ids derived
  from the task id.

Errors decided on the worker travel back in the dispatch layer's envelope (``app.dispatch``).
"""
from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import requests

from app import dispatch, settings
from app.attributes import service as attributes
from app.errors import APIError
from app.image_store import service as image_store
from app.image_store.backends.buckets import IMAGE_ORIGIN
from app.scope import Scope
from inference import analysis, descriptor_format, registry
from inference import images as image_check

# Uploaded images are kept byte for byte (the ISO format check needs the original container) in
# the source-image bucket for a day at most; the API deletes them once the task has answered.
SOURCE = image_store.Kind("source_image", IMAGE_ORIGIN, images=False)
SOURCE_TTL_DAYS = 1
# What the models hold beside a decoded image while they analyse it (the detector's working
# copies): 180 MB over the 119 MB of a 6300x6300 RGB array, measured; the worker's decode budget
# holds it too, so concurrent requests wait for it.
ANALYSIS_BYTES_PER_PIXEL = 5
_URL_CHUNK = 64 * 1024


@dataclass
class SourceImage:
    """One image of a request: its bytes and the name errors and answers use; or a stored face
    sample (``sample_id``; its bytes are read with the caller's scope by :func:`load_samples`)."""

    name: str
    data: bytes
    content_type: str = "application/octet-stream"
    sample_id: str | None = None


def load_samples(scope: Scope, images: list[SourceImage]) -> None:
    """Read the face samples among ``images`` from the image store (404 for one the scope does not have)."""
    for image in images:
        if image.sample_id is not None:
            image.data = image_store.load_sample("face", scope, image.sample_id)
            image.content_type = "image/jpeg"


# ---- API side -------------------------------------------------------------------------------
def decode_base64_image(text: str, name: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise APIError("bad_image", f"image '{name}': not valid base64 ({exc})") from None


def fetch_url(url: str, name: str) -> bytes:
    """GET an http(s) image within the size and time limits; only when ``sdk_url_fetch`` is on."""
    s = settings.current()
    if not s.sdk_url_fetch:
        raise APIError("url_fetch_disabled", f"image '{name}': fetching URLs is off (setting sdk_url_fetch)")
    if not url.lower().startswith(("http://", "https://")):
        raise APIError("url_fetch_failed", f"image '{name}': only http and https URLs are fetched")
    limit = int(s.max_request_mb * 1024 * 1024)
    try:
        with requests.get(url, timeout=s.sdk_url_timeout_s, stream=True, allow_redirects=False) as response:
            if response.status_code != 200:
                raise APIError("url_fetch_failed", f"image '{name}': {url} answered HTTP {response.status_code}")
            chunks, size = [], 0
            for chunk in response.iter_content(_URL_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise APIError("url_fetch_failed", f"image '{name}': {url} is larger than "
                                                       f"max_request_mb ({s.max_request_mb:g} MiB)")
                chunks.append(chunk)
    except requests.RequestException as exc:
        raise APIError("url_fetch_failed", f"image '{name}': {type(exc).__name__}: {exc}") from None
    return b"".join(chunks)


def check_count(images: list[SourceImage]) -> None:
    if not images:
        raise APIError("no_images", "send images as a multipart form, a raw image body or JSON {\"images\": [...]}")
    limit = settings.current().sdk_max_images
    if len(images) > limit:
        raise APIError("too_many_images", f"{len(images)} images; at most {limit} per request (setting sdk_max_images)")


def run(task_name: str, scope: Scope, images: list[SourceImage], params: dict[str, Any]) -> dict[str, Any]:
    """Store the images, run ``task_name`` on the ``gpu`` queue with their ids, return its answer.

    The samples the task stored are provisional (they expire with the source images) until the
    answer is here: then they get their bucket's TTL. A caller who never got the answer leaves
    nothing behind for good.
    """
    with stored_sources(scope, images) as refs:
        answer = dispatch.call(dispatch.task(task_name, scope.wire(), refs, params))
    for kind, ids in answer_samples(answer).items():
        image_store.keep(image_store.KINDS[image_store.SAMPLE_KINDS[kind]], scope, ids)
    return answer


def store_sources(scope: Scope, images: list[SourceImage]) -> list[dict[str, str]]:
    """Check every image's header, then store them all in the source-image bucket; the refs that
    tasks load them by. All are refused before any is stored: a refused request leaves nothing behind."""
    check_count(images)
    s = settings.current()
    for image in images:
        with image_store.image_errors(image.name):
            image_check.read_header(image.data, s.inference_max_image_pixels, s.image_decode_budget_mb)
    refs = []
    for image in images:
        obj = image_store.put(SOURCE, scope, image.data, image.content_type, ttl=SOURCE_TTL_DAYS)
        refs.append({"image_id": obj.id, "filename": image.name, **({"sample": True} if image.sample_id else {})})
    return refs


def delete_sources(scope: Scope, refs: list[dict[str, str]]) -> None:
    """Delete the stored source images of a request, once its tasks are done with them."""
    try:
        image_store.delete_many(SOURCE, scope, [r["image_id"] for r in refs])
    except APIError:
        pass  # the one-day TTL removes them anyway


@contextmanager
def stored_sources(scope: Scope, images: list[SourceImage]) -> Iterator[list[dict[str, str]]]:
    """:func:`store_sources` for a block that waits for the tasks reading them, deleted after it."""
    refs = store_sources(scope, images)
    try:
        yield refs
    finally:
        delete_sources(scope, refs)


def answer_samples(answer: dict[str, Any]) -> dict[str, list[str]]:
    """The face and body sample ids an answer names."""
    found: dict[str, list[str]] = {"face": [], "body": []}
    for image in answer.get("images", ()):
        for kind, key in (("face", "faces"), ("body", "bodies")):
            found[kind] += [item["sample_id"] for item in image.get(key) or () if "sample_id" in item]
    return {kind: ids for kind, ids in found.items() if ids}


def estimators() -> dict[str, Any]:
    """What a gpu worker reports about its estimators (the worker's settings decide, not the API's)."""
    return dispatch.call(dispatch.task("inference.estimators"))


# ---- worker side -----------------------------------------------------------------------------
def unavailable_error(exc: analysis.Unavailable | registry.EstimatorUnavailable) -> APIError:
    if isinstance(exc, registry.EstimatorUnavailable):
        exc = analysis.Unavailable(exc, None)
    return APIError("estimator_disabled" if exc.disabled else "estimator_unavailable", str(exc))


@contextmanager
def load_images(scope: Scope, refs: list[dict[str, str]]) -> Iterator[list[tuple[str, np.ndarray]]]:
    """(format, RGB pixels) of each stored source image, decoded under one hold of the process's
    decode budget that lasts until the block ends: the pixels live on through the models, and
    concurrent tasks wait for memory instead of adding to it. Errors name the image."""
    s = settings.current()
    stored = [(ref["filename"], image_store.get(SOURCE, scope, ref["image_id"])[0]) for ref in refs]
    headers = []
    for name, data in stored:
        with image_store.image_errors(name):
            headers.append(image_check.read_header(data, s.inference_max_image_pixels, s.image_decode_budget_mb))
    with image_check.decode_budget(headers, s.image_decode_budget_mb, ANALYSIS_BYTES_PER_PIXEL):
        out = []
        for (name, data), header in zip(stored, headers):
            with image_store.image_errors(name):
                out.append((header.format, image_check.decode(data, header)))
        try:
            yield out
        finally:
            out.clear()  # the pixels go when the budget is given back, whatever still names the list


def derived_id(task_id: str, *parts: Any) -> uuid.UUID:
    """An id for something a task writes, derived from the task id: a redelivered task overwrites
    its own samples and attributes instead of leaving a second copy behind."""
    return uuid.uuid5(uuid.UUID(task_id), "/".join(map(str, parts)))


def finish(task_id: str, scope: Scope, refs: list[dict[str, str]], sizes: list[tuple[int, int]],
           found: list[analysis.Analysis], options: dict[str, Any]) -> dict[str, Any]:
    """Store samples and attributes, build the answer of one request.

    Samples get the source images' provisional TTL; the API gives them their bucket's TTL once the
    caller has the answer (:func:`run`)."""
    images = []
    for n, (ref, (height, width), a) in enumerate(zip(refs, sizes, found)):
        for k, face in enumerate(a.faces):
            if options.get("face_warp"):
                face["sample_id"] = image_store.save_sample("face", scope, a.chips[k],
                                                            derived_id(task_id, n, "face", k), ttl=SOURCE_TTL_DAYS)
            if a.descriptors is not None:
                vector, version = a.descriptors[k], options["descriptor_version"]
                face["descriptor"] = base64.b64encode(descriptor_format.pack(vector, version)).decode()
                face["descriptor_version"] = version
                basic = face.get("basic_attributes")
                record = attributes.create_attribute(
                    scope, descriptors={version: vector},
                    basic_attributes=attributes.stored_basic(basic) if basic else None, sample_ids=[uuid.UUID(face["sample_id"])] if "sample_id" in face else (),
                    attribute_id=derived_id(task_id, n, "attribute", k))
                face["attribute_id"] = str(record.attribute_id)
        for k, body in enumerate(a.bodies):
            if a.body_chips:
                body["sample_id"] = image_store.save_sample("body", scope, a.body_chips[k],
                                                            derived_id(task_id, n, "body", k), ttl=SOURCE_TTL_DAYS)
        entry: dict[str, Any] = {"filename": ref["filename"], "width": width, "height": height}
        if options.get("detect_face"):
            entry["faces"] = a.faces
        if options.get("detect_body"):
            entry["bodies"] = a.bodies
        images.append(entry)
    answer: dict[str, Any] = {"images": images}
    if options.get("aggregate_attributes"):
        answer["aggregate"] = _aggregate(task_id, scope, found, options["descriptor_version"])
    return answer


def _aggregate(task_id: str, scope: Scope, found: list[analysis.Analysis], version: int) -> dict[str, Any]:
    """One person over all images (``inference.analysis.aggregate``), with its temporary attribute."""
    merged = analysis.aggregate(found)
    result: dict[str, Any] = {"faces": len(merged.picked), "sample_ids": [
        found[n].faces[k]["sample_id"] for n, k in merged.picked if "sample_id" in found[n].faces[k]]}
    if merged.basic_attributes is not None:
        result["basic_attributes"] = {**analysis.basic_json(merged.basic_attributes),
                                      "gender_votes": merged.gender_votes}
    if merged.emotions is not None:
        result["emotions"] = analysis.emotions_json(merged.emotions)
    if merged.descriptor is not None:
        result["descriptor"] = base64.b64encode(descriptor_format.pack(merged.descriptor, version)).decode()
        result["descriptor_version"] = version
        record = attributes.create_attribute(
            scope, descriptors={version: merged.descriptor},
            basic_attributes=(attributes.stored_basic(result["basic_attributes"]) if merged.basic_attributes
                              else None),
            sample_ids=[uuid.UUID(s) for s in result["sample_ids"]], attribute_id=derived_id(task_id, "aggregate"))
        result["attribute_id"] = str(record.attribute_id)
    return result
