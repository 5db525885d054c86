"""The remote SDK: detection, estimation, warping and extraction on behalf of /sdk, /detector, /iso.

Two halves share this module because they share the request's vocabulary (options, image
references, error kinds):

* API side (:func:`run`): store the uploaded images in the source-image bucket with a short TTL,
  send their ids to a ``gpu`` task, wait, and turn the task's answer back into a response or an
  :class:`APIError`. Messages carry ids, never pixels.
* worker side (:func:`load_images`, :func:`analyze`, :func:`finish`): decode, run the models on a
  whole batch of images from concurrent requests (``analyze`` is what the batcher in
  ``tasks.inference`` calls), then store samples and temporary attributes per request.

Tasks cannot raise :class:`APIError` through Celery (it would reach the API as a 500), so the
worker answers ``{"error": {"kind": ..., "detail": ...}}`` and :func:`run` raises it here.
"""
from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import requests

from app import settings
from app.errors import APIError
from app.services import attributes, image_store, workers
from app.storage.buckets import IMAGE_ORIGIN
from inference import descriptor_format, pipeline, registry
from inference.images import ImageDecodeError, ImageTooLarge, decode_image
from inference.types import Detection

# Uploaded images are kept byte for byte (the ISO format check needs the original container) in
# the source-image bucket for a day at most; the API deletes them once the task has answered.
SOURCE = image_store.Kind("source_image", IMAGE_ORIGIN, images=False)
SOURCE_TTL_DAYS = 1
_URL_CHUNK = 64 * 1024


@dataclass
class SourceImage:
    """One image of a request: its bytes and the name errors and answers use."""

    name: str
    data: bytes
    content_type: str = "application/octet-stream"


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


def run(task_name: str, account_id: uuid.UUID, images: list[SourceImage], params: dict[str, Any]) -> dict[str, Any]:
    """Store the images, run ``task_name`` on the ``gpu`` queue with their ids, return its answer."""
    from tasks import celery  # the API only sends; importing the worker side lazily keeps app importable alone

    check_count(images)
    refs = []
    for image in images:
        if not image.data:
            raise APIError("bad_image", f"image '{image.name}': empty")
        obj = image_store.put(SOURCE, account_id, image.data, image.content_type, ttl=SOURCE_TTL_DAYS)
        refs.append({"image_id": obj.id, "filename": image.name})
    try:
        _, answer = workers.run_and_wait(celery.signature(task_name, args=(str(account_id), refs, params)))
    finally:
        try:
            image_store.delete_many(SOURCE, account_id, [r["image_id"] for r in refs])
        except APIError:
            pass  # the one-day TTL removes them anyway
    if "error" in answer:
        raise APIError(answer["error"]["kind"], answer["error"]["detail"])
    return answer


def estimators() -> dict[str, Any]:
    """What a gpu worker reports about its estimators (the worker's settings decide, not the API's)."""
    from tasks import celery

    _, answer = workers.run_and_wait(celery.signature("inference.estimators"))
    return answer


# ---- worker side: errors ----------------------------------------------------------------------
def unavailable_error(exc: registry.EstimatorUnavailable, option: str | None = None) -> APIError:
    needed = f" (needed by {option})" if option else ""
    kind = "estimator_disabled" if exc.name in registry.ENTRIES and not registry.is_enabled(exc.name) else "estimator_unavailable"
    return APIError(kind, f"{exc}{needed}")


def require_estimators(options: dict[str, Any], needs: dict[str, tuple[str, ...]]) -> None:
    """Load (or find loaded) every model the options ask for, before any work is queued."""
    for option, names in needs.items():
        if options.get(option):
            for name in names:
                try:
                    registry.get(name)
                except registry.EstimatorUnavailable as exc:
                    raise unavailable_error(exc, option) from None


def load_images(account_id: str, refs: list[dict[str, str]]) -> list[tuple[bytes, np.ndarray]]:
    """(bytes, RGB pixels) of each stored source image; errors name the image."""
    max_pixels = settings.current().inference_max_image_pixels
    out = []
    for ref in refs:
        name = ref["filename"]
        data = image_store.get(SOURCE, account_id, ref["image_id"])[0]
        try:
            out.append((data, decode_image(data, max_pixels)))
        except ImageTooLarge as exc:
            raise APIError("image_too_large", f"image '{name}': {exc} (setting inference_max_image_pixels)") from None
        except ImageDecodeError as exc:
            raise APIError("bad_image", f"image '{name}': {exc}") from None
    return out


# ---- worker side: analysis --------------------------------------------------------------------
@dataclass
class Analysis:
    """Everything the models found in one image; chips stay arrays until :func:`finish` stores them."""

    faces: list[dict[str, Any]] = field(default_factory=list)
    chips: list[np.ndarray] = field(default_factory=list)
    descriptors: np.ndarray | None = None
    basic: list[Any] = field(default_factory=list)
    emotions: list[Any] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    body_chips: list[np.ndarray] = field(default_factory=list)


