"""Long tasks through the real platform: the estimator from every image source against the raw
inference pipeline, clustering and cross-matching against faiss, the exporter's worker memory.

Runs ``facegate api`` on loopback against a fresh PostgreSQL database of its own
(``facegate_bench_tasks_<pid>``, dropped at the end), a Redis of its own (the embedded one, on a
free port) and the workers of docker/compose.yml: the ``gpu`` queue on a threads worker (8 threads, ``inference_batch_max`` =
``--batch``) and the ``cpu`` queue (splits, parts of cpu types, merges) on a prefork worker (one
child per core). Tasks go in as ``POST /tasks/<type>``; a task's time runs from that request to
the first ``GET /tasks/{id}`` (polled every 50 ms) that shows it done, so it holds the split, every
part, the merge and the queues in between.

1. Estimator (``--only estimator``): the inference bench's images (``pipeline.bench_paths``,
   ``--images`` of them, 500: face photos of every size from the shared MANIFEST, group photos
   included) from each source: a ZIP archive stored with ``POST /objects``, S3 (moto's server),
   a network disk (a local folder), FTP (pyftpdlib) and Samba (smbd, when installed), each once
   after a warm-up task of a few images (the gpu worker's models load there).
   ``estimator_images_per_s`` by source = images / task seconds. Baseline, same run:
   ``pipeline.ours`` (``inference.pipeline.process``: detection, landmarks, descriptor) in this
   process on the same images, decoded beforehand, in batches of ``--batch``, timed before the
   first source and after each (the workers idle meanwhile; ``pipeline_images_per_s_runs``). A
   source's ratio is its images/s over the better of the two raw runs around it (the shared
   host's speed drifts within minutes); ``estimator_ratio_by_source`` has each,
   ``estimator_ratio_vs_pipeline`` is the lowest (target >= 0.85).
2. Clustering and cross-matching (``--only crossmatch``) of ``--sizes`` (10,000 and 100,000)
   faces with synthetic descriptors of the default version (random unit vectors: groups of about
   5 near copies of one random direction, so clusters and matches exist and the answer is known),
   written with binary COPY. Clustering: every face of a list; ``clustering_s`` by size, and the
   number of clusters checked against the groups. Cross-matching: the first ``--ref-share`` (10%)
   of the faces as references against all of them as candidates, ``limit`` ``--limit`` (5),
   threshold 0; ``crossmatch_s`` by size. Baseline, same run, same descriptors (as float32 in
   memory): faiss ``IndexFlatIP`` over the candidates, one ``search`` of every reference for the
   top ``limit`` + 1 (the task leaves each reference out of its own candidates, so it searches one
   more too; the best of 3 runs): ``faiss_s``; and the one-shot script's baseline, the same
   search after a plain psycopg SELECT of both lists' descriptors (reading them out of
   PostgreSQL, which the task cannot avoid either): ``fetch_and_faiss_s``.
   ``crossmatch_ratio_vs_baseline`` = task seconds / ``fetch_and_faiss_s`` at the largest size
   (target <= 1.3); ``crossmatch_ratio_vs_in_memory`` = task seconds / ``faiss_s`` beside it, and
   both by size. The tasks' candidates over the default threshold are compared with faiss's for
   a sample of references.
3. Exporter (``--only exporter``): ``--exporter-faces`` (1,000,000) faces of another account,
   in one list, written with binary COPY, all exported (every column) as CSV by a freshly started
   cpu worker; the archive's rows are counted. ``exporter_peak_mb`` is the largest peak resident
   size (VmHWM) of the worker's processes (parent and prefork children) after the task (target
   < 500); ``exporter_idle_mb`` the same right after the worker started, ``exporter_s`` the task's
   seconds.

The machine may be shared (2 cores here, other processes busy): the load average is printed at
the start and the end. Last line: one JSON object, ``{"bench": "tasks",
"estimator_ratio_vs_pipeline": ..., "crossmatch_ratio_vs_baseline": ..., "exporter_peak_mb": ...,
...}``; a figure that was not measured is null with the reason under ``skipped``.

    .venv/bin/python bench/tasks.py [--only estimator,crossmatch,exporter] [--images 500]
                                    [--sources zip,s3,network_disk,ftp,samba] [--batch 32]
                                    [--sizes 10000,100000] [--ref-share 0.1] [--limit 5]
                                    [--exporter-faces 1000000]

Quick check: ``--images 40 --sizes 2000 --exporter-faces 20000``.
"""
from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# Run as ``python bench/tasks.py``: this file's folder comes first on sys.path and its name would
# shadow the worker package ``tasks``, so put the repository root there instead.
ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

