"""Flicker metrics: injected brightness flicker ranks above the clean sequence; smooth motion scores ~0."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cvvae.metrics.temporal import (
    flow_metrics,
    phase_profile,
    psnr_by_frame_index,
    temporal_difference_error,
    temporal_metrics,
    vbench_flicker_score,
    visibility_mask,
)


def moving_pattern(num_frames: int = 6, size: int = 48, shift: float = 1.0) -> torch.Tensor:
    """A smooth pattern translating ``shift`` pixels per frame to the right, ``1 C T H W`` in [-1, 1]."""
    ys, xs = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    frames = []
    for t in range(num_frames):
        x = xs - shift * t
        r = torch.sin(x / 4.0) * torch.cos(ys / 5.0)
        g = torch.cos(x / 6.0 + ys / 7.0)
        b = torch.sin((x + ys) / 5.0)
        frames.append(torch.stack([r, g, b]) * 0.6)
    return torch.stack(frames, dim=1).unsqueeze(0)


def with_brightness_flicker(video: torch.Tensor, amplitude: float = 0.12) -> torch.Tensor:
    """Alternate the brightness of every other frame (a per-frame offset, as per-frame decoding produces)."""
    offsets = torch.tensor([amplitude if t % 2 else -amplitude for t in range(video.shape[2])])
    return video + offsets.view(1, 1, -1, 1, 1)


def test_identical_reconstruction_has_zero_reference_based_flicker() -> None:
    video = moving_pattern()
    metrics = temporal_metrics(video, video.clone())
    assert metrics["tde"].shape == (1, 5)
    assert torch.all(metrics["tde"] == 0)
    assert torch.all(metrics["tof"] == 0)
    assert torch.allclose(metrics["warp_error"], metrics["warp_error_gt"])


def test_smooth_motion_scores_near_zero_warping_error() -> None:
    video = moving_pattern()
    errors = flow_metrics(video, video)["warp_error"]
    # A 1-pixel translation is warped back almost exactly: error far below one grey level squared ((1/255)^2
    # is 1.5e-5; 1e-4 allows the bilinear interpolation error of the pattern).
    assert torch.all(errors < 1e-4)


def test_brightness_flicker_ranks_above_the_clean_sequence() -> None:
    target = moving_pattern()
    clean = target + 0.01 * torch.randn(target.shape, generator=torch.Generator().manual_seed(0))
    flickering = with_brightness_flicker(clean)
    clean_m, flicker_m = temporal_metrics(clean, target), temporal_metrics(flickering, target)
    for key in ("tde", "warp_error"):
        assert clean_m[key].mean() < flicker_m[key].mean(), key
    assert flicker_m["tde"].mean() > 10 * clean_m["tde"].mean()
    # VBench's score is higher for less flicker; ``flicker`` is the excess frame-to-frame change.
    assert vbench_flicker_score(flickering).mean() < vbench_flicker_score(clean).mean()
    assert flicker_m["flicker"].mean() > 0.05 > abs(clean_m["flicker"].mean())


def test_tof_ranks_motion_jitter_above_smooth_motion() -> None:
    target = moving_pattern(num_frames=5)
    jittered = target.clone()
    jittered[:, :, 2] = torch.roll(target[:, :, 2], shifts=2, dims=-1)  # one frame jumps 2 px
    smooth_tof = flow_metrics(target.clone(), target)["tof"]
    jitter_tof = flow_metrics(jittered, target)["tof"][0]
    assert torch.all(smooth_tof == 0)
    assert jitter_tof[1] > 0.5 and jitter_tof[2] > 0.5  # transitions into and out of the jumped frame


def test_vbench_flicker_is_one_for_a_static_clip_and_drops_with_flicker() -> None:
    static = moving_pattern(shift=0.0)
    assert torch.allclose(vbench_flicker_score(static), torch.ones(1, 5))
    flicker = vbench_flicker_score(with_brightness_flicker(static, amplitude=0.1))
    # Every transition changes brightness by 0.2 in [-1, 1] = 0.1 * 255 grey levels.
    assert torch.allclose(flicker, torch.full((1, 5), 1 - 25.5 / 255), atol=2 / 255)


def test_temporal_difference_error_value_for_a_known_offset() -> None:
    target = moving_pattern()
    pred = target.clone()
    pred[:, :, 3] += 0.2  # frame 3 brighter by 0.1 on [0, 1]: transitions 2->3 and 3->4 are off by 0.1
    tde = temporal_difference_error(pred, target)[0]
    assert tde[2].item() == pytest.approx(0.1, abs=2e-3) and tde[3].item() == pytest.approx(0.1, abs=2e-3)
    assert tde[0].item() == 0 and tde[4].item() == 0


def test_visibility_mask_flags_inconsistent_flow() -> None:
    flow = np.zeros((8, 8, 2), dtype=np.float32)
    assert visibility_mask(flow, flow).all()
    forward = flow.copy()
    forward[..., 0] = 3.0  # forward says 3 px right, backward says no motion: inconsistent
    assert not visibility_mask(flow, forward).any()


def test_psnr_curve_exposes_a_periodic_dip() -> None:
    psnr = np.full((3, 17), 35.0)
    psnr[:, 4::4] = 30.0  # the last frame of every 4-frame latent group is worse
    curve = psnr_by_frame_index(psnr)
    assert curve.shape == (17,)
    profile = phase_profile(curve, period=4)
    assert profile[3] == 30.0 and np.all(profile[:3] == 35.0)


def test_single_frame_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least 2 frames"):
        temporal_metrics(torch.zeros(1, 3, 1, 16, 16), torch.zeros(1, 3, 1, 16, 16))
