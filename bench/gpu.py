"""The device check: the face pipeline and the matcher on CUDA against the same machine's CPU.

One command, a few minutes on a GPU machine; where torch sees no CUDA device it runs the CPU rows
alone and says ``"cuda": false`` (CI runs it that way). It needs only torch, numpy and Pillow
besides the repository: weights come from the installed packages (``facenet_pytorch``'s data and
``face_recognition_models``' models folders) and images from ``../shared/faces``. For a machine
that has neither (a lent device gets the checkout alone), ``--pack DIR`` copies the weight files
and the bench images (about 40 MB) into DIR, laid out so that the packages resolve from
``PYTHONPATH=DIR/packages`` and the images from ``FACEGATE_SHARED_DIR=DIR/shared``:

    .venv/bin/python bench/gpu.py --pack var/gpu-pack        # here; var/ is ignored, carry it
    PYTHONPATH=var/gpu-pack/packages FACEGATE_SHARED_DIR=var/gpu-pack/shared python bench/gpu.py

Figures (keys of the last line, one JSON object):

1. Pipeline (``inference.pipeline.process``: detect -> 5 landmarks -> chip -> descriptor of the
   default version) on ``--images`` (200) bench images (``bench_paths``, as bench/pipeline.py),
   decoded before the clocks start; the median of ``--rounds`` (3) runs per figure, models loaded
   and kernels warmed by an untimed run first.
   - ``cpu``: the host path (shards side by side, ``inference.parallel``) at batch 32:
     ``images_per_s``, and ``stage_ms`` per image (detect, landmarks, warp, descriptor, each
     stage timed alone over the batches);
   - ``cuda`` (with a device): ``images_per_s_by_batch`` at ``--batches`` (1, 8, 32, 64),
     ``stage_ms`` at batch 32, ``memory_peak_mb`` (torch's peak allocation over the runs),
     ``images_per_s_decoding``: the images given as file bytes, decoded by ``--decoders`` host
     threads (the worker's task threads) while the device runs the previous batch, at batch 64;
     ``ratio_vs_cpu``: images/s at batch 64 over the CPU's at 32.
2. ``parity``: the faces of the host path on the CPU against the device path's (on CUDA when
   present, else ``process_on_device`` on the CPU): images whose face count differs, the largest
   box corner difference (px) and the largest descriptor L2 difference over matched faces
   (targets: 0, 0.5, 0.01).
3. ``matcher``: ``--rows`` (1,000,000) random 128-d descriptors in one list, ``--queries`` (1,000)
   queries, top 5 by L2, exact: the CPU index (``matcher.index.FlatIndex``) and, with CUDA, the
   device index: ``queries_per_s`` for the batch, ``one_query_ms`` (median of 20 single
   queries), both answers compared (``same_results``); with CUDA ``fits_10m``: a 10,000,000-row
   list built on the device answers a query.

    .venv/bin/python bench/gpu.py [--images 200] [--batches 1,8,32,64] [--rounds 3] [--rows 1000000]
                                  [--queries 1000]

Last line: {"bench": "gpu", "cuda": ..., "cpu": {...}, "cuda_rows": {...}, "parity": {...},
"matcher": {...}}
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as bench/pipeline.py: a shared host's cores
from shared_faces import FACES, ROOT, bench_paths  # noqa: E402

sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from inference import pipeline, registry  # noqa: E402
from inference.images import decode_image  # noqa: E402

K = 5


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], rounds: int) -> float:
    """Median seconds of ``fn`` over ``rounds`` runs, the device drained before each clock reads."""
    times = []
    for _ in range(rounds):
        synchronize()
        start = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def run_pipeline(images: list[np.ndarray], batch: int) -> list[list[pipeline.Face]]:
    return [faces for chunk in batches(images, batch) for faces in pipeline.process(chunk)]


def stage_ms(images: list[np.ndarray], batch: int, rounds: int) -> dict[str, float]:
    """Milliseconds per image of each stage, each timed alone over all batches (its inputs made
    by the stages before it, outside its clock)."""
    chunks = batches(images, batch)
    detections = [pipeline.detect(c) for c in chunks]
    points = [pipeline.landmarks5(c, d) for c, d in zip(chunks, detections)]
    chips = [pipeline.warp(c, p) for c, p in zip(chunks, points)]
    stages = {
        "detect": lambda: [pipeline.detect(c) for c in chunks],
        "landmarks": lambda: [pipeline.landmarks5(c, d) for c, d in zip(chunks, detections)],
        "warp": lambda: [pipeline.warp(c, p) for c, p in zip(chunks, points)],
        "descriptor": lambda: [pipeline.extract(c) for c in chips],
    }
    return {name: round(1000 * timed(fn, rounds) / len(images), 3) for name, fn in stages.items()}


def device_stage_ms(images: list[np.ndarray], batch: int, rounds: int) -> dict[str, float]:
    """The same per stage of the device path: each stage's inputs already on the device."""
    from inference.align_device import face_chips_device

    detector = registry.get("face_detector")
    predictor = registry.get("face_landmarks5")
    network = registry.get("face_descriptor")
    chunks = [[torch.from_numpy(np.ascontiguousarray(i)).to(detector.device) for i in c] for c in batches(images, batch)]
    found = [detector.detect_tensors(c) for c in chunks]
    points = [predictor.predict_device(c, f.boxes, f.inds) for c, f in zip(chunks, found)]
    chips = [face_chips_device(c, f.inds, p) for c, f, p in zip(chunks, found, points)]
    stages = {
        "detect": lambda: [detector.detect_tensors(c) for c in chunks],
        "landmarks": lambda: [predictor.predict_device(c, f.boxes, f.inds) for c, f in zip(chunks, found)],
        "warp": lambda: [face_chips_device(c, f.inds, p) for c, f, p in zip(chunks, found, points)],
        "descriptor": lambda: [network.extract_tensor(c) for c in chips],
    }
    return {name: round(1000 * timed(fn, rounds) / len(images), 3) for name, fn in stages.items()}


