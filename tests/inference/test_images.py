"""Checking and decoding client image bytes: formats by content, modes, EXIF rotation, JPEGs cut
short, the decode budget, and clear errors for bad input."""
from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from inference.images import (
    DecodeBudget,
    ImageDecodeError,
    ImageError,
    ImageFormatNotAllowed,
    ImageTooLarge,
    decode,
    decode_budget,
    decode_image,
    read_header,
)


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


# ---- crafted inputs, shared with tests/api/test_image_limits.py -----------------------------
def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def lying_jpeg(width: int = 6000, height: int = 6000) -> bytes:
    """A 12 KB JPEG whose SOF header claims ``width`` x ``height`` over the scan data of a small
    picture, closed by an EOI marker: libjpeg alone decodes it as 36 MP of grey."""
    data = bytearray(encode(noise(64, 64), "JPEG", quality=95))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def cut_and_closed(data: bytes) -> bytes:
    """The first half of a JPEG, closed by an EOI marker as if it were complete."""
    return data[: len(data) // 2] + b"\xff\xd9"


def multi_page_tiff() -> bytes:
    buf = io.BytesIO()
    noise(32, 32).save(buf, "TIFF", save_all=True, append_images=[noise(32, 32, 1)])
    return buf.getvalue()


def big_png(side: int = 6300) -> bytes:
    """A PNG of ``side`` x ``side`` grey pixels: a few dozen KB that decode to side*side*7 bytes."""
    return encode(Image.new("L", (side, side), 128), "PNG", optimize=True)


# ---- formats by content ------------------------------------------------------------------------
@pytest.mark.parametrize("fmt, name", [("GIF", "GIF"), ("ICO", "ICO"), ("PCX", "PCX"), ("TGA", "TGA")])
def test_formats_outside_the_list_are_refused_by_name(fmt: str, name: str) -> None:
    data = encode(noise(32, 32), fmt)
    with pytest.raises(ImageFormatNotAllowed) as info:
        read_header(data)
    assert info.value.format == name and name in str(info.value)
    with pytest.raises(ImageFormatNotAllowed):
        decode_image(data)


@pytest.mark.parametrize("data, name", [
    (multi_page_tiff(), "TIFF"),
    (encode(noise(32, 32), "WEBP", save_all=True, append_images=[noise(32, 32, 1)]), "WEBP"),
    (encode(noise(32, 32), "PNG", save_all=True, append_images=[noise(32, 32, 1)]), "PNG"),
])
def test_several_frames_are_refused(data: bytes, name: str) -> None:
    with pytest.raises(ImageFormatNotAllowed, match="2 frames") as info:
        read_header(data)
    assert info.value.format == name


@pytest.mark.parametrize("fmt, kwargs, name", [
    ("JPEG", {"quality": 95}, "JPEG"), ("JPEG", {"progressive": True}, "JPEG"), ("PNG", {}, "PNG"),
    ("BMP", {}, "BMP"), ("TIFF", {}, "TIFF"), ("WEBP", {"lossless": True}, "WebP"),
])
def test_allowed_formats(fmt: str, kwargs: dict, name: str) -> None:
    image = noise(48, 32)
    data = encode(image, fmt, **kwargs)
    header = read_header(data)
    assert (header.format, header.width, header.height) == (name, 48, 32)
    out = decode_image(data)
    assert out.shape == (32, 48, 3)
    if fmt != "JPEG":  # lossless formats come back exactly
        assert np.array_equal(out, np.asarray(image))


def test_camera_jpeg_with_extra_pictures_is_a_jpeg() -> None:
    buf = io.BytesIO()
    noise(48, 32).save(buf, "MPO", save_all=True, append_images=[noise(16, 16, 1)])
    assert Image.open(io.BytesIO(buf.getvalue())).format == "MPO"
    assert read_header(buf.getvalue()).format == "JPEG"
    assert decode_image(buf.getvalue()).shape == (32, 48, 3)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "BMP"])
