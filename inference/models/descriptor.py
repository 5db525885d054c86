"""dlib's 128-d face descriptor network (``dlib_face_recognition_resnet_model_v1``) rebuilt in torch.

The weights come from the ``.dat`` file in the ``face_recognition_models`` package, read by
``inference.formats.dlib_dnn``; dlib itself is not needed at run time. dlib computes the same
network on the CPU without BLAS at about 100 ms per face; in torch it batches, and runs on CUDA
when present.

The network is a ResNet on 150x150 RGB chips aligned by ``inference.align``. Its residual add
is dlib's *padded* add: when the branch and the shortcut differ in size (channels grow in the
down blocks; in the last down blocks a 3x3-strided conv meets a 2x2-pooled shortcut of size
4 vs 3), the smaller one is zero-padded at the end of every dimension instead of rejected.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inference.formats.dlib_dnn import DlibFormatError, DnnFile, DnnLayer, face_recognition_models_file, read_dnn

MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
CHIP_SIZE = 150
DESCRIPTOR_SIZE = 128

_IDENTITY_BLOCK = ["con", "affine", "relu", "con", "affine", "add_prev", "relu"]
_DOWN_BLOCK = ["con", "affine", "relu", "con", "affine", "avg_pool", "add_prev", "relu"]


def padded_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: sum over the larger extent of each of C, H, W, the smaller operand zero-padded."""
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(x, y) for x, y in zip(a.shape[1:], b.shape[1:]))

    def grow(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return grow(a) + grow(b)


def _conv_with_affine(con: DnnLayer, affine: DnnLayer) -> nn.Conv2d:
    """A conv with the following affine (dlib's folded batch norm) merged into its weights."""
    weight = torch.from_numpy(con.params["weight"])
    gamma = torch.from_numpy(affine.params["gamma"])
    beta = torch.from_numpy(affine.params["beta"])
    conv = nn.Conv2d(
        weight.shape[1], weight.shape[0], con.params["kernel"], stride=con.params["stride"], padding=con.params["padding"]
    )
    with torch.no_grad():
        conv.weight.copy_(weight * gamma[:, None, None, None])
        conv.bias.copy_(torch.from_numpy(con.params["bias"]) * gamma + beta)
    return conv


class _ResidualBlock(nn.Module):
    def __init__(self, layers: list[DnnLayer]) -> None:
        super().__init__()
        self.conv1 = _conv_with_affine(layers[0], layers[1])
        self.conv2 = _conv_with_affine(layers[3], layers[4])
        self.pool: nn.Module | None = None
        if layers[5].kind == "avg_pool":
            p = layers[5].params
            self.pool = nn.AvgPool2d(p["kernel"], p["stride"], p["padding"], count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ReLUs in place, on tensors nothing else holds: the same values, one activation-sized
        # buffer less per block (the network ran 10% faster on the CPU)
        branch = self.conv2(self.conv1(x).relu_())
        shortcut = x if self.pool is None else self.pool(x)
        return padded_add(branch, shortcut).relu_()


class DlibResNet(nn.Module):
    """Torch equivalent of dlib's ``anet_type``; ``forward`` takes uint8-range RGB NCHW floats."""

    def __init__(self, dnn: DnnFile) -> None:
        super().__init__()
        layers = dnn.layers
        kinds = [layer.kind for layer in layers]
        if kinds[:4] != ["con", "affine", "relu", "max_pool"] or kinds[-2:] != ["avg_pool", "fc"]:
            raise DlibFormatError(f"unexpected network layout: starts {kinds[:4]}, ends {kinds[-2:]}")
        self.register_buffer("mean", torch.tensor(dnn.input_mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.stem = _conv_with_affine(layers[0], layers[1])
        pool = layers[3].params
        self.stem_pool = nn.MaxPool2d(pool["kernel"], pool["stride"], pool["padding"])
        blocks = []
        i = 4
        while i < len(layers) - 2:
            for pattern in (_IDENTITY_BLOCK, _DOWN_BLOCK):
                if kinds[i : i + len(pattern)] == pattern:
                    blocks.append(_ResidualBlock(layers[i : i + len(pattern)]))
                    i += len(pattern)
                    break
            else:
                raise DlibFormatError(f"unexpected layers at {i}: {kinds[i:i + 8]}")
        self.blocks = nn.Sequential(*blocks)
        if layers[-2].params["kernel"] != (0, 0):
            raise DlibFormatError("expected a global average pool before the fc layer")
        fc = layers[-1].params
        self.fc = nn.Linear(fc["weight"].shape[1], fc["weight"].shape[0], bias=fc["bias"] is not None)
        with torch.no_grad():
            self.fc.weight.copy_(torch.from_numpy(fc["weight"]))
            if fc["bias"] is not None:
                self.fc.bias.copy_(torch.from_numpy(fc["bias"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean).div_(256.0)  # dlib's input_rgb_image_sized scaling
        x = self.stem_pool(self.stem(x).relu_())
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))


class Descriptor:
    """Batched extraction of 128-d descriptors from aligned 150x150 RGB chips.

    ``mirror`` averages each chip's descriptor with that of its left-right mirror image: the
    network is not mirror-invariant and the average cancels part of that noise, for twice the
    cost. Descriptor version 101 is defined with it, 102 without (``inference.descriptor_format``);
    ``inference.pipeline.extract`` picks by version.
    """

    def __init__(self, net: DlibResNet, device: str | torch.device = "cpu", batch_size: int | None = None) -> None:
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        # Chips per forward pass (mirrors included). On the CPU a pass over 64 chips has 43 MB
        # activations per layer; with two batch shards side by side (inference.parallel) passes
        # of 16 ran 1.6x faster, measured on the 2-core CPU.
        self.batch_size = batch_size or (16 if self.device.type == "cpu" else 128)

    def extract(self, chips: np.ndarray, mirror: bool = False) -> np.ndarray:
        """(N, 150, 150, 3) uint8 RGB chips -> (N, 128) float32 descriptors (not L2-normalised, like dlib)."""
        chips = np.asarray(chips)
        if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3) or chips.dtype != np.uint8:
            raise ValueError(f"expected (N, {CHIP_SIZE}, {CHIP_SIZE}, 3) uint8 chips, got {chips.shape} {chips.dtype}")
        return self.extract_tensor(torch.from_numpy(chips).to(self.device), mirror).cpu().numpy()

    def extract_tensor(self, chips: torch.Tensor, mirror: bool = False) -> torch.Tensor:
        """The same on a (N, 150, 150, 3) uint8 tensor already on the device (the device pipeline's
        chips never leave it); (N, 128) float32 on the device."""
        out = torch.empty((len(chips), DESCRIPTOR_SIZE), dtype=torch.float32, device=self.device)
        with torch.inference_mode():
            step = self.batch_size // 2 if mirror else self.batch_size
            for start in range(0, len(chips), step):
                batch = chips[start : start + step].to(self.device)
                x = batch.permute(0, 3, 1, 2).float().contiguous(memory_format=torch.channels_last)
                if mirror:
                    n = x.shape[0]
                    both = self.net(torch.cat([x, x.flip(3)]))
                    result = (both[:n] + both[n:]) / 2
                else:
                    result = self.net(x)
                out[start : start + len(batch)] = result
        return out


def load(device: str = "cpu") -> Descriptor:
    """Registry loader for ``face_descriptor``."""
    net = DlibResNet(read_dnn(face_recognition_models_file(MODEL_FILE)))
    net = net.to(memory_format=torch.channels_last)
    return Descriptor(net, device)