import numpy as np  # noqa: E402
import requests  # noqa: E402

# before anything starts a process: pipeline sets OMP_WAIT_POLICY=PASSIVE for torch (see there)
from bench.apiserver import FACEGATE, PG_ADMIN_URL, BenchDatabase, free_port  # noqa: E402
from bench.pipeline import Platform, bench_paths, load_load, ours, stop_process  # noqa: E402

DONE, FAILED, CANCELLED = 5, 3, 2
# Polled this seldom so the API's answers take no CPU from the models; the time is the row's own
# (create_time to end_time), not when a poll saw it done.
POLL_S = 0.5


class TaskPlatform(Platform):
    """:class:`pipeline.Platform`'s gpu worker (``start_worker``) beside a prefork cpu worker, over
    the bench's PostgreSQL database and a Redis of its own; one account, and long tasks through
    the API."""

    QUEUES = "gpu"

    def __init__(self, db: BenchDatabase) -> None:  # not Platform's: PostgreSQL, not SQLite
        from app import embedded

        self.env, self.worker, self.cpu = db.env, None, None
        self.procs = [embedded.start_redis(db.env["FACEGATE_REDIS_URL"], db.env["FACEGATE_DATA_DIR"])]
        try:
            subprocess.run([FACEGATE, "buckets", "create"], env=self.env, cwd=ROOT, check=True,
                           stdout=subprocess.DEVNULL)
            port = free_port()
            self.url = f"http://127.0.0.1:{port}"
            self.procs.append(db.start_api(port))
            self.auth = (f"tasks-{uuid.uuid4().hex[:8]}@example.com", "bench password")
            self.account_id = self.new_account(self.auth)
        except BaseException:
            self.stop()
            raise
        self.http = requests.Session()
        self.http.auth = self.auth

    def new_account(self, auth: tuple[str, str]) -> str:
        r = requests.post(f"{self.url}/accounts", json={"login": auth[0], "password": auth[1]}, timeout=30)
        r.raise_for_status()
        return r.json()["account_id"]

    def start_cpu_worker(self) -> subprocess.Popen[bytes]:
        """A fresh cpu worker as docker/compose.yml's (prefork, one child per core), once it answers a ping."""
        from celery import Celery

        self.stop_cpu_worker()
        hostname = f"bench-cpu-{uuid.uuid4().hex[:6]}@{os.uname().nodename}"
        self.cpu = subprocess.Popen([sys.executable, "-m", "celery", "-A", "tasks", "worker", "--queues", "cpu",
                                     "--hostname", hostname, "--loglevel", "WARNING"],
                                    cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        control = Celery(broker=self.env["FACEGATE_REDIS_URL"]).control
        deadline = time.monotonic() + 120
        while not control.ping(destination=[hostname], timeout=0.5):
            if self.cpu.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the cpu worker did not start")
        return self.cpu

    def stop_cpu_worker(self) -> None:
        if self.cpu is not None:
            stop_process(self.cpu)
            self.cpu = None

    def stop(self) -> None:
        self.stop_cpu_worker()
        super().stop()

    def run_task(self, name: str, content: dict[str, Any], timeout: float = 1800,
                 auth: tuple[str, str] | None = None) -> tuple[float, dict[str, Any], Any]:
        """Create a task and wait for it: (seconds from its creation to its end, the task, its result:
        the JSON's ``result`` or the file's bytes); object errors are printed."""
        http = requests.Session()
        http.auth = auth or self.auth
        r = http.post(f"{self.url}/tasks/{name}", json={"description": "bench", "content": content}, timeout=60)
        if r.status_code != 201:
            raise RuntimeError(f"POST /tasks/{name} answered {r.status_code}: {r.text[:500]}")
        task_id = r.json()["task_id"]
        deadline = time.monotonic() + timeout
        while True:
            task = http.get(f"{self.url}/tasks/{task_id}", timeout=60).json()
            if task["status"] in (DONE, FAILED, CANCELLED):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"task {name} {task_id} not done after {timeout} s: {task}")
            time.sleep(POLL_S)
        seconds = (datetime.fromisoformat(task["end_time"]) - datetime.fromisoformat(task["create_time"])).total_seconds()
        if task["status"] != DONE:
            errors = http.get(f"{self.url}/tasks/{task_id}/errors", timeout=60).json()
            raise RuntimeError(f"task {name} {task_id} ended with status {task['status']}: {str(errors)[:1000]}")
        r = http.get(f"{self.url}/tasks/{task_id}/result", timeout=600)
        r.raise_for_status()
        if not r.headers.get("Content-Type", "").startswith("application/json"):
            return seconds, task, r.content
        body = r.json()
        if body["errors"]:
            print(f"task {name} {task_id}: {len(body['errors'])} errors, the first: {body['errors'][0]}", flush=True)
        return seconds, task, body["result"]


