"""Camera-motion clips from still photographs: smooth pans, zooms and rotations of a background, plus
foreground layers cut from other photographs that move on their own paths (global and local motion).

Each frame is a sub-pixel affine warp (bicubic) of a larger source, rendered at ``supersample`` times the
output size and reduced with area averaging, so that texture moves smoothly without aliasing. Everything is a
function of the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MOTION_TYPES = ("pan", "zoom", "rotate", "mixed")


@dataclass(frozen=True)
class Trajectory:
    """Per-frame centre (source pixels), scale (source pixels per output pixel) and angle (degrees)."""

    center: np.ndarray  # T x 2 (x, y)
    scale: np.ndarray  # T
    angle: np.ndarray  # T


def _ease(num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Monotone 0 -> 1 progress with a random gentle acceleration or deceleration."""
    t = np.linspace(0.0, 1.0, num_frames)
    bend = rng.uniform(-0.6, 0.6)
    return t + bend * t * (1.0 - t)


def camera_trajectory(
    source_hw: tuple[int, int],
    out_size: int,
    num_frames: int,
    rng: np.random.Generator,
    speed: tuple[float, float] = (0.2, 2.0),
    motion: str | None = None,
) -> tuple[Trajectory, str]:
    """A smooth camera path over a source of ``source_hw`` pixels viewed through an ``out_size`` window.

    ``speed`` bounds the mean pan speed in output pixels per frame; zooms change the scale by up to 1.6x and
    rotations turn by up to 20 degrees over the clip. The window (rotated) stays inside the source.
    """
    motion = motion or str(rng.choice(MOTION_TYPES))
    if motion not in MOTION_TYPES:
        raise ValueError(f"motion must be one of {MOTION_TYPES}, got {motion!r}")
    height, width = source_hw
    steps = max(num_frames - 1, 1)
    turn = rng.uniform(5.0, 20.0) * rng.choice([-1.0, 1.0]) if motion in ("rotate", "mixed") else 0.0
    angle0 = rng.uniform(-5.0, 5.0)
    # Half-extent of the (possibly rotated) window per unit scale; the largest scale leaves 20 % room to pan.
    extent = out_size * np.sqrt(2.0) / 2.0
    max_scale = 0.8 * (min(height, width) / 2.0 - 2.0) / extent
    if max_scale <= 0:
        raise ValueError(f"source {width}x{height} is too small for a {out_size}px window")
    zoom = rng.uniform(1.2, 1.6) if motion in ("zoom", "mixed") else 1.0
    high_scale = rng.uniform(0.6, 1.0) * max_scale
    scale0, scale1 = (
        (high_scale / zoom, high_scale) if rng.random() < 0.5 else (high_scale, high_scale / zoom)
    )
    pan_speed = rng.uniform(*speed) if motion in ("pan", "mixed") else rng.uniform(0.0, 0.3)
    direction = rng.uniform(0.0, 2.0 * np.pi)

    progress = _ease(num_frames, rng)
    scale = scale0 + (scale1 - scale0) * progress
    angle = angle0 + turn * progress
    radius = float(scale.max()) * extent + 2.0
    low = np.array([radius, radius])
    high = np.array([width - radius, height - radius])
    travel = pan_speed * steps * float(scale.mean()) * np.array([np.cos(direction), np.sin(direction)])
    travel = np.clip(travel, -(high - low), high - low)  # never longer than the room available
    start = low + rng.random(2) * (high - low - np.abs(travel)) + np.maximum(-travel, 0.0)
    # A slight sideways bow makes pans less mechanical.
    normal = np.array([-travel[1], travel[0]]) / (np.linalg.norm(travel) + 1e-9)
    bow = rng.uniform(-0.1, 0.1) * np.linalg.norm(travel) * np.sin(np.pi * np.linspace(0.0, 1.0, num_frames))
    center = start + progress[:, None] * travel + bow[:, None] * normal
    center = np.clip(center, low, high)
    return Trajectory(center=center, scale=scale, angle=angle), motion


def _view_matrix(center: np.ndarray, scale: float, angle_deg: float, out_size: int) -> np.ndarray:
    """2x3 matrix from output pixels to source pixels (for ``WARP_INVERSE_MAP``)."""
    theta = np.deg2rad(angle_deg)
    rotation = scale * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    half = (out_size - 1) / 2.0
    offset = center - rotation @ np.array([half, half])
    return np.hstack([rotation, offset[:, None]])


