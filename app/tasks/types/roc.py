"""ROC curve of the platform's matching on a labelled set of faces (the markup).

Every pair of the markup's faces is compared once: a pair of one label is genuine, of two labels
an impostor. Thresholding at each pair similarity gives a point (FPR, TPR) of the curve; from it
come the area under it (AUC), the equal-error point (FPR = 1 - TPR) and the TPR at the key FPRs.
The hit-into-top-N probability asks, of each face that has a same-label partner, whether one is
among its ``limit`` most similar faces at least ``threshold_hit_top`` similar.

One part: the markup is at most ``MARKUP_MAX`` faces, whose pair similarities (12.5M at most) fit
in memory; they are computed a tile of whole rows at a time (``matcher.blocks.tiles``).
"""
from __future__ import annotations

import json
from typing import Any, Iterator

import numpy as np
from marshmallow import ValidationError, fields, validate, validates_schema

from app import settings
from app.db import session_scope
from app.errors import APIError
from app.schemas import StrictSchema
from app.tasks import objects, registry
from app.tasks.registry import Result, TaskType
from app.tasks.runner import Job
from matcher.blocks import tiles
from matcher.similarity import similarity

MARKUP_MAX = 5000
KEY_FPRS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
CURVE_POINTS = 1000  # the curve as returned: at most this many of its points, evenly spread over them


def _label(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (isinstance(value, str) and len(value) > 128):
        raise ValidationError("a label is an integer or a string of at most 128 characters")


class MarkupSchema(StrictSchema):
    face_id = fields.UUID(required=True)
    label = fields.Raw(required=True, validate=_label, metadata={
        "description": "integer or string; faces of one label show one person",
        "oneOf": [{"type": "integer"}, {"type": "string", "maxLength": 128}]})


class RocSchema(StrictSchema):
    markup = fields.List(fields.Nested(MarkupSchema), required=True, validate=validate.Length(min=2, max=MARKUP_MAX))
    threshold_hit_top = fields.Float(load_default=0.0, validate=validate.Range(0, 1),
                                     metadata={"description": "least similarity of a top-N match"})
    limit = fields.Integer(load_default=5, validate=validate.Range(1, 100), metadata={"description": "N of top-N"})
    key_FPRs = fields.List(fields.Float(validate=validate.Range(0, 1, min_inclusive=False),
                                        metadata={"exclusiveMinimum": True}),
                           load_default=lambda: list(KEY_FPRS), validate=validate.Length(min=1, max=20),
                           metadata={"description": "FPRs at which the curve's TPR and threshold are given"})

    @validates_schema
    def _pairs(self, data: dict[str, Any], **_: Any) -> None:
        ids = [m["face_id"] for m in data.get("markup") or []]
        if len(set(ids)) != len(ids):
            raise ValidationError("each face once", "markup")
        labels = [_key(m["label"]) for m in data.get("markup") or []]
        if labels and (len(set(labels)) == len(labels) or len(set(labels)) == 1):
            raise ValidationError("needs two faces of one label and faces of two labels", "markup")


def _key(label: Any) -> str:
    return json.dumps(label)  # 1 and "1" are two labels


def _point(fpr: float, tpr: float, threshold: float | None) -> dict[str, Any]:
    return {"fpr": float(fpr), "tpr": float(tpr), "threshold": None if threshold is None else float(threshold)}


def evaluate(x: np.ndarray, labels: list[Any], limit: int, threshold_hit_top: float,
             key_fprs: list[float], *, version: int) -> dict[str, Any]:
    """The ROC figures of descriptors ``x`` (rows, of descriptor ``version``) labelled ``labels``."""
    codes = np.unique([_key(v) for v in labels], return_inverse=True)[1]
    n = len(codes)
    scores, genuine = [], []
    hits = references = 0
    for r0, _, squared in tiles(x, x, same=True, cols=n):
        sims = np.asarray(similarity(np.sqrt(squared), version))
        rows = np.arange(r0, r0 + len(sims))
        same = codes[rows][:, None] == codes[None, :]
        upper = rows[:, None] < np.arange(n)[None, :]
        scores.append(sims[upper])
        genuine.append(same[upper])
        sims[np.arange(len(rows)), rows] = -np.inf  # a face is not its own match
        same[np.arange(len(rows)), rows] = False
        top = np.argpartition(-sims, min(limit, n) - 1, axis=1)[:, :limit]
        taken = np.take_along_axis(sims, top, axis=1) >= threshold_hit_top
        partnered = same.any(axis=1)
        references += int(partnered.sum())
        hits += int((np.take_along_axis(same, top, axis=1) & taken).any(axis=1)[partnered].sum())
    s, g = np.concatenate(scores), np.concatenate(genuine)
    positives, negatives = int(g.sum()), int((~g).sum())
    if not positives or not negatives:
        raise APIError("objects_not_found", "the faces found make no genuine or no impostor pair")
    order = np.argsort(-s, kind="stable")
    s, g = s[order], g[order]
    ends = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # the last pair of each distinct similarity
    tpr = np.r_[0.0, np.cumsum(g)[ends] / positives]
    fpr = np.r_[0.0, np.cumsum(~g)[ends] / negatives]
    thresholds: list[float | None] = [None, *s[ends].tolist()]  # a point counts pairs at least this similar
    gap = fpr - (1.0 - tpr)  # grows along the curve; the equal-error point is where it reaches 0
    k = int(np.argmax(gap >= 0))
    t = 0.0 if gap[k] == 0 else -gap[k - 1] / (gap[k] - gap[k - 1])
    eer = fpr[k - 1] + t * (fpr[k] - fpr[k - 1]) if t else fpr[k]
    keys = [np.searchsorted(fpr, f, side="right") - 1 for f in key_fprs]
    shown = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), CURVE_POINTS)).round().astype(int))
    return {
        "faces": n, "genuine_pairs": positives, "impostor_pairs": negatives,
        "auc": float(np.trapezoid(tpr, fpr)),
        "eer": _point(eer, 1.0 - eer, thresholds[k]),
        "key_points": [{"key_fpr": f, **_point(fpr[i], tpr[i], thresholds[i])} for f, i in zip(key_fprs, keys)],
        "hit_top_n": {"limit": limit, "threshold": threshold_hit_top, "references": references,
                      "probability": hits / references if references else None},
        "roc_curve": [_point(fpr[i], tpr[i], thresholds[i]) for i in shown],
    }


def split(job: Job) -> list[dict[str, Any]]:
    return [{}]


def part(job: Job, content: dict[str, Any]) -> dict[str, Any]:
    markup = job.content["markup"]
    with session_scope() as session:
        found = objects.face_descriptors(session, job.scope, [str(m["face_id"]) for m in markup])
    kept = []
    for m in markup:
        if str(m["face_id"]) in found:
            kept.append(m)
        else:
            job.error("objects_not_found", f"face {m['face_id']} not found or without a descriptor of the "
                                           "default version; left out", m["face_id"])
    job.check_cancelled()
    x = np.stack([found[str(m["face_id"])] for m in kept]) if kept else np.empty((0, 0), dtype=np.float32)
    return evaluate(x, [m["label"] for m in kept], job.content["limit"], job.content["threshold_hit_top"],
                    job.content["key_FPRs"], version=settings.current().face_descriptor_version)


def merge(job: Job, partials: Iterator[Any]) -> Result:
    return Result(next(iter(partials)))


registry.register(TaskType("roc", RocSchema, split, part, merge,
                           description="ROC curve, AUC, equal-error point and top-N hits of a labelled face set"))
