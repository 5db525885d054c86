"""What the remote SDK asks of the models, for a batch of images from any number of requests.

Each request names options (``detect_face``, ``estimate_head_pose``, ``extract_descriptor``...).
:func:`analyze` runs detection once over every image that wants faces (boxes, 5 landmarks, aligned
chips; an image with the option ``sample`` is a stored face sample, one aligned face), then each :class:`FaceEstimation` once over every face whose request asked for it, and the
body detector over the images that want bodies. Per-face estimations share one protocol: the
request option that asks for it, the registry entries it needs, and ``estimate`` over a batch of
faces; adding one is one class in :data:`FACE_ESTIMATIONS`.

Nothing here knows about HTTP, accounts or storage: the caller (``app.sdk``) stores samples and
attributes from the :class:`Analysis` it gets back.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from inference import align, descriptor_format, pipeline, registry
from inference.types import Detection


@dataclass
class Face:
    """One detected face and what the estimations read from it."""

    image: np.ndarray
    detection: Detection
    points: np.ndarray  # the 5 landmarks
    chip: np.ndarray  # the aligned 150x150 crop
    mesh: Any = None  # dense landmarks, computed once for the estimations that need them


class FaceEstimation(Protocol):
    """A per-face estimation: ``option`` asks for it, ``needs`` are the registry entries it loads,
    ``estimate`` gives one value per face (in order), ``answer`` turns a value into the face's
    ``key`` field of the answer."""

    option: str
    key: str
    needs: tuple[str, ...]
    uses_mesh: bool

    def estimate(self, faces: list[Face]) -> list[Any]: ...

    def answer(self, value: Any) -> Any: ...


def plain(value: Any) -> Any:
    """Estimator dataclasses -> JSON-ready values (numpy scalars become Python numbers)."""
    if hasattr(value, "__dataclass_fields__"):
        value = asdict(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def basic_json(b: Any) -> dict[str, Any]:
    return {**plain(b), "gender_label": b.gender_label}


def emotions_json(e: Any) -> dict[str, Any]:
    return {"predominant": e.predominant, "probabilities": plain(e.probabilities)}


def rect(d: Detection) -> dict[str, Any]:
    x, y, w, h = d.box
    return {"rect": {"x": float(x), "y": float(y), "width": float(w), "height": float(h)}, "score": float(d.score)}


class _Estimation:
    uses_mesh = False

    def answer(self, value: Any) -> Any:
        return plain(value)


class Quality(_Estimation):
    option, key, needs = "estimate_quality", "quality", ("image_quality",)

    def estimate(self, faces: list[Face]) -> list[Any]:
        estimator = registry.get("image_quality")
        return [estimator.estimate(f.chip) for f in faces]


class BasicAttributes(_Estimation):
    option, key, needs = "estimate_basic_attributes", "basic_attributes", ("basic_attributes",)

    def estimate(self, faces: list[Face]) -> list[Any]:
        estimator = registry.get("basic_attributes")
        cut = [estimator.chips(f.image, f.points[None]) for f in faces]
        return list(estimator.estimate_chips(np.concatenate([a for a, _ in cut]), np.concatenate([g for _, g in cut])))

    def answer(self, value: Any) -> Any:
        return basic_json(value)


class Emotions(_Estimation):
    option, key, needs = "estimate_emotions", "emotions", ("emotions",)

    def estimate(self, faces: list[Face]) -> list[Any]:
        found = registry.get("emotions").estimate_many([(f.image, [f.detection.box]) for f in faces])
        return [per_image[0] for per_image in found]

    def answer(self, value: Any) -> Any:
        return emotions_json(value)


class Landmarks68(_Estimation):
    option, key, needs, uses_mesh = "estimate_landmarks68", "landmarks68", ("face_landmarks68",), True

    def estimate(self, faces: list[Face]) -> list[Any]:
        return [f.mesh.landmarks68 for f in faces]


class FromMesh(_Estimation):
    """Geometry on the face mesh (head pose, eyes, gaze, mouth)."""

    uses_mesh = True

    def __init__(self, option: str, name: str) -> None:
        self.option, self.key, self.needs = option, name, ("face_landmarks68", name)

    def estimate(self, faces: list[Face]) -> list[Any]:
        estimator = registry.get(self.key)
        return [estimator.estimate(f.mesh) for f in faces]


FACE_ESTIMATIONS: dict[str, FaceEstimation] = {e.option: e for e in (
    Landmarks68(), FromMesh("estimate_head_pose", "head_pose"), FromMesh("estimate_eyes", "eyes"),
    FromMesh("estimate_gaze", "gaze"), FromMesh("estimate_mouth", "mouth"), Quality(), BasicAttributes(),
    Emotions(),
)}

# option -> the registry entries it needs; the worker loads them before queueing any work and
# answers 403/503 naming the entry when one is disabled or not installed.
NEEDS: dict[str, tuple[str, ...]] = {
    "detect_face": ("face_detector", "face_landmarks5"),
    "detect_body": ("body_detector",),
    "extract_descriptor": ("face_descriptor",),
    **{option: e.needs for option, e in FACE_ESTIMATIONS.items()},
}


class Unavailable(Exception):
    """An option asks for an estimator that is disabled or not installed."""

    def __init__(self, exc: registry.EstimatorUnavailable, option: str | None) -> None:
        super().__init__(f"{exc}" + (f" (needed by {option})" if option else ""))
        self.disabled = exc.name in registry.ENTRIES and not registry.is_enabled(exc.name)


def require(options: dict[str, Any]) -> None:
    """Load (or find loaded) every model the options ask for, before any work is queued."""
    for option, names in NEEDS.items():
        if options.get(option):
            for name in names:
                try:
                    registry.get(name)
                except registry.EstimatorUnavailable as exc:
                    raise Unavailable(exc, option) from None


@dataclass
class Analysis:
    """Everything the models found in one image; chips stay arrays until the caller stores them."""

    faces: list[dict[str, Any]] = field(default_factory=list)
    chips: list[np.ndarray] = field(default_factory=list)
    descriptors: np.ndarray | None = None
    # option -> one raw value per face (the answer holds their JSON form)
    estimates: dict[str, list[Any]] = field(default_factory=dict)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    body_chips: list[np.ndarray] = field(default_factory=list)


def analyze(items: list[tuple[np.ndarray, dict[str, Any]]]) -> list[Analysis]:
    """Run the requested models on images from any number of requests as one batch.

    ``items`` pairs each RGB image with its request's options. Every network sees all the
    images (or faces) that asked for it at once.
    """
    out = [Analysis() for _ in items]

    def wanting(option: str, among: list[int]) -> list[int]:
        return [i for i in among if items[i][1].get(option)]

    everyone = list(range(len(items)))
    face_images = wanting("detect_face", everyone)
    if face_images:
        faces: dict[int, list[Face]] = {}
        for i, (image, dets, pts, chs) in zip(face_images, _located([items[i] for i in face_images])):
            out[i].chips = list(chs)
            out[i].faces = [{"detection": rect(d), "landmarks5": plain(p)} for d, p in zip(dets, pts)]
            faces[i] = [Face(image, d, p, c) for d, p, c in zip(dets, pts, chs)]
        with_faces = [i for i in face_images if faces[i]]
        _extract(items, out, wanting("extract_descriptor", with_faces))
        _estimate(items, out, faces, with_faces)
    body_images = [i for i in wanting("detect_body", everyone) if not items[i][1].get("sample")]
    if body_images:
        from inference.models.body_detector import body_warp

        found = registry.get("body_detector").detect([items[i][0] for i in body_images])
        for i, dets in zip(body_images, found):
            out[i].bodies = [rect(d) for d in dets]
            if items[i][1].get("body_warp"):
                out[i].body_chips = [body_warp(items[i][0], d.box) for d in dets]
    return out


def _located(items: list[tuple[np.ndarray, dict[str, Any]]]) -> list[tuple[np.ndarray, list[Detection], np.ndarray,
                                                                         np.ndarray]]:
    """(image, detections, 5 landmarks, aligned chips) of each image. The models find the faces of a
    photo; an image that is a stored face sample (option ``sample``) is one face already aligned:
    its landmarks are where the warp puts them, its chip is itself (brought to the chip's size)."""
    photos = [image for image, options in items if not options.get("sample")]
    found = iter((photo, *located) for photo, located in zip(photos, pipeline.locate(photos)))
    out = []
    for image, options in items:
        if not options.get("sample"):
            out.append(next(found))
            continue
        chip = align.resize_chip(image)
        size = float(chip.shape[0])
        out.append((chip, [Detection((0.0, 0.0, size, size), 1.0)], align.chip_landmarks(chip.shape[0])[None],
                    chip[None]))
    return out


def _extract(items: list[tuple[np.ndarray, dict[str, Any]]], out: list[Analysis], chosen: list[int]) -> None:
    for version in sorted({items[i][1]["descriptor_version"] for i in chosen}):
        of_version = [i for i in chosen if items[i][1]["descriptor_version"] == version]
        for i, descs in zip(of_version, pipeline.extract([np.stack(out[i].chips) for i in of_version], version)):
            out[i].descriptors = descs


def _estimate(items: list[tuple[np.ndarray, dict[str, Any]]], out: list[Analysis], faces: dict[int, list[Face]],
              with_faces: list[int]) -> None:
    asked = {option: [i for i in with_faces if items[i][1].get(option)] for option in FACE_ESTIMATIONS}
    meshed = sorted({i for option, chosen in asked.items() if FACE_ESTIMATIONS[option].uses_mesh for i in chosen})
    if meshed:
        batch = [f for i in meshed for f in faces[i]]
        for f, mesh in zip(batch, registry.get("face_landmarks68").run_many([(f.image, f.detection) for f in batch])):
            f.mesh = mesh
    for option, chosen in asked.items():
        if not chosen:
            continue
        estimation = FACE_ESTIMATIONS[option]
        values = iter(estimation.estimate([f for i in chosen for f in faces[i]]))
        for i in chosen:
            out[i].estimates[option] = [next(values) for _ in faces[i]]
            for face, value in zip(out[i].faces, out[i].estimates[option]):
                face[estimation.key] = estimation.answer(value)


@dataclass
class Aggregate:
    """One person over several images: each image's largest face, merged."""

    picked: list[tuple[int, int]]  # (image, face) pairs that were merged
    basic_attributes: Any = None
    gender_votes: Any = None
    emotions: Any = None
    descriptor: np.ndarray | None = None


def aggregate(found: list[Analysis]) -> Aggregate:
    """Merge each image's largest face (by box width); images without a face are left out."""
    from inference import aggregation  # imports torch (through the age/gender model)

    picked = [(n, max(range(len(a.faces)), key=lambda j: a.faces[j]["detection"]["rect"]["width"]))
              for n, a in enumerate(found) if a.faces]
    result = Aggregate(picked)
    if not picked:
        return result

    def values(option: str) -> list[Any] | tuple[()]:
        return [found[n].estimates[option][k] for n, k in picked] if option in found[picked[0][0]].estimates else ()

    merged = aggregation.aggregate_attributes(values("estimate_basic_attributes"), values("estimate_emotions"))
    result.basic_attributes, result.gender_votes = merged.basic_attributes, merged.gender_votes
    result.emotions = merged.emotions
    if found[picked[0][0]].descriptors is not None:
        result.descriptor = descriptor_format.aggregate(np.stack([found[n].descriptors[k] for n, k in picked]))
    return result


def iso_report(image_format: str, image: np.ndarray, thresholds: dict[str, Any] | None) -> dict[str, Any]:
    """ISO/IEC 19794-5-style checks of one image as JSON (``inference.iso``); ``image_format`` is
    the container's, as :func:`inference.images.read_header` found it."""
    from inference import iso

    report = iso.check_image(image, image_format, thresholds)
    return {"result": report.result, "face": rect(report.face) if report.face is not None else None,
            "checks": [plain(c) for c in report.checks]}
