"""Run TensorFlow Lite flatbuffers (MediaPipe's float models) as torch modules.

MediaPipe's detectors and landmark models ship only as ``.tflite`` files, and no TF Lite
runtime is a dependency of this project. The flatbuffer is parsed with the ``tflite`` package
(generated schema accessors, no runtime) and the graph is replayed op by op in torch, so the
same weights run batched on CUDA or the CPU.

Only float graphs are supported: weights may be stored as float16 (``DEQUANTIZE``) or sparse
(``DENSIFY``); both are folded into float32 constants at load time. Activations are kept in
NCHW inside the module (torch's native conv layout) and handed back in TF Lite's own layout,
so callers read outputs exactly as the model card describes them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import tflite
import torch
import torch.nn.functional as F
from tflite.BuiltinOperator import BuiltinOperator
from tflite.BuiltinOptions import BuiltinOptions
from tflite.TensorType import TensorType

_OP_NAMES = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
_OPTION_CLASSES = {v: getattr(tflite, k, None) for k, v in vars(BuiltinOptions).items() if not k.startswith("_")}
_NP_TYPES = {
    TensorType.FLOAT32: np.float32,
    TensorType.FLOAT16: np.float16,
    TensorType.INT32: np.int32,
    TensorType.INT64: np.int64,
    TensorType.UINT8: np.uint8,
    TensorType.INT8: np.int8,
}
# NHWC axis -> NCHW axis for 4-D activations.
_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


class UnsupportedGraph(ValueError):
    """The flatbuffer uses an op or a data type this reader does not implement."""


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    data: np.ndarray | None  # constants only


@dataclass
class Op:
    kind: str
    inputs: list[int]
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    tensors: list[Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]

    def output_names(self) -> list[str]:
        return [self.tensors[i].name for i in self.outputs]


def _options(op: Any) -> dict[str, Any]:
    """Every scalar getter of the op's builtin options, as a plain dict."""
    cls = _OPTION_CLASSES.get(op.BuiltinOptionsType())
    table = op.BuiltinOptions()
    if cls is None or table is None:
        return {}
    opts = cls()
    opts.Init(table.Bytes, table.Pos)
    out: dict[str, Any] = {}
    for name in dir(opts):
        if name.startswith("_") or name in ("Init",) or name.endswith(("AsNumpy", "Length", "IsNone")):
            continue
        getter = getattr(opts, name)
        if callable(getter):
            try:
                out[name] = getter()
            except TypeError:  # vector accessors need an index
                if hasattr(opts, name + "AsNumpy"):
                    out[name] = getattr(opts, name + "AsNumpy")()
    return out


def _int_vector(union_table: Any, union_type: int) -> np.ndarray:
    """A sparsity index array, stored as one of three integer vector types."""
    cls = {1: tflite.Int32Vector, 2: tflite.Uint16Vector, 3: tflite.Uint8Vector}[union_type]
    vec = cls()
    vec.Init(union_table.Bytes, union_table.Pos)
    return vec.ValuesAsNumpy().astype(np.int64)


def _densify(values: np.ndarray, shape: tuple[int, ...], sparsity: Any) -> np.ndarray:
    """Expand TF Lite's CSR-style sparse constant (any traversal order / block map) to dense.

    The traversal is done level by level with numpy instead of TF Lite's recursive walk,
    which would take seconds in Python for the pose model's weights.
    """
    order = sparsity.TraversalOrderAsNumpy().tolist()
    block_map = sparsity.BlockMapAsNumpy().tolist() if sparsity.BlockMapLength() else []
    metas = [sparsity.DimMetadata(i) for i in range(sparsity.DimMetadataLength())]
    n_orig = len(shape)
    pos = np.zeros(1, dtype=np.int64)
    idx = np.zeros((1, len(order)), dtype=np.int64)
    for level, dim in enumerate(order):
        meta = metas[level]
        if meta.Format() == 0:  # DENSE
            size = meta.DenseSize()
            ar = np.arange(size, dtype=np.int64)
            pos = (pos[:, None] * size + ar[None, :]).ravel()
            idx = np.repeat(idx, size, axis=0)
            idx[:, dim] = np.tile(ar, len(idx) // size)
        else:  # SPARSE_CSR
            segments = _int_vector(meta.ArraySegments(), meta.ArraySegmentsType())
            indices = _int_vector(meta.ArrayIndices(), meta.ArrayIndicesType())
            starts, ends = segments[pos], segments[pos + 1]
            counts = ends - starts
            pos = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)]) if len(pos) else pos
            idx = np.repeat(idx, counts, axis=0)
            idx[:, dim] = indices[pos]
    orig = idx[:, :n_orig].copy()
    for i, d in enumerate(block_map):
        block = metas[order.index(n_orig + i)].DenseSize()
        orig[:, d] = orig[:, d] * block + idx[:, n_orig + i]
    dense = np.zeros(shape, dtype=values.dtype)
    dense[tuple(orig.T)] = values[pos]
    return dense


