"""Clip sampling (which frames) and spatial transforms (short-side resize, centre or random crop).

A clip of ``num_frames`` frames at ``stride`` covers ``(num_frames - 1) * stride + 1`` source frames. The
stride is either fixed or drawn uniformly from an inclusive range, as the official training config draws it
from [1, 8] for WebVid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

Stride = int | tuple[int, int]
CropMode = Literal["center", "random"]
StartMode = Literal["first", "center", "random"]


class ClipTooShortError(ValueError):
    """The source has fewer frames than the requested clip needs at the smallest allowed stride."""


@dataclass(frozen=True)
class ClipWindow:
    """The frames a clip takes from its source."""

    start: int
    stride: int
    num_frames: int

    @property
    def indices(self) -> list[int]:
        return [self.start + i * self.stride for i in range(self.num_frames)]


def clip_span(num_frames: int, stride: int) -> int:
    """Source frames covered by a clip of ``num_frames`` frames taken every ``stride`` frames."""
    return (num_frames - 1) * stride + 1


def normalize_stride(stride: Stride | list[int]) -> tuple[int, int]:
    """``3`` -> ``(3, 3)``; ``[1, 8]`` -> ``(1, 8)``; rejects non-positive or reversed ranges."""
    if isinstance(stride, int | np.integer):
        low = high = int(stride)
    else:
        values = list(stride)
        if len(values) != 2:
            raise ValueError(f"stride must be an int or a [low, high] pair, got {stride!r}")
        low, high = int(values[0]), int(values[1])
    if low < 1 or high < low:
        raise ValueError(f"stride must be >= 1 and ranges must have low <= high, got {stride!r}")
    return low, high


def sample_clip_window(
    available: int,
    num_frames: int,
    stride: Stride | list[int],
    rng: np.random.Generator | None = None,
    start: StartMode = "first",
) -> ClipWindow:
    """Choose the stride and the first frame of a clip inside a source of ``available`` frames.

    With a stride range, only strides that fit are drawn (a short video gets smaller strides rather than being
    rejected); ``rng`` is needed for ranges and for ``start="random"``.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    low, high = normalize_stride(stride)
    fitting_high = min(high, (available - 1) // (num_frames - 1)) if num_frames > 1 else high
    if available < 1 or fitting_high < low:
        raise ClipTooShortError(
            f"a clip of {num_frames} frames at stride {low} needs {clip_span(num_frames, low)} frames, "
            f"but the source has {available}; use fewer frames or a smaller stride"
        )
    if low == fitting_high:
        chosen_stride = low
    else:
        if rng is None:
            raise ValueError("a random stride range needs an rng")
        chosen_stride = int(rng.integers(low, fitting_high + 1))
    slack = available - clip_span(num_frames, chosen_stride)
    if start == "first":
        first = 0
    elif start == "center":
        first = slack // 2
    elif start == "random":
        if rng is None:
            raise ValueError("start='random' needs an rng")
        first = int(rng.integers(0, slack + 1))
    else:
        raise ValueError(f"start must be 'first', 'center' or 'random', got {start!r}")
    return ClipWindow(first, chosen_stride, num_frames)


def resize_short_side(video: torch.Tensor, size: int) -> torch.Tensor:
    """Resize float ``C T H W`` so that its shorter side is ``size`` (bicubic with antialiasing, clamped)."""
    height, width = video.shape[-2:]
    if min(height, width) == size:
        return video
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    frames = video.permute(1, 0, 2, 3)  # T C H W: interpolate treats T as the batch
    resized = F.interpolate(frames, size=(new_h, new_w), mode="bicubic", antialias=True, align_corners=False)
    return resized.clamp_(-1.0, 1.0).permute(1, 0, 2, 3).contiguous()


def crop_offsets(
    height: int, width: int, size: int, mode: CropMode, rng: np.random.Generator | None = None
) -> tuple[int, int]:
    """Top-left corner of a ``size`` x ``size`` crop."""
    if height < size or width < size:
        raise ValueError(f"cannot crop {size}x{size} from {height}x{width}")
    if mode == "center":
        return (height - size) // 2, (width - size) // 2
    if mode == "random":
        if rng is None:
            raise ValueError("a random crop needs an rng")
        return int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
    raise ValueError(f"crop must be 'center' or 'random', got {mode!r}")


def resize_and_crop(
    video: torch.Tensor, resolution: int, crop: CropMode = "center", rng: np.random.Generator | None = None
) -> torch.Tensor:
    """Short-side resize to ``resolution`` then a square crop: the paper's evaluation transform with
    ``crop="center"``."""
    video = resize_short_side(video, resolution)
    top, left = crop_offsets(video.shape[-2], video.shape[-1], resolution, crop, rng)
    return video[..., top : top + resolution, left : left + resolution].contiguous()


def resize_and_crop_frames(
    frames: np.ndarray, resolution: int, crop: CropMode = "center", rng: np.random.Generator | None = None
) -> np.ndarray:
    """The same transform on uint8 ``T H W C`` frames, with OpenCV (area averaging when shrinking, bicubic
    when enlarging): the loaders' fast path, several times quicker than resizing float tensors."""
    import cv2

    height, width = frames.shape[1:3]
    scale = resolution / min(height, width)
    new_h, new_w = max(resolution, round(height * scale)), max(resolution, round(width * scale))
    if (new_h, new_w) != (height, width):
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        frames = np.stack([cv2.resize(f, (new_w, new_h), interpolation=interpolation) for f in frames])
    top, left = crop_offsets(new_h, new_w, resolution, crop, rng)
    return np.ascontiguousarray(frames[:, top : top + resolution, left : left + resolution])