def peak_rss_mb(pid: int) -> dict[int, float]:
    """Peak resident size (VmHWM) of a process and of each of its children, MB, by pid: the kernel
    keeps the peak, so nothing has to be sampled while the work runs."""
    import psutil

    out: dict[int, float] = {}
    for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                out[proc.pid] = round(int(line.split()[1]) / 1024, 1)
    return out


# ---- 1. the estimator from every source ---------------------------------------------------------
# detection, landmarks and a descriptor of every face: the raw pipeline's work (events and samples stored, by default)
ESTIMATOR_POLICIES = {"extract_policy": {"extract_face_descriptor": True}}


class _TempDirs:
    """What the test servers' fixtures take for pytest's ``tmp_path_factory``: folders below the
    run's own, which goes at the end."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def mktemp(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.base))


def _fixture(fixture: Any, base: Path) -> Any:
    """A context manager of a test suite's server fixture (tests/tasks/servers.py, moto's of
    tests/storage/conftest.py), so the bench runs the servers the tests do; it gets the
    ``tmp_path_factory`` it asks for."""
    wrapped = fixture.__wrapped__
    given = {"tmp_path_factory": _TempDirs(base)}
    return contextlib.contextmanager(wrapped)(**{k: v for k, v in given.items()
                                                 if k in inspect.signature(wrapped).parameters})


def estimator_sources(stack: contextlib.ExitStack, platform: TaskPlatform, files: dict[str, bytes], folder: Path,
                      wanted: list[str], skipped: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Each wanted source holding ``files`` (name: bytes), started on ``stack``: source name ->
    the task's ``source`` body. ``folder`` already holds the files (the network disk's, a root of
    ``estimator_disk_roots``); the servers' folders go beside it."""
    import boto3
    import pytest

    # a handler on the root logger keeps pyftpdlib from installing its own, at INFO: a line per file
    logging.basicConfig(level=logging.WARNING)

    from tests.storage.conftest import S3_KEYS, moto_endpoint
    from tests.tasks.servers import FTP_PASSWORD, FTP_USER, SMB_PASSWORD, SMB_USER, ftp_server, smb_server

    out: dict[str, dict[str, Any]] = {}
    if "network_disk" in wanted:
        out["network_disk"] = {"type": "network_disk", "path": str(folder)}
    if "zip" in wanted:
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:  # JPEGs do not deflate
            for name, data in files.items():
                z.writestr(name, data)
        r = platform.http.post(f"{platform.url}/objects", data=archive.getvalue(),
                               headers={"Content-Type": "application/zip"}, timeout=120)
        r.raise_for_status()
        out["zip"] = {"type": "zip", "object_id": r.json()["object_id"]}
    if "s3" in wanted:
        endpoint = stack.enter_context(_fixture(moto_endpoint, folder.parent))
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=S3_KEYS["access_key"], aws_secret_access_key=S3_KEYS["secret_key"])
        s3.create_bucket(Bucket="bench-images")
        for name, data in files.items():
            s3.put_object(Bucket="bench-images", Key=name, Body=data)
        out["s3"] = {"type": "s3", "bucket_name": "bench-images", "endpoint": endpoint, "region": "us-east-1",
                     "authorization": {"s3_key": S3_KEYS["access_key"], "s3_secret_key": S3_KEYS["secret_key"]}}
    if "ftp" in wanted:
        server = stack.enter_context(_fixture(ftp_server, folder.parent))
        shutil.copytree(folder, server.root / "images")
        out["ftp"] = {"type": "ftp", "host": server.host, "port": server.port, "user": FTP_USER,
                      "password": FTP_PASSWORD, "path": "images", "max_sessions": 8}
    if "samba" in wanted:
        try:
            server = stack.enter_context(_fixture(smb_server, folder.parent))
        except pytest.skip.Exception as exc:
            skipped["samba"] = str(exc)
        else:
            shutil.copytree(folder, server.root / "private" / "images")
            (server.root / "private" / "images").chmod(0o755)  # smbd reads as the share's user, not root
            out["samba"] = {"type": "samba", "host": server.host, "port": server.port, "user": SMB_USER,
                            "password": SMB_PASSWORD, "path": "private/images"}
    return out