def read_graph(path: str | Path) -> Graph:
    """Parse the first subgraph of a ``.tflite`` file and fold its weight-only ops."""
    buf = Path(path).read_bytes()
    model = tflite.Model.GetRootAsModel(buf, 0)
    if model.SubgraphsLength() != 1:
        raise UnsupportedGraph(f"{path}: {model.SubgraphsLength()} subgraphs, expected 1")
    sub = model.Subgraphs(0)
    tensors: list[Tensor] = []
    sparse: dict[int, Any] = {}
    for i in range(sub.TensorsLength()):
        t = sub.Tensors(i)
        shape = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        raw = model.Buffers(t.Buffer()).DataAsNumpy() if t.Buffer() else 0
        data = None
        if isinstance(raw, np.ndarray) and raw.size:
            if t.Type() not in _NP_TYPES:
                raise UnsupportedGraph(f"{path}: tensor {t.Name()!r} has type {t.Type()}")
            data = raw.view(_NP_TYPES[t.Type()])
            if t.Sparsity() is not None:
                sparse[i] = t.Sparsity()
            else:
                data = data.reshape(shape)
        tensors.append(Tensor(t.Name().decode(), shape, data))

    ops: list[Op] = []
    for i in range(sub.OperatorsLength()):
        o = sub.Operators(i)
        code = model.OperatorCodes(o.OpcodeIndex())
        kind = _OP_NAMES.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
        if kind == "CUSTOM":
            kind = "CUSTOM:" + code.CustomCode().decode()
        op = Op(kind, [int(x) for x in o.InputsAsNumpy()], [int(x) for x in o.OutputsAsNumpy()], _options(o))
        src = op.inputs[0] if op.inputs else -1
        if kind == "DENSIFY" and src in sparse:
            tensors[op.outputs[0]].data = _densify(tensors[src].data, tensors[op.outputs[0]].shape, sparse[src])
        elif kind == "DEQUANTIZE" and src >= 0 and tensors[src].data is not None:
            tensors[op.outputs[0]].data = tensors[src].data.astype(np.float32)
        else:
            ops.append(op)
    return Graph(tensors, ops, [int(x) for x in sub.InputsAsNumpy()], [int(x) for x in sub.OutputsAsNumpy()])