def _rect(d: Detection) -> dict[str, Any]:
    x, y, w, h = d.box
    return {"rect": {"x": float(x), "y": float(y), "width": float(w), "height": float(h)}, "score": float(d.score)}


def _plain(value: Any) -> Any:
    """Estimator dataclasses -> JSON-ready dicts (numpy scalars become Python numbers)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _basic_json(b: Any) -> dict[str, Any]:
    return {**_plain(asdict(b)), "gender_label": b.gender_label}


def _stored_basic(b: Any) -> dict[str, Any]:
    """Basic attributes as temporary attributes keep them (gender as P(male), like external data)."""
    return {"age": float(b.age), "gender": float(b.gender_score)}


def _emotions_json(e: Any) -> dict[str, Any]:
    return {"predominant": e.predominant, "probabilities": _plain(e.probabilities)}


_MESH_OPTIONS = ("estimate_landmarks68", "estimate_head_pose", "estimate_eyes", "estimate_gaze", "estimate_mouth")


def analyze(items: list[tuple[np.ndarray, dict[str, Any]]]) -> list[Analysis]:
    """Run the requested models on images from any number of requests as one batch.

    ``items`` pairs each RGB image with its request's options. Every network sees all the
    images (or faces) that asked for it at once: detection over the images, then descriptor,
    mesh, age/gender and emotions each over all faces of all images.
    """
    out = [Analysis() for _ in items]

    def wanting(option: str, among: list[int]) -> list[int]:
        return [i for i in among if items[i][1].get(option)]

    everyone = list(range(len(items)))
    face_images = wanting("detect_face", everyone)
    if face_images:
        images = [items[i][0] for i in face_images]
        detections = pipeline.detect(images)
        points = pipeline.landmarks5(images, detections)
        chips = pipeline.warp(images, points)
        by_image = {}
        for i, dets, pts, chs in zip(face_images, detections, points, chips):
            by_image[i] = dets
            out[i].chips = list(chs)
            out[i].faces = [{"detection": _rect(d), "landmarks5": _plain(p.tolist())} for d, p in zip(dets, pts)]
        _estimate_faces(items, out, by_image, dict(zip(face_images, points)), wanting)
    body_images = wanting("detect_body", everyone)
    if body_images:
        from inference.models.body_detector import body_warp

        found = registry.get("body_detector").detect([items[i][0] for i in body_images])
        for i, dets in zip(body_images, found):
            out[i].bodies = [_rect(d) for d in dets]
            if items[i][1].get("body_warp"):
                out[i].body_chips = [body_warp(items[i][0], d.box) for d in dets]
    return out


def _estimate_faces(items: list[tuple[np.ndarray, dict[str, Any]]], out: list[Analysis],
                    detections: dict[int, list[Detection]], points: dict[int, np.ndarray], wanting: Any) -> None:
    with_faces = [i for i in detections if detections[i]]

    chosen = wanting("extract_descriptor", with_faces)
    for version in sorted({items[i][1]["descriptor_version"] for i in chosen}):
        of_version = [i for i in chosen if items[i][1]["descriptor_version"] == version]
        for i, descs in zip(of_version, pipeline.extract([np.stack(out[i].chips) for i in of_version], version)):
            out[i].descriptors = descs

    for i in wanting("estimate_quality", with_faces):
        estimator = registry.get("image_quality")
        for face, chip in zip(out[i].faces, out[i].chips):
            face["quality"] = _plain(asdict(estimator.estimate(chip)))

    chosen = wanting("estimate_basic_attributes", with_faces)
    if chosen:
        estimator = registry.get("basic_attributes")
        cut = [estimator.chips(items[i][0], points[i]) for i in chosen]
        found = iter(estimator.estimate_chips(np.concatenate([a for a, _ in cut]), np.concatenate([g for _, g in cut])))
        for i in chosen:
            out[i].basic = [next(found) for _ in out[i].faces]
            for face, b in zip(out[i].faces, out[i].basic):
                face["basic_attributes"] = _basic_json(b)

    chosen = wanting("estimate_emotions", with_faces)
    if chosen:
        found = registry.get("emotions").estimate_many([(items[i][0], [d.box for d in detections[i]]) for i in chosen])
        for i, emotions in zip(chosen, found):
            out[i].emotions = emotions
            for face, e in zip(out[i].faces, emotions):
                face["emotions"] = _emotions_json(e)

    chosen = [i for i in with_faces if any(items[i][1].get(o) for o in _MESH_OPTIONS)]
    if chosen:
        meshes = iter(registry.get("face_landmarks68").run_many(
            [(items[i][0], d) for i in chosen for d in detections[i]]))
        for i in chosen:
            options = items[i][1]
            for face in out[i].faces:
                mesh = next(meshes)
                if options.get("estimate_landmarks68"):
                    face["landmarks68"] = _plain(mesh.landmarks68.tolist())
                for option, name in (("estimate_head_pose", "head_pose"), ("estimate_eyes", "eyes"),
                                     ("estimate_gaze", "gaze"), ("estimate_mouth", "mouth")):
                    if options.get(option):
                        face[name] = _plain(asdict(registry.get(name).estimate(mesh)))


# ---- worker side: storing what was found ------------------------------------------------------
def _sample_id(task_id: str, *parts: Any) -> str:
    # Derived from the task id, so a redelivered task overwrites its own samples instead of
    # leaving a second copy behind.
    return str(uuid.uuid5(uuid.UUID(task_id), "/".join(map(str, parts))))


def finish(task_id: str, account_id: str, refs: list[dict[str, str]], sizes: list[tuple[int, int]],
           found: list[Analysis], options: dict[str, Any]) -> dict[str, Any]:
    """Store samples and attributes, build the answer of one request."""
    owner = uuid.UUID(account_id)
    images = []
    for n, (ref, (height, width), a) in enumerate(zip(refs, sizes, found)):
        for k, face in enumerate(a.faces):
            if options.get("face_warp"):
                face["sample_id"] = image_store.save_sample("face", owner, a.chips[k], _sample_id(task_id, n, "face", k))
            if a.descriptors is not None:
                vector, version = a.descriptors[k], options["descriptor_version"]
                face["descriptor"] = base64.b64encode(descriptor_format.pack(vector, version)).decode()
                face["descriptor_version"] = version
                record = attributes.create_attribute(
                    owner, descriptors={version: vector},
                    basic_attributes=_stored_basic(a.basic[k]) if a.basic else None,
                    sample_ids=[uuid.UUID(face["sample_id"])] if "sample_id" in face else ())
                face["attribute_id"] = str(record.attribute_id)
        for k, body in enumerate(a.bodies):
            if a.body_chips:
                body["sample_id"] = image_store.save_sample("body", owner, a.body_chips[k], _sample_id(task_id, n, "body", k))
        entry: dict[str, Any] = {"filename": ref["filename"], "width": width, "height": height}
        if options.get("detect_face"):
            entry["faces"] = a.faces
        if options.get("detect_body"):
            entry["bodies"] = a.bodies
        images.append(entry)
    answer: dict[str, Any] = {"images": images}
    if options.get("aggregate_attributes"):
        answer["aggregate"] = _aggregate(owner, found, options["descriptor_version"])
    return answer


def _aggregate(owner: uuid.UUID, found: list[Analysis], version: int) -> dict[str, Any]:
    """One person over all images: each image's largest face; images without a face are left out."""
    from inference import aggregation  # imports torch (through the age/gender model): worker side only

    picked = []
    for a in found:
        if a.faces:
            k = max(range(len(a.faces)), key=lambda j: a.faces[j]["detection"]["rect"]["width"])
            picked.append((a, k))
    result: dict[str, Any] = {"faces": len(picked),
                              "sample_ids": [a.faces[k]["sample_id"] for a, k in picked if "sample_id" in a.faces[k]]}
    if not picked:
        return result
    merged = aggregation.aggregate_attributes(
        [a.basic[k] for a, k in picked] if picked[0][0].basic else (),
        [a.emotions[k] for a, k in picked] if picked[0][0].emotions else ())
    if merged.basic_attributes is not None:
        result["basic_attributes"] = {**_basic_json(merged.basic_attributes), "gender_votes": merged.gender_votes}
    if merged.emotions is not None:
        result["emotions"] = _emotions_json(merged.emotions)
    if picked[0][0].descriptors is not None:
        vector = descriptor_format.aggregate(np.stack([a.descriptors[k] for a, k in picked]))
        result["descriptor"] = base64.b64encode(descriptor_format.pack(vector, version)).decode()
        result["descriptor_version"] = version
        record = attributes.create_attribute(
            owner, descriptors={version: vector},
            basic_attributes=_stored_basic(merged.basic_attributes) if merged.basic_attributes else None,
            sample_ids=[uuid.UUID(s) for s in result["sample_ids"]])
        result["attribute_id"] = str(record.attribute_id)
    return result


def iso_report(data: bytes, image: np.ndarray, thresholds: dict[str, Any] | None) -> dict[str, Any]:
    """ISO/IEC 19794-5-style checks of one image as JSON (``inference.iso``)."""
    import io

    from PIL import Image

    from inference import iso

    with Image.open(io.BytesIO(data)) as header:
        image_format = header.format
    report = iso.check_image(image, image_format, thresholds)
    return {"result": report.result, "face": _rect(report.face) if report.face is not None else None,
            "checks": [_plain(asdict(c)) for c in report.checks]}
