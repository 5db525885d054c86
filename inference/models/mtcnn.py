"""MTCNN (Zhang et al. 2016) in torch, with the weights that ship in ``facenet-pytorch``.

facenet-pytorch's own detection code imports torchvision (for NMS), which this project does
not install, so only its three ``.pt`` state dicts are read and the cascade is written here:
P-Net proposes windows over an image pyramid, R-Net and O-Net re-score and regress them, and
O-Net adds five landmarks. The cascade follows facenet-pytorch's ``detect_face`` (same scales,
crops, box regression and NMS modes) so the published thresholds keep their meaning.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inference.packages import package_dir


def weights_dir() -> Path:
    """facenet-pytorch's data folder, found without importing the package (it needs torchvision)."""
    return package_dir("facenet_pytorch", "facenet-pytorch==2.6.0") / "data"


def _nms_order(scores: torch.Tensor | np.ndarray, groups: torch.Tensor | np.ndarray) -> tuple[torch.Tensor | np.ndarray, ...]:
    """Positions by group, best first within each, ties in input order, plus per sorted box its
    group's first position: the two stable sorts (by score, then group) give the same order
    in numpy and torch, on any device."""
    if isinstance(scores, np.ndarray):
        order = np.argsort(-scores, kind="stable")
        order = order[np.argsort(groups[order], kind="stable")]
        sorted_groups = groups[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = sorted_groups[1:] != sorted_groups[:-1]
        return order, np.flatnonzero(first)[np.cumsum(first) - 1]
    order = torch.sort(-scores, stable=True).indices
    order = order[torch.sort(groups[order], stable=True).indices]
    sorted_groups = groups[order]
    first = torch.ones(len(order), dtype=torch.bool, device=order.device)
    first[1:] = sorted_groups[1:] != sorted_groups[:-1]
    position = torch.arange(len(order), device=order.device)
    return order, torch.where(first, position, 0).cummax(0).values


def batched_nms_numpy(boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray, iou: float, mode: str = "union") -> np.ndarray:
    """Greedy NMS of (x1, y1, x2, y2) boxes within each group; indices kept, best first, ties
    between equal scores in input order (by group, then input order, where groups tie too).

    ``mode="min"`` divides the overlap by the smaller box, which MTCNN's last stage uses to drop
    a small box nested inside a bigger one. Runs once per cascade stage for all images (and
    pyramid levels) together, with no loop over boxes or groups: only pairs within a group are
    compared (over a whole batch, pairs from different images were most of the overlap matrix),
    and the greedy pass ("kept unless a kept better box overlaps it") is iterated to its fixed
    point, which settles the i-th best box of a group by the i-th round and in practice after a
    few. One call per pyramid level and image cost 2 ms per image, mostly numpy's per-call
    overhead, under the GIL.
    """
    order, starts = _nms_order(scores, groups)
    rank = np.arange(len(order)) - starts  # better boxes in the same group
    # every (better j, worse i) pair within a group
    i = np.repeat(np.arange(len(order)), rank)
    j = np.arange(len(i)) - np.repeat(np.cumsum(rank) - rank, rank) + starts[i]
    over = _overlaps(boxes[order], i, j, iou, mode, np.minimum, np.maximum)
    i, j = i[over], j[over]
    keep = np.ones(len(order), dtype=bool)
    while True:
        settled = np.ones(len(order), dtype=bool)
        settled[i[keep[j]]] = False
        if np.array_equal(settled, keep):
            break
        keep = settled
    kept = order[keep]
    return kept[np.argsort(-scores[kept], kind="stable")]


def batched_nms_torch(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou: float, mode: str = "union") -> torch.Tensor:
    """``batched_nms_numpy`` in torch ops on the tensors' device, same kept indices in the same
    order: one host sync for the number of pairs and one per fixed-point round."""
    order, starts = _nms_order(scores, groups)
    position = torch.arange(len(order), device=order.device)
    rank = position - starts
    i = torch.repeat_interleave(position, rank)
    j = torch.arange(len(i), device=order.device) - torch.repeat_interleave(torch.cumsum(rank, 0) - rank, rank) + starts[i]
    over = _overlaps(boxes[order], i, j, iou, mode, torch.minimum, torch.maximum)
    i, j = i[over], j[over]
    keep = torch.ones(len(order), dtype=torch.bool, device=order.device)
    while True:
        settled = torch.ones_like(keep)
        settled[i[keep[j]]] = False
        if torch.equal(settled, keep):
            break
        keep = settled
    kept = order[keep]
    return kept[torch.sort(-scores[kept], stable=True).indices]


def _overlaps(b, i, j, iou: float, mode: str, minimum, maximum):  # numpy arrays or tensors alike
    """Whether box i overlaps box j past ``iou``, in the same float32 operations for both back-ends."""
    x1, y1, x2, y2 = b.T
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    inter = ((minimum(x2[i], x2[j]) - maximum(x1[i], x1[j]) + 1).clip(min=0)
             * (minimum(y2[i], y2[j]) - maximum(y1[i], y1[j]) + 1).clip(min=0))
    denom = minimum(area[i], area[j]) if mode == "min" else area[i] + area[j] - inter
    return inter / denom > iou


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou: float, mode: str = "union") -> torch.Tensor:
    """Greedy NMS per group (see ``batched_nms_numpy``): in numpy on the CPU, where it was faster
    than the same torch ops, and in torch on any other device, where the tensors stay."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    if boxes.device.type != "cpu":
        return batched_nms_torch(boxes, scores, groups, iou, mode)
    kept = batched_nms_numpy(*(t.detach().numpy() for t in (boxes, scores, groups)), iou, mode)
    return torch.from_numpy(kept)


def _prelu(x: torch.Tensor, prelu: nn.PReLU) -> torch.Tensor:
    """``prelu(x)`` for a channels-last conv output, computed on its (N * H, W * C) view with the
    weights tiled W times: broadcasting along the long contiguous rows vectorises, while ATen's
    per-channel broadcast over P-Net's 10 to 32 channels ran 2-3x slower on the CPU. Same values."""
    n, c, h, w = x.shape
    rows = x.permute(0, 2, 3, 1).reshape(n * h, w * c)
    return F.prelu(rows, prelu.weight.repeat(w)).view(n, h, w, c).permute(0, 3, 1, 2)


