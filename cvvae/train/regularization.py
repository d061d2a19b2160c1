"""Mapping functions psi and the latent regularisation terms of CV-VAE (paper Sec. 3.1, Eq. 1-3).

psi maps a clip of ``1 + r*k`` frames (r = temporal compression, 4) to ``1 + k`` target frames, one per
latent frame of the video encoder. Frame 0 is always kept (it has its own latent frame, because the encoder
is causal); the frames after it form ``k`` groups of ``r`` frames, group j holding frames
``1 + r*j .. r*(j+1)``:

- ``slice``: one fixed frame per group, at 1-based position ``slice_position`` inside the group. The default
  position ``r`` (the last frame of each group) gives frames 0, 4, 8, ... as the official code's
  ``x[:, :, ::4]``; it is the frame the causal latent has fully seen.
- ``average``: the mean of each group.
- ``random``: one uniformly random frame per group, drawn from a seeded ``torch.Generator`` (one draw per
  batch, shared by its clips, as in the official code).
- ``first``: only frame 0. Only latent frame 0 is regularised: the target has a single frame and only the
  first latent frame is decoded by the frozen image decoder (paper: "the loss reduces to image
  reconstruction").

A still image (T = 1) maps to itself under every psi.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Mapping = Literal["first", "slice", "average", "random"]
MAPPINGS: tuple[str, ...] = ("first", "slice", "average", "random")


def _num_groups(num_frames: int, time_compression: int) -> int:
    if num_frames < 1 or (num_frames - 1) % time_compression:
        lower = 1 + ((max(num_frames, 1) - 1) // time_compression) * time_compression
        raise ValueError(
            f"a clip of {num_frames} frames cannot be mapped: CV-VAE clips have "
            f"1 + {time_compression}k frames "
            f"(nearest valid: {lower} or {lower + time_compression})"
        )
    return (num_frames - 1) // time_compression


def mapped_frame_indices(
    num_frames: int,
    mapping: Mapping,
    time_compression: int = 4,
    slice_position: int | None = None,
    generator: torch.Generator | None = None,
) -> list[int]:
    """Frame indices picked by ``first``, ``slice`` or ``random`` (``average`` has no index per group)."""
    groups = _num_groups(num_frames, time_compression)
    if mapping == "first":
        return [0]
    if mapping == "slice":
        position = time_compression if slice_position is None else slice_position
        if not 1 <= position <= time_compression:
            raise ValueError(f"slice_position must be in 1..{time_compression}, got {position}")
        return [0] + [time_compression * j + position for j in range(groups)]
    if mapping == "random":
        offsets = torch.randint(1, time_compression + 1, (groups,), generator=generator).tolist()
        return [0] + [time_compression * j + o for j, o in enumerate(offsets)]
    raise ValueError(f"mapping {mapping!r} has no frame indices; choose one of {MAPPINGS}")


def map_frames(
    video: Tensor,
    mapping: Mapping,
    time_compression: int = 4,
    slice_position: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Apply psi to ``video`` (B C T H W, T = 1 + r*k) -> B C (1+k) H W, or B C 1 H W for ``first``."""
    if video.ndim != 5:
        raise ValueError(f"expected a B C T H W video, got shape {tuple(video.shape)}")
    num_frames = video.shape[2]
    if mapping not in MAPPINGS:
        raise ValueError(f"unknown mapping {mapping!r}; choose one of {MAPPINGS}")
    groups = _num_groups(num_frames, time_compression)
    if mapping == "average":
        rest = video[:, :, 1:].unflatten(2, (groups, time_compression)).mean(dim=3)
        return torch.cat([video[:, :, :1], rest], dim=2)
    indices = mapped_frame_indices(num_frames, mapping, time_compression, slice_position, generator)
    return video[:, :, indices]


def regularized_latents(latents: Tensor, mapping: Mapping) -> Tensor:
    """The latent frames compared with psi(X): all of them, or only frame 0 for ``first``."""
    return latents[:, :, :1] if mapping == "first" else latents


def decode_frames_with_image_vae(image_vae: torch.nn.Module, latents: Tensor) -> Tensor:
    """D_i applied to every latent frame: B c t h w -> B C t H W.

    Uses diffusers ``AutoencoderKL.decode`` (post_quant_conv included). The image VAE is frozen but gradients
    flow through it into the latents, i.e. into the video encoder (decoder regularisation, Eq. 2).
    """
    b, _, t = latents.shape[:3]
    flat = latents.transpose(1, 2).flatten(0, 1)
    images = image_vae.decode(flat).sample
    return images.unflatten(0, (b, t)).transpose(1, 2)


def encode_frames_with_image_vae(
    image_vae: torch.nn.Module,
    frames: Tensor,
    use_mode: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """E_i applied to every frame (quant_conv included): B C t H W -> B c t h w, without gradients.

    The frozen image encoder offers no gradient path to the video VAE's encoder: encoder regularisation
    (Eq. 1) trains only the video decoder.
    """
    b, _, t = frames.shape[:3]
    with torch.no_grad():
        posterior = image_vae.encode(frames.transpose(1, 2).flatten(0, 1)).latent_dist
        latents = posterior.mode() if use_mode else posterior.sample(generator=generator)
    return latents.unflatten(0, (b, t)).transpose(1, 2)
