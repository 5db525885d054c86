"""Reader for dlib's serialization, and for its DNN files (``dlib_face_recognition_resnet_model_v1.dat``).

We read the bytes ourselves instead of loading them with dlib so that the runtime needs neither
dlib nor its lack of BLAS/CUDA: the weights go straight into a torch module. The primitive
encodings are dlib's ``serialize`` ones (see ``shared/notes/dlib-dnn-format.md``):

* integer: a control byte whose low 4 bits count the little-endian magnitude bytes that follow,
  bit 0x80 marking a negative value;
* float: two integers, mantissa and exponent (value = m * 2**e);
* string: an integer length and the bytes;
* tensor: integer 2, integers n, k, nr, nc, then the float32 little-endian data.

A DNN file is a loss layer header, one version integer per layer (output to input, ending with
the input layer's 3), the input layer, then one record per computational layer from input to
output. Tag/skip layers have no record, so the residual wiring is not in the file: the torch
builder (``inference.models.descriptor``) matches the records against the known architecture.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inference.packages import package_dir

# dlib encodes non-finite floats as reserved exponents (float_details in dlib/float_details.h).
_SPECIAL_EXPONENTS = {32000: math.inf, 32001: -math.inf, 32002: math.nan, 32003: math.nan}


class DlibFormatError(ValueError):
    """The bytes are not the dlib serialization we expect (truncated, wrong layer, wrong version)."""


def face_recognition_models_file(filename: str) -> Path:
    """Path of a model file shipped in the ``face_recognition_models`` package.

    Found through the import system without importing the package: its ``__init__`` imports
    ``pkg_resources``, which recent setuptools no longer provides.
    """
    path = package_dir("face_recognition_models", "face-recognition-models==0.3.0") / "models" / filename
    if not path.is_file():
        raise FileNotFoundError(f"{filename} not found in face_recognition_models")
    return path


class DlibStream:
    """Sequential reader of dlib-serialized primitives over an in-memory buffer."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def _need(self, n: int) -> None:
        if self.pos + n > len(self.data):
            raise DlibFormatError(f"truncated dlib data at byte {self.pos} (need {n} more bytes)")

    def integer(self) -> int:
        self._need(1)
        control = self.data[self.pos]
        size = control & 0x0F
        self._need(1 + size)
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -value if control & 0x80 else value

    def floating(self) -> float:
        mantissa = self.integer()
        exponent = self.integer()
        if exponent in _SPECIAL_EXPONENTS:
            special = _SPECIAL_EXPONENTS[exponent]
            return special if math.isnan(special) or mantissa >= 0 else -special
        return math.ldexp(mantissa, exponent)

    def floats(self, count: int) -> np.ndarray:
        """``count`` consecutive floats; a tight loop because shape predictors hold millions."""
        data = self.data
        pos = self.pos
        out = np.empty(count, dtype=np.float64)
        from_bytes = int.from_bytes
        try:
            for j in range(count):
                parts = [0, 0]
                for k in (0, 1):
                    control = data[pos]
                    size = control & 0x0F
                    value = from_bytes(data[pos + 1 : pos + 1 + size], "little")
                    pos += 1 + size
                    parts[k] = -value if control & 0x80 else value
                if parts[1] in _SPECIAL_EXPONENTS:
                    raise DlibFormatError(f"non-finite weight at byte {pos}")
                out[j] = math.ldexp(parts[0], parts[1])
        except IndexError as exc:
            raise DlibFormatError("truncated dlib data while reading floats") from exc
        if pos > len(data):
            raise DlibFormatError("truncated dlib data while reading floats")
        self.pos = pos
        return out

    def string(self) -> str:
        n = self.integer()
        self._need(n)
        raw = self.data[self.pos : self.pos + n]
        self.pos += n
        return raw.decode("latin-1")

    def boolean(self) -> bool:
        self._need(1)
        value = self.data[self.pos : self.pos + 1]
        self.pos += 1
        if value not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool byte {value!r} at {self.pos - 1}")
        return value == b"1"

    def tensor(self) -> np.ndarray:
        """A float tensor (version 2) as a flat float32 array; shape bookkeeping is dlib's own."""
        version = self.integer()
        if version != 2:
            raise DlibFormatError(f"unsupported tensor version {version} at byte {self.pos}")
        n, k, nr, nc = (self.integer() for _ in range(4))
        count = n * k * nr * nc
        self._need(4 * count)
        values = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.pos).astype(np.float32)
        self.pos += 4 * count
        return values

    def alias_shape(self) -> tuple[int, int, int, int]:
        version = self.integer()
        if version != 1:
            raise DlibFormatError(f"unsupported alias tensor version {version} at byte {self.pos}")
        n, k, nr, nc = (self.integer() for _ in range(4))
        return (n, k, nr, nc)

    def expect_string(self, *allowed: str) -> str:
        value = self.string()
        if value not in allowed:
            raise DlibFormatError(f"expected one of {allowed}, found {value!r} at byte {self.pos}")
        return value