def _max_pool(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """``F.max_pool2d(x, kernel, stride, ceil_mode=True)`` for a channels-last ``x``, as running
    maxima of strided row and column slices (the input padded with -inf where the last window
    hangs over the edge), exact. On P-Net's 10 channels 3x faster than ATen's pooling; on R-Net's
    and O-Net's 28+ channels ATen's is faster, so they keep it."""
    n, c, h, w = x.shape
    oh, ow = -(-(h - kernel) // stride) + 1, -(-(w - kernel) // stride) + 1
    a = x.permute(0, 2, 3, 1)
    ph, pw = (oh - 1) * stride + kernel, (ow - 1) * stride + kernel
    if (ph, pw) != (h, w):
        a = F.pad(a, (0, 0, 0, pw - w, 0, ph - h), value=float("-inf"))
    rows = a[:, 0 : ph - kernel + 1 : stride]
    for i in range(1, kernel):
        rows = torch.maximum(rows, a[:, i : ph - kernel + 1 + i : stride])
    out = rows[:, :, 0 : pw - kernel + 1 : stride]
    for j in range(1, kernel):
        out = torch.maximum(out, rows[:, :, j : pw - kernel + 1 + j : stride])
    return out.permute(0, 3, 1, 2)


class PNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, H, W, 4) box offsets and (N, H, W) face logits per window (see ``MTCNN``)."""
        x = _max_pool(_prelu(self.conv1(x), self.prelu1), 2, 2)
        x = _prelu(self.conv3(_prelu(self.conv2(x), self.prelu2)), self.prelu3)
        # The two 1x1 heads as one matrix product over the channels-last activations: as
        # convolutions with 2 and 4 output channels they took ATen's slow im2col path (4% of
        # detection on the CPU).
        heads = torch.cat([self.conv4_1.weight, self.conv4_2.weight]).flatten(1)
        out = F.linear(x.permute(0, 2, 3, 1), heads, torch.cat([self.conv4_1.bias, self.conv4_2.bias]))
        return out[..., 2:], out[..., 1] - out[..., 0]


class RNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        # the weights were converted from Caffe, which flattens (W, H, C)
        x = self.prelu4(self.dense4(x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)))
        logits = self.dense5_1(x)
        return self.dense5_2(x), logits[:, 1] - logits[:, 0]


class ONet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)))
        logits = self.dense6_1(x)
        return self.dense6_2(x), self.dense6_3(x), logits[:, 1] - logits[:, 0]


@dataclass(frozen=True)
class Budget:
    """Work per network call: input pixels per P-Net pass (at the first pyramid level; images of
    one size and pyramid share a pass), crops per R-Net (24 px) and per O-Net (48 px) call. Any
    budget gives the same faces (the nets see the same inputs, batched differently)."""

    pnet_pixels: int
    rnet_crops: int
    onet_crops: int

    @classmethod
    def for_memory(cls, total_bytes: int) -> Budget:
        """A device's budget: an eighth of its memory for each stage's activations, from rough
        float32 peaks per unit (P-Net's first conv and PReLU on a pixel and its share of the
        smaller levels; a crop's index and value gathers, its first conv and PReLU). On an
        80 GB GPU: 40M pixels per P-Net pass (a batch of 64 images of 1,024 px is 30M), every
        R-Net crop of such a batch in one call, O-Net crops 10,000 at a time."""
        share = total_bytes // 8
        return cls(share // 256, share // (256 << 10), share // (1 << 20))


# On the CPU the work per call is kept cache-sized: on the thousands of R-Net crops of a 32-image
# batch, the activations of one pass over all of them (100+ MB) left the caches and R-Net ran 2.5x
# slower than on chunks of 128 (O-Net: 2.3x against chunks of 32); with two batch shards side by
# side, P-Net passed 0.6 images/ms at 16 LFW images (22,500 pixels each at the first level) per
# pass and 0.9 at 4; measured on the 2-core CPU.
CPU_BUDGET = Budget(pnet_pixels=100_000, rnet_crops=128, onet_crops=32)


def device_budget(device: torch.device) -> Budget:
    """``CPU_BUDGET`` on the CPU; on a CUDA device, a share of its memory (``Budget.for_memory``)."""
    if device.type == "cuda":
        return Budget.for_memory(torch.cuda.get_device_properties(device).total_memory)
    return CPU_BUDGET


def _logit(p: float) -> float:
    """The log-odds whose sigmoid is ``p``: the nets' logit that a probability threshold means."""
    return math.log(p / (1 - p))


def _net_input(total: torch.Tensor, area: torch.Tensor) -> torch.Tensor:
    """The nets' (N, 3, H, W) channels-last input from pixel sums over bins and the bins' areas:
    the bins' means, normalised as facenet-pytorch does, (x - 127.5) / 128, written once in the
    layout the convolutions take."""
    n, c, h, w = total.shape
    out = torch.empty((n, h, w, c), device=total.device).permute(0, 3, 1, 2)
    torch.div(total, area, out=out)
    return out.sub_(127.5).mul_(0.0078125)


def _bins(lo: torch.Tensor, length: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Start and end of the ``size`` bins of adaptive average pooling (``F.interpolate(mode="area")``)
    over [lo, lo + length): [floor(i L / S), ceil((i + 1) L / S)), with one row per lo/length."""
    i = torch.arange(size + 1, dtype=lo.dtype, device=lo.device)
    lo, length = lo[:, None], length[:, None]
    return lo + (i[:-1] * length) // size, lo + (i[1:] * length + size - 1) // size


class _Integrals:
    """Summed-area tables of the images, (3, H + 1, W + 1) each with a zero first row and column,
    laid end to end in one buffer, each group of same-sized images contiguous. Every area-resampled
    input of the cascade comes off them with four lookups per value, exactly: the pyramid levels
    of a group (``F.interpolate(mode="area")`` re-reads the whole image for every level) and the
    R-/O-Net crops of every image in one gather. Sums of 0..255 integers stay exact: int32 while
    the largest table fits (any image up to about 2,900 px square, so every detector working copy),
    which halves the gather's bytes; float64 beyond."""

    def __init__(self, images: list[torch.Tensor], groups: list[list[int]]) -> None:
        device = images[0].device
        sizes = [3 * (img.shape[0] + 1) * (img.shape[1] + 1) for img in images]
        exact_int32 = max(sizes) // 3 * 255 < 2 ** 31
        self.flat = torch.empty(sum(sizes), dtype=torch.int32 if exact_int32 else torch.float64, device=device)
        # index arithmetic in int32 while the buffer allows (3x faster than int64; index_select
        # takes either)
        index_type = torch.int32 if sum(sizes) < 2 ** 31 else torch.long
        self._shapes = [tuple(img.shape[:2]) for img in images]  # on the host: no device read per level
        self.dims = torch.tensor(self._shapes, dtype=index_type, device=device)
        self._offsets = [0] * len(images)
        offset = 0
        for members in groups:
            for k in members:
                self._offsets[k] = offset
                offset += sizes[k]
        self.base = torch.tensor(self._offsets, dtype=index_type, device=device)
        for members in groups:
            table = self.group(members)
            table[:, :, 0], table[:, :, :, 0] = 0, 0
            # along rows first, straight from the uint8 pixels: 1.7x faster than a copy, then sums
            torch.cumsum(torch.stack([images[k] for k in members]).permute(0, 3, 1, 2), 3, dtype=self.flat.dtype, out=table[:, :, 1:, 1:])
            table[:, :, 1:].cumsum_(2)

    def group(self, members: list[int]) -> torch.Tensor:
        """(B, 3, H + 1, W + 1) tables of one group of same-sized images."""
        h, w = self._shapes[members[0]]
        start = self._offsets[members[0]]
        return self.flat[start : start + len(members) * 3 * (h + 1) * (w + 1)].view(len(members), 3, h + 1, w + 1)

    def resample(self, members: list[int], out_h: int, out_w: int) -> torch.Tensor:
        """A group's whole images area-resampled to ``out_h`` x ``out_w``, as P-Net's input."""
        table = self.group(members)
        zero = torch.zeros(1, dtype=self.dims.dtype, device=table.device)
        ys, ye = _bins(zero, self.dims[members[0], :1], out_h)
        xs, xe = _bins(zero, self.dims[members[0], 1:], out_w)
        # rows, then columns, each a gather of whole rows (ATen's gather along the innermost
        # dimension is several times slower): the bins' row sums, transposed, then their columns
        rows = table.index_select(2, torch.cat([ys[0], ye[0]]))
        rows = (rows[:, :, out_h:] - rows[:, :, :out_h]).transpose(2, 3).contiguous()
        cols = rows.index_select(2, torch.cat([xs[0], xe[0]]))
        total = cols[:, :, out_w:] - cols[:, :, :out_w]
        area = (ye - ys)[0, :, None] * (xe - xs)[0, None, :]
        return _net_input(total.transpose(2, 3), area)

    def crops(self, boxes: torch.Tensor, inds: torch.Tensor, size: int) -> torch.Tensor:
        """Area-resampled ``size`` x ``size`` crops of the (clipped) boxes as the nets' input, as
        facenet-pytorch takes them (``F.interpolate(mode="area")`` of each crop); one call per
        box cost 5 ms per LFW image."""
        b = boxes.trunc().to(self.dims.dtype)
        dims = self.dims[inds]
        x1, y1 = b[:, 0].clamp(min=1) - 1, b[:, 1].clamp(min=1) - 1
        x2, y2 = torch.minimum(b[:, 2], dims[:, 1]), torch.minimum(b[:, 3], dims[:, 0])
        empty = (x2 <= x1) | (y2 <= y1)  # nothing left after clipping: a 1-pixel crop the nets reject
        x1, y1, x2, y2 = (torch.where(empty, v, c) for v, c in ((0, x1), (0, y1), (1, x2), (1, y2)))
        ys, ye = _bins(y1, y2 - y1, size)
        xs, xe = _bins(x1, x2 - x1, size)
        rows = torch.stack([ys, ye]) * (dims[:, 1] + 1)[None, :, None]  # (2, n, S): start/end rows
        cols = torch.stack([xs, xe])  # (2, n, S)
        pixels = rows[:, None, :, :, None] + cols[None, :, :, None, :]  # (2, 2, n, S, S)
        plane = (dims[:, 0] + 1) * (dims[:, 1] + 1)
        origins = self.base[inds] + torch.arange(3, dtype=b.dtype, device=b.device)[:, None] * plane  # (3, n)
        index = origins[:, None, None, :, None, None] + pixels
        values = self.flat.index_select(0, index.view(-1)).view(index.shape)  # 2.5x faster than take
        total = values[:, 1, 1] - values[:, 0, 1] - values[:, 1, 0] + values[:, 0, 0]
        area = (ye - ys)[:, :, None] * (xe - xs)[:, None, :]
        return _net_input(total.transpose(0, 1), area[:, None])


def _bbreg(boxes: torch.Tensor, reg: torch.Tensor, inclusive: bool) -> torch.Tensor:
    """Apply the nets' box offsets (fractions of box width/height) to (x1, y1, x2, y2)."""
    w = boxes[:, 2] - boxes[:, 0] + (1 if inclusive else 0)
    h = boxes[:, 3] - boxes[:, 1] + (1 if inclusive else 0)
    return boxes[:, :4] + reg * torch.stack([w, h, w, h], dim=1)


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """Grow each box to a square around its centre: R-Net and O-Net take square crops."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    x1 = boxes[:, 0] + w * 0.5 - side * 0.5
    y1 = boxes[:, 1] + h * 0.5 - side * 0.5
    return torch.stack([x1, y1, x1 + side, y1 + side], dim=1)


class MTCNN(nn.Module):
    """The P/R/O-Net cascade; ``detect`` returns the batch's boxes (n, 5: x1 y1 x2 y2 face
    probability), landmarks (n, 5, 2: left eye, right eye, nose, mouth left, mouth right as seen)
    and each box's image, as tensors on the images' device.

    The nets return face logits (the softmax's two logits' difference), and the cascade ranks,
    suppresses and thresholds on them; only the final score is a probability. In float32 the
    probability of every logit over about 17 is exactly 1.0, so the best candidates of a face
    tied, NMS kept whichever came first, and which of them reached 1.0 was decided by the last
    bits of the device's arithmetic: on the 200 bench images the same cascade with the nets in
    float64 moved one face by 3 px, TF32-rounded nets 18 faces by up to 14 px, and an H200 4 by
    up to 173 px. The logits stay apart (and ties left are broken by candidate order, the same
    everywhere). A threshold p means logit(p): the published thresholds keep their meaning.
    ``budget`` (None: ``device_budget`` of the images' device) sets the work per network call.
    """

    def __init__(self, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7), factor: float = 0.709, budget: Budget | None = None) -> None:
        super().__init__()
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        folder = weights_dir()
        for name in ("pnet", "rnet", "onet"):
            getattr(self, name).load_state_dict(torch.load(folder / f"{name}.pt", map_location="cpu", weights_only=True))
        self.thresholds = thresholds
        self.factor = factor
        self.budget = budget
        # oneDNN's convolutions and ceil-mode max pooling ran these nets 2.1x faster in NHWC than
        # in NCHW on this CPU (R-Net on 1500 crops: 229 -> 107 ms); the integral tables hand them NHWC inputs.
        self.to(memory_format=torch.channels_last)
        self.eval()

    @staticmethod
    def _refine(net: nn.Module, tables: _Integrals, boxes: torch.Tensor, inds: torch.Tensor, size: int, chunk: int) -> tuple[torch.Tensor, ...]:
        """``net`` on the ``size`` x ``size`` crops of all boxes, ``chunk`` crops per call."""
        parts = [net(tables.crops(boxes[i : i + chunk], inds[i : i + chunk], size)) for i in range(0, len(boxes), chunk)]
        return tuple(torch.cat(outputs) for outputs in zip(*parts))

    def _propose(self, tables: _Integrals, groups: list[list[int]], shapes: list[tuple[int, int, float]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """P-Net over every pyramid level of every group (``shapes``: its images' height, width
        and first face side): candidate rows (x1, y1, x2, y2, logit, 4 offsets), each one's image
        and NMS group (image and level), ordered by group, level and window (row-major). The
        levels' logits are thresholded together: one host sync for the whole pyramid of the batch."""
        logits, regs, passes, levels = [], [], [], 1
        for members, (h, w, min_face) in zip(groups, shapes):
            scale = 12.0 / min_face
            side = min(h, w) * scale
            level = 0
            while side >= 12:
                reg, logit = self.pnet(tables.resample(members, int(h * scale + 1), int(w * scale + 1)))
                logits.append(logit.reshape(-1))
                regs.append(reg.reshape(-1, 4))
                passes.append((logit.shape[1] * logit.shape[2], logit.shape[2], scale, level, members))
                scale *= self.factor
                side *= self.factor
                level += 1
            levels = max(levels, level)
        device = tables.flat.device
        if not logits:  # every image under P-Net's 12-pixel window at the first scale
            return (torch.zeros(0, 9, device=device), *(torch.zeros(0, dtype=torch.long, device=device) for _ in range(2)))
        logit = torch.cat(logits)
        found = (logit >= _logit(self.thresholds[0])).nonzero()[:, 0]
        # each found window's pass, and its image, row and column there (all from host-known sizes)
        plane, width, scale, level, members = zip(*passes)
        firsts = list(itertools.accumulate([len(v) for v in logits[:-1]], initial=0))
        member_firsts = list(itertools.accumulate([len(m) for m in members[:-1]], initial=0))
        plane, width, level, firsts, member_firsts, images = (
            torch.tensor(v, dtype=torch.long, device=device)
            for v in (plane, width, level, firsts, member_firsts, list(itertools.chain(*members))))
        k = torch.searchsorted(firsts, found, right=True) - 1
        local = found - firsts[k]
        member, window = local // plane[k], local % plane[k]
        xy = torch.stack([window % width[k], window // width[k]], dim=1).to(logit.dtype)
        # a tensor divisor, not a Python one: CUDA divides by a host scalar as a multiplication
        # by its reciprocal, which can round a quotient to the integer below before floor()
        scale = torch.tensor(scale, dtype=logit.dtype, device=device)[k, None]
        q1, q2 = ((2 * xy + 1) / scale).floor(), ((2 * xy + 12) / scale).floor()
        image = images[member_firsts[k] + member]
        return torch.cat([q1, q2, logit[found, None], torch.cat(regs)[found]], dim=1), image, image * levels + level[k]

    @torch.inference_mode()
    def detect(self, images: list[torch.Tensor], min_faces: list[float]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``images``: (H, W, 3) uint8 tensors on the module's device; ``min_faces``: per image,
        the face side in its pixels where the pyramid starts. Returns boxes, landmarks and image
        indices ordered by image, then best first."""
        device = images[0].device
        budget = self.budget or device_budget(device)
        _, t_r, t_o = (_logit(t) for t in self.thresholds)
        # Images of one size and pyramid share a P-Net pass per scale, as many as keep the first
        # level's pass within the budget.
        groups: list[list[int]] = []
        shapes: list[tuple[int, int, float]] = []
        open_groups: dict[tuple[int, int, float], list[int]] = {}
        for k, (img, min_face) in enumerate(zip(images, min_faces)):
            key = (*img.shape[:2], min_face)
            members = open_groups.get(key)
            if members is None or len(members) * img.shape[0] * img.shape[1] * (12.0 / min_face) ** 2 >= budget.pnet_pixels:
                members = open_groups[key] = []
                groups.append(members)
                shapes.append(key)
            members.append(k)
        tables = _Integrals(images, groups)
        empty = (torch.zeros(0, 5, device=device), torch.zeros(0, 5, 2, device=device), torch.zeros(0, dtype=torch.long, device=device))
        cand, inds, nms_groups = self._propose(tables, groups, shapes)
        if not len(cand):
            return empty
        pick = batched_nms(cand[:, :4], cand[:, 4], nms_groups, 0.5)  # per image and level
        cand, inds = cand[pick], inds[pick]
        pick = batched_nms(cand[:, :4], cand[:, 4], inds, 0.7)  # per image, across levels
        cand, inds = cand[pick], inds[pick]
        boxes = torch.cat([_square(_bbreg(cand[:, :4], cand[:, 5:9], inclusive=False)), cand[:, 4:5]], dim=1)

        reg, logit = self._refine(self.rnet, tables, boxes, inds, 24, budget.rnet_crops)
        keep = logit > t_r
        boxes, inds, reg = torch.cat([boxes[keep, :4], logit[keep, None]], dim=1), inds[keep], reg[keep]
        pick = batched_nms(boxes[:, :4], boxes[:, 4], inds, 0.7)
        boxes, inds, reg = boxes[pick], inds[pick], reg[pick]
        boxes = torch.cat([_square(_bbreg(boxes, reg, inclusive=True)), boxes[:, 4:5]], dim=1)
        if not len(boxes):
            return empty

        reg, marks, logit = self._refine(self.onet, tables, boxes, inds, 48, budget.onet_crops)
        keep = logit > t_o
        boxes, inds, reg, marks = boxes[keep], inds[keep], reg[keep], marks[keep]
        bw = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        bh = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        points = torch.stack([bw * marks[:, :5] + boxes[:, :1] - 1, bh * marks[:, 5:] + boxes[:, 1:2] - 1], dim=2)
        boxes = torch.cat([_bbreg(boxes, reg, inclusive=True), torch.sigmoid(logit[keep, None])], dim=1)
        pick = batched_nms(boxes[:, :4], logit[keep], inds, 0.7, mode="min")
        pick = pick[torch.sort(inds[pick], stable=True).indices]  # by image, best first within each
        return boxes[pick], points[pick], inds[pick]
