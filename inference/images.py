"""Checking and decoding uploaded image bytes into the RGB uint8 arrays every model takes.

One way to check an image, for every route that takes one (``/images``, ``/samples``, ``/sdk``,
``/detector``, ``/iso``):

1. :func:`read_header` reads the header only: the format PIL identifies from the content (the
   client's Content-Type is never trusted), one frame, the dimensions against ``max_pixels`` and
   the memory the decode will take against the decode budget. Nothing is decoded yet, so a
   38 KB PNG that claims 6300x6300 pixels costs nothing to refuse.
2. :func:`decode_budget` holds that memory in the process-wide :data:`BUDGET` while the pixels
   live, so concurrent decodes (the API's threads, the worker's task threads) wait for each other
   instead of adding up: memory stays flat however many large images arrive at once.
3. :func:`decode` (an RGB array, for the models) or :func:`decode_rgb` (a PIL image, for the
   image store's JPEG encoding) decodes every pixel; data that ends early is refused (see
   :func:`_jpeg_scans` for why libjpeg alone does not notice a JPEG that ends early).

Everything that can go wrong with client input ends here as an ``ImageError`` subclass, so the
API can answer with a clear 4xx instead of a 500 from deep inside PIL.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import io
import itertools
import re
import threading
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from math import ceil

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 40_000_000  # a 40-megapixel photo decodes to 120 MB of RGB; larger is refused
DEFAULT_BUDGET_MB = 512.0
# PIL's format names -> the names answers and docs use. MPO is how PIL names a camera JPEG with a
# CIPA multi-picture extension (depth maps, previews): a JPEG whose first picture is the photo.
ALLOWED_FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "BMP": "BMP", "TIFF": "TIFF", "WEBP": "WebP"}
_ORIENTATION_TAG = 0x0112
_ONE_BYTE_MODES = frozenset({"1", "L", "P"})
_WIDE_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})


class ImageError(ValueError):
    """The bytes cannot be used as an image."""


class ImageDecodeError(ImageError):
    """Not an image, or a corrupt or truncated one."""


class ImageFormatNotAllowed(ImageError):
    """An image, but of a format (or with a frame count) that is not taken."""

    def __init__(self, image_format: str, reason: str | None = None) -> None:
        allowed = ", ".join(dict.fromkeys(ALLOWED_FORMATS.values()))
        super().__init__(reason or f"{image_format} images are not accepted; send {allowed} (TIFF single page)")
        self.format = image_format


class ImageTooLarge(ImageError):
    """More pixels than the limit, or a decode that needs more memory than the whole budget;
    both are known from the header, before decoding."""

    def __init__(self, message: str, width: int | None = None, height: int | None = None) -> None:
        super().__init__(message)
        self.width = width
        self.height = height


@dataclass(frozen=True)
class ImageHeader:
    """What the header says, and what decoding it will cost."""

    format: str  # a value of ALLOWED_FORMATS
    width: int
    height: int
    mode: str  # PIL's mode of the decoded pixels before conversion to RGB
    upright: bool  # no EXIF rotation to apply
    decode_bytes: int  # peak memory of decode() for this image, estimated
    jpeg_scan_end: int | None = None  # see _jpeg_scans


# ---- memory given back ------------------------------------------------------------------------
_TRIM_FROM_BYTES = 64 * 2**20
_M_ARENA_MAX = -8  # glibc's mallopt parameter
_ARENAS = 2
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _malloc_trim = _libc.malloc_trim
    # glibc gives each thread that allocates its own heap (up to 8 per core), and a heap keeps
    # what an image freed in it: a worker's 8 threads held 640 MB after large images and grew
    # each round. Two heaps shared by all threads stay flat (bench/image_memory.py) and cost the
    # models nothing measurable (their batches run on one thread).
    _libc.mallopt(_M_ARENA_MAX, _ARENAS)
except (OSError, AttributeError):
    _malloc_trim = None  # not glibc: its allocator keeps its own policy


def _give_back(nbytes: int) -> None:
    """Hand the freed pixels of a large hold back to the system.

    glibc raises its mmap threshold to the size of each large block freed (up to 32 MiB), so from
    then on Pillow's pixel blocks and encoder outputs come from per-thread heaps that keep the
    memory after it is freed: an API process that had decoded a few 40 MP images from its 8
    threads stayed at 1.1 GB, a worker at 2.8 GB (bench/image_memory.py). Trimming once a large
    hold ends returns it; fixing the threshold low instead cost the models 10-20% of their
    throughput (every large tensor a fresh mapping)."""
    if _malloc_trim is not None and nbytes >= _TRIM_FROM_BYTES:
        _malloc_trim(0)


# ---- the decode budget ----------------------------------------------------------------------
class DecodeBudget:
    """Bytes that the image decodes of this process may hold at once, shared by all its threads.

    A hold waits until its bytes fit; waiters are served in arrival order, so a large image is
    not starved by a stream of small ones. The capacity follows the latest value callers pass
    (the ``image_decode_budget_mb`` setting, which a reload may change)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._cond = threading.Condition()
        self._queue: deque[int] = deque()
        self._tickets = itertools.count()

    @contextmanager
    def hold(self, nbytes: int, capacity: int | None = None) -> Iterator[None]:
        """Hold ``nbytes`` until the block ends; more than the whole budget holds all of it."""
        ticket = next(self._tickets)
        with self._cond:
            if capacity is not None and capacity != self.capacity:
                self.capacity = capacity
                self._cond.notify_all()
            self._queue.append(ticket)
            try:
                while self._queue[0] != ticket or self.used + min(nbytes, self.capacity) > self.capacity:
                    self._cond.wait()
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()
            taken = min(nbytes, self.capacity)
            self.used += taken
        try:
            yield
        finally:
            with self._cond:
                self.used -= taken
                self._cond.notify_all()
            _give_back(taken)