def _same_pad(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TF's SAME padding: the odd pixel goes after, unlike torch's symmetric padding."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


_ACTIVATIONS: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {
    0: lambda x: x,
    1: F.relu,
    2: lambda x: x.clamp(-1.0, 1.0),
    3: F.relu6,
    4: torch.tanh,
}


class TFLiteModule(torch.nn.Module):
    """A TF Lite float graph replayed in torch.

    ``forward`` takes the graph's single image input in NCHW float (any batch size) and returns
    the outputs in TF Lite's layout (NHWC for 4-D), with the batch dimension first.
    """

    def __init__(self, graph: Graph) -> None:
        super().__init__()
        if len(graph.inputs) != 1:
            raise UnsupportedGraph(f"{len(graph.inputs)} inputs, expected 1")
        self.graph = graph
        self._steps: list[Callable[[dict[int, torch.Tensor]], None]] = []
        self._n_const = 0
        for op in graph.ops:
            build = getattr(self, "_op_" + op.kind.replace(":", "_"), None)
            if build is None:
                raise UnsupportedGraph(f"op {op.kind} is not implemented")
            self._steps.append(build(op))

    @classmethod
    def from_file(cls, path: str | Path) -> "TFLiteModule":
        return cls(read_graph(path))

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The model's input shape in TF Lite layout, e.g. (1, 128, 128, 3)."""
        return self.graph.tensors[self.graph.inputs[0]].shape

    # -- helpers -----------------------------------------------------------------------------
    def _const(self, array: np.ndarray) -> str:
        """Register a constant as a buffer so ``.to(device)`` moves it with the module.

        Steps look buffers up by this name at call time rather than closing over the tensor,
        because ``module.to(device)`` replaces the buffer objects.
        """
        name = f"c{self._n_const}"
        self._n_const += 1
        self.register_buffer(name, torch.from_numpy(np.array(array, dtype=np.float32, copy=True)))
        return name

    def _operand(self, tensor_id: int) -> Callable[[dict[int, torch.Tensor]], torch.Tensor]:
        """A getter for an op input: a live activation, or a constant laid out for NCHW."""
        t = self.graph.tensors[tensor_id]
        if t.data is None:
            return lambda env: env[tensor_id]
        data = t.data.astype(np.float32)
        if data.ndim == 4:
            data = data.transpose(0, 3, 1, 2)
        elif data.ndim in (1, 3) and data.size > 1:
            # a per-channel vector broadcast against NHWC's last axis
            data = data.reshape(-1, 1, 1)
        name = self._const(data)
        return lambda env: getattr(self, name)

    def _static_shape(self, tensor_id: int) -> tuple[int, ...]:
        return self.graph.tensors[tensor_id].shape

    # -- ops -----------------------------------------------------------------------------------
    def _conv(self, op: Op, depthwise: bool) -> Callable[[dict[int, torch.Tensor]], None]:
        o = op.options
        w = self.graph.tensors[op.inputs[1]].data
        if w is None:
            raise UnsupportedGraph("conv weights must be constant")
        if depthwise:  # TF Lite [1, kh, kw, C*mult] -> torch [C*mult, 1, kh, kw]
            weight = w.transpose(3, 0, 1, 2)
            groups = self._static_shape(op.inputs[0])[3]
        else:  # [O, kh, kw, I] -> [O, I, kh, kw]
            weight = w.transpose(0, 3, 1, 2)
            groups = 1
        bias = self.graph.tensors[op.inputs[2]].data if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        w_name = self._const(weight)
        b_name = self._const(bias) if bias is not None else None
        _, h, wd, _ = self._static_shape(op.inputs[0])
        kh, kw = weight.shape[2:]
        sh, sw = o["StrideH"], o["StrideW"]
        dh, dw = o.get("DilationHFactor", 1), o.get("DilationWFactor", 1)
        pad4 = (0, 0, 0, 0)
        if o["Padding"] == 0:  # SAME
            pt, pb = _same_pad(h, kh, sh, dh)
            pl, pr = _same_pad(wd, kw, sw, dw)
            pad4 = (pl, pr, pt, pb)
        symmetric = pad4[0] == pad4[1] and pad4[2] == pad4[3]
        conv_pad = (pad4[2], pad4[0]) if symmetric else (0, 0)
        act = _ACTIVATIONS[o["FusedActivationFunction"]]
        src, dst = op.inputs[0], op.outputs[0]

        def step(env: dict[int, torch.Tensor]) -> None:
            x = env[src]
            if not symmetric:
                x = F.pad(x, pad4)
            b = getattr(self, b_name) if b_name else None
            env[dst] = act(F.conv2d(x, getattr(self, w_name), b, (sh, sw), conv_pad, (dh, dw), groups))

        return step

    def _op_CONV_2D(self, op: Op) -> Callable[[dict[int, torch.Tensor]], None]:
        return self._conv(op, depthwise=False)

    def _op_DEPTHWISE_CONV_2D(self, op: Op) -> Callable[[dict[int, torch.Tensor]], None]:
        return self._conv(op, depthwise=True)

    def _binary(self, op: Op, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[[dict[int, torch.Tensor]], None]:
        a, b = self._operand(op.inputs[0]), self._operand(op.inputs[1])
        act = _ACTIVATIONS[op.options.get("FusedActivationFunction", 0)]
        dst = op.outputs[0]

        def step(env: dict[int, torch.Tensor]) -> None:
            env[dst] = act(fn(a(env), b(env)))

        return step

    def _op_ADD(self, op: Op) -> Callable[[dict[int, torch.Tensor]], None]:
        return self._binary(op, torch.add)

    def _op_MUL(self, op: Op) -> Callable[[dict[int, torch.Tensor]], None]:
        return self._binary(op, torch.mul)

    def _unary(self, op: Op, fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[dict[int, torch.Tensor]], None]:
        src, dst = op.inputs[0], op.outputs[0]

        def step(env: dict[int, torch.Tensor]) -> None:
            env[dst] = fn(env[src])

        return step

    def _op_RELU(self, op: Op) -> Callable[[dict[int, torch.Tensor]], None]:
        return self._unary(op, F.relu)

    def _op_LOGISTIC(self, op: Op) -> Callable[[dict[int, torch.Tensor]], None]:
        return self._unary(op, torch.sigmoid)

    def _op_PRELU(self, op: Op) -> Callable[[dict[int, torch.Tensor]], None]:
        alpha = self.graph.tensors[op.inputs[1]].data
        if alpha is None:
            raise UnsupportedGraph("PRELU alpha must be constant")
        a_name = self._const(alpha.astype(np.float32).reshape(-1, 1, 1))
        return self._unary(op, lambda x: torch.where(x >= 0, x, x * getattr(self, a_name)))

    def _op_PAD(self, op: Op) -> Callable[[dict[int, torch.Tensor]], None]:
        pads = self.graph.tensors[op.inputs[1]].data
        if pads is None or pads.shape != (4, 2):
            raise UnsupportedGraph("PAD expects constant 4-D paddings")
        (n0, n1), (h0, h1), (w0, w1), (c0, c1) = pads.tolist()
        if n0 or n1:
            raise UnsupportedGraph("PAD on the batch axis")
        spec = (w0, w1, h0, h1, c0, c1)
        return self._unary(op, lambda x: F.pad(x, spec))

    def _op_MAX_POOL_2D(self, op: Op) -> Callable[[dict[int, torch.Tensor]], None]:
        o = op.options
        k, s = (o["FilterHeight"], o["FilterWidth"]), (o["StrideH"], o["StrideW"])
        _, h, w, _ = self._static_shape(op.inputs[0])
        pad4 = (0, 0, 0, 0)
        if o["Padding"] == 0:
            pt, pb = _same_pad(h, k[0], s[0], 1)
            pl, pr = _same_pad(w, k[1], s[1], 1)
            pad4 = (pl, pr, pt, pb)
        act = _ACTIVATIONS[o.get("FusedActivationFunction", 0)]
        # TF Lite ignores padded cells in max pooling, hence -inf rather than zeros.
        return self._unary(op, lambda x: act(F.max_pool2d(F.pad(x, pad4, value=float("-inf")) if any(pad4) else x, k, s)))

    def _op_RESIZE_BILINEAR(self, op: Op) -> Callable[[dict[int, torch.Tensor]], None]:
        o = op.options
        _, oh, ow, _ = self._static_shape(op.outputs[0])
        if o.get("AlignCorners"):
            fn = lambda x: F.interpolate(x, size=(oh, ow), mode="bilinear", align_corners=True)  # noqa: E731
        elif o.get("HalfPixelCenters"):
            fn = lambda x: F.interpolate(x, size=(oh, ow), mode="bilinear", align_corners=False)  # noqa: E731
        else:
            raise UnsupportedGraph("RESIZE_BILINEAR without half-pixel centers")
        return self._unary(op, fn)

    def _op_DEPTH_TO_SPACE(self, op: Op) -> Callable[[dict[int, torch.Tensor]], None]:
        bs = op.options["BlockSize"]

        def fn(x: torch.Tensor) -> torch.Tensor:
            # TF orders the input channels (block row, block col, channel); torch's
            # pixel_shuffle expects (channel, block row, block col).
            n, c, h, w = x.shape
            x = x.view(n, bs, bs, c // (bs * bs), h, w).permute(0, 3, 4, 1, 5, 2)
            return x.reshape(n, c // (bs * bs), h * bs, w * bs)

        return self._unary(op, fn)

    def _op_RESHAPE(self, op: Op) -> Callable[[dict[int, torch.Tensor]], None]:
        in_rank = len(self._static_shape(op.inputs[0]))
        out_shape = self._static_shape(op.outputs[0])

        def fn(x: torch.Tensor) -> torch.Tensor:
            if in_rank == 4:
                x = x.permute(0, 2, 3, 1)
            x = x.reshape((x.shape[0],) + tuple(out_shape[1:]))
            if len(out_shape) == 4:
                x = x.permute(0, 3, 1, 2)
            return x

        return self._unary(op, fn)

    def _op_CONCATENATION(self, op: Op) -> Callable[[dict[int, torch.Tensor]], None]:
        rank = len(self._static_shape(op.outputs[0]))
        axis = op.options["Axis"] % rank
        if rank == 4:
            axis = _NHWC_TO_NCHW_AXIS[axis]
        srcs = [self._operand(i) for i in op.inputs]
        act = _ACTIVATIONS[op.options.get("FusedActivationFunction", 0)]
        dst = op.outputs[0]

        def step(env: dict[int, torch.Tensor]) -> None:
            env[dst] = act(torch.cat([s(env) for s in srcs], dim=axis))

        return step

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        env: dict[int, torch.Tensor] = {self.graph.inputs[0]: x}
        for step in self._steps:
            step(env)
        outs = []
        for i in self.graph.outputs:
            y = env[i]
            outs.append(y.permute(0, 2, 3, 1) if y.dim() == 4 else y)
        return outs

