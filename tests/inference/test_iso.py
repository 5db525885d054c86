"""ISO/IEC 19794-5-style checks on real photos: a passport-like portrait passes, a group photo,
a rotated, blurred, darkened or PNG copy fails the matching check; thresholds are overridable."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from inference import registry
from inference.iso import DEFAULT_THRESHOLDS, check_bytes, check_image, thresholds_from


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def portrait(faces_dir: Path) -> Image.Image:
    """A frontal studio portrait cropped to the standard's 3:4 frame (eyes ~36% from the top)."""
    image = Image.open(faces_dir / "deepface" / "Angelina_Jolie" / "img10.jpg").convert("RGB")
    width = image.width
    return image.crop((0, 25, width, 25 + round(width / 0.75)))


def _values(report) -> dict:
    return {c.name: c for c in report.checks}


def test_passport_like_portrait_passes_every_check(portrait):
    report = check_bytes(_encode(portrait, "JPEG"))
    checks = _values(report)
    assert set(checks) == set(DEFAULT_THRESHOLDS)
    failed = {name: (c.value, c.error) for name, c in checks.items() if c.result != 1}
    assert not failed, failed
    assert report.result == 1
    assert checks["image_format"].value == "JPEG"
    assert checks["face_count"].value == 1
    assert abs(checks["head_yaw"].value) < 5 and abs(checks["head_roll"].value) < 8
    assert checks["eye_distance"].threshold == {"min": 90, "max": None}


def test_png_fails_the_default_format_and_passes_a_user_list(portrait):
    data = _encode(portrait, "PNG")
    default = _values(check_bytes(data))["image_format"]
    assert (default.value, default.result) == ("PNG", 0)
    custom = _values(check_bytes(data, {"image_format": ["JPEG", "PNG"]}))["image_format"]
    assert custom.result == 1 and custom.threshold == {"allowed": ["JPEG", "PNG"]}


def test_rotated_portrait_fails_roll_with_the_rotation_sign(portrait):
    rolls = {}
    for angle in (20, -20):
        rotated = portrait.rotate(angle, resample=Image.BILINEAR, fillcolor=(128, 128, 128))
        checks = _values(check_image(np.asarray(rotated), "JPEG"))
        assert checks["head_roll"].result == 0
        assert checks["face_count"].result == 1
        rolls[angle] = checks["head_roll"].value
    # PIL rotates counter-clockwise for a positive angle: the roll changes sign with the direction
    assert rolls[20] * rolls[-20] < 0
    assert all(15 < abs(v) < 25 for v in rolls.values()), rolls


def test_group_photo_fails_face_count_and_framing(faces_dir):
    report = check_bytes((faces_dir / "multi" / "face_recognition_obama_and_biden.jpg").read_bytes())
    checks = _values(report)
    assert checks["face_count"].value >= 2 and checks["face_count"].result == 0
    assert checks["head_width"].result == 0  # each face is a small part of the frame
    assert report.result == 0


def test_blurred_and_darkened_copies_fail_their_checks(portrait):
    blurred = _values(check_image(np.asarray(portrait.filter(ImageFilter.GaussianBlur(4))), "JPEG"))
    assert blurred["blur"].result == 0
    dark = _values(check_image((np.asarray(portrait) * 0.25).astype(np.uint8), "JPEG"))
    assert dark["darkness"].result == 0
    assert dark["head_width"].result == 1  # geometry is unaffected by exposure


def test_no_face_marks_face_checks_not_evaluated(faces_dir):
    path = sorted((faces_dir / "noface").glob("*.jpg"))[0]
    report = check_bytes(path.read_bytes())
    checks = _values(report)
    assert checks["face_count"].value == 0 and checks["face_count"].result == 0
    assert checks["head_yaw"].result is None and checks["head_yaw"].error == "no face detected"
    assert checks["image_format"].result == 1
    assert report.result == 0


def test_user_thresholds_override_defaults(portrait):
    image = np.asarray(portrait)
    yaw = _values(check_image(image, "JPEG"))["head_yaw"].value
    strict = _values(check_image(image, "JPEG", {"head_yaw": {"min": yaw + 1, "max": yaw + 2}}))["head_yaw"]
    assert strict.result == 0 and strict.value == yaw
    assert _values(check_image(image, None))["image_format"].result is None
    with pytest.raises(ValueError, match="unknown ISO check"):
        thresholds_from({"head_tilt": {"max": 3}})
    with pytest.raises(ValueError):
        thresholds_from({"head_yaw": 5})


def test_disabled_estimator_is_reported_not_skipped(portrait):
    registry.configure(enabled={"head_pose": False, "image_quality": False})
    try:
        report = check_image(np.asarray(portrait), "JPEG")
    finally:
        registry.configure()
    checks = _values(report)
    for name in ("head_yaw", "head_pitch", "head_roll", "blur", "darkness"):
        assert checks[name].result is None
        assert "disabled" in checks[name].error and checks[name].value is None
    assert checks["eyes_open"].result == 1  # the other estimators still ran
    assert report.result == 0
