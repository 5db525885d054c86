"""MTCNN (Zhang et al. 2016) in torch, with the weights that ship in ``facenet-pytorch``.

facenet-pytorch's own detection code imports torchvision (for NMS), which this project does
not install, so only its three ``.pt`` state dicts are read and the cascade is written here:
P-Net proposes windows over an image pyramid, R-Net and O-Net re-score and regress them, and
O-Net adds five landmarks. The cascade follows facenet-pytorch's ``detect_face`` (same scales,
crops, box regression and NMS modes) so the published thresholds keep their meaning.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inference.packages import package_dir


def weights_dir() -> Path:
    """facenet-pytorch's data folder, found without importing the package (it needs torchvision)."""
    return package_dir("facenet_pytorch", "facenet-pytorch==2.6.0") / "data"


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float, mode: str = "union") -> torch.Tensor:
    """Greedy NMS on (x1, y1, x2, y2) boxes; indices kept, best first.

    ``mode="min"`` divides the overlap by the smaller box, which MTCNN's last stage uses to drop
    a small box nested inside a bigger one.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True)
    b = boxes[order]
    x1, y1, x2, y2 = b.unbind(1)
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    ix1, iy1 = torch.maximum(x1[:, None], x1[None]), torch.maximum(y1[:, None], y1[None])
    ix2, iy2 = torch.minimum(x2[:, None], x2[None]), torch.minimum(y2[:, None], y2[None])
    inter = (ix2 - ix1 + 1).clamp(min=0) * (iy2 - iy1 + 1).clamp(min=0)
    denom = torch.minimum(area[:, None], area[None]) if mode == "min" else area[:, None] + area[None] - inter
    over = (inter / denom).cpu().numpy() > iou
    keep = np.ones(len(b), dtype=bool)
    for i in range(len(b)):
        if keep[i]:
            over_i = over[i].copy()
            over_i[: i + 1] = False
            keep &= ~over_i
    return order[torch.from_numpy(np.nonzero(keep)[0]).to(order.device)]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou: float, mode: str = "union") -> torch.Tensor:
    """NMS within each group (image) only, by shifting groups apart so they never overlap."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    shift = groups.to(boxes.dtype)[:, None] * (boxes.max() + 1)
    return nms(boxes + shift, scores, iou, mode)


class PNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), F.softmax(self.conv4_1(x), dim=1)


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
        return self.dense5_2(x), F.softmax(self.dense5_1(x), dim=1)


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
        return self.dense6_2(x), self.dense6_3(x), F.softmax(self.dense6_1(x), dim=1)


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return (x - 127.5) * 0.0078125


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


