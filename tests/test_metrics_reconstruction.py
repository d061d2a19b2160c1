"""Known-value tests of the pinned reconstruction metrics."""

from __future__ import annotations

import math

import pytest
import torch

from cvvae.metrics import (
    PSNR_CAP_DB,
    lpips_per_frame,
    lpips_weights_available,
    psnr_per_frame,
    reconstruction_metrics,
    ssim_per_frame,
)

needs_lpips = pytest.mark.skipif(
    not (lpips_weights_available("alex") and lpips_weights_available("vgg")),
    reason="LPIPS weights not installed: run cvvae weights lpips",
)


def _video(b: int = 2, t: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # Values in [-0.6, 0.6] so that added noise of small sigma is never clipped.
    return torch.rand(b, 3, t, size, size, generator=g) * 1.2 - 0.6


def test_psnr_identical_frames_give_the_documented_cap() -> None:
    x = _video()
    psnr = psnr_per_frame(x, x.clone())
    assert psnr.shape == (2, 3)
    assert torch.all(psnr == PSNR_CAP_DB)


def test_psnr_of_gaussian_noise_matches_the_analytic_value() -> None:
    x = _video(b=1, t=4, size=64)
    sigma_unit = 0.02  # noise std on the [0, 1] scale
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g) * (2 * sigma_unit)
    # Keeps x + noise inside [-1, 1]; the clip is at more than 8 sigma, so the std is unchanged.
    noise = noise.clamp(-0.35, 0.35)
    y = x + noise
    assert y.abs().max() <= 1.0
    expected = 10 * math.log10(1.0 / sigma_unit**2)
    assert torch.allclose(psnr_per_frame(y, x), torch.full((1, 4), expected), atol=0.1)


def test_psnr_clamps_out_of_range_predictions() -> None:
    x = torch.ones(1, 3, 1, 16, 16)
    assert psnr_per_frame(x * 3.0, x).item() == PSNR_CAP_DB


def test_images_are_accepted_as_one_frame_videos() -> None:
    x = _video(b=2, t=1)[:, :, 0]
    assert psnr_per_frame(x, x).shape == (2, 1)
    assert ssim_per_frame(x, x).shape == (2, 1)


def test_ssim_is_one_for_identical_frames_and_drops_with_noise() -> None:
    x = _video()
    assert torch.allclose(ssim_per_frame(x, x), torch.ones(2, 3), atol=1e-6)
    noisy = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    assert torch.all(ssim_per_frame(noisy, x) < 0.99)


def test_ssim_agrees_with_scikit_image_gaussian_ssim() -> None:
    from skimage.metrics import structural_similarity

    x = _video(b=1, t=1, size=48)
    y = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(4))).clamp(-1, 1)

    def unit_hwc(v: torch.Tensor):
        return ((v[0, :, 0] + 1) / 2).permute(1, 2, 0).double().numpy()

    reference = structural_similarity(
        unit_hwc(y),
        unit_hwc(x),
        data_range=1.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        channel_axis=2,
    )
    assert ssim_per_frame(y, x).item() == pytest.approx(reference, abs=1e-3)


def test_per_frame_values_follow_the_frame_that_changed() -> None:
    x = _video(b=1, t=3)
    y = x.clone()
    y[:, :, 1] += 0.2
    psnr = psnr_per_frame(y, x)[0]
    assert psnr[0] == PSNR_CAP_DB and psnr[2] == PSNR_CAP_DB and psnr[1] < 30


def test_mismatched_shapes_and_integer_inputs_are_rejected() -> None:
    x = _video()
    with pytest.raises(ValueError, match="shapes differ"):
        psnr_per_frame(x, x[:, :, :2])
    with pytest.raises(TypeError, match="float tensors"):
        psnr_per_frame(x.to(torch.uint8), x.to(torch.uint8))
    with pytest.raises(ValueError, match="B C T H W"):
        psnr_per_frame(x[0, 0], x[0, 0])


@needs_lpips
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_is_zero_for_identical_frames_and_grows_with_noise(net: str) -> None:
    x = _video(b=1, t=2, size=64)
    assert torch.allclose(lpips_per_frame(x, x, net=net), torch.zeros(1, 2), atol=1e-6)
    g = torch.Generator().manual_seed(3)
    small = lpips_per_frame(x + 0.05 * torch.randn(x.shape, generator=g), x, net=net)
    large = lpips_per_frame(x + 0.3 * torch.randn(x.shape, generator=g), x, net=net)
    assert torch.all(small > 0) and torch.all(large > small)


@needs_lpips
def test_reconstruction_metrics_names_every_backbone() -> None:
    x = _video(b=1, t=2)
    metrics = reconstruction_metrics(x, x)
    assert set(metrics) == {"psnr", "ssim", "lpips_alex", "lpips_vgg"}
    assert all(v.shape == (1, 2) for v in metrics.values())
