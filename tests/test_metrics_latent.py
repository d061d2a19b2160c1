"""Latent compatibility metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cvvae.metrics import (
    PSNR_CAP_DB,
    decode_latent_frames,
    latent_distance,
    posterior_statistics,
    psnr_per_frame,
)
from cvvae.metrics.stats import frechet_distance, polynomial_mmd


def test_latent_distance_is_zero_for_identical_latents() -> None:
    z = torch.randn(2, 4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    d = latent_distance(z, z.clone())
    assert d["mse"] == 0.0
    assert d["cosine"] == pytest.approx(1.0, abs=1e-9)
    assert d["frechet"] == pytest.approx(0.0, abs=1e-6)
    assert d["num_vectors"] == 2 * 3 * 8 * 8
    for i in range(4):
        assert d[f"mean_diff_c{i}"] == 0.0 and d[f"std_diff_c{i}"] == 0.0


def test_latent_distance_sees_a_shift_and_a_scale() -> None:
    g = torch.Generator().manual_seed(1)
    z_ref = torch.randn(1, 4, 2, 16, 16, generator=g)
    z = z_ref * 2.0 + 0.5
    d = latent_distance(z, z_ref)
    for i in range(4):
        expected_mean_diff = float(z[:, i].mean() - z_ref[:, i].mean())
        assert d[f"mean_diff_c{i}"] == pytest.approx(expected_mean_diff, rel=1e-6)
        assert d[f"std_c{i}"] == pytest.approx(2.0 * d[f"ref_std_c{i}"], rel=1e-6)
    # Fréchet distance of N(mu, S) and N(mu + 0.5, 4 S): ||0.5||^2 * c + Tr(S + 4S - 2 * 2S) = c/4 + Tr(S).
    v_ref = z_ref.movedim(1, -1).reshape(-1, 4).double().numpy()
    mu = v_ref.mean(0)
    cov = np.cov(v_ref, rowvar=False)
    expected = float(np.sum((mu * 2 + 0.5 - mu) ** 2) + np.trace(cov))
    assert d["frechet"] == pytest.approx(expected, rel=1e-6)
    assert d["mse"] > 0 and d["cosine"] < 1


def test_latent_distance_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="latent shapes differ"):
        latent_distance(torch.zeros(1, 4, 3, 4, 4), torch.zeros(1, 4, 5, 4, 4))


def test_frechet_distance_of_known_gaussians() -> None:
    # 1-D: (mu1 - mu2)^2 + s1 + s2 - 2 sqrt(s1 s2)
    value = frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[1.0]]))
    assert value == pytest.approx(4.0 + 4.0 + 1.0 - 4.0)


def test_polynomial_mmd_separates_distributions() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
    shifted = rng.normal(loc=1.0, size=(200, 8))
    same = polynomial_mmd(a, b, num_subsets=10, max_subset_size=100)
    different = polynomial_mmd(a, shifted, num_subsets=10, max_subset_size=100)
    assert abs(same) < 0.05 < different


def _upsample_decoder(latents: torch.Tensor) -> torch.Tensor:
    """A stand-in image decoder: first 3 latent channels, 2x nearest upsampling, tanh."""
    return torch.tanh(F.interpolate(latents[:, :3], scale_factor=2, mode="nearest"))


def _image_decoder_psnr(latents: torch.Tensor, mapped_target: torch.Tensor) -> dict[str, torch.Tensor]:
    """What cvvae.evaluate reports as compat_psnr (per frame): the image decoder on every latent frame
    against psi(X)."""
    return {"psnr": psnr_per_frame(decode_latent_frames(latents, _upsample_decoder), mapped_target)}


def test_image_decoder_compatibility_decodes_each_latent_frame() -> None:
    g = torch.Generator().manual_seed(2)
    latents = torch.randn(1, 4, 3, 8, 8, generator=g)
    target = torch.stack([_upsample_decoder(latents[:, :, i]) for i in range(3)], dim=2)
    metrics = _image_decoder_psnr(latents, target)
    assert metrics["psnr"].shape == (1, 3)
    assert torch.all(metrics["psnr"] == PSNR_CAP_DB)
    target[:, :, 2] = 0.0
    metrics = _image_decoder_psnr(latents, target)
    assert metrics["psnr"][0, 2] < 20 and metrics["psnr"][0, 0] == PSNR_CAP_DB


def test_posterior_statistics_tell_a_rate_limited_code_from_a_rich_one() -> None:
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(4, 4, 8, 8, generator=g)
    rich = posterior_statistics(mean * 2.0, torch.full_like(mean, 2 * np.log(0.01)))
    limited = posterior_statistics(mean * 0.9, torch.full_like(mean, 2 * np.log(0.3)))
    assert rich["posterior_std_median"] == pytest.approx(0.01)
    assert limited["posterior_std_mean"] == pytest.approx(0.3)
    assert rich["mean_std"] == pytest.approx(2.0 * float(mean.double().std()))
    # KL of N(m, s^2) to N(0, 1): 0.5 (m^2 + s^2 - 1) - log s, averaged over elements
    expected = float((0.5 * ((0.9 * mean.double()) ** 2 + 0.09 - 1.0) - np.log(0.3)).mean())
    assert limited["kl_nats_per_element"] == pytest.approx(expected)
    assert rich["kl_nats_per_element"] > limited["kl_nats_per_element"] > 0
    with pytest.raises(ValueError, match="one shape"):
        posterior_statistics(mean, mean[:1])
