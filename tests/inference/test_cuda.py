"""The device paths on a real CUDA device; this module runs where torch sees one (the only skip in
the suite: a CPU-only machine has nothing to run it on). The same paths run on the CPU in
test_device_pipeline.py, tests/inference/test_detector_devices.py and tests/matcher/."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from inference import pipeline, registry

from .conftest import bench_paths, load_rgb

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")



@pytest.fixture(autouse=True)
def back_to_cpu():
    yield
    registry.configure(device="cpu")


def test_cuda_workers_find_the_cpus_faces() -> None:
    """The issue's parity: on the bench images the same faces per image, boxes within 0.5 px,
    descriptors within L2 0.01, for both descriptor versions."""
    images = [load_rgb(p) for p in bench_paths(200)]
    for version in (101, 102):
        registry.configure(device="cpu")
        host = [f for i in range(0, len(images), 32) for f in pipeline.process(images[i:i + 32], version)]
        registry.configure(device="cuda")
        device = [f for i in range(0, len(images), 64) for f in pipeline.process(images[i:i + 64], version)]
        for a, b in zip(host, device):
            assert len(a) == len(b)
            for x, y in zip(a, b):
                assert np.abs(np.array(x.detection.box) - np.array(y.detection.box)).max() <= 0.5
                assert np.linalg.norm(x.descriptor - y.descriptor) <= 0.01


def test_cuda_landmarks_and_chips_equal_numpy(shape_predictor, reference_faces) -> None:
    """CUDA's cumsum keeps the leaves' float32 order and no CUDA op rounds otherwise: the device
    landmarks and chips equal numpy's exactly (on the CPU's torch: test_device_align.py)."""
    from inference import align
    from inference.align_device import face_chips_device, sequential_sum

    steps = torch.full((2, 501, 3), 1e-8, dtype=torch.float32, device="cuda")
    steps[:, 0] = 1.0
    assert (sequential_sum(steps) == 1.0).all()  # added one by one in float32, as dlib does
    images, boxes = [], []
    for image, shape in reference_faces:
        if not images or images[-1] is not image:
            images.append(image)
            boxes.append([])
        r = shape.rect
        boxes[-1].append((r.left(), r.top(), r.width(), r.height()))
    expected = np.concatenate(shape_predictor.predict_batch(images, boxes))
    tensors = [torch.from_numpy(image.copy()).cuda() for image in images]
    flat = torch.tensor([b for bb in boxes for b in bb], dtype=torch.float32, device="cuda")
    inds = torch.tensor([k for k, bb in enumerate(boxes) for _ in bb], device="cuda")
    points = shape_predictor.predict_device(tensors, flat, inds)
    np.testing.assert_array_equal(points.cpu().numpy(), expected)
    chips = face_chips_device(tensors, inds, points)
    host = np.concatenate([align.face_chips(image, p) for image, p in
                           zip(images, np.split(expected, np.cumsum([len(b) for b in boxes])[:-1]))])
    np.testing.assert_array_equal(chips.cpu().numpy(), host)


def test_tf32_is_off_and_batches_follow_device_memory() -> None:
    registry.configure(device="cuda")
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert pipeline.batch_limit(0) > pipeline.CPU_BATCH


def test_device_index_on_cuda_answers_as_the_cpu_index() -> None:
    from matcher.device_index import DeviceIndex
    from matcher.index import FlatIndex

    rng = np.random.default_rng(3)
    data = rng.standard_normal((50_000, 128), dtype=np.float32)
    data[100:200] = data[0]  # exact ties: order by id
    queries = np.concatenate([data[:1], rng.standard_normal((63, 128), dtype=np.float32)])
    cpu, cuda = FlatIndex(128), DeviceIndex(128, device="cuda")
    for index in (cpu, cuda):
        index.add(np.arange(len(data)), data)
    for got, want in zip(cuda.search(queries, 10), cpu.search(queries, 10)):
        assert np.array_equal(got, want)