def estimator_figures(platform: TaskPlatform, folder: Path, images: int, batch: int, wanted: list[str],
                      skipped: dict[str, str]) -> dict[str, Any]:
    """The estimator over the images of each source against ``ours`` on the same images, decoded,
    in batches of ``batch``, timed before the first source and after each."""
    from inference import registry
    from inference.images import decode_image

    files = {f"{n:04d}-{path.name}": path.read_bytes() for n, path in enumerate(bench_paths(images))}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    decoded = [decode_image(data) for data in files.values()]
    registry.configure(device=registry.default_device())
    ours(decoded[:8], 8)  # load the models in this process, warm the kernels
    ours(decoded[:batch], batch)
    figures: dict[str, Any] = {"estimator_images": len(files)}
    rates: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        sources = estimator_sources(stack, platform, files, folder, wanted, skipped)
        warm = folder / "warm-up"
        warm.mkdir()
        for name in list(files)[:8]:
            (warm / name).write_bytes(files[name])
        # the gpu worker's models load, its batcher and connections warm
        platform.run_task("estimator", {"handler": {"policies": ESTIMATOR_POLICIES},
                                        "source": {"type": "network_disk", "path": str(warm)}})
        # the raw pipeline before the first source and after each (the workers idle meanwhile): a
        # source's ratio is against the better of the two runs around it, as the host's speed drifts
        raws = [ours(decoded, batch)[0]]
        print(f"raw pipeline (ours, batch {batch}, {len(decoded)} decoded images): {raws[-1]:.2f} images/s", flush=True)
        ratios: dict[str, float] = {}
        for name, source in sources.items():
            seconds, task, result = platform.run_task("estimator", {"handler": {"policies": ESTIMATOR_POLICIES},
                                                                    "source": source})
            ok = sum(1 for entry in result if entry["status"] == "success")
            assert ok == len(files), f"{len(files) - ok} images failed from {name}"
            rates[name] = len(files) / seconds
            raws.append(ours(decoded, batch)[0])
            ratios[name] = rates[name] / max(raws[-2:])
            print(f"estimator from {name}: {len(files)} images in {seconds:.2f} s = {rates[name]:.2f} images/s "
                  f"({task['parts_total']} parts); raw pipeline after it {raws[-1]:.2f} images/s; ratio "
                  f"{ratios[name]:.3f}", flush=True)
    figures["pipeline_images_per_s"] = round(max(raws), 2)
    figures["pipeline_images_per_s_runs"] = [round(r, 2) for r in raws]
    figures["estimator_images_per_s"] = {name: round(rate, 2) for name, rate in rates.items()}
    figures["estimator_ratio_by_source"] = {name: round(ratio, 3) for name, ratio in ratios.items()}
    if rates:
        figures["estimator_ratio_vs_pipeline"] = min(figures["estimator_ratio_by_source"].values())
    return figures


