"""Clustering: the selected faces or events joined into groups where their similarity is over a threshold.

Each part takes one id range of the selection (its rows of the similarity matrix) and compares it
with every object from the range's start on, streamed in chunks: every pair is compared by the part
of its earlier object, and memory holds one range and one chunk. Each tile's pairs
are first reduced to a spanning forest in numpy (``spanning_links``), and a part keeps only the
forest of its union-find (one link per object it joined), which the merge unions into the
connected components: Python work and a part's output are bounded by the objects, never by the pairs.
"""
from __future__ import annotations

from typing import Any, Iterator

from marshmallow import fields, validate

from app import settings
from app.db import session_scope
from app.tasks import objects, registry
from app.tasks.registry import Result, TaskType
from app.tasks.runner import Job
from matcher.blocks import UnionFind, linked_pairs, spanning_links

# Objects per part: the rows a part compares with everything after them.
PART_SIZE = 4000


class ClusteringSchema(objects.SelectionSchema):
    threshold = fields.Float(load_default=None, validate=validate.Range(0, 1),
                             metadata={"description": "similarity over which two objects are joined "
                                                      "(default `clustering_threshold_default`)"})


def split(job: Job) -> list[dict[str, Any]]:
    threshold = job.content["threshold"]
    if threshold is None:  # fixed here, so every part of the task uses the same one
        threshold = settings.current().clustering_threshold_default
    with session_scope() as session:
        ranges = objects.described_ranges(session, job.scope, job.content, PART_SIZE)
    return [{**bounds, "threshold": threshold, "after": (len(ranges) - i) * PART_SIZE}
            for i, bounds in enumerate(ranges)]


def part(job: Job, content: dict[str, Any]) -> dict[str, Any]:
    sets = UnionFind()
    version = settings.current().face_descriptor_version  # objects.descriptors reads this version
    with session_scope() as session:
        ids, rows = objects.load(session, job.scope, job.content, content)
        for i in ids:
            sets.add(i)
        compared = 0
        for chunk_ids, chunk in objects.descriptors(session, job.scope, job.content, {"gte": content["gte"]}):
            nodes = [*ids, *chunk_ids]  # a tile's pairs join rows to columns numbered after the rows
            for i, j in linked_pairs(rows, chunk, content["threshold"], version=version):
                for a, b in zip(*(v.tolist() for v in spanning_links(i, j + len(ids), len(nodes)))):
                    sets.union(nodes[a], nodes[b])
            compared += len(chunk_ids)
            job.progress(compared, max(compared, content["after"]))
    return {"ids": ids, "links": sets.links()}


def merge(job: Job, partials: Iterator[Any]) -> Result:
    objects.report_missing(job, job.content)
    sets = UnionFind()
    for p in partials:
        for i in p["ids"]:
            sets.add(i)
        for a, b in p["links"]:
            sets.union(a, b)
    clusters = sorted((sorted(c) for c in sets.components()), key=lambda c: (-len(c), c[0]))
    return Result({"clusters": clusters, "total_objects": sum(len(c) for c in clusters),
                   "total_clusters": len(clusters)})


def check(session: Any, principal: Any, content: dict[str, Any]) -> None:
    objects.check(session, principal.scope, content)


registry.register(TaskType("clustering", ClusteringSchema, split, part, merge, check=check,
                           description="groups of faces or events connected by similarity over a threshold"))
