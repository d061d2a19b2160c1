"""Scene-cut detection, so that clips cut from real videos never span two shots.

A cut is where consecutive frames differ much more than usual: the mean absolute difference of small
thumbnails jumps above both an absolute threshold and a multiple of the video's median difference, or the
colour histograms barely overlap. Fast motion raises the median too, so it is not mistaken for a cut; a
false positive only shortens a segment, so the thresholds lean towards cutting.
"""

from __future__ import annotations

import cv2
import numpy as np


def _thumbnail(frame: np.ndarray, width: int = 64) -> np.ndarray:
    height = max(1, round(frame.shape[0] * width / frame.shape[1]))
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)


def frame_differences(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per transition ``t -> t+1``: mean absolute difference (0-255) and histogram distance (0-1, total
    variation between 8x8x8 RGB histograms)."""
    thumbs = np.stack([_thumbnail(frame) for frame in frames]).astype(np.float32)
    mad = np.abs(np.diff(thumbs, axis=0)).mean(axis=(1, 2, 3))
    hists = []
    for thumb in thumbs.astype(np.uint8):
        hist = cv2.calcHist([thumb], [0, 1, 2], None, [8, 8, 8], [0, 256] * 3).ravel()
        hists.append(hist / max(hist.sum(), 1.0))
    hist_distance = np.array([0.5 * np.abs(hists[i + 1] - hists[i]).sum() for i in range(len(hists) - 1)])
    return mad, hist_distance


def detect_cuts(
    frames: np.ndarray, mad_threshold: float = 15.0, median_factor: float = 5.0, hist_threshold: float = 0.2
) -> list[int]:
    """Indices ``t`` where a new shot starts (frame ``t`` differs from ``t - 1``)."""
    if len(frames) < 2:
        return []
    mad, hist_distance = frame_differences(frames)
    level = max(mad_threshold, median_factor * float(np.median(mad)))
    is_cut = (mad > level) | (hist_distance > hist_threshold)
    return [int(t) + 1 for t in np.flatnonzero(is_cut)]


def shot_segments(num_frames: int, cuts: list[int]) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges between cuts."""
    bounds = [0, *sorted(c for c in cuts if 0 < c < num_frames), num_frames]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