BUDGET = DecodeBudget(int(DEFAULT_BUDGET_MB * 2**20))


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:.0f}"


@contextmanager
def decode_budget(headers: Sequence[ImageHeader], budget_mb: float = DEFAULT_BUDGET_MB,
                  extra_bytes_per_pixel: int = 0) -> Iterator[None]:
    """Hold, in :data:`BUDGET`, the memory that decoding these images (one request's) takes, plus
    ``extra_bytes_per_pixel`` for what the caller makes of the pixels, until the block ends.

    One hold per request, taken at once: holds taken one image at a time could deadlock two
    requests that each wait for the other's memory. A request whose images need more than the
    whole budget together (each fits alone, :func:`read_header` saw to that) takes the whole
    budget and runs alone."""
    total = sum(h.decode_bytes + extra_bytes_per_pixel * h.width * h.height for h in headers)
    with BUDGET.hold(total, int(budget_mb * 2**20)):
        yield


# ---- header ---------------------------------------------------------------------------------
# Our own limits replace PIL's decompression-bomb warning. Set once for the process: catching it
# per call (warnings.catch_warnings) swaps the process's filter list, which concurrent threads undo.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


@contextmanager
def _pil_errors() -> Iterator[None]:
    try:
        yield
    except Image.DecompressionBombError as exc:  # PIL's own hard limit, hit before ours for huge headers
        raise ImageTooLarge("the image header claims far too many pixels") from exc
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("data is not a recognised image format") from exc
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, KeyError, ZeroDivisionError) as exc:
        # the client reads our words, not PIL's internals (the error detail shows no exception text)
        if "truncated" in str(exc):
            raise ImageDecodeError("truncated image: the data ends before the pixels do") from exc
        raise ImageDecodeError("corrupt or unsupported image data") from exc


def _decode_bytes(image: Image.Image, fmt: str, upright: bool, buffered_jpeg: bool) -> int:
    """Peak bytes of :func:`decode` for this header. Per pixel: PIL's decoded image (4 bytes for
    its 3- and 4-channel modes), the RGB array handed out (3), a conversion to RGB (4; 16-bit
    and float greyscale go through a float64 array, 12 more), a rotated copy (4), a progressive
    or multi-scan JPEG's coefficient buffer (2 bytes per sample, up to 3 samples per pixel) and
    libwebp's own output buffer (4)."""
    mode = image.mode
    per_pixel = (1 if mode in _ONE_BYTE_MODES else 2 if mode.startswith("I;16") else 4) + 3
    if mode != "RGB":
        per_pixel += 4 + (12 if mode in _WIDE_MODES else 0)
    per_pixel += (0 if upright else 4) + (6 if buffered_jpeg else 0) + (4 if fmt == "WEBP" else 0)
    return image.width * image.height * per_pixel


