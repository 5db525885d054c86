"""1:N identification through the platform's API against dlib's own pipeline, same probes and gallery, same run.

Data: the labelled images of ``../shared/faces`` (MANIFEST.csv's ``identity`` column), every identity
with at least 2 images. Each such identity gives one probe, its first image in MANIFEST order, and
puts its other images in the gallery: one face per gallery image, all of them in one list. (LFW
people appear in ``lfw/`` and ``lfw_dev/`` with the same label; no probe's photo is also in the
gallery, though the gallery holds both copies of one photo, Hugo_Chavez_0002, which changes no rank.)

Ours, through the API of the embedded platform (``pipeline.Platform``: Redis, ``facegate api``,
SQLite, one worker consuming ``gpu,matcher``), started once per descriptor version with the setting
``face_descriptor_version`` at that version, so the worker extracts it and its list cache holds it:
- ``POST /sdk?extract_descriptor=1&face_warp=0`` with up to 32 images per request (a multipart
  form), every probe and gallery image;
- ``POST /faces/batch`` creates one face per gallery image in which a face was found, with that
  face's descriptor, attached to a new list;
- ``POST /matcher/faces`` (``limit`` 5, references of type ``descriptor``, 100 per request), the
  probes' descriptors against ``candidates.filters.list_id`` = that list: the matcher worker's
  list cache, exact. Checked in the same run against a brute-force L2 search in numpy over the
  descriptors the API extracted: ``same_as_brute_force_v<version>`` probes (of all) got the same
  5 candidates in the same order.
dlib: HOG detector upsampled once, ``shape_predictor_5_face_landmarks``, ``compute_face_descriptor``
(no jitter) on the same images (``verification.dlib_pipeline``), then a brute-force L2 nearest
search of each probe over the gallery in numpy.

Rules, identical for both pipelines:
- an image with several faces uses the one whose box centre is nearest the image centre
  (``verification.central``);
- rank-1: the share of all probes whose best candidate has the probe's identity; rank-5: whose
  identity is among the first 5 candidates (several gallery faces of one identity may fill them);
- a probe without a face is a miss at every rank; a gallery image without a face is left out of
  that pipeline's gallery; both counts are reported per side;
- only the ranking is used, never a similarity or distance threshold.

The JSON line's ``rank1``/``rank5`` are those of the platform's default descriptor version
(``descriptor_version``); ``rank1_v101``, ``rank5_v102``, ... those of each version.
``--setting NAME=VALUE`` passes further settings to the platform's processes (e.g.
``inference_device=cuda``, ``inference_cpu_shards=1``).

    .venv/bin/python bench/identification.py [--versions 101,102] [--setting NAME=VALUE ...]

Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import requests

# pipeline sets OMP_WAIT_POLICY=PASSIVE before torch loads (see there); the worker inherits it
from pipeline import Platform, load_load
from shared_faces import FACES
from verification import central, dlib_pipeline

SDK_IMAGES = 32  # images per /sdk request: the default sdk_max_images
SDK_BYTES = 16 << 20  # and at most this much of them, under the default max_request_mb (20)
REFERENCES = 100  # probes per /matcher/faces request: the default matcher_references_max
LIMIT = 5


def split() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(probes, gallery) as (path, identity): per identity with >= 2 images, its first image in
    MANIFEST order is the probe and the others go to the gallery."""
    by_identity: dict[str, list[str]] = {}
    with open(FACES / "MANIFEST.csv") as fh:
        for row in csv.DictReader(fh):
            if row["identity"]:
                by_identity.setdefault(row["identity"], []).append(row["path"])
    probes, gallery = [], []
    for identity, paths in by_identity.items():
        if len(paths) >= 2:
            probes.append((paths[0], identity))
            gallery.extend((p, identity) for p in paths[1:])
    return probes, gallery


def ranks(candidates: list[list[int]], truth: list[str], gallery_ids: list[str]) -> dict[str, float]:
    """Rank-1 and rank-5 shares of the probes, given each probe's candidates (gallery indices) best first."""
    return {f"rank{k}": sum(t in [gallery_ids[j] for j in c[:k]] for c, t in zip(candidates, truth)) / len(truth)
            for k in (1, LIMIT)}


