"""Frame-count rules of CV-VAE.

The causal encoder keeps the first frame on its own and compresses every following group of
``time_compress`` frames into one latent frame, so a video must have ``1 + time_compress * k`` frames and
gives ``1 + k`` latent frames. A single image (one frame) is the ``k = 0`` case.
"""

from __future__ import annotations


def _check_compress(time_compress: int) -> None:
    if time_compress < 1:
        raise ValueError(f"time_compress must be >= 1, got {time_compress}")


def is_valid_num_frames(num_frames: int, time_compress: int = 4) -> bool:
    """True when ``num_frames`` is ``1 + time_compress * k`` with ``k >= 0``."""
    _check_compress(time_compress)
    return num_frames >= 1 and (num_frames - 1) % time_compress == 0


def nearest_valid_frames(num_frames: int, time_compress: int = 4) -> tuple[int, int]:
    """The valid counts just below (or equal) and just above ``num_frames`` (the lower one is at least 1)."""
    _check_compress(time_compress)
    if num_frames <= 1:
        return 1, 1 + time_compress if num_frames < 1 else 1
    lower = 1 + (num_frames - 1) // time_compress * time_compress
    upper = lower if lower == num_frames else lower + time_compress
    return lower, upper


def check_num_frames(num_frames: int, time_compress: int = 4) -> int:
    """Return ``num_frames`` if it is ``1 + time_compress * k``; otherwise raise a ``ValueError`` that names
    the nearest valid counts, so the caller knows how many frames to trim or pad to."""
    if not is_valid_num_frames(num_frames, time_compress):
        lower, upper = nearest_valid_frames(num_frames, time_compress)
        nearest = f"{lower} or {upper}" if lower != upper else f"{lower}"
        raise ValueError(
            f"CV-VAE needs 1 + {time_compress}k frames (1, {1 + time_compress}, {1 + 2 * time_compress}, "
            f"...), got {num_frames}; the nearest valid counts are {nearest}. "
            "Trim or pad the clip to one of them."
        )
    return num_frames


def latent_frames(num_frames: int, time_compress: int = 4) -> int:
    """Latent frames produced by encoding ``num_frames`` pixel frames (validated)."""
    check_num_frames(num_frames, time_compress)
    return 1 + (num_frames - 1) // time_compress


def pixel_frames(num_latent_frames: int, time_compress: int = 4) -> int:
    """Pixel frames produced by decoding ``num_latent_frames`` latent frames in video mode."""
    _check_compress(time_compress)
    if num_latent_frames < 1:
        raise ValueError(f"need at least one latent frame, got {num_latent_frames}")
    return 1 + (num_latent_frames - 1) * time_compress