def read_header(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
                budget_mb: float = DEFAULT_BUDGET_MB) -> ImageHeader:
    """Check an image from its header alone (nothing is decoded).

    Raises ``ImageFormatNotAllowed`` for a format outside :data:`ALLOWED_FORMATS` or an image of
    several frames (multi-page TIFF, animated PNG or WebP), ``ImageTooLarge`` when width * height
    > ``max_pixels`` or its decode needs more than the whole ``budget_mb``, ``ImageDecodeError``
    for anything that is not a readable image or a JPEG that ends before its pixels do."""
    if not data:
        raise ImageDecodeError("empty image data")
    with _pil_errors(), Image.open(io.BytesIO(data)) as image:
        fmt = image.format or "unknown"
        if fmt not in ALLOWED_FORMATS:
            raise ImageFormatNotAllowed(fmt)
        if fmt != "MPO" and getattr(image, "n_frames", 1) > 1:  # an MPO's extra pictures are not the photo
            raise ImageFormatNotAllowed(fmt, f"{ALLOWED_FORMATS[fmt]} image of {image.n_frames} frames "
                                             "(pages or animation); send a single frame")
        width, height = image.size
        if width * height > max_pixels:
            raise ImageTooLarge(f"image of {width}x{height} pixels exceeds the limit of {max_pixels} pixels",
                                width, height)
        if width == 0 or height == 0:
            raise ImageDecodeError("image has no pixels")
        scan_end, buffered = _jpeg_scans(data) if fmt in ("JPEG", "MPO") else (None, False)
        upright = _orientation(image) in (0, 1)
        header = ImageHeader(ALLOWED_FORMATS[fmt], width, height, image.mode, upright,
                             _decode_bytes(image, fmt, upright, buffered), scan_end)
    if header.decode_bytes > budget_mb * 2**20:
        raise ImageTooLarge(f"decoding {width}x{height} pixels needs about {_mib(header.decode_bytes)} MiB, "
                            f"more than the whole decode budget of {budget_mb:g} MiB", width, height)
    return header


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation the header gives. Not ``getexif()`` on a PNG: that decodes the whole
    image in case an eXIf chunk follows the pixel data (writers put it before them)."""
    if image.format == "PNG":
        exif = Image.Exif()
        if image.info.get("exif"):
            exif.load(image.info["exif"])
        return exif.get(_ORIENTATION_TAG, 1)
    return image.getexif().get(_ORIENTATION_TAG, 1)


# ---- JPEG: data that ends early ---------------------------------------------------------------
_SOF_HUFFMAN_SEQUENTIAL = frozenset({0xC0, 0xC1})
_SOF_HUFFMAN_PROGRESSIVE = 0xC2
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # C4 DHT, C8 reserved, CC DAC
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # a marker: not a stuffed 0xFF00, RSTn or fill byte


def _jpeg_scans(data: bytes) -> tuple[int | None, bool]:
    """Check a JPEG's scans against its frame; (where the entropy-coded data of a single-scan
    JPEG ends, whether libjpeg buffers the whole image's coefficients).

    Why this is needed: libjpeg takes any marker met inside a scan's data as the end of the data
    (a warning it gives, and Pillow drops) and decodes every block still missing as flat grey. So
    a JPEG cut short and given an EOI marker (12 KB with a 6000x6000 header: 36 MP of grey)
    decodes without error; Pillow only refuses data that simply stops. Two checks close that:

    - every Huffman-coded scan that carries DC coefficients spends at least one bit per block on
      them (two in a sequential scan, whose blocks also need an end-of-block code): scans shorter
      than that for the frame's size are refused before anything is decoded;
    - a progressive JPEG's scans must bring every coefficient of every component to full
      precision: one cut short misses its last scans;
    - a sequential JPEG of one scan (what cameras and most encoders write) is decoded from its
      scan data alone, without the marker that ends it (:func:`decode`): if data is missing,
      libjpeg then runs out of input and Pillow reports the truncation.
    """
    frame: tuple[int, int, int, dict[int, tuple[int, int]]] | None = None
    scans: list[tuple[list[int], int, int, int, int]] = []  # (component ids, Ss, Se, Al, bytes of entropy-coded data)
    pos, end, n = 2, None, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:  # stray bytes between segments: libjpeg skips them, so do we
            pos = data.find(b"\xff", pos)
            if pos < 0:
                break
            continue
        marker = data[pos + 1]
        if marker == 0xD9:  # EOI
            break
        if marker in (0xFF, 0x01) or 0xD0 <= marker <= 0xD7:  # fill byte, standalone markers
            pos += 1 if marker == 0xFF else 2
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        segment = data[pos + 4:pos + 2 + length]
        pos += 2 + length
        if marker in _SOF and len(segment) >= 6 and frame is None:
            height, width = int.from_bytes(segment[1:3], "big"), int.from_bytes(segment[3:5], "big")
            components = {segment[6 + 3 * i]: (segment[7 + 3 * i] >> 4, segment[7 + 3 * i] & 15)
                          for i in range(segment[5]) if 8 + 3 * i < len(segment)}
            frame = (marker, width, height, components)
        elif marker == 0xDA and segment:
            count = segment[0]
            ids = list(segment[1:1 + 2 * count:2])
            ss, se, approximation = (segment[1 + 2 * count:4 + 2 * count] + b"\0\0\0")[:3]
            match = _SCAN_END.search(data, pos)
            end = match.start() if match else n
            scans.append((ids, ss, se, approximation & 15, end - pos))
            pos = end
    if frame is None or not scans:
        return None, False  # PIL decides: it refuses a JPEG without frame or scan data
    sof, width, height, components = frame
    if sof in _SOF_HUFFMAN_SEQUENTIAL or sof == _SOF_HUFFMAN_PROGRESSIVE:
        bits_per_block = 2 if sof in _SOF_HUFFMAN_SEQUENTIAL else 1
        for ids, ss, _, _, size in scans:
            if ss == 0 and size * 8 < bits_per_block * _blocks(width, height, components, ids):
                raise ImageDecodeError(f"truncated JPEG: {size} bytes of scan data cannot hold the "
                                       f"{width}x{height} pixels its header declares")
    if sof == _SOF_HUFFMAN_PROGRESSIVE or sof == 0xCA:
        # A progressive JPEG cut short lacks its last scans: some coefficient never gets its
        # last bit (Al = 0) or never comes at all. Encoders always send every coefficient in full.
        finest = {c: [16] * 64 for c in components}
        for ids, ss, se, al, _ in scans:
            for c in ids:
                for k in range(ss, min(se, 63) + 1):
                    finest.setdefault(c, [16] * 64)[k] = min(finest[c][k], al)
        if any(any(bits) for bits in finest.values()):
            raise ImageDecodeError("truncated JPEG: the progressive scans stop before every coefficient is complete")
    single = sof in _SOF_HUFFMAN_SEQUENTIAL and len(scans) == 1 and set(scans[0][0]) == set(components)
    return (end if single else None), not single


def _blocks(width: int, height: int, components: dict[int, tuple[int, int]], ids: list[int]) -> int:
    """8x8 blocks one scan codes (ITU T.81 A.2: interleaved scans code whole MCUs)."""
    if not components:
        return 0
    h_max = max(h for h, _ in components.values()) or 1
    v_max = max(v for _, v in components.values()) or 1
    factors = [components.get(i, (0, 0)) for i in ids]
    if len(factors) == 1:
        h, v = factors[0]
        return ceil(ceil(width * h / h_max) / 8) * ceil(ceil(height * v / v_max) / 8)
    return ceil(width / (8 * h_max)) * ceil(height / (8 * v_max)) * sum(h * v for h, v in factors)


# ---- decoding -------------------------------------------------------------------------------
# libjpeg reads up to 57 bits ahead of what it decodes: the last blocks of a complete scan need
# that much input after them, which these bytes give without adding data the blocks could use.
_JPEG_LOOKAHEAD_PAD = b"\x00" * 16


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _WIDE_MODES:
        # PIL's own convert clips 16-bit/float greyscale at 255 instead of rescaling it
        values = np.asarray(image, dtype=np.float64)
        scale = 257.0 if mode.startswith("I;16") or (mode == "I" and values.max() > 255) else 1.0
        grey = np.clip(np.rint(values / scale), 0, 255).astype(np.uint8)
        return Image.fromarray(np.stack([grey] * 3, axis=-1), "RGB")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("LA", "PA", "La", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        # transparent areas are background: put them on white, as photo editors show them,
        # rather than on the undefined colour stored under alpha 0
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def decode_rgb(data: bytes, header: ImageHeader) -> Image.Image:
    """Every pixel of an image :func:`read_header` passed, as a PIL RGB image, upright per its
    EXIF orientation, alpha on white. Call it inside :func:`decode_budget`. Raises
    ``ImageDecodeError`` for data that is corrupt or ends early."""
    if header.jpeg_scan_end is not None:
        # Pillow ends a JPEG decode once the last row is out, without waiting for the EOI marker
        data = data[:header.jpeg_scan_end] + _JPEG_LOOKAHEAD_PAD
    with _pil_errors():
        image = Image.open(io.BytesIO(data))  # not closed: closing a PIL image drops its pixels
        image.load()
        if not header.upright:  # exif_transpose copies even an upright image
            image = ImageOps.exif_transpose(image)
        return _to_rgb(image)


_STRIP_ROWS = 256


def decode(data: bytes, header: ImageHeader) -> np.ndarray:
    """:func:`decode_rgb` as an (H, W, 3) uint8 array. Copied out in strips of rows: a whole PIL
    image to numpy goes through ``tobytes``, which holds its chunks and their join, 6 bytes per
    pixel on top of the 3 the array keeps."""
    image = decode_rgb(data, header)
    width, height = image.size
    out = np.empty((height, width, 3), dtype=np.uint8)
    for top in range(0, height, _STRIP_ROWS):
        bottom = min(height, top + _STRIP_ROWS)
        out[top:bottom] = np.asarray(image.crop((0, top, width, bottom)))
    return out


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
                 budget_mb: float = DEFAULT_BUDGET_MB) -> np.ndarray:
    """:func:`read_header`, then :func:`decode` under the budget: one image, when nothing else of
    the caller's needs the budget's protection once the pixels are out."""
    header = read_header(data, max_pixels, budget_mb)
    with decode_budget([header], budget_mb):
        return decode(data, header)
