"""Events from images: ``POST /handlers/{handler_id}/events`` as a chain of three tasks.

* ``inference.handler_detect`` (``gpu``): decode the request's images, run detection, estimations
  and extraction in the batcher with other requests' images, drop the faces the detect policy
  filters out, store the samples the storage policy keeps (:func:`detect`).
* ``matcher.handler_match`` (``matcher``, only with a match policy): every face's descriptor
  against the candidates of each match (:func:`match`).
* ``handlers.save_events`` (``cpu``): faces, list links, temporary attributes, the source image,
  the events and their outbox rows, all of one request in one transaction (:func:`save`).

The events themselves are a pure function of what the first two steps found, the policies and the
request (:func:`build_events`): the save step and the API (with ``wait_saving`` off it answers
from the matcher step's result and lets the save step finish behind it) build the same events.
Every id is derived from the first task's id, so a redelivered step writes what its first run
wrote, and an answer given before saving names the rows saving will create.
"""
from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
from sqlalchemy import select

from app import dispatch
from app.attributes import service as attributes
from app.db import session_scope
from app.errors import APIError
from app.events import service as events
from app.events.models import Outbox
from app.faces import service as faces
from app.faces.models import Face
from app.handlers.models import DYNAMIC, Handler
from app.handlers.schemas import PoliciesSchema
from app.handlers.service import check_policies
from app.image_store import service as image_store
from app.matching import service as matching
from app.scope import Scope, get_or_404, scoped
from app.sdk import service as sdk
from inference import analysis

DETECT_TASK, MATCH_TASK, SAVE_TASK = "inference.handler_detect", "matcher.handler_match", "handlers.save_events"
QUALITY_SCORES = ("blur", "darkness", "lightness", "illumination", "specularity")
AGGREGATE_NAME = "aggregate"
# How long a save step sent behind an answer (wait_saving off) may wait in its queue: the caller
# has the event ids, so the step must run however busy the cpu queue is, not expire with the wait.
DETACHED_SAVE_EXPIRY = timedelta(days=1)


