"""Face chips cut on a torch device for a whole batch at once: :mod:`inference.align` in torch.

The geometry (a few numbers per face) is :func:`inference.align.chip_plans`, run on the host
after one transfer of the landmarks, so both paths sample exactly the same source points; the
pixel work, cropping, dlib's ``pyramid_down`` and the bilinear sampling, runs on the images'
device in float64 as numpy does, which gives the numpy chips bit for bit. Faces needing the
same number of pyramid steps go through them together, their crops padded to the largest:
the filter's valid outputs never read the padding. Kept apart from :mod:`inference.align` so
the API process, which imports that, does not load torch.
"""
from __future__ import annotations

import numpy as np
import torch

from inference.align import FACE_CHIP_PADDING, FACE_CHIP_SIZE, chip_geometries, chip_plans

# Faces sampled together: the float64 sampling holds about 6 MB per 150x150 chip at its peak,
# so a batch of group photos with a thousand faces stays near 1.5 GB.
SAMPLE_FACES = 256


def stack_images(images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All (H, W, 3) uint8 images as one (sum H*W, 3) pixel table, with each image's first row in
    it (B,) and its height and width (B, 2), on the images' device: one gather then reaches any
    pixel of any image."""
    if not images:
        raise ValueError("no images")
    for image in images:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != torch.uint8:
            raise ValueError(f"expected (H, W, 3) uint8 images, got {tuple(image.shape)} {image.dtype}")
    device = images[0].device
    sizes = [(int(image.shape[0]), int(image.shape[1])) for image in images]
    starts = np.cumsum([0] + [h * w for h, w in sizes[:-1]])
    table = torch.cat([image.reshape(-1, 3) for image in images])
    return table, torch.as_tensor(starts, device=device), torch.as_tensor(sizes, dtype=torch.int64, device=device)


def sequential_sum(steps: torch.Tensor) -> torch.Tensor:
    """(N, D): the (N, K, D) float32 ``steps`` added one by one along K in float32, dlib's rounding.

    CUDA's cumsum along a dimension other than the innermost runs one thread per column adding
    in order in the tensor's dtype (ATen's ``scan_outer_dim``): one kernel for every face and
    coordinate. The CPU's cumsum accumulates in float64, and so does CUDA's under
    ``torch.use_deterministic_algorithms``; those go through numpy's float32 accumulate."""
    if steps.device.type == "cuda" and not torch.are_deterministic_algorithms_enabled():
        return torch.cumsum(steps, dim=1)[:, -1]
    summed = np.add.accumulate(steps.cpu().numpy(), axis=1, dtype=np.float32)[:, -1]
    return torch.from_numpy(summed).to(steps.device)


def _pyramid_down(crops: torch.Tensor) -> torch.Tensor:
    """:func:`inference.align.pyramid_down` on a batch (M, H, W, 3) of int32 crops."""
    if crops.shape[1] <= 8 or crops.shape[2] <= 8:  # so is every crop padded to this: all empty now
        return crops.new_zeros((crops.shape[0], 0, 0, 3))
    out_rows, out_cols = (crops.shape[1] - 3) // 2, (crops.shape[2] - 3) // 2
    taps = [crops[:, :, k : k + 2 * out_cols : 2] for k in range(5)]
    horizontal = taps[0] + 4 * taps[1] + 6 * taps[2] + 4 * taps[3] + taps[4]
    taps = [horizontal[:, k : k + 2 * out_rows : 2] for k in range(5)]
    return torch.div(taps[0] + 4 * taps[1] + 6 * taps[2] + 4 * taps[3] + taps[4], 256, rounding_mode="floor")


def _bilinear(table: torch.Tensor, first: torch.Tensor, stride: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
              corners: torch.Tensor, size: int) -> torch.Tensor:
    """:func:`inference.align._bilinear` over (M,) sources in a pixel table: source m's pixel (r, c)
    is row first[m] + r * stride[m] + c; rows and cols bound its 2x2 neighbourhoods. (M, size, size, 3) uint8."""
    out = torch.zeros((len(first), size, size, 3), dtype=torch.uint8, device=table.device)
    if len(first) == 0 or table.shape[0] == 0:
        return out
    steps = torch.arange(size, dtype=torch.float64, device=table.device) / (size - 1)
    tl, tr, bl = (corners[:, None, None, k] for k in range(3))
    points = tl + steps[None, None, :, None] * (tr - tl) + steps[None, :, None, None] * (bl - tl)
    xs, ys = points[..., 0], points[..., 1]
    left, top = torch.floor(xs).long(), torch.floor(ys).long()
    rows, cols, stride, first = (v[:, None, None] for v in (rows, cols, stride, first))
    valid = (left >= 0) & (top >= 0) & (left + 1 < cols) & (top + 1 < rows)
    left_c = torch.minimum(left.clamp(min=0), (cols - 2).clamp(min=0))
    top_c = torch.minimum(top.clamp(min=0), (rows - 2).clamp(min=0))
    fx = (xs - left)[..., None]
    fy = (ys - top)[..., None]
    at = first + top_c * stride + left_c
    last = table.shape[0] - 1  # neighbours of invalid points may fall off the table: read something, drop it
    tl, tr, bl, br = (table[(at + offset).clamp(0, last)].double() for offset in (0, 1, stride, stride + 1))
    value = (1 - fy) * ((1 - fx) * tl + fx * tr) + fy * ((1 - fx) * bl + fx * br)
    out = value.clamp(0, 255).to(torch.uint8)  # truncates, as the C++ cast does
    return out.masked_fill_(~valid[..., None], 0)


