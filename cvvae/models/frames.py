"""Frame-count rules of CV-VAE and the mapping functions psi (paper Sec. 3.1).

The causal encoder keeps the first frame on its own and compresses every following group of
``temporal_compression`` (r, 4 as released) frames into one latent frame, so a video must have ``1 + r k``
frames and gives ``1 + k`` latent frames. A single image (one frame) is the ``k = 0`` case.

psi maps a clip of ``1 + r k`` frames to ``1 + k`` target frames, one per latent frame. Frame 0 is always kept
(it has its own latent frame, because the encoder is causal); the frames after it form ``k`` groups of ``r``
frames, group j holding frames ``1 + r j .. r (j + 1)``:

- ``slice``: one fixed frame per group, at 1-based position ``slice_position`` inside the group. The default
  position ``r`` (the last frame of each group) gives frames 0, 4, 8, ... as the official code's
  ``x[:, :, ::4]``; it is the frame the causal latent has fully seen.
- ``average``: the mean of each group.
- ``random``: one uniformly random frame per group, drawn from a seeded ``torch.Generator`` (one draw per
  batch, shared by its clips, as in the official code).
- ``first``: only frame 0 (the target has a single frame: "the loss reduces to image reconstruction").

A still image (T = 1) maps to itself under every psi.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Mapping = Literal["first", "slice", "average", "random"]
MAPPINGS: tuple[str, ...] = ("first", "slice", "average", "random")


def _check_compression(temporal_compression: int) -> None:
    if temporal_compression < 1:
        raise ValueError(f"temporal_compression must be >= 1, got {temporal_compression}")


def is_valid_num_frames(num_frames: int, temporal_compression: int = 4) -> bool:
    """True when ``num_frames`` is ``1 + temporal_compression * k`` with ``k >= 0``."""
    _check_compression(temporal_compression)
    return num_frames >= 1 and (num_frames - 1) % temporal_compression == 0


def nearest_valid_frames(num_frames: int, temporal_compression: int = 4) -> tuple[int, int]:
    """The valid counts just below (or equal) and just above ``num_frames`` (the lower one is at least 1)."""
    _check_compression(temporal_compression)
    if num_frames <= 1:
        return 1, 1 + temporal_compression if num_frames < 1 else 1
    lower = 1 + (num_frames - 1) // temporal_compression * temporal_compression
    upper = lower if lower == num_frames else lower + temporal_compression
    return lower, upper


def check_num_frames(num_frames: int, temporal_compression: int = 4) -> int:
    """Return ``num_frames`` if it is ``1 + temporal_compression * k``; otherwise raise a ``ValueError`` that
    names the nearest valid counts, so the caller knows how many frames to trim or pad to."""
    if not is_valid_num_frames(num_frames, temporal_compression):
        lower, upper = nearest_valid_frames(num_frames, temporal_compression)
        nearest = f"{lower} or {upper}" if lower != upper else f"{lower}"
        r = temporal_compression
        raise ValueError(
            f"CV-VAE needs 1 + {r}k frames (1, {1 + r}, {1 + 2 * r}, ...), got {num_frames}; the nearest "
            f"valid counts are {nearest}. Trim or pad the clip to one of them."
        )
    return num_frames


def latent_frames(num_frames: int, temporal_compression: int = 4) -> int:
    """Latent frames produced by encoding ``num_frames`` pixel frames (validated)."""
    check_num_frames(num_frames, temporal_compression)
    return 1 + (num_frames - 1) // temporal_compression


def pixel_frames(num_latent_frames: int, temporal_compression: int = 4) -> int:
    """Pixel frames produced by decoding ``num_latent_frames`` latent frames in video mode."""
    _check_compression(temporal_compression)
    if num_latent_frames < 1:
        raise ValueError(f"need at least one latent frame, got {num_latent_frames}")
    return 1 + (num_latent_frames - 1) * temporal_compression


# ---------------------------------------------------------------------------------------------------- psi


def _num_groups(num_frames: int, temporal_compression: int) -> int:
    """The ``k`` groups of a clip of ``1 + r k`` frames; another count cannot be mapped."""
    try:
        return latent_frames(num_frames, temporal_compression) - 1
    except ValueError as err:
        lower, upper = nearest_valid_frames(num_frames, temporal_compression)
        raise ValueError(
            f"a clip of {num_frames} frames cannot be mapped (nearest valid: {lower} or {upper}): {err}"
        ) from None


def mapped_frame_indices(
    num_frames: int,
    mapping: Mapping,
    temporal_compression: int = 4,
    slice_position: int | None = None,
    generator: torch.Generator | None = None,
) -> list[int]:
    """Frame indices picked by ``first``, ``slice`` or ``random`` (``average`` has no index per group)."""
    r = temporal_compression
    groups = _num_groups(num_frames, r)
    if mapping == "first":
        return [0]
    if mapping == "slice":
        position = r if slice_position is None else slice_position
        if not 1 <= position <= r:
            raise ValueError(f"slice_position must be in 1..{r}, got {position}")
        return [0] + [r * j + position for j in range(groups)]
    if mapping == "random":
        offsets = torch.randint(1, r + 1, (groups,), generator=generator).tolist()
        return [0] + [r * j + o for j, o in enumerate(offsets)]
    raise ValueError(f"mapping {mapping!r} has no frame indices; choose one of {MAPPINGS}")


def map_frames(
    video: Tensor,
    mapping: Mapping,
    temporal_compression: int = 4,
    slice_position: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Apply psi to ``video`` (B C T H W, T = 1 + r*k) -> B C (1+k) H W, or B C 1 H W for ``first``."""
    if video.ndim != 5:
        raise ValueError(f"expected a B C T H W video, got shape {tuple(video.shape)}")
    if mapping not in MAPPINGS:
        raise ValueError(f"unknown mapping {mapping!r}; choose one of {MAPPINGS}")
    if mapping == "average":
        groups = _num_groups(video.shape[2], temporal_compression)
        rest = video[:, :, 1:].unflatten(2, (groups, temporal_compression)).mean(dim=3)
        return torch.cat([video[:, :, :1], rest], dim=2)
    indices = mapped_frame_indices(video.shape[2], mapping, temporal_compression, slice_position, generator)
    return video[:, :, indices]
