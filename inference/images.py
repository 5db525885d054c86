"""Decoding uploaded image bytes into the RGB uint8 arrays every model takes.

Everything that can go wrong with client input ends here as an ``ImageError`` subclass, so the
API can answer with a clear 4xx instead of a 500 from deep inside PIL.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 40_000_000  # a 40-megapixel photo decodes to 120 MB of RGB; larger is refused


class ImageError(ValueError):
    """The bytes cannot be used as an image."""


class ImageDecodeError(ImageError):
    """Not an image, an unsupported format, or a corrupt/truncated file."""


class ImageTooLarge(ImageError):
    """More pixels than the configured limit (checked from the header, before decoding)."""

    def __init__(self, max_pixels: int, width: int | None = None, height: int | None = None) -> None:
        size = f"{width}x{height} pixels" if width is not None else "far too many pixels"
        super().__init__(f"image of {size} exceeds the limit of {max_pixels} pixels")
        self.width = width
        self.height = height
        self.max_pixels = max_pixels


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
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


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Bytes of any PIL-readable image -> (H, W, 3) uint8 RGB, upright per its EXIF orientation.

    Raises ``ImageTooLarge`` when width * height > ``max_pixels`` (before the pixels are
    decoded, so a decompression bomb costs nothing) and ``ImageDecodeError`` for anything else
    that is not a readable image. Animated images give their first frame.
    """
    if not data:
        raise ImageDecodeError("empty image data")
    try:
        with warnings.catch_warnings():
            # our own limit replaces PIL's global decompression-bomb heuristics
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLarge(max_pixels, width, height)
            if width == 0 or height == 0:
                raise ImageDecodeError("image has no pixels")
            image.load()
            image = ImageOps.exif_transpose(image)
            return np.ascontiguousarray(np.asarray(_to_rgb(image), dtype=np.uint8))
    except Image.DecompressionBombError as exc:  # PIL's own hard limit, hit before ours for huge headers
        raise ImageTooLarge(max_pixels) from exc
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("data is not a recognised image format") from exc
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError) as exc:
        raise ImageDecodeError(f"corrupt or unsupported image: {exc}") from exc