def face_chips_device(images: list[torch.Tensor], inds: torch.Tensor, landmarks: torch.Tensor,
                      size: int = FACE_CHIP_SIZE, padding: float = FACE_CHIP_PADDING) -> torch.Tensor:
    """Chips (N, size, size, 3) uint8 on the images' device, :func:`inference.align.face_chips` for the
    (N, 5, 2) ``landmarks`` of faces in ``images[inds]`` ((H, W, 3) uint8 tensors on one device).

    One device-to-host transfer (landmarks and indices, for the plans) and one upload per batch;
    the pixels never leave the device, and faces go through the pyramid grouped by its depth (a
    few groups per batch)."""
    device = images[0].device if images else landmarks.device
    n = int(landmarks.shape[0])
    if n == 0:
        return torch.zeros((0, size, size, 3), dtype=torch.uint8, device=device)
    table, starts, sizes = stack_images(images)
    host = torch.cat([landmarks.reshape(n, -1).double(), inds.to(landmarks.device).reshape(n, 1).double()], dim=1).cpu().numpy()
    image_of = host[:, -1].astype(np.int64)
    image_sizes = np.array([tuple(image.shape[:2]) for image in images], dtype=np.int64)[image_of]
    rects, rotations = chip_geometries(host[:, :-1].reshape(n, 5, 2), size, padding)
    plans = chip_plans(rects, rotations, image_sizes, size)
    crop_rows = np.maximum(plans.crops[:, 3] - plans.crops[:, 1] + 1, 0)
    crop_cols = np.maximum(plans.crops[:, 2] - plans.crops[:, 0] + 1, 0)
    order = np.argsort(plans.levels, kind="stable")  # faces grouped by pyramid depth
    levels, group_starts = np.unique(plans.levels[order], return_index=True)
    # one upload (a blocking copy waits for the device's queue): whole numbers below 2^53 are exact in float64
    per_face = np.stack([image_of, plans.crops[:, 0], plans.crops[:, 1], crop_rows, crop_cols, order], axis=1)
    packed = torch.as_tensor(np.concatenate([per_face.astype(np.float64), plans.corners.reshape(n, 6)], axis=1), device=device)
    image_of, x0, y0, rows, cols, order_on_device = packed[:, :6].long().unbind(dim=1)
    corners = packed[:, 6:].reshape(n, 3, 2)
    width = sizes[image_of, 1]
    first = starts[image_of] + y0 * width + x0
    chips = torch.empty((n, size, size, 3), dtype=torch.uint8, device=device)
    for level, start, stop in zip(levels.tolist(), group_starts.tolist(), [*group_starts[1:].tolist(), n]):
        chosen_host, chosen = order[start:stop], order_on_device[start:stop]
        if level == 0:  # sample the images in place: the crop only bounds the neighbourhoods
            for part in chosen.split(SAMPLE_FACES):
                chips[part] = _bilinear(table, first[part], width[part], rows[part], cols[part], corners[part], size)
            continue
        height_max, width_max = int(crop_rows[chosen_host].max()), int(crop_cols[chosen_host].max())
        r = torch.arange(height_max, device=device)[None, :, None]
        c = torch.arange(width_max, device=device)[None, None, :]
        m_rows, m_cols, m_width = (v[chosen][:, None, None] for v in (rows, cols, width))
        inside = (r < m_rows) & (c < m_cols)
        at = torch.where(inside, first[chosen][:, None, None] + r * m_width + c, 0)
        crops = table[at].int().masked_fill_(~inside[..., None], 0)
        for _ in range(level):
            crops = _pyramid_down(crops)
            empty = (m_rows <= 8) | (m_cols <= 8)
            m_rows, m_cols = torch.where(empty, 0, (m_rows - 3) // 2), torch.where(empty, 0, (m_cols - 3) // 2)
        m, height_down, width_down = crops.shape[:3]
        chips[chosen] = _bilinear(
            crops.to(torch.uint8).reshape(-1, 3), torch.arange(m, device=device) * (height_down * width_down),
            torch.full((m,), width_down, device=device), m_rows.flatten(), m_cols.flatten(), corners[chosen], size)
    return chips