class _Integrals:
    """Summed-area tables of some of the images, (3, H + 1, W + 1) each with a zero first row and
    column, laid end to end in one buffer so that crops from every image are one gather. Sums of
    0..255 integers stay exact: int32 while the largest table fits (any image up to about 2,900 px
    square, so every detector working copy), which halves the gather's bytes; float64 beyond."""

    def __init__(self, images: list[torch.Tensor], used: list[int]) -> None:
        device = images[0].device
        self.dims = torch.tensor([list(img.shape[1:]) for img in images], dtype=torch.long, device=device)
        sizes = [3 * (images[k].shape[1] + 1) * (images[k].shape[2] + 1) if k in used else 0 for k in range(len(images))]
        exact_int32 = max(sizes) // 3 * 255 < 2 ** 31
        self.flat = torch.empty(sum(sizes), dtype=torch.int32 if exact_int32 else torch.float64, device=device)
        self.base = torch.tensor([0, *sizes[:-1]], device=device).cumsum(0)
        for k in used:
            h, w = images[k].shape[1:]
            table = self.flat[int(self.base[k]) : int(self.base[k]) + sizes[k]].view(3, h + 1, w + 1)
            table[:, 0], table[:, :, 0] = 0, 0
            table[:, 1:, 1:] = images[k]
            table.cumsum_(2).cumsum_(1)  # along rows first: 2x faster than columns first


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
    """The P/R/O-Net cascade; ``detect`` returns, per image, boxes (n, 5: x1 y1 x2 y2 score)
    and landmarks (n, 5, 2: left eye, right eye, nose, mouth left, mouth right as seen)."""

    def __init__(self, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7), factor: float = 0.709) -> None:
        super().__init__()
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        folder = weights_dir()
        for name in ("pnet", "rnet", "onet"):
            getattr(self, name).load_state_dict(torch.load(folder / f"{name}.pt", map_location="cpu", weights_only=True))
        self.thresholds = thresholds
        self.factor = factor
        # oneDNN's convolutions and ceil-mode max pooling ran these nets 2.1x faster in NHWC than
        # in NCHW on this CPU (R-Net on 1500 crops: 229 -> 107 ms); inputs follow in _nhwc.
        self.to(memory_format=torch.channels_last)
        self.eval()

    @staticmethod
    def _crops(tables: _Integrals, boxes: torch.Tensor, inds: torch.Tensor, size: int) -> torch.Tensor:
        """Area-resampled ``size`` x ``size`` crops of the (clipped) boxes, as facenet-pytorch takes
        them (``F.interpolate(mode="area")`` of each crop, i.e. adaptive average pooling), for all
        boxes at once: each output pixel is the mean of its pooling bin, read off the image's
        summed-area table with four lookups. One call per box cost 5 ms per LFW image."""
        b = boxes.trunc().long()
        dims = tables.dims[inds]
        x1, y1 = b[:, 0].clamp(min=1) - 1, b[:, 1].clamp(min=1) - 1
        x2, y2 = torch.minimum(b[:, 2], dims[:, 1]), torch.minimum(b[:, 3], dims[:, 0])
        empty = (x2 <= x1) | (y2 <= y1)  # nothing left after clipping: a 1-pixel crop the nets reject
        x1, y1, x2, y2 = (torch.where(empty, v, c) for v, c in ((0, x1), (0, y1), (1, x2), (1, y2)))
        i = torch.arange(size + 1, device=b.device)

        def edges(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            length = (hi - lo)[:, None]  # adaptive pooling's bins: [floor(i L / S), ceil((i + 1) L / S))
            return lo[:, None] + (i[:-1] * length) // size, lo[:, None] + (i[1:] * length + size - 1) // size

        ys, ye = edges(y1, y2)
        xs, xe = edges(x1, x2)
        row = (dims[:, 1] + 1)[:, None, None]
        plane = ((dims[:, 0] + 1) * (dims[:, 1] + 1))[None, :, None, None]
        origin = tables.base[inds][None, :, None, None] + torch.arange(3, device=b.device)[:, None, None, None] * plane

        def at(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            return tables.flat[origin + (y[:, :, None] * row + x[:, None, :])[None]]

        total = at(ye, xe) - at(ys, xe) - at(ye, xs) + at(ys, xs)
        area = (ye - ys)[:, :, None] * (xe - xs)[:, None, :]
        crops = (total / area).to(boxes.dtype).permute(1, 0, 2, 3)
        return _nhwc(_normalize(crops))

    @torch.inference_mode()
    def detect(self, images: list[torch.Tensor], min_faces: list[float]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``images``: float (3, H, W) tensors in 0..255 on the module's device; ``min_faces``:
        per image, the face side in its pixels where the pyramid starts."""
        t_p, t_r, t_o = self.thresholds
        all_boxes, all_inds = [], []
        groups: dict[tuple[int, int, float], list[int]] = {}
        for k, (img, min_face) in enumerate(zip(images, min_faces)):  # these share one P-Net pass per scale
            groups.setdefault((*img.shape[1:], min_face), []).append(k)
        for (h, w, min_face), members in groups.items():
            batch = torch.stack([images[k] for k in members])
            scale = 12.0 / min_face
            side = min(h, w) * scale
            per_scale = []
            while side >= 12:
                data = _normalize(F.interpolate(batch, size=(int(h * scale + 1), int(w * scale + 1)), mode="area"))
                reg, prob = self.pnet(_nhwc(data))
                mask = prob[:, 1] >= t_p
                nyx = mask.nonzero()
                if len(nyx):
                    xy = nyx[:, 1:].flip(1).to(batch.dtype)
                    q1 = ((2 * xy + 1) / scale).floor()
                    q2 = ((2 * xy + 12) / scale).floor()
                    cand = torch.cat([q1, q2, prob[:, 1][mask][:, None], reg.permute(0, 2, 3, 1)[mask]], dim=1)
                    pick = batched_nms(cand[:, :4], cand[:, 4], nyx[:, 0], 0.5)
                    per_scale.append((cand[pick], nyx[pick, 0]))
                scale *= self.factor
                side *= self.factor
            if per_scale:
                cand = torch.cat([c for c, _ in per_scale])
                local = torch.cat([i for _, i in per_scale])
                pick = batched_nms(cand[:, :4], cand[:, 4], local, 0.7)
                cand, local = cand[pick], local[pick]
                all_boxes.append(torch.cat([_square(_bbreg(cand[:, :4], cand[:, 5:9], inclusive=False)), cand[:, 4:5]], dim=1))
                all_inds.append(torch.tensor(members, dtype=torch.long, device=batch.device)[local])
        empty = [(torch.zeros(0, 5), torch.zeros(0, 5, 2)) for _ in images]
        if not all_boxes:
            return empty
        boxes, inds = torch.cat(all_boxes), torch.cat(all_inds)
        tables = _Integrals(images, inds.unique().tolist())

        reg, prob = self.rnet(self._crops(tables, boxes, inds, 24))
        keep = prob[:, 1] > t_r
        boxes, inds, reg = torch.cat([boxes[keep, :4], prob[keep, 1:2]], dim=1), inds[keep], reg[keep]
        pick = batched_nms(boxes[:, :4], boxes[:, 4], inds, 0.7)
        boxes, inds, reg = boxes[pick], inds[pick], reg[pick]
        boxes = torch.cat([_square(_bbreg(boxes, reg, inclusive=True)), boxes[:, 4:5]], dim=1)
        if not len(boxes):
            return empty

        reg, marks, prob = self.onet(self._crops(tables, boxes, inds, 48))
        keep = prob[:, 1] > t_o
        boxes, inds, reg, marks = boxes[keep], inds[keep], reg[keep], marks[keep]
        bw = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        bh = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        points = torch.stack([bw * marks[:, :5] + boxes[:, :1] - 1, bh * marks[:, 5:] + boxes[:, 1:2] - 1], dim=2)
        boxes = torch.cat([_bbreg(boxes, reg, inclusive=True), prob[keep, 1:2]], dim=1)
        pick = batched_nms(boxes[:, :4], boxes[:, 4], inds, 0.7, mode="min")
        boxes, inds, points = boxes[pick], inds[pick], points[pick]
        return [(boxes[inds == k].cpu(), points[inds == k].cpu()) for k in range(len(images))]