# ---- API side ----------------------------------------------------------------------------------
def request_policies(session: Any, scope: Scope, handler: Handler, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The policies an event request runs under: the handler's, or (dynamic) the request's, checked
    as a handler's would be at creation."""
    if handler.handler_type == DYNAMIC:
        if given is None:
            raise APIError("policies_conflict", "a dynamic handler takes its policies with each request: give policies")
        check_policies(session, scope, given)
        return PoliciesSchema().dump(given)
    if given is not None:
        raise APIError("policies_conflict", "this handler is static: its stored policies apply, give none here")
    return dict(handler.policies or {})


def detect_options(policies: Mapping[str, Any]) -> dict[str, Any]:
    """The /sdk options (``inference.analysis``) the detect and extract policies need."""
    detect, extract = policies["detect_policy"], policies["extract_policy"]
    storage = policies["storage_policy"]
    options = {option: int(bool(detect.get(option))) for option in analysis.FACE_ESTIMATIONS}
    options["estimate_basic_attributes"] |= int(extract["extract_basic_attributes"])
    return {**options, "detect_face": int(detect["detect_face"]), "detect_body": int(detect["detect_body"]),
            "face_warp": 1, "body_warp": int(storage["body_sample_policy"]["store_sample"]),
            "extract_descriptor": int(extract["extract_face_descriptor"]),
            "descriptor_version": extract["descriptor_version"]}


def generate(scope: Scope, handler_id: uuid.UUID, images: list[sdk.SourceImage],
             body: dict[str, Any]) -> dict[str, Any]:
    """Run the chain for one request and answer its events (see the module's docstring)."""
    with session_scope() as session:
        handler = get_or_404(session, Handler, handler_id, scope)
        policies = request_policies(session, scope, handler, body.pop("policies", None))
        origin = {"handler_id": str(handler.handler_id), "version": handler.version}
    per_image = body.pop("images", None) or [{} for _ in images]
    if len(per_image) != len(images):
        raise APIError("validation", f"images: {len(per_image)} entries of fields for {len(images)} images")
    request = {**_jsonable(body), "images": [{**_jsonable(fields), "filename": image.name}
                                             for fields, image in zip(per_image, images)],
               "time": datetime.now(timezone.utc).isoformat()}
    sdk.load_samples(scope, images)
    refs = sdk.store_sources(scope, images)
    wire = scope.wire()
    steps = [dispatch.task(DETECT_TASK, wire, refs, policies, bool(request.get("aggregate_attributes")))]
    if policies["match_policy"]:
        steps.append(dispatch.task(MATCH_TASK, wire, policies["match_policy"]))
    save = dispatch.task(SAVE_TASK, wire, origin, policies, request, refs)
    wait_saving = policies["storage_policy"]["event_policy"]["wait_saving"]
    if not wait_saving:
        save.set(expires=datetime.now(timezone.utc) + DETACHED_SAVE_EXPIRY)
    try:
        result = dispatch.send(dispatch.chain_of(*steps, save))
        if wait_saving:
            made = dispatch.wait(result)
        else:
            made = build_events(dispatch.wait(result.parent), scope, origin, policies, request)
    except APIError:
        sdk.delete_sources(scope, refs)  # the save step, which deletes them, may never run
        raise
    # times as the stored events show them (task messages carry them as text)
    return {"events": [{**e, "create_time": datetime.fromisoformat(e["create_time"]),
                        "end_time": datetime.fromisoformat(e["end_time"])} for e in made]}


def _jsonable(value: Any) -> Any:
    """Request fields as task messages carry them (JSON): UUIDs and times as text."""
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


# ---- gpu step ----------------------------------------------------------------------------------
def _vector_text(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


def vector_of(face: Mapping[str, Any]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(face["descriptor"]), dtype="<f4")


def _kept(policy: Mapping[str, Any], faces_: list[dict[str, Any]], filename: str) -> list[int]:
    """Indices of the faces the detect policy keeps, largest first for ``largest``."""
    kept = []
    for k, face in enumerate(faces_):
        if face["detection"]["score"] < policy.get("min_detection_score", 0.0):
            continue
        pose = face.get("head_pose") or {}
        if any(abs(pose.get(axis, 0.0)) > policy[f"{axis}_threshold"]
               for axis in ("yaw", "pitch", "roll") if f"{axis}_threshold" in policy):
            continue
        if "min_quality" in policy and min(face["quality"][s] for s in QUALITY_SCORES) < policy["min_quality"]:
            continue
        kept.append(k)
    if policy["multiface_policy"] == "largest" and kept:
        kept = [max(kept, key=lambda k: faces_[k]["detection"]["rect"]["width"])]
    elif policy["multiface_policy"] == "single" and len(kept) > 1:
        raise APIError("multiple_faces", f"image '{filename}': {len(kept)} faces, and the handler's "
                                         "multiface_policy is single")
    return kept


def detect(task_id: str, scope: Scope, refs: list[dict[str, str]], policies: Mapping[str, Any],
           aggregate: bool, sizes: list[tuple[int, int]], found: list[analysis.Analysis]) -> dict[str, Any]:
    """What the models found in each image, filtered by the detect policy, samples stored as the
    storage policy says (with the source images' provisional TTL until the save step)."""
    storage = policies["storage_policy"]
    store_faces = storage["face_sample_policy"]["store_sample"]
    version = policies["extract_policy"]["descriptor_version"]
    images = []
    for n, (ref, (height, width), a) in enumerate(zip(refs, sizes, found)):
        kept = _kept(policies["detect_policy"], a.faces, ref["filename"]) if a.faces else []
        out_faces = []
        for k in kept:
            face = dict(a.faces[k])
            if store_faces:
                face["sample_id"] = image_store.save_sample("face", scope, a.chips[k],
                                                            sdk.derived_id(task_id, n, "face", k),
                                                            ttl=sdk.SOURCE_TTL_DAYS)
            if a.descriptors is not None:
                face["descriptor"], face["descriptor_version"] = _vector_text(a.descriptors[k]), version
            out_faces.append(face)
        bodies = []
        for k, body in enumerate(a.bodies):
            body = dict(body)
            if a.body_chips:
                body["sample_id"] = image_store.save_sample("body", scope, a.body_chips[k],
                                                            sdk.derived_id(task_id, n, "body", k),
                                                            ttl=sdk.SOURCE_TTL_DAYS)
            bodies.append(body)
        # only the kept faces take part in an aggregate
        a.faces, a.chips = [a.faces[k] for k in kept], [a.chips[k] for k in kept]
        a.estimates = {option: [values[k] for k in kept] for option, values in a.estimates.items()}
        if a.descriptors is not None:
            a.descriptors = a.descriptors[kept] if kept else None
        images.append({"filename": ref["filename"], "width": width, "height": height,
                       "faces": out_faces, "bodies": bodies})
    result: dict[str, Any] = {"task_id": task_id, "images": images}
    if aggregate:
        result["aggregate"] = _aggregate(found, images, version)
    return result


def _aggregate(found: list[analysis.Analysis], images: list[dict[str, Any]], version: int) -> dict[str, Any]:
    """One face over all images (each image's largest kept face, merged), as an image of its own."""
    merged = analysis.aggregate(found)
    face: dict[str, Any] = {"aggregated_from": [{"filename": images[n]["filename"], "face": k}
                                                for n, k in merged.picked],
                            "sample_ids": [images[n]["faces"][k]["sample_id"] for n, k in merged.picked
                                           if "sample_id" in images[n]["faces"][k]]}
    if merged.basic_attributes is not None:
        face["basic_attributes"] = analysis.basic_json(merged.basic_attributes)
    if merged.emotions is not None:
        face["emotions"] = analysis.emotions_json(merged.emotions)
    if merged.descriptor is not None:
        face["descriptor"], face["descriptor_version"] = _vector_text(merged.descriptor), version
    return {"filename": AGGREGATE_NAME, "faces": [face] if merged.picked else [], "bodies": []}


# ---- matcher step ------------------------------------------------------------------------------
def _units(found: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What becomes an event each: the images, or the one aggregate."""
    return [found["aggregate"]] if "aggregate" in found else found["images"]


def match(session: Any, scope: Scope, found: dict[str, Any], match_policy: Sequence[Mapping[str, Any]],
          seq: int) -> dict[str, Any]:
    """Each face with a descriptor against each match's candidates; ``matches`` added to the faces."""
    with_vectors = [face for unit in _units(found) for face in unit["faces"] if "descriptor" in face]
    if not with_vectors:
        return found
    refs = [matching.Reference("descriptor", str(n), face["descriptor_version"], vector_of(face))
            for n, face in enumerate(with_vectors)]
    for face in with_vectors:
        face["matches"] = []
    for policy in match_policy:
        list_id = policy["candidates"].get("list_id")
        filters = {"list_id": uuid.UUID(str(list_id))} if list_id else {}
        answers = matching.match(session, scope, refs, "faces", filters, policy["limit"], policy["threshold"], seq)
        for face, answer in zip(with_vectors, answers):
            face["matches"].append({"label": policy["label"], "candidates": answer["matches"]})
    return found


# ---- the events --------------------------------------------------------------------------------
def _best(face: Mapping[str, Any], label: str | None = None) -> tuple[float | None, dict[str, Any] | None, str | None]:
    """The face's best candidate (of the match ``label``, or of any): similarity, candidate, label."""
    best: tuple[float | None, dict[str, Any] | None, str | None] = (None, None, None)
    for m in face.get("matches") or ():
        if label is not None and m["label"] != label:
            continue
        for c in m["candidates"][:1]:
            if best[0] is None or c["similarity"] > best[0]:
                best = (c["similarity"], c, m["label"])
    return best


def holds(filters: Mapping[str, Any] | None, face: Mapping[str, Any]) -> bool:
    """Whether one face's results meet a ``ResultFilterSchema`` filter (every condition given)."""
    if not filters:
        return True
    similarity = _best(face, filters.get("label"))[0]
    if "similarity__gte" in filters and (similarity is None or similarity < filters["similarity__gte"]):
        return False
    if "similarity__lte" in filters and (similarity is None or similarity > filters["similarity__lte"]):
        return False
    basic = face.get("basic_attributes") or {}
    if "age__gte" in filters and not ("age" in basic and basic["age"] >= filters["age__gte"]):
        return False
    if "age__lt" in filters and not ("age" in basic and basic["age"] < filters["age__lt"]):
        return False
    return "gender" not in filters or basic.get("gender_label") == filters["gender"]


def _any_holds(filters: Mapping[str, Any] | None, faces_: Sequence[Mapping[str, Any]]) -> bool:
    return not filters or any(holds(filters, face) for face in faces_)


def largest_face(faces_: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The face an event's attributes describe: the largest (an aggregate's one face has no box)."""
    return max(faces_, key=lambda f: f["detection"]["rect"]["width"] if "detection" in f else 0.0)


def _face_attributes(face: Mapping[str, Any]) -> dict[str, Any] | None:
    """What an event keeps as ``attributes`` (filters ``attributes.*`` read it): its largest face's estimations."""
    keys = [e.key for e in analysis.FACE_ESTIMATIONS.values() if e.key not in ("landmarks68",)]
    found = {key: face[key] for key in keys if key in face}
    return found or None


def build_events(found: Mapping[str, Any], scope: Scope, origin: Mapping[str, Any], policies: Mapping[str, Any],
                 request: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The events of one request, as the API answers them and the save step stores them."""
    task_id = found["task_id"]
    storage = policies["storage_policy"]
    store_face = storage["face_policy"]["store_face"]
    store_attribute = storage["attribute_policy"]["store_attribute"]
    store_image = storage["image_origin_policy"]["store_image"]
    location = request.get("location") or {}
    geo = location.get("geo_position") or {}
    aggregated = "aggregate" in found
    out = []
    for n, unit in enumerate(_units(found)):
        fields = {} if aggregated else request["images"][n]
        detections = []
        for k, face in enumerate(unit["faces"]):
            shown = {key: value for key, value in face.items() if key not in ("descriptor",)}
            if store_face and "descriptor" in face:
                shown["face_id"] = str(sdk.derived_id(task_id, n, "stored_face", k))
            if store_attribute and ("descriptor" in face or "basic_attributes" in face):
                shown["attribute_id"] = str(sdk.derived_id(task_id, n, "attribute", k))
            detections.append({"type": "face", **shown})
        detections += [{"type": "body", **body} for body in unit["bodies"]]
        face_items = [d for d in detections if d["type"] == "face"]
        similarity, candidate, _ = max((_best(f) for f in face_items), key=lambda b: -1 if b[0] is None else b[0],
                                       default=(None, None, None))
        tags = list(dict.fromkeys([*(request.get("tags") or ()),
                                   *(t["tag"] for t in policies["conditional_tags_policy"]
                                     if _any_holds(t.get("filters"), face_items))]))
        meta = {**(request.get("meta") or {}), **(fields.get("meta") or {})}
        event = {
            "event_id": str(sdk.derived_id(task_id, n, "event")), "account_id": str(scope.owner),
            "handler_id": origin["handler_id"], "handler_version": origin["version"],
            "create_time": request["time"], "end_time": request["time"],
            "source": request.get("source"), "tags": tags or None,
            "external_id": fields.get("external_id") or request.get("external_id"),
            "user_data": request.get("user_data"), "track_id": fields.get("track_id") or request.get("track_id"),
            "stream_id": request.get("stream_id"),
            "face_id": next((f["face_id"] for f in face_items if "face_id" in f), None),
            "attributes": _face_attributes(largest_face(face_items)) if face_items else None,
            "top_candidate_id": candidate.get("face_id") if candidate else None, "top_similarity": similarity,
            "meta": meta or None, "detections": detections,
            "location": {**{name: location.get(name) for name in events.LOCATION},
                         "geo_position": geo or None},
            "filename": unit["filename"],
            "image_origin_id": (str(sdk.derived_id(task_id, n, "image_origin"))
                                if store_image and not aggregated else None),
        }
        out.append(event)
    return out


def callbacks_of(event: Mapping[str, Any], policies: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The callbacks whose filters the event's faces meet, without their filters."""
    faces_ = [d for d in event["detections"] if d["type"] == "face"]
    return [{k: v for k, v in callback.items() if k != "filters"} for callback in policies["callbacks"]
            if _any_holds(callback.get("filters"), faces_)]


# ---- cpu step ----------------------------------------------------------------------------------
def _event_row(event: Mapping[str, Any]) -> dict[str, Any]:
    location = event["location"]
    geo = location.get("geo_position") or {}
    return {"event_id": uuid.UUID(event["event_id"]), "handler_id": uuid.UUID(event["handler_id"]),
            "create_time": datetime.fromisoformat(event["create_time"]),
            "end_time": datetime.fromisoformat(event["end_time"]), "source": event["source"], "tags": event["tags"],
            "external_id": event["external_id"], "user_data": event["user_data"], "track_id": event["track_id"],
            "stream_id": uuid.UUID(event["stream_id"]) if event["stream_id"] else None,
            "face_id": uuid.UUID(event["face_id"]) if event["face_id"] else None,
            "attributes": event["attributes"],
            "top_candidate_id": uuid.UUID(event["top_candidate_id"]) if event["top_candidate_id"] else None,
            "top_similarity": event["top_similarity"], "meta": event["meta"], "detections": event["detections"],
            "image_origin_id": uuid.UUID(event["image_origin_id"]) if event["image_origin_id"] else None,
            **{name: location.get(name) for name in events.LOCATION},
            "longitude": geo.get("longitude"), "latitude": geo.get("latitude")}


def _event_faces(events_: list[dict[str, Any]],
                 found: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """(event, face as the steps found it, with its descriptor; the face's detection in the event)."""
    for event, unit in zip(events_, _units(found)):
        yield from ((event, face, detection) for face, detection in
                    zip(unit["faces"], [d for d in event["detections"] if d["type"] == "face"]))


def _face_items(events_: list[dict[str, Any]], found: Mapping[str, Any], policies: Mapping[str, Any],
                request: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The faces to create (``faces.create_faces`` items), with the lists their link filters allow."""
    links = policies["storage_policy"]["face_policy"]["link_to_lists_policy"]
    items = []
    for event, face, detection in _event_faces(events_, found):
        if "face_id" in detection:
            basic = face.get("basic_attributes")
            items.append({
                "face_id": uuid.UUID(detection["face_id"]), "event_id": uuid.UUID(event["event_id"]),
                "descriptors": [{"format": "raw", "descriptor": face["descriptor"],
                                 "version": face["descriptor_version"]}],
                "basic_attributes": attributes.stored_basic(basic) if basic else None,
                "sample_ids": [face["sample_id"]] if "sample_id" in face else face.get("sample_ids") or [],
                "external_id": event["external_id"], "user_data": request.get("user_data") or "",
                "list_ids": [uuid.UUID(str(link["list_id"])) for link in links
                             if holds(link.get("filters"), detection)]})
    return items


def _store_objects(events_: list[dict[str, Any]], found: Mapping[str, Any], scope: Scope,
                   policies: Mapping[str, Any], refs: list[dict[str, str]]) -> None:
    """Samples get their policy's TTL, attributes and origin images are written (all idempotent)."""
    storage = policies["storage_policy"]
    for kind, key in (("face", "face_sample_policy"), ("body", "body_sample_policy")):
        ids = [d["sample_id"] for e in events_ for d in e["detections"] if d["type"] == kind and "sample_id" in d]
        if ids and storage[key]["store_sample"]:
            sample_kind = image_store.KINDS[image_store.SAMPLE_KINDS[kind]]
            ttl = storage[key].get("ttl")
            if ttl is None:
                image_store.keep(sample_kind, scope, ids)
            else:
                for sample_id in ids:
                    image_store.set_ttl(sample_kind, scope, sample_id, ttl)
    attribute_ttl = storage["attribute_policy"].get("ttl")
    for _, face, detection in _event_faces(events_, found):
        if "attribute_id" in detection:
            basic = face.get("basic_attributes")
            attributes.create_attribute(
                scope, descriptors={face["descriptor_version"]: vector_of(face)} if "descriptor" in face else None,
                basic_attributes=attributes.stored_basic(basic) if basic else None,
                sample_ids=[uuid.UUID(face["sample_id"])] if "sample_id" in face else (),
                ttl=attribute_ttl, attribute_id=uuid.UUID(detection["attribute_id"]))
    for n, event in enumerate(events_):
        if event["image_origin_id"]:  # one event per image then, in the images' order
            data, _ = image_store.get(sdk.SOURCE, scope, refs[n]["image_id"])
            image_store.put(image_store.KINDS["image"], scope, data, "application/octet-stream",
                            object_id=event["image_origin_id"], ttl=storage["image_origin_policy"].get("ttl"))


def _event_descriptors(events_: list[dict[str, Any]], found: Mapping[str, Any]) -> list[tuple[uuid.UUID, int, bytes]]:
    """Each event's largest face's descriptor, as the events' matching uses it."""
    out = []
    for event, unit in zip(events_, _units(found)):
        with_vectors = [face for face in unit["faces"] if "descriptor" in face]
        if with_vectors:
            face = largest_face(with_vectors)
            out.append((uuid.UUID(event["event_id"]), face["descriptor_version"], vector_of(face).tobytes()))
    return out


def _already_saved(session: Any, scope: Scope, made: list[list[dict[str, Any]]],
                   face_items: list[list[dict[str, Any]]]) -> list[bool]:
    """Which requests an earlier run of this step committed (everything of a request is in one
    transaction): its faces, or the outbox rows of its events (written for stored events and for
    announced ones). Two queries, however many requests."""
    ids = {uuid.UUID(e["event_id"]) for events_ in made for e in events_}
    outboxed = set(session.scalars(select(Outbox.event_id).where(Outbox.event_id.in_(ids)))) if ids else set()
    firsts = [items[0]["face_id"] for items in face_items if items]
    stored = set(session.scalars(scoped(Face, scope, Face.face_id).where(Face.face_id.in_(firsts)))) if firsts else set()
    return [any(uuid.UUID(e["event_id"]) in outboxed for e in events_) or bool(items and items[0]["face_id"] in stored)
            for events_, items in zip(made, face_items)]


def save(found: Mapping[str, Any], scope: Scope, origin: Mapping[str, Any], policies: Mapping[str, Any],
         request: Mapping[str, Any], refs: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Store what the policies keep, all rows of the request in one transaction; the events answered."""
    return save_many(scope, origin, policies, [(found, request, refs)])[0]


def save_many(scope: Scope, origin: Mapping[str, Any], policies: Mapping[str, Any],
              requests: Sequence[tuple[Mapping[str, Any], Mapping[str, Any], list[dict[str, str]]]]
              ) -> list[list[dict[str, Any]]]:
    """:func:`save` of several requests (found, request, refs) under one handler's policies (the
    estimator's images, a request each) with the rows of all of them in one transaction: a request
    an earlier run saved is left as it is, the others are saved. The events of each request."""
    made = [build_events(found, scope, origin, policies, request) for found, request, _ in requests]
    for events_, (found, _, refs) in zip(made, requests):
        _store_objects(events_, found, scope, policies, refs)
    store_event = policies["storage_policy"]["event_policy"]["store_event"]
    face_items = [_face_items(events_, found, policies, request) for events_, (found, request, _) in zip(made, requests)]
    announced = False
    with session_scope() as session:
        new = [n for n, saved in enumerate(_already_saved(session, scope, made, face_items)) if not saved]
        if new:
            new_faces = [item for n in new for item in face_items[n]]
            if new_faces:
                faces.create_faces(session, scope, new_faces)
            new_events = [e for n in new for e in made[n]]
            rows = [_event_row(e) for e in new_events] if store_event else []
            notices = [(e, callbacks_of(e, policies)) for e in new_events]
            if rows:
                events.save_events(session, scope, rows, notices)
                events.save_descriptors(session, scope, [d for n in new for d in
                                                         _event_descriptors(made[n], requests[n][0])])
            else:
                events.announce(session, scope, notices)
            announced = any(callbacks for _, callbacks in notices)
    refs = [ref for _, _, request_refs in requests for ref in request_refs]
    if refs:
        sdk.delete_sources(scope, refs)
    if announced:
        dispatch.enqueue(dispatch.task("notifications.relay"))
    return made