# ---- 2. clustering and cross-matching ----------------------------------------------------------
def grouped_unit_vectors(n: int, dim: int, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit vectors in groups of about 5 near copies of one random direction (distance about
    0.3 within a group, about 1.41 between groups), and each vector's group."""
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, max(1, n // 5), n)
    centres = rng.standard_normal((max(1, n // 5), dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[groups] + np.float32(0.02) * rng.standard_normal((n, dim), dtype=np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("<f4"), groups


def copy_faces(db: BenchDatabase, account_id: str, n: int, vectors: np.ndarray | None = None,
               lists: dict[str, int] | None = None) -> list[str]:
    """Write ``n`` faces of the account with binary COPY (a descriptor of the default version each
    when ``vectors`` are given) and attach the first ``count`` of them to each new list of ``lists``
    (name: count, replaced by the list's id); returns the face ids in order."""
    import psycopg

    from app.faces.models import time_ordered_uuid
    from inference.descriptor_format import DESCRIPTOR_VERSION

    ids = [time_ordered_uuid() for _ in range(n)]
    account = uuid.UUID(account_id)
    with psycopg.connect(db.psycopg_url) as conn, conn.cursor() as cur:
        with cur.copy("COPY face (face_id, account_id, external_id, user_data, avatar, create_time) "
                      "FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["uuid", "uuid", "text", "text", "text", "timestamptz"])
            when = datetime.now(timezone.utc)
            for i, face_id in enumerate(ids):
                copy.write_row((face_id, account, f"ext-{i}", f"bench face {i}", "", when))
        if vectors is not None:
            with cur.copy("COPY face_descriptor (face_id, version, descriptor) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["uuid", "int4", "bytea"])
                for face_id, row in zip(ids, vectors):
                    copy.write_row((face_id, DESCRIPTOR_VERSION, row.tobytes()))
        for name, count in (lists or {}).items():
            list_id = uuid.uuid4()
            cur.execute("INSERT INTO face_list (list_id, account_id, user_data, create_time, last_update_time) "
                        "VALUES (%s, %s, %s, now(), now())", (list_id, account, name))
            with cur.copy("COPY list_face (list_id, face_id) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["uuid", "uuid"])
                for face_id in ids[:count]:
                    copy.write_row((list_id, face_id))
            lists[name] = str(list_id)
        cur.execute("ANALYZE")
    return [str(i) for i in ids]


def crossmatch_content(lists: dict[str, str], n: int, limit: int) -> dict[str, Any]:
    """The first references of ``n`` faces against all of them, every candidate over similarity 0."""
    return {"references": {"objects_type": "faces", "filters": {"list_id": lists[f"refs-{n}"]}},
            "candidates": {"objects_type": "faces", "filters": {"list_id": lists[f"all-{n}"]}},
            "limit": limit, "threshold": 0.0}


def faiss_top(references: np.ndarray, candidates: np.ndarray, limit: int, runs: int = 3) -> tuple[float, np.ndarray, np.ndarray]:
    """The one-shot baseline: faiss IndexFlatIP over the candidates, every reference searched at
    once for its top ``limit``; (best seconds of ``runs``, scores, indices)."""
    import faiss

    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        index = faiss.IndexFlatIP(candidates.shape[1])
        index.add(candidates)
        scores, found = index.search(references, limit)
        best = min(best, time.perf_counter() - start)
    return best, scores, found


def fetched_descriptors(db: BenchDatabase, list_id: str) -> np.ndarray:
    """A list's descriptors read with a plain psycopg SELECT: what moving them out of PostgreSQL costs at all."""
    import psycopg

    from inference.descriptor_format import DESCRIPTOR_VERSION

    with psycopg.connect(db.psycopg_url) as conn:
        rows = conn.execute("SELECT d.descriptor FROM list_face l JOIN face_descriptor d ON d.face_id = l.face_id "
                            "WHERE l.list_id = %s AND d.version = %s ORDER BY l.face_id",
                            (list_id, DESCRIPTOR_VERSION)).fetchall()
    return np.frombuffer(b"".join(r[0] for r in rows), dtype="<f4").reshape(len(rows), -1)


def matching_figures(platform: TaskPlatform, db: BenchDatabase, sizes: list[int], ref_share: float,
                     limit: int, skipped: dict[str, str]) -> dict[str, Any]:
    from inference import descriptor_format as fmt

    largest = max(sizes)
    x, groups = grouped_unit_vectors(largest, fmt.DESCRIPTOR_LENGTHS[fmt.DESCRIPTOR_VERSION])
    lists = {**{f"all-{n}": n for n in sizes}, **{f"refs-{n}": max(1, int(n * ref_share)) for n in sizes}}
    start = time.perf_counter()
    ids = copy_faces(db, platform.account_id, largest, x, lists)
    print(f"{largest} faces with descriptors copied in {time.perf_counter() - start:.1f} s", flush=True)
    # strong matches: distance under the default threshold, i.e. inner product over 1 - d^2 / 2 of unit vectors
    strong = 1 - fmt.DEFAULT_DISTANCE_THRESHOLD ** 2 / 2
    figures: dict[str, Any] = {}
    clustering, crossmatch = (missing_type(name, skipped) is None for name in ("clustering", "cross_match"))
    # warm-up tasks on the smallest references: the worker's imports, connections, caches
    if clustering:
        platform.run_task("clustering", {"objects_type": "faces", "filters": {"list_id": lists[f"refs-{sizes[0]}"]}})
    if crossmatch:
        platform.run_task("cross_match", crossmatch_content(lists, sizes[0], limit))
    for n in sizes:
        refs = max(1, int(n * ref_share))
        if clustering:
            seconds, _, result = platform.run_task("clustering", {"objects_type": "faces",
                                                                  "filters": {"list_id": lists[f"all-{n}"]}})
            generated = len(set(groups[:n].tolist()))
            figures.setdefault("clustering_s", {})[n] = round(seconds, 2)
            figures.setdefault("clusters_as_generated", {})[n] = result["total_clusters"] == generated
            print(f"clustering {n} faces: {seconds:.2f} s, {result['total_clusters']} clusters "
                  f"({generated} groups generated)", flush=True)
        if not crossmatch:
            continue
        seconds, _, result = platform.run_task("cross_match", crossmatch_content(lists, n, limit))
        # the task leaves a reference out of its own candidates: one more found, as it searches
        baseline, scores, found = faiss_top(x[:refs], x[:n], limit + 1)
        figures.setdefault("crossmatch_s", {})[n] = round(seconds, 2)
        figures.setdefault("faiss_s", {})[n] = round(baseline, 3)
        figures.setdefault("crossmatch_ratio_vs_in_memory_by_size", {})[n] = round(seconds / baseline, 2)
        start = time.perf_counter()  # the one-shot script: the descriptors read from PostgreSQL, then faiss
        faiss_top(fetched_descriptors(db, lists[f"refs-{n}"]), fetched_descriptors(db, lists[f"all-{n}"]), limit + 1, 1)
        one_shot = time.perf_counter() - start
        figures.setdefault("fetch_and_faiss_s", {})[n] = round(one_shot, 3)
        figures.setdefault("crossmatch_ratio_by_size", {})[n] = round(seconds / one_shot, 2)
        by_reference = {r["reference_id"]: {c["candidate_id"] for c in r["candidates"] if c["similarity"] >= 0.5}
                        for r in result}
        sample = range(0, refs, max(1, refs // 200))
        agree = all(by_reference.get(ids[i], set()) == {ids[j] for j, s in zip(found[i], scores[i])
                                                         if s >= strong and j != i} for i in sample)
        figures.setdefault("crossmatch_agrees_with_faiss", {})[n] = agree
        print(f"cross-match {refs} references x {n} candidates, limit {limit}: {seconds:.2f} s; faiss IndexFlatIP "
              f"{baseline:.3f} s in memory, {one_shot:.3f} s with a plain fetch of the descriptors first; ratio "
              f"{seconds / one_shot:.2f} to the fetch and faiss ({seconds / baseline:.2f} to faiss in memory); "
              f"strong matches agree with faiss on "
              f"{len(sample)} references: {agree}", flush=True)
    if crossmatch:
        figures["crossmatch_ratio_vs_baseline"] = figures["crossmatch_ratio_by_size"][largest]
        figures["crossmatch_ratio_vs_in_memory"] = figures["crossmatch_ratio_vs_in_memory_by_size"][largest]
    return figures


# ---- 3. the exporter's memory ------------------------------------------------------------------------
def exporter_figures(platform: TaskPlatform, db: BenchDatabase, faces: int) -> dict[str, Any]:
    """``faces`` faces of an account of their own, in one list, exported by a fresh cpu worker:
    its processes' peak resident sizes."""
    auth = (f"exporter-{uuid.uuid4().hex[:8]}@example.com", "bench password")
    account_id = platform.new_account(auth)
    start = time.perf_counter()
    copy_faces(db, account_id, faces, lists={"exported": faces})
    print(f"{faces} faces (in one list) copied in {time.perf_counter() - start:.1f} s", flush=True)
    worker = platform.start_cpu_worker()
    idle = peak_rss_mb(worker.pid)
    seconds, task, archive = platform.run_task("exporter", {"objects_type": "faces", "filters": {}}, auth=auth)
    peak = peak_rss_mb(worker.pid)
    with zipfile.ZipFile(io.BytesIO(archive)) as z, z.open("faces.csv") as csv_file:
        rows = sum(1 for _ in csv_file) - 1  # the header
    print(f"exporter: {faces} faces in {seconds:.1f} s ({task['parts_total']} parts), {rows} CSV rows, archive "
          f"{len(archive) / 2**20:.1f} MB; the worker's processes' peak resident MB by pid {peak} (after its "
          f"start: {idle})", flush=True)
    assert rows == faces, f"{rows} rows exported of {faces} faces"
    return {"exporter_peak_mb": max(peak.values()), "exporter_idle_mb": max(idle.values()),
            "exporter_s": round(seconds, 1), "exporter_faces": faces, "exporter_archive_mb": round(len(archive) / 2**20, 1)}


def drop_database(db: BenchDatabase) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)'))
    admin.dispose()


def missing_type(name: str, skipped: dict[str, str]) -> str | None:
    """Why a task type cannot be benched here (not registered in this checkout), noted in ``skipped``."""
    from app.tasks import registry

    if name in registry.types():
        return None
    skipped[name] = f"no task type {name} registered in this checkout"
    return skipped[name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="estimator,crossmatch,exporter")
    parser.add_argument("--images", type=int, default=500, help="images from each estimator source")
    parser.add_argument("--batch", type=int, default=32, help="the gpu worker's inference_batch_max, and the raw "
                                                             "pipeline's batch")
    parser.add_argument("--sources", default="zip,s3,network_disk,ftp,samba")
    parser.add_argument("--sizes", default="10000,100000", help="faces clustered and cross-matched")
    parser.add_argument("--ref-share", type=float, default=0.1, help="share of the faces that are references")
    parser.add_argument("--limit", type=int, default=5)
    parser.add_argument("--exporter-faces", type=int, default=1_000_000)
    args = parser.parse_args()
    only = {part.strip() for part in args.only.split(",")}
    print(f"{load_load()} at start", flush=True)

    # a database of this run's own (others may run the bench at the same time), dropped at the end
    db = BenchDatabase(f"facegate_bench_tasks_{os.getpid()}", f"redis://127.0.0.1:{free_port()}/0")
    db.env["FACEGATE_WORKER_WAIT_TIMEOUT_S"] = "120"
    db.env["FACEGATE_INFERENCE_BATCH_MAX"] = str(args.batch)
    work = Path(tempfile.mkdtemp(prefix="facegate-bench-tasks-"))  # the run's files, removed at the end
    disk = work / "disk"  # the network disk's folder
    disk.mkdir()
    db.env["FACEGATE_ESTIMATOR_DISK_ROOTS"] = str(disk)
    figures: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    platform = None
    try:
        db.fresh()
        platform = TaskPlatform(db)
        platform.start_cpu_worker()
        if "estimator" in only and missing_type("estimator", skipped) is None:
            platform.start_worker(args.batch)
            figures.update(estimator_figures(platform, disk, args.images, args.batch,
                                             [s.strip() for s in args.sources.split(",")], skipped))
            platform.stop_worker()  # its models' memory back before the rest
        if "crossmatch" in only:
            figures.update(matching_figures(platform, db, [int(n) for n in args.sizes.split(",")], args.ref_share,
                                            args.limit, skipped))
        if "exporter" in only and missing_type("exporter", skipped) is None:
            figures.update(exporter_figures(platform, db, args.exporter_faces))
    finally:
        if platform is not None:
            platform.stop()
        drop_database(db)
        for folder in (work, db.env["FACEGATE_DATA_DIR"]):
            shutil.rmtree(folder, ignore_errors=True)
    print(f"{load_load()} at end (shared machine)", flush=True)
    print(json.dumps({"bench": "tasks",
                      "estimator_ratio_vs_pipeline": figures.pop("estimator_ratio_vs_pipeline", None),
                      "crossmatch_ratio_vs_baseline": figures.pop("crossmatch_ratio_vs_baseline", None),
                      "crossmatch_ratio_vs_in_memory": figures.pop("crossmatch_ratio_vs_in_memory", None),
                      "exporter_peak_mb": figures.pop("exporter_peak_mb", None),
                      **figures, "load_average_1min": round(os.getloadavg()[0], 1), "skipped": skipped}))


if __name__ == "__main__":
    main()