def decoding_rate(datas: list[bytes], batch: int, decoders: int, rounds: int) -> float:
    """Images/s from file bytes: host threads decode the next batch while the device runs one."""

    def run() -> None:
        with ThreadPoolExecutor(decoders) as pool:
            pending = [pool.map(decode_image, chunk) for chunk in batches(datas, batch)]
            for decoded in pending:  # map() decodes ahead; each batch waits only for its own images
                pipeline.process(list(decoded))

    return len(datas) / timed(run, rounds)


def parity(host: list[list[pipeline.Face]], device: list[list[pipeline.Face]]) -> dict[str, Any]:
    """Face counts, box and descriptor differences between two runs on the same images; faces
    are matched by nearest box (the two paths may list an image's faces in another order)."""
    counts_differ, box_px, descriptor_l2 = 0, 0.0, 0.0
    for a, b in zip(host, device):
        if len(a) != len(b):
            counts_differ += 1
            continue
        for face in a:
            corners = np.array(face.detection.box)
            twin = min(b, key=lambda f: np.abs(np.array(f.detection.box) - corners).max())
            box_px = max(box_px, float(np.abs(np.array(twin.detection.box) - corners).max()))
            descriptor_l2 = max(descriptor_l2, float(np.linalg.norm(twin.descriptor - face.descriptor)))
    return {"images": len(host), "face_counts_differ": counts_differ, "box_max_px": round(box_px, 4),
            "descriptor_max_l2": round(descriptor_l2, 6)}


def matcher_figures(rows: int, queries: int, cuda: bool) -> dict[str, Any]:
    from matcher.index import FlatIndex

    rng = np.random.default_rng(14)
    data = rng.standard_normal((rows, 128), dtype=np.float32) * 0.09  # about the descriptors' norm
    probes = data[rng.choice(rows, queries, replace=False)] + rng.standard_normal((queries, 128), dtype=np.float32) * 0.03
    ids = np.arange(rows)
    indexes: dict[str, Any] = {"cpu": FlatIndex(128)}
    if cuda:
        from matcher.device_index import DeviceIndex

        indexes["cuda"] = DeviceIndex(128, device="cuda")
    out: dict[str, Any] = {"rows": rows, "queries": queries, "k": K}
    answers = {}
    for name, index in indexes.items():
        index.add(ids, data)
        index.search(probes[:2], K)  # warm: the first search builds what later ones reuse
        start = time.perf_counter()
        answers[name] = index.search(probes, K)
        synchronize()
        elapsed = time.perf_counter() - start
        singles = []
        for q in probes[:20]:
            start = time.perf_counter()
            index.search(q[None], K)
            synchronize()
            singles.append(time.perf_counter() - start)
        out[name] = {"queries_per_s": round(queries / elapsed, 1), "one_query_ms": round(1000 * statistics.median(singles), 3)}
    if cuda:
        out["same_results"] = all(np.array_equal(a, b) for a, b in zip(answers["cpu"], answers["cuda"]))
        out["fits_10m"] = fits_10m()
    return out


