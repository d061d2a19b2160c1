"""Temporal consistency (flicker) metrics for reconstructed videos.

All take float videos ``B C T H W`` in [-1, 1] and return one value per transition ``t-1 -> t``, shape
``B (T-1)``, unless said otherwise. Reference-based metrics compare the reconstruction's frame-to-frame change
with the ground truth's, so that real motion is not counted as flicker:

- ``temporal_difference_error``: mean |(x̂_t - x̂_{t-1}) - (x_t - x_{t-1})| on [0, 1]; needs no weights.
- ``tof``: TecoGAN's tOF, mean absolute difference between the optical flow of consecutive reconstructed
  frames and that of the ground truth (pixels). It sees motion jitter and wobble, but Farneback flow is nearly
  blind to a global brightness change, so brightness flicker shows up in the other metrics, not in tOF.
- ``warping_error``: Lai et al. (ECCV 2018): flow computed on the ground truth, reconstructed frame t-1 warped
  onto frame t, squared error on [0, 1] averaged over pixels that a forward-backward check marks as visible.
- ``vbench_flicker_score``: VBench's temporal_flickering, (255 - mean |f_t - f_{t-1}|) / 255 on uint8 frames;
  reference-free and only meaningful for static clips (1 = no change at all).

``psnr_by_frame_index`` and ``phase_profile`` turn per-frame PSNR into a curve over frame index, where chunk
(17-frame windows) and latent-group (4-frame) boundaries show up as periodic dips.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from cvvae.metrics.reconstruction import check_pair, to_unit_range

FARNEBACK_PARAMS = {
    "pyr_scale": 0.5,
    "levels": 3,
    "winsize": 15,
    "iterations": 3,
    "poly_n": 5,
    "poly_sigma": 1.2,
    "flags": 0,
}
FLOW_IMPL = (
    "OpenCV calcOpticalFlowFarneback on uint8 grey frames "
    "(pyr_scale 0.5, levels 3, winsize 15, iterations 3, poly_n 5, poly_sigma 1.2)"
)
TOF_IMPL = f"tOF: mean |flow(recon) - flow(gt)| per component, pixels; {FLOW_IMPL}"
WARP_IMPL = (
    "warping error (Lai et al. 2018): gt flow t->t-1, recon t-1 warped to t (bilinear), MSE on [0,1] "
    "over visible pixels; occluded: |f_b + f_f(x+f_b)|^2 > 0.01 (|f_b|^2 + |f_f(x+f_b)|^2) + 0.5 "
    "or outside the frame"
)
FLICKER_IMPL = "VBench temporal_flickering: (255 - mean |f_t - f_(t-1)|) / 255 on uint8 RGB frames"
TDE_IMPL = "temporal-difference error: mean |(recon_t - recon_(t-1)) - (gt_t - gt_(t-1))| on [0,1]"


def _need_two_frames(video: Tensor) -> None:
    if video.shape[2] < 2:
        raise ValueError(f"temporal metrics need at least 2 frames, got T={video.shape[2]}")


def to_uint8_frames(video: Tensor) -> np.ndarray:
    """``B C T H W`` in [-1, 1] -> uint8 ``B T H W C`` (rounded, as a saved video would be)."""
    unit = to_unit_range(video.detach()).cpu()
    return (unit * 255.0).round().to(torch.uint8).permute(0, 2, 3, 4, 1).numpy()


def _grey(frame: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.shape[-1] == 3 else frame[..., 0]


def optical_flow(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """Dense flow ``H W 2`` (x, y) such that ``nxt(p + flow(p))`` ≈ ``prev(p)`` (uint8 ``H W C`` frames)."""
    import cv2

    return cv2.calcOpticalFlowFarneback(_grey(prev), _grey(nxt), None, **FARNEBACK_PARAMS)


def _sample_grid(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return xs + flow[..., 0], ys + flow[..., 1]


def _warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample ``image`` at ``p + flow(p)`` (bilinear, border replicated)."""
    import cv2

    map_x, map_y = _sample_grid(flow)
    return cv2.remap(image, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def visibility_mask(flow_backward: np.ndarray, flow_forward: np.ndarray) -> np.ndarray:
    """Forward-backward consistency (Sundaram et al. 2010, as used by Lai et al. 2018): True where a pixel of
    frame t is visible in frame t-1. ``flow_backward`` maps t -> t-1, ``flow_forward`` maps t-1 -> t."""
    h, w = flow_backward.shape[:2]
    forward_at_target = _warp(flow_forward, flow_backward)
    round_trip = flow_backward + forward_at_target
    magnitude = (flow_backward**2).sum(-1) + (forward_at_target**2).sum(-1)
    consistent = (round_trip**2).sum(-1) <= 0.01 * magnitude + 0.5
    map_x, map_y = _sample_grid(flow_backward)
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    return consistent & inside


def temporal_difference_error(pred: Tensor, target: Tensor) -> Tensor:
    """Mean |Δpred - Δtarget| per transition on [0, 1], ``B (T-1)``."""
    pred, target = check_pair(pred, target)
    _need_two_frames(pred)
    p, g = to_unit_range(pred).double(), to_unit_range(target).double()
    diff = (p[:, :, 1:] - p[:, :, :-1]) - (g[:, :, 1:] - g[:, :, :-1])
    return diff.abs().mean(dim=(1, 3, 4)).float()


def vbench_flicker_score(video: Tensor) -> Tensor:
    """VBench temporal_flickering per transition, ``B (T-1)``; 1 means identical consecutive frames."""
    _need_two_frames(video)
    frames = torch.from_numpy(to_uint8_frames(video)).double()
    mae = (frames[:, 1:] - frames[:, :-1]).abs().mean(dim=(2, 3, 4))
    return ((255.0 - mae) / 255.0).float()


def _flow_metrics_one_clip(pred: np.ndarray, target: np.ndarray) -> dict[str, list[float]]:
    """tOF and warping errors of one clip (uint8 ``T H W C``), sharing the ground-truth flows."""
    out: dict[str, list[float]] = {"tof": [], "warp_error": [], "warp_error_gt": []}
    pred_unit = pred.astype(np.float32) / 255.0
    target_unit = target.astype(np.float32) / 255.0
    for t in range(1, target.shape[0]):
        flow_gt = optical_flow(target[t - 1], target[t])
        flow_pred = optical_flow(pred[t - 1], pred[t])
        out["tof"].append(float(np.abs(flow_pred - flow_gt).mean()))
        flow_backward = optical_flow(target[t], target[t - 1])
        visible = visibility_mask(flow_backward, flow_gt)
        for key, frames in (("warp_error", pred_unit), ("warp_error_gt", target_unit)):
            warped_prev = _warp(frames[t - 1], flow_backward)
            squared = ((frames[t] - warped_prev) ** 2).mean(-1)
            out[key].append(float(squared[visible].mean()) if visible.any() else float("nan"))
    return out


def flow_metrics(pred: Tensor, target: Tensor) -> dict[str, Tensor]:
    """``tof``, ``warp_error`` (reconstruction) and ``warp_error_gt`` (the ground truth warped with its own
    flow: the floor set by flow errors and occlusions), each ``B (T-1)``. NaN where no pixel is visible."""
    pred, target = check_pair(pred, target)
    _need_two_frames(pred)
    p, g = to_uint8_frames(pred), to_uint8_frames(target)
    per_clip = [_flow_metrics_one_clip(p[b], g[b]) for b in range(p.shape[0])]
    return {key: torch.tensor([clip[key] for clip in per_clip]) for key in per_clip[0]}


def tof(pred: Tensor, target: Tensor) -> Tensor:
    """TecoGAN tOF per transition, ``B (T-1)``."""
    return flow_metrics(pred, target)["tof"]


def warping_error(pred: Tensor, target: Tensor) -> Tensor:
    """Lai et al. warping error of the reconstruction per transition, ``B (T-1)``."""
    return flow_metrics(pred, target)["warp_error"]


def temporal_metrics(pred: Tensor, target: Tensor) -> dict[str, Tensor]:
    """All temporal metrics, each ``B (T-1)``: ``tde``, ``tof``, ``warp_error``, ``warp_error_gt``,
    ``vbench_flicker`` (VBench score of the reconstruction), ``vbench_flicker_gt`` (of the ground truth) and
    ``flicker`` = mean |x̂_t - x̂_{t-1}| - mean |x_t - x_{t-1}| on [0, 1] (the reconstruction's frame-to-frame
    change beyond the ground truth's, = ``vbench_flicker_gt - vbench_flicker``; closer to 0 is better)."""
    pred, target = check_pair(pred, target)
    metrics = {"tde": temporal_difference_error(pred, target)}
    metrics.update(flow_metrics(pred, target))
    metrics["vbench_flicker"] = vbench_flicker_score(pred)
    metrics["vbench_flicker_gt"] = vbench_flicker_score(target)
    metrics["flicker"] = metrics["vbench_flicker_gt"] - metrics["vbench_flicker"]
    return metrics


def psnr_by_frame_index(per_frame_psnr: Tensor | np.ndarray) -> np.ndarray:
    """Mean PSNR at each frame index over clips (``B T`` -> ``T``); dips expose chunk and tile boundaries."""
    values = np.asarray(per_frame_psnr, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"expected per-frame PSNR of shape B T, got {values.shape}")
    return values.mean(axis=0)


def phase_profile(curve: np.ndarray, period: int = 4, first_frame_alone: bool = True) -> np.ndarray:
    """Mean of ``curve`` at each phase ``(index - 1) % period`` (or ``index % period``), shape ``period``.

    With CV-VAE's causal grouping (frame 0 alone, then groups of 4) the phase of frame ``i >= 1`` is
    ``(i - 1) % 4``; a flat profile means no periodic quality pattern. Use ``period=16`` for 17-frame windows.
    """
    curve = np.asarray(curve, dtype=np.float64)
    start = 1 if first_frame_alone else 0
    indices = np.arange(start, curve.shape[0])
    if indices.size == 0:
        raise ValueError("the curve is too short for a phase profile")
    phases = (indices - start) % period
    return np.array(
        [curve[indices[phases == k]].mean() if (phases == k).any() else np.nan for k in range(period)]
    )