@dataclass
class DnnLayer:
    """One computational layer: ``kind`` is con / affine / relu / add_prev / max_pool / avg_pool / fc."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class DnnFile:
    loss: str
    distance_threshold: float
    input_mean: tuple[float, float, float]  # R, G, B
    input_size: tuple[int, int]  # rows, cols
    layers: list[DnnLayer]  # input to output


def _read_layer(s: DlibStream, kind: str) -> DnnLayer:
    if kind in ("con_4", "con_5", "con_6"):
        flat = s.tensor()
        num_filters, nr, nc, stride_y, stride_x, pad_y, pad_x = (s.integer() for _ in range(7))
        filters_shape = s.alias_shape()
        s.alias_shape()
        for _ in range(4):  # learning-rate and weight-decay multipliers
            s.floating()
        if kind != "con_4":  # later versions add use_bias (and, in con_6, the bias-disabled flag)
            for _ in range(int(kind[-1]) - 4):
                s.boolean()
        n_weights = int(np.prod(filters_shape))
        if flat.size != n_weights + num_filters or filters_shape[0] != num_filters:
            raise DlibFormatError(f"con layer sizes disagree: {flat.size} values, filters {filters_shape}")
        return DnnLayer(
            "con",
            {
                "weight": flat[:n_weights].reshape(filters_shape),
                "bias": flat[n_weights:],
                "stride": (stride_y, stride_x),
                "padding": (pad_y, pad_x),
                "kernel": (nr, nc),
            },
        )
    if kind in ("affine_", "affine_2"):
        flat = s.tensor()
        s.alias_shape()
        s.alias_shape()
        mode = s.integer()
        if kind == "affine_2":
            s.boolean()
        if mode != 0 or flat.size % 2:
            raise DlibFormatError(f"unsupported affine layer (mode {mode}, {flat.size} values)")
        channels = flat.size // 2
        return DnnLayer("affine", {"gamma": flat[:channels], "beta": flat[channels:]})
    if kind in ("relu_", "add_prev_"):
        return DnnLayer(kind.rstrip("_"))
    if kind in ("max_pool_2", "avg_pool_2"):
        nr, nc, stride_y, stride_x, pad_y, pad_x = (s.integer() for _ in range(6))
        return DnnLayer(
            kind[:-2], {"kernel": (nr, nc), "stride": (stride_y, stride_x), "padding": (pad_y, pad_x)}
        )
    if kind == "fc_2":
        n_out, n_in = s.integer(), s.integer()
        flat = s.tensor()
        s.alias_shape()
        s.alias_shape()
        bias_mode = s.integer()
        for _ in range(4):
            s.floating()
        has_bias = bias_mode == 0
        if flat.size != (n_in + int(has_bias)) * n_out:
            raise DlibFormatError(f"fc layer has {flat.size} values for {n_in}x{n_out}")
        matrix = flat.reshape(n_in + int(has_bias), n_out)  # stored [in][out]
        return DnnLayer(
            "fc", {"weight": matrix[:n_in].T.copy(), "bias": matrix[n_in] if has_bias else None}
        )
    raise DlibFormatError(f"unsupported dlib layer type {kind!r}")


def read_dnn(path: str | Path) -> DnnFile:
    """Parse a dlib DNN ``.dat`` file into its layers (weights as float32 numpy arrays)."""
    s = DlibStream(Path(path).read_bytes())
    if s.integer() != 1:
        raise DlibFormatError("not a dlib network file (bad loss layer version)")
    loss = s.expect_string("loss_metric_2")
    s.floating()  # training margin
    distance_threshold = s.floating()
    versions = []
    while True:  # one version integer per layer, output to input, the input layer last
        version = s.integer()
        versions.append(version)
        if version == 3:
            break
        if version not in (1, 2) or len(versions) > 10_000:
            raise DlibFormatError(f"unexpected layer version {version}")
    s.expect_string("input_rgb_image_sized")
    mean = (s.floating(), s.floating(), s.floating())
    size = (s.integer(), s.integer())
    layers = []
    while not s.at_end():
        layers.append(_read_layer(s, s.string()))
        for _ in range(3):  # training-state bookkeeping: flags and empty gradient tensors
            s.boolean()
        for _ in range(3):
            s.tensor()
        if len(layers) == 1:  # the layer right above the input also stores its sample expansion factor
            s.integer()
    if len(layers) != versions.count(2) + 1:  # +1: the fc layer under the loss layer
        raise DlibFormatError(f"{len(layers)} layer records for {versions.count(2)} declared layers")
    return DnnFile(loss, distance_threshold, mean, size, layers)