def fits_10m() -> bool:
    """A 10,000,000 x 128 list on the device answers a query."""
    from matcher.device_index import DeviceIndex

    index = DeviceIndex(128, device="cuda")
    step = 1_000_000
    rng = np.random.default_rng(10)
    for start in range(0, 10 * step, step):
        index.add(np.arange(start, start + step), rng.standard_normal((step, 128), dtype=np.float32))
    _, found = index.search(rng.standard_normal((1, 128), dtype=np.float32), K)
    del index
    torch.cuda.empty_cache()
    return found.shape == (1, K)


def pack(folder: Path, count: int) -> None:
    """The weight files and bench images this bench reads, copied into ``folder`` (see above)."""
    from inference.formats.dlib_dnn import face_recognition_models_file
    from inference.models import descriptor, mtcnn, shape_predictor

    files = [mtcnn.weights_dir() / f"{net}.pt" for net in ("pnet", "rnet", "onet")]
    files += [face_recognition_models_file(m.MODEL_FILE) for m in (descriptor, shape_predictor)]
    for source in files:  # .../site-packages/<package>/<folder>/<file> -> packages/<package>/<folder>/<file>
        target = folder / "packages" / source.relative_to(source.parents[2])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        (target.parents[1] / "__init__.py").touch()  # a regular package: found before any installed copy
    faces = folder / "shared" / "faces"
    paths = bench_paths(count)
    for path in paths:
        target = faces / path.relative_to(FACES)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    with open(FACES / "MANIFEST.csv") as fh, open(faces / "MANIFEST.csv", "w") as out:
        picked = {str(p.relative_to(FACES)) for p in paths}
        rows = csv.reader(fh)
        writer = csv.writer(out)
        writer.writerow(next(rows))
        writer.writerows(row for row in rows if row[0] in picked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--batches", default="1,8,32,64")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--decoders", type=int, default=8)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--pack", type=Path, help="copy the weights and images into this folder and stop")
    args = parser.parse_args()
    if args.pack:
        pack(args.pack, args.images)
        return
    cuda = torch.cuda.is_available()
    paths = bench_paths(args.images)
    datas = [p.read_bytes() for p in paths]
    images = [decode_image(d) for d in datas]
    result: dict[str, Any] = {"bench": "gpu", "cuda": cuda, "images": len(images),
                              "device_name": torch.cuda.get_device_name() if cuda else None, "cpu_threads": os.cpu_count()}

    registry.configure(device="cpu")
    host_faces = run_pipeline(images, 32)  # warm-up, and the host side of the parity check
    cpu_rate = len(images) / timed(lambda: run_pipeline(images, 32), args.rounds)
    result["cpu"] = {"images_per_s": round(cpu_rate, 1), "stage_ms": stage_ms(images, 32, args.rounds)}
    print(f"cpu: {result['cpu']}", flush=True)

    if cuda:
        registry.configure(device="cuda")
        device_faces = run_pipeline(images, 64)  # warm-up
        torch.cuda.reset_peak_memory_stats()
        rates = {b: round(len(images) / timed(lambda b=b: run_pipeline(images, b), args.rounds), 1)
                 for b in (int(v) for v in args.batches.split(","))}
        rows = {"images_per_s_by_batch": rates, "stage_ms": device_stage_ms(images, 32, args.rounds),
                "memory_peak_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1),
                "images_per_s_decoding": round(decoding_rate(datas, 64, args.decoders, args.rounds), 1)}
        rows["ratio_vs_cpu"] = round(rates.get(64, max(rates.values())) / cpu_rate, 2)
        result["cuda_rows"] = rows
        print(f"cuda: {rows}", flush=True)
    else:
        device_faces = [f for chunk in batches(images, 32) for f in pipeline.process_on_device(chunk)]
    result["parity"] = parity(host_faces, device_faces)
    print(f"parity: {result['parity']}", flush=True)
    result["matcher"] = matcher_figures(args.rows, args.queries, cuda)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
