"""Decoding client image bytes: formats, modes, EXIF rotation, and clear errors for bad input."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from inference.images import ImageDecodeError, ImageError, ImageTooLarge, decode_image


def encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def two_colour(width: int = 40, height: int = 20) -> Image.Image:
    """Red left half, blue right half: orientation changes are visible in the pixels."""
    arr = np.zeros((height, width, 3), dtype=np.uint8)
    arr[:, : width // 2] = (255, 0, 0)
    arr[:, width // 2 :] = (0, 0, 255)
    return Image.fromarray(arr)


def test_png_rgb_is_exact() -> None:
    original = np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    out = decode_image(encode(Image.fromarray(original), "PNG"))
    assert out.dtype == np.uint8 and out.shape == (17, 23, 3)
    assert np.array_equal(out, original)


def test_jpeg_rgb() -> None:
    out = decode_image(encode(two_colour(), "JPEG", quality=95))
    assert out.shape == (20, 40, 3)
    assert out[10, 5, 0] > 200 and out[10, 35, 2] > 200


@pytest.mark.parametrize(
    "orientation, shape, red_at",
    [
        (1, (20, 40, 3), (10, 2)),  # as stored
        (3, (20, 40, 3), (10, 37)),  # rotated 180: red moves to the right
        (6, (40, 20, 3), (2, 10)),  # rotated 90 clockwise for display: left half becomes the top
        (8, (40, 20, 3), (37, 10)),  # rotated 90 counter-clockwise: left half becomes the bottom
    ],
)
def test_exif_orientation_applied(orientation: int, shape: tuple[int, int, int], red_at: tuple[int, int]) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = decode_image(encode(two_colour(), "JPEG", quality=95, exif=exif))
    assert out.shape == shape
    r, c = red_at
    assert out[r, c, 0] > 200 and out[r, c, 2] < 60


def test_cmyk_jpeg_becomes_rgb() -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # no cyan, full magenta+yellow = red
    out = decode_image(encode(cmyk, "JPEG", quality=95))
    assert out.shape == (16, 16, 3)
    assert out[8, 8, 0] > 200 and out[8, 8, 1] < 60 and out[8, 8, 2] < 60


def test_grayscale_becomes_three_equal_channels() -> None:
    grey = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4, "L")
    out = decode_image(encode(grey, "PNG"))
    assert out.shape == (8, 8, 3)
    assert np.array_equal(out[..., 0], np.asarray(grey)) and np.array_equal(out[..., 0], out[..., 2])


def test_sixteen_bit_grayscale_is_rescaled_not_clipped() -> None:
    values = np.array([[0, 257 * 100], [257 * 200, 65535]], dtype=np.uint16)
    out = decode_image(encode(Image.fromarray(values), "PNG"))
    assert out[..., 0].tolist() == [[0, 100], [200, 255]]


def test_palette_with_transparency_and_rgba_on_white() -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[:2] = (0, 128, 0, 255)  # opaque green top
    rgba[2:] = (0, 0, 0, 0)  # fully transparent bottom, black underneath
    out = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert out[0, 0].tolist() == [0, 128, 0]
    assert out[3, 3].tolist() == [255, 255, 255]
    palette = Image.fromarray(rgba, "RGBA").convert("P")
    palette.info["transparency"] = palette.getpixel((3, 3))
    out = decode_image(encode(palette, "PNG", transparency=palette.getpixel((3, 3))))
    assert out[3, 3].tolist() == [255, 255, 255] and out[0, 0, 1] > 100


def test_too_large_refused_before_decoding() -> None:
    big = encode(Image.new("1", (3000, 2000)), "PNG")  # 6 Mpx but a tiny file
    with pytest.raises(ImageTooLarge) as info:
        decode_image(big, max_pixels=5_000_000)
    assert info.value.width == 3000 and info.value.height == 2000
    assert isinstance(info.value, ImageError)
    assert decode_image(big, max_pixels=6_000_000).shape == (2000, 3000, 3)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"this is not an image at all",
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,  # PNG signature, garbage chunks
    ],
)
def test_non_image_bytes(data: bytes) -> None:
    with pytest.raises(ImageDecodeError):
        decode_image(data)


def test_truncated_jpeg() -> None:
    data = encode(Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)), "JPEG")
    with pytest.raises(ImageDecodeError):
        decode_image(data[: len(data) // 2])