def test_the_header_check_decodes_nothing(fmt: str) -> None:
    """Half a file passes read_header, which decoding it would not: the check reads the header
    alone (PIL's getexif() on a PNG, for one, decodes the whole image)."""
    data = encode(noise(300, 200), fmt)
    cut = data[: len(data) // 2]
    header = read_header(cut)
    assert (header.width, header.height) == (300, 200)
    with pytest.raises(ImageDecodeError):
        decode_image(cut)


# ---- JPEGs cut short ---------------------------------------------------------------------------
def test_truncated_jpeg_with_a_huge_header_is_refused_before_decoding() -> None:
    data = lying_jpeg()
    assert len(data) < 16_000
    start = time.perf_counter()
    with pytest.raises(ImageDecodeError, match="truncated JPEG.*6000x6000"):
        read_header(data)
    assert time.perf_counter() - start < 0.5  # from the header: 36 MP were never decoded
    with pytest.raises(ImageDecodeError):
        decode_image(data)


@pytest.mark.parametrize("kwargs", [{"quality": 90}, {"quality": 90, "subsampling": 0}, {"progressive": True}])
def test_jpeg_cut_in_half_and_closed_is_refused(kwargs: dict) -> None:
    data = encode(noise(640, 480), "JPEG", **kwargs)
    assert decode_image(data).shape == (480, 640, 3)
    with pytest.raises(ImageDecodeError, match="truncated"):
        decode_image(cut_and_closed(data))


def test_complete_jpegs_decode_exactly_as_pil_does() -> None:
    """The check decodes a single-scan JPEG without its closing marker: the pixels are the same."""
    for kwargs in ({"quality": 75}, {"quality": 100}, {"quality": 90, "subsampling": 0}, {"progressive": True}):
        data = encode(noise(333, 217, 3), "JPEG", **kwargs)
        assert np.array_equal(decode_image(data), np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    grey = encode(noise(100, 60).convert("L"), "JPEG")
    assert np.array_equal(decode_image(grey)[..., 0], np.asarray(Image.open(io.BytesIO(grey))))


# ---- the decode budget ---------------------------------------------------------------------------
def test_an_image_needing_more_than_the_whole_budget_is_refused() -> None:
    data = big_png(4000)  # 16 MP of grey: 8 bytes per pixel to decode, about 122 MiB
    assert len(data) < 100_000
    header = read_header(data, budget_mb=512)
    assert 100 * 2**20 < header.decode_bytes < 200 * 2**20
    with pytest.raises(ImageTooLarge, match="decode budget of 64 MiB") as info:
        read_header(data, budget_mb=64)
    assert (info.value.width, info.value.height) == (4000, 4000)


def test_holds_wait_for_the_budget_in_arrival_order() -> None:
    """Holds of 40 under a budget of 100: never more than two at once. A hold of 500 (more than
    the whole budget) waits for the whole budget, runs alone, and is served in its turn, not
    after everyone who came later."""
    budget = DecodeBudget(100)
    holders: list[int] = []
    peak, order, alone = [0], [], []
    lock = threading.Lock()

    def take(name: str, nbytes: int) -> None:
        with budget.hold(nbytes):
            with lock:
                holders.append(nbytes)
                peak[0] = max(peak[0], sum(holders))
                order.append(name)
                if nbytes > 100:
                    alone.append(len(holders) == 1)
            time.sleep(0.05)
            with lock:
                holders.remove(nbytes)

    threads = []
    for name, nbytes in [("t0", 40), ("huge", 500), *((f"t{i}", 40) for i in range(1, 6))]:
        threads.append(threading.Thread(target=take, args=(name, nbytes)))
        threads[-1].start()
        time.sleep(0.01)  # a known arrival order
    for t in threads:
        t.join(10)
    assert order[:2] == ["t0", "huge"] and sorted(order[2:]) == [f"t{i}" for i in range(1, 6)]
    assert alone == [True] and budget.used == 0
    peak[0] = 0
    threads = [threading.Thread(target=take, args=(f"s{i}", 40)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert peak[0] == 80 and budget.used == 0  # two holds of 40 fit in 100, a third waits


def test_concurrent_decodes_wait_for_each_other() -> None:
    """Eight threads decode a 4000x4000 PNG (about 122 MiB each) under a 256 MiB budget: at most
    two decodes hold memory at once, and all eight finish."""
    from inference import images

    data = big_png(4000)
    header = read_header(data)
    holding, peak, done = [0], [0], []
    lock = threading.Lock()

    def work() -> None:
        with decode_budget([header], budget_mb=256):
            with lock:
                holding[0] += 1
                peak[0] = max(peak[0], holding[0])
            pixels = decode(data, header)
            time.sleep(0.02)
            with lock:
                holding[0] -= 1
        done.append(pixels.shape)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert done == [(4000, 4000, 3)] * 8
    assert peak[0] == 2 and images.BUDGET.used == 0