class IdentificationPlatform(Platform):
    """The embedded platform with one worker that also consumes ``matcher`` (``/matcher/faces``)."""

    QUEUES = "gpu,matcher"

    def post(self, session: requests.Session, path: str, **kwargs: object) -> dict:
        r = session.post(f"{self.url}{path}", auth=self.auth, timeout=300, **kwargs)
        if r.status_code not in (200, 201):
            raise RuntimeError(f"{path} answered {r.status_code}: {r.text[:300]}")
        return r.json()

    def descriptors(self, session: requests.Session, paths: list[str], version: int) -> list[str | None]:
        """The SDK-format descriptor (base64) of each image's central face, None where none was found."""
        chunks: list[list[str]] = [[]]
        size = 0
        for path in paths:
            n = (FACES / path).stat().st_size
            if len(chunks[-1]) == SDK_IMAGES or (chunks[-1] and size + n > SDK_BYTES):
                chunks.append([])
                size = 0
            chunks[-1].append(path)
            size += n
        out: list[str | None] = []
        for chunk in chunks:
            files = [(f"f{i}", (Path(p).name, (FACES / p).read_bytes(), "image/jpeg")) for i, p in enumerate(chunk)]
            answer = self.post(session, "/sdk", files=files, params={"extract_descriptor": 1, "face_warp": 0})
            for image in answer["images"]:
                faces = image["faces"]
                rects = [(r["x"], r["y"], r["width"], r["height"]) for r in (f["detection"]["rect"] for f in faces)]
                pick = central(rects, (image["height"], image["width"]))
                if pick is not None and faces[pick]["descriptor_version"] != version:
                    raise RuntimeError(f"asked for version {version}, got {faces[pick]['descriptor_version']}")
                out.append(None if pick is None else faces[pick]["descriptor"])
        return out

    def identify(self, session: requests.Session, probes: list[str | None], gallery: list[str | None]) -> list[list[int]]:
        """Each probe's candidates (gallery indices), best first, from ``/matcher/faces`` over a list of
        the gallery's faces (gallery entries without a descriptor are left out; probes without one get [])."""
        list_id = self.post(session, "/lists", json={"user_data": "identification gallery"})["list_id"]
        faces = [{"descriptors": [{"descriptor": d}], "external_id": str(i), "list_ids": [list_id]}
                 for i, d in enumerate(gallery) if d is not None]
        for lo in range(0, len(faces), 1000):  # faces_batch_max
            self.post(session, "/faces/batch", json={"faces": faces[lo:lo + 1000]})
        found = [(i, d) for i, d in enumerate(probes) if d is not None]
        out: list[list[int]] = [[] for _ in probes]
        for lo in range(0, len(found), REFERENCES):
            refs = [{"type": "descriptor", "id": str(i), "descriptor": d} for i, d in found[lo:lo + REFERENCES]]
            answer = self.post(session, "/matcher/faces", json={
                "references": refs, "candidates": {"filters": {"list_id": list_id}}, "limit": LIMIT})
            for result in answer["results"]:
                out[int(result["reference"]["id"])] = [int(m["external_id"]) for m in result["matches"]]
        return out


def nearest(probes: list[np.ndarray | None], gallery: list[np.ndarray | None]) -> list[list[int]]:
    """Each probe's ``LIMIT`` nearest gallery entries (indices; L2, brute force), best first; [] for a
    probe without a descriptor, gallery entries without one left out."""
    kept = np.array([i for i, d in enumerate(gallery) if d is not None])
    matrix = np.stack([gallery[i] for i in kept]).astype(np.float64)
    return [[] if d is None else
            kept[np.argsort(np.linalg.norm(matrix - d, axis=1), kind="stable")[:LIMIT]].tolist() for d in probes]


def ours(version: int, probes: list[str], gallery: list[str], settings: dict[str, str]) -> tuple[list[list[int]], dict]:
    """Candidates (gallery indices) of each probe through the API of a platform set to ``version``
    (and ``settings``), and the counts. ``same_as_brute_force``: the probes whose candidates are
    those of a brute-force L2 search over the descriptors the API extracted (the matcher's own check)."""
    from inference.descriptor_format import decode_base64

    platform = IdentificationPlatform({**settings, "face_descriptor_version": version})
    try:
        platform.start_worker(SDK_IMAGES)
        with requests.Session() as session:
            start = time.perf_counter()
            descriptors = platform.descriptors(session, probes + gallery, version)
            extracted = time.perf_counter()
            p, g = descriptors[: len(probes)], descriptors[len(probes):]
            candidates = platform.identify(session, p, g)
            matched = time.perf_counter()
    finally:
        platform.stop()
    vectors = [None if d is None else decode_base64(d)[1] for d in descriptors]
    brute = nearest(vectors[: len(probes)], vectors[len(probes):])
    return candidates, {"probes_no_face": sum(d is None for d in p), "gallery_no_face": sum(d is None for d in g),
                        "same_as_brute_force": sum(a == b for a, b in zip(candidates, brute)),
                        "extract_s": round(extracted - start, 1), "enrol_match_s": round(matched - extracted, 1)}


