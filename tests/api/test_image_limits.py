"""Every route that takes an image checks it the one way (``inference.images``): formats by
content whatever the Content-Type says, pixels and decode memory from the header, JPEGs cut
short. Each refusal is a 4xx in the error shape, and leaves nothing in the image store.

/sdk, /detector and /iso run through the real Celery worker of ``tests/conftest.py``.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable

import pytest
from PIL import Image

from tests.api.sdk_fixtures import FACES, post, sdk_user  # noqa: F401, F811 - sdk_user is a fixture
from tests.inference.test_images import big_png, cut_and_closed, encode, lying_jpeg, multi_page_tiff, noise

PORTRAIT = FACES / "lfw" / "Colin_Powell" / "Colin_Powell_0001.jpg"
FORMAT_NOT_ALLOWED, BAD_IMAGE, TOO_LARGE = 23013, 23011, 23012
INPUTS: dict[str, tuple[Callable[[], bytes], int, int, str]] = {
    # name: (bytes, status, error_code, a word the detail names)
    "gif": (lambda: encode(noise(32, 32), "GIF"), 415, FORMAT_NOT_ALLOWED, "GIF"),
    "ico": (lambda: encode(noise(32, 32), "ICO"), 415, FORMAT_NOT_ALLOWED, "ICO"),
    "tiff_two_pages": (multi_page_tiff, 415, FORMAT_NOT_ALLOWED, "2 frames"),
    "jpeg_6000x6000_in_12kb": (lying_jpeg, 400, BAD_IMAGE, "truncated"),
    "jpeg_cut_and_closed": (lambda: cut_and_closed(PORTRAIT.read_bytes()), 400, BAD_IMAGE, "truncated"),
    "png_over_the_budget": (lambda: big_png(3000), 413, TOO_LARGE, "decode budget"),
    "png_over_the_pixels": (lambda: big_png(3000), 413, TOO_LARGE, "exceeds the limit"),
    "empty": (lambda: b"", 400, BAD_IMAGE, ""),
    "not_an_image": (lambda: b"GIF89 is what this text is not", 400, BAD_IMAGE, "not a recognised image format"),
}
ROUTES = ["/images", "/samples/faces", "/sdk", "/detector", "/iso"]


def stored_files() -> set[Path]:
    from app import settings

    root = settings.current().effective_storage_path
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.fixture()
def limits(settings_override: Callable[..., None]) -> Callable[[str], None]:
    """Settings that make the 9 MP PNG too large in one way or the other."""
    def apply(name: str) -> None:
        if name == "png_over_the_budget":
            settings_override(image_decode_budget_mb=32)  # 9 MP of grey take about 69 MiB to decode
        elif name == "png_over_the_pixels":
            settings_override(inference_max_image_pixels=5_000_000)

    return apply


def send(client: Any, route: str, user: Any, data: bytes) -> Any:
    if route in ("/sdk", "/detector", "/iso"):
        return post(client, route, user, ("upload.png", data))
    # raw bodies labelled PNG: the content decides, not the label
    return client.post(route, data=data, content_type="image/png", headers=user.auth)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("name", list(INPUTS))
def test_refused_in_the_error_shape_and_nothing_stored(client, sdk_user, limits, route: str, name: str) -> None:
    make, status, code, word = INPUTS[name]
    data = make()
    limits(name)
    before = stored_files()
    r = send(client, route, sdk_user, data)
    if name == "empty" and route in ("/images", "/samples/faces"):
        code, word = 10010, "empty"  # the store's own "the body is empty" answers first
    assert r.status_code == status, (r.status_code, r.json)
    assert set(r.json) == {"error_code", "desc", "detail"} and r.json["error_code"] == code, r.json
    assert word in r.json["detail"]
    assert stored_files() == before


def test_a_valid_upload_still_works_everywhere(client, sdk_user) -> None:
    """The same routes take every allowed format; the check refuses only what it must."""
    for fmt in ("PNG", "BMP", "TIFF", "WEBP"):
        buf = io.BytesIO()
        Image.open(PORTRAIT).save(buf, fmt)
        for route in ROUTES:
            before = stored_files()
            r = send(client, route, sdk_user, buf.getvalue())
            assert r.status_code in (200, 201), (fmt, route, r.json)
            if route in ("/images", "/samples/faces"):
                assert stored_files() - before  # where the refusals above would have left theirs
            if route == "/iso":
                image_format = {c["name"]: c for c in r.json["images"][0]["checks"]}["image_format"]
                assert image_format["value"] == fmt.upper()
