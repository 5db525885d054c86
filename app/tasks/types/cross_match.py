"""Cross-matching: every selected reference against every selected candidate, the best few kept.

Parts are id ranges of the references (``PART_SIZE`` each); a part holds its references
and streams the candidates past them in chunks, in id order, through the matcher's exact blocked
top-k (``matcher.blocks.NearestRows``), so memory is one range, one chunk and the few candidates
that stay in the running whatever the sizes, and every candidate is read once per part.
An object is never its own candidate (when references and candidates are of one type).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Iterator

import numpy as np
from marshmallow import fields, validate

from app import settings
from app.db import session_scope
from app.schemas import SettingMax, StrictSchema
from app.tasks import objects, registry
from app.tasks.registry import Result, TaskType
from app.tasks.runner import Job
from matcher.blocks import NearestRows, blas_threads
from matcher.similarity import similarity

# References per part: held in memory while every candidate streams past them. Each part reads
# every candidate again, so parts are large: about one per worker process for ten thousand
# references, and the part's product stays wide enough for BLAS speed.
PART_SIZE = 5000


class CrossMatchSchema(StrictSchema):
    references = fields.Nested(objects.SelectionSchema, required=True)
    candidates = fields.Nested(objects.SelectionSchema, required=True)
    limit = fields.Integer(load_default=3, validate=SettingMax("matcher_limit_max"),
                           metadata={"description": "candidates per reference, at most `matcher_limit_max`"})
    threshold = fields.Float(load_default=0.0, validate=validate.Range(0, 1),
                             metadata={"description": "least similarity of a returned candidate"})


def split(job: Job) -> list[dict[str, Any]]:
    with session_scope() as session:
        return objects.described_ranges(session, job.scope, job.content["references"], PART_SIZE)


def _watched(job: Job, chunks: Iterable[tuple[list[str], np.ndarray]]) -> Iterator[tuple[list[str], np.ndarray]]:
    """The chunks, with progress (and a cancel noticed) between them."""
    seen = 0
    for ids, chunk in chunks:
        yield ids, chunk
        seen += len(ids)
        job.progress(seen, seen)


def part(job: Job, content: dict[str, Any]) -> list[dict[str, Any]]:
    references, candidates = job.content["references"], job.content["candidates"]
    limit, threshold = job.content["limit"], job.content["threshold"]
    same_type = references["objects_type"] == candidates["objects_type"]
    with session_scope() as session:
        ids, queries = objects.load(session, job.scope, references, content)
        if not ids:
            return []
        nearest = NearestRows(queries, limit + same_type)
        candidate_ids: list[str] = []
        # one BLAS thread: the cpu worker's processes, one per core, are the parallelism
        with blas_threads(1):
            for chunk_ids, chunk in _watched(job, objects.descriptors(session, job.scope, candidates)):
                nearest.add(chunk)
                candidate_ids += chunk_ids
    distances, found = nearest.result()
    out = []
    sims = similarity(distances, settings.current().face_descriptor_version)  # the version objects.load read
    for ref, rows, row_sims in zip(ids, found.tolist(), sims.tolist()):
        hits = [{"candidate_id": candidate_ids[c], "similarity": s} for c, s in zip(rows, row_sims)
                if candidate_ids[c] != ref and s >= threshold][:limit]
        if hits:
            out.append({"reference_id": ref, "candidates": hits})
    return out


def merge(job: Job, partials: Iterator[Any]) -> Result:
    for selection in (job.content["references"], job.content["candidates"]):
        objects.report_missing(job, selection)
    return Result([match for p in partials for match in p])


def check(session: Any, principal: Any, content: dict[str, Any]) -> None:
    for selection in (content["references"], content["candidates"]):
        objects.check(session, principal.scope, selection)


registry.register(TaskType("cross_match", CrossMatchSchema, split, part, merge, check=check,
                           description="each reference's most similar candidates"))