def dlib_side(probes: list[str], gallery: list[str]) -> tuple[list[list[int]], dict]:
    """Candidates (gallery indices) of each probe by dlib's descriptors, brute-force L2, and the counts."""
    from PIL import Image

    start = time.perf_counter()
    descriptors = dlib_pipeline([np.asarray(Image.open(FACES / p).convert("RGB")) for p in probes + gallery])
    elapsed = time.perf_counter() - start
    p, g = descriptors[: len(probes)], descriptors[len(probes):]
    return nearest(p, g), {"probes_no_face": sum(d is None for d in p), "gallery_no_face": sum(d is None for d in g),
                           "extract_s": round(elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", default="101,102", help="descriptor versions to run through the API")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                        help="a further setting of the platform's processes (repeatable), e.g. inference_device=cuda")
    args = parser.parse_args()
    settings = dict(s.split("=", 1) for s in args.setting)

    from inference.descriptor_format import DESCRIPTOR_VERSION

    versions = [int(v) for v in args.versions.split(",")]
    probe_rows, gallery_rows = split()
    probes, truth = [p for p, _ in probe_rows], [i for _, i in probe_rows]
    gallery, gallery_ids = [p for p, _ in gallery_rows], [i for _, i in gallery_rows]
    print(f"{len(probes)} identities: {len(probes)} probes, {len(gallery)} gallery images; {load_load()}", flush=True)

    results: dict[str, tuple[dict[str, float], dict]] = {}
    missed: dict[str, list[str]] = {}
    runs = [(f"v{v}", ours(v, probes, gallery, settings)) for v in versions] + [("dlib", dlib_side(probes, gallery))]
    for name, (candidates, counts) in runs:
        results[name] = (ranks(candidates, truth, gallery_ids), counts)
        missed[name] = [f"{p} -> {gallery[c[0]] if c else 'no face'}"
                        for p, t, c in zip(probes, truth, candidates) if not c or gallery_ids[c[0]] != t]
    for name, (r, c) in results.items():
        print(f"{name:5s} rank-1 {r['rank1']:.4f}  rank-5 {r['rank5']:.4f}  no face: {c['probes_no_face']} probes, "
              f"{c['gallery_no_face']} gallery images  "
              + (f"top {LIMIT} as brute force: {c['same_as_brute_force']}/{len(probes)} probes  "
                 if "same_as_brute_force" in c else "")
              + ", ".join(f"{k} {v}" for k, v in c.items() if k.endswith("_s")),
              flush=True)
    for name, lines in missed.items():
        print(f"{name} rank-1 misses (probe -> best candidate): " + "; ".join(lines), flush=True)
    print(f"{load_load()} at end", flush=True)

    main_version = DESCRIPTOR_VERSION if DESCRIPTOR_VERSION in versions else versions[0]
    (r, c), (dr, dc) = results[f"v{main_version}"], results["dlib"]
    line = {"bench": "identification", "rank1": round(r["rank1"], 4), "rank5": round(r["rank5"], 4),
            "dlib_rank1": round(dr["rank1"], 4), "dlib_rank5": round(dr["rank5"], 4),
            "descriptor_version": main_version, "identities": len(probes), "probes": len(probes),
            "gallery": len(gallery), "probes_no_face": c["probes_no_face"], "gallery_no_face": c["gallery_no_face"],
            "dlib_probes_no_face": dc["probes_no_face"], "dlib_gallery_no_face": dc["gallery_no_face"]}
    for version in versions:
        vr, vc = results[f"v{version}"]
        line.update({f"rank1_v{version}": round(vr["rank1"], 4), f"rank5_v{version}": round(vr["rank5"], 4),
                     f"probes_no_face_v{version}": vc["probes_no_face"],
                     f"gallery_no_face_v{version}": vc["gallery_no_face"],
                     f"same_as_brute_force_v{version}": vc["same_as_brute_force"]})
    print(json.dumps(line))


if __name__ == "__main__":
    main()