def blob_mask(size: int, rng: np.random.Generator, feather: float = 1.5) -> np.ndarray:
    """Soft float mask (0-1) of an ellipse whose radius wobbles with a few low harmonics."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    cx = cy = (size - 1) / 2.0
    theta = np.arctan2(yy - cy, xx - cx)
    aspect = rng.uniform(0.6, 1.0)
    tilt = rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(tilt) + (yy - cy) * np.sin(tilt)
    v = (-(xx - cx) * np.sin(tilt) + (yy - cy) * np.cos(tilt)) / aspect
    radius = np.hypot(u, v)
    wobble = 1.0 + sum(
        rng.uniform(0.0, 0.12) * np.sin(k * theta + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5)
    )
    limit = 0.42 * size * wobble
    mask = (radius <= limit).astype(np.float32)
    return cv2.GaussianBlur(mask, (0, 0), feather)


@dataclass(frozen=True)
class ForegroundLayer:
    """A masked patch with its own path (output pixels at the supersampled size)."""

    patch: np.ndarray  # P x P x 3 float32
    mask: np.ndarray  # P x P float32
    center: np.ndarray  # T x 2
    angle: np.ndarray  # T
    scale: np.ndarray  # T


def foreground_layer(
    image: np.ndarray,
    canvas: int,
    num_frames: int,
    rng: np.random.Generator,
    speed: tuple[float, float],
    size_range: tuple[float, float] = (0.25, 0.45),
) -> ForegroundLayer:
    """Cut a blob from ``image`` and give it a straight, eased path across a ``canvas``-pixel frame."""
    size = int(canvas * rng.uniform(*size_range))
    height, width = image.shape[:2]
    side = int(min(height, width) * rng.uniform(0.3, 0.7))
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    patch = cv2.resize(
        image[top : top + side, left : left + side], (size, size), interpolation=cv2.INTER_AREA
    )
    mask = blob_mask(size, rng, feather=max(1.0, size / 40))
    steps = max(num_frames - 1, 1)
    velocity = rng.uniform(*speed) * 1.5  # objects move faster than the camera, and against it at times
    direction = rng.uniform(0.0, 2.0 * np.pi)
    travel = velocity * steps * np.array([np.cos(direction), np.sin(direction)])
    start = rng.uniform(0.25, 0.75, size=2) * canvas - travel / 2.0
    progress = _ease(num_frames, rng)
    center = start + progress[:, None] * travel
    angle = rng.uniform(-10, 10) + rng.uniform(-15, 15) * progress
    scale = 1.0 + rng.uniform(-0.15, 0.15) * progress
    return ForegroundLayer(patch.astype(np.float32), mask, center, angle, scale)


def _composite(frame: np.ndarray, layer: ForegroundLayer, t: int) -> None:
    canvas = frame.shape[0]
    matrix = cv2.getRotationMatrix2D(
        (layer.patch.shape[1] / 2.0, layer.patch.shape[0] / 2.0), float(layer.angle[t]), float(layer.scale[t])
    )
    matrix[:, 2] += layer.center[t] - np.array([layer.patch.shape[1] / 2.0, layer.patch.shape[0] / 2.0])
    size = (canvas, canvas)
    patch = cv2.warpAffine(
        layer.patch, matrix, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101
    )
    alpha = cv2.warpAffine(layer.mask, matrix, size, flags=cv2.INTER_LINEAR, borderValue=0.0)[..., None]
    frame *= 1.0 - alpha
    frame += alpha * patch


def render_camera_clip(
    background: np.ndarray,
    foregrounds: list[np.ndarray],
    out_size: int,
    num_frames: int,
    rng: np.random.Generator,
    speed: tuple[float, float] = (0.2, 2.0),
    supersample: int = 2,
) -> tuple[np.ndarray, str]:
    """uint8 ``T H W 3`` clip of ``background`` seen by a moving camera, with one layer per image in
    ``foregrounds``; returns the clip and the motion type."""
    render = out_size * supersample
    # Resize the source so that the camera's scale is near one source pixel per rendered pixel.
    short = min(background.shape[:2])
    factor = 3.0 * render / short
    source = cv2.resize(
        background,
        (round(background.shape[1] * factor), round(background.shape[0] * factor)),
        interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC,
    ).astype(np.float32)
    trajectory, motion = camera_trajectory(
        source.shape[:2], render, num_frames, rng, (speed[0] * supersample, speed[1] * supersample)
    )
    layers = [
        foreground_layer(image, render, num_frames, rng, (speed[0] * supersample, speed[1] * supersample))
        for image in foregrounds
    ]
    frames = np.empty((num_frames, out_size, out_size, 3), dtype=np.uint8)
    for t in range(num_frames):
        matrix = _view_matrix(trajectory.center[t], trajectory.scale[t], trajectory.angle[t], render)
        frame = cv2.warpAffine(
            source,
            matrix,
            (render, render),
            flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT_101,
        )
        for layer in layers:
            _composite(frame, layer, t)
        small = cv2.resize(frame, (out_size, out_size), interpolation=cv2.INTER_AREA)
        frames[t] = np.clip(np.rint(small), 0, 255).astype(np.uint8)
    return frames, motion
