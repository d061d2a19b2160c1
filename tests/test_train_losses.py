"""Losses, mapping functions psi, the 3D discriminator and the gradient paths of the regularisation terms."""

from __future__ import annotations

import pytest
import torch
from model_tester import tiny_image_vae

from cvvae.models.frames import map_frames, mapped_frame_indices
from cvvae.train.config import LossConfig, RegConfig, TrainConfig
from cvvae.train.discriminator import NLayerDiscriminator3D
from cvvae.train.losses import (
    ReconstructionLoss,
    adaptive_gan_weight,
    build_lpips,
    discriminator_loss,
    hinge_d_loss,
    kl_loss,
)
from cvvae.train.objective import GeneratorObjective, TrainableVideoVAE


def frame_ids(num_frames: int) -> torch.Tensor:
    """A 1x1xTx1x1 video whose pixel value is its frame index."""
    return torch.arange(num_frames, dtype=torch.float32).view(1, 1, num_frames, 1, 1)


# ---------------------------------------------------------------- psi


def test_slice_takes_last_frame_of_each_group_by_default() -> None:
    assert map_frames(frame_ids(17), "slice").flatten().tolist() == [0, 4, 8, 12, 16]
    assert map_frames(frame_ids(9), "slice", slice_position=1).flatten().tolist() == [0, 1, 5]


def test_average_is_group_mean_after_first_frame() -> None:
    assert map_frames(frame_ids(9), "average").flatten().tolist() == [0.0, 2.5, 6.5]


def test_first_keeps_only_frame_zero() -> None:
    out = map_frames(frame_ids(9).expand(2, 3, 9, 4, 4), "first")
    assert out.shape == (2, 3, 1, 4, 4) and out.abs().sum() == 0


def test_random_picks_one_frame_per_group_reproducibly() -> None:
    draws = set()
    for seed in range(20):
        idx = mapped_frame_indices(17, "random", generator=torch.Generator().manual_seed(seed))
        assert idx[0] == 0 and len(idx) == 5
        assert all(4 * j + 1 <= i <= 4 * j + 4 for j, i in enumerate(idx[1:]))
        again = mapped_frame_indices(17, "random", generator=torch.Generator().manual_seed(seed))
        assert idx == again
        draws.add(tuple(idx))
    assert len(draws) > 5  # actually random across seeds


def test_images_map_to_themselves_and_bad_counts_fail() -> None:
    image = torch.randn(2, 3, 1, 8, 8)
    for mapping in ("first", "slice", "average", "random"):
        assert torch.equal(map_frames(image, mapping), image)
    with pytest.raises(ValueError, match="nearest valid: 9 or 13"):
        map_frames(torch.zeros(1, 3, 10, 4, 4), "slice")


# ---------------------------------------------------------------- losses and discriminator


def test_discriminator_gives_patch_logits_for_images_and_clips() -> None:
    disc = NLayerDiscriminator3D(3, 8, 3)
    assert disc(torch.randn(2, 3, 1, 32, 32)).shape[:3] == (2, 1, 1)
    logits = disc(torch.randn(1, 3, 9, 32, 32))
    assert logits.shape[1] == 1 and logits.shape[2] > 1 and logits.shape[-1] > 1


def test_discriminator_learns_to_separate_real_and_fake() -> None:
    torch.manual_seed(0)
    disc = NLayerDiscriminator3D(3, 8, 3)
    opt = torch.optim.Adam(disc.parameters(), lr=1e-3)
    real, fake = torch.rand(2, 3, 5, 16, 16), -torch.rand(2, 3, 5, 16, 16)
    cfg = LossConfig()
    losses = []
    for _ in range(15):
        loss, _ = discriminator_loss(disc, real, fake, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert hinge_d_loss(torch.full((4,), 2.0), torch.full((4,), -2.0)) == 0


def test_adaptive_weight_is_gradient_norm_ratio() -> None:
    w = torch.ones(3, requires_grad=True)
    nll, g = (3.0 * w).sum(), (w * 1.5).sum()
    assert adaptive_gan_weight(nll, g, w).item() == pytest.approx(2.0, rel=1e-3)
    assert adaptive_gan_weight((1e9 * w).sum(), g, w, max_weight=10.0).item() == 10.0


def test_kl_and_nll_normalisation() -> None:
    assert kl_loss(torch.zeros(2, 4, 3, 2, 2), torch.zeros(2, 4, 3, 2, 2)) == 0
    # KL of mean 1, var 1 is 0.5 per element; summed over 4*3*2*2 = 48 elements, per sample.
    assert kl_loss(torch.ones(2, 4, 3, 2, 2), torch.zeros(2, 4, 3, 2, 2)).item() == pytest.approx(24.0)
    rec = ReconstructionLoss(LossConfig(lpips="none"))
    nll, mean_err = rec(torch.zeros(2, 3, 5, 4, 4), torch.ones(2, 3, 5, 4, 4))
    assert mean_err == 1.0 and nll.item() == pytest.approx(3 * 4 * 4)  # summed per frame, mean over 10 frames


def test_missing_lpips_weights_raise_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="cvvae weights lpips"):
        build_lpips("vgg")
    with pytest.raises(FileNotFoundError, match="alexnet-owt-7be5be79.pth"):
        ReconstructionLoss(LossConfig(lpips="alex"))
    assert ReconstructionLoss(LossConfig(lpips="none")).perceptual is None


# ---------------------------------------------------------------- gradient paths (paper Sec. 3.1)


@pytest.fixture(scope="module")
def tiny_pair():
    from cvvae.models import inflate_from_image_vae

    image_vae = tiny_image_vae()
    video_vae = inflate_from_image_vae(image_vae, tile_spatial_size=None)
    return image_vae, video_vae


def _grad_norms(video_vae, image_vae, reg: RegConfig, term: str) -> tuple[float, float]:
    """Gradient norms of the video encoder and decoder from one regularisation term of the objective."""
    cfg = TrainConfig(loss=LossConfig(lpips="none", disc_enabled=False), reg=reg)
    objective = GeneratorObjective(cfg, image_vae)
    model = TrainableVideoVAE(video_vae)
    video = torch.rand(1, 3, 5, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    model.zero_grad()
    losses, _ = objective(model, video, step=0, generator=torch.Generator().manual_seed(1))
    losses.terms[term].backward()
    assert all(p.grad is None for p in image_vae.parameters())  # the image VAE stays frozen
    enc = sum(p.grad.norm().item() for p in video_vae.encoder.parameters() if p.grad is not None)
    dec = sum(p.grad.norm().item() for p in video_vae.decoder.parameters() if p.grad is not None)
    return enc, dec


def test_decoder_regularisation_trains_the_video_encoder(tiny_pair) -> None:
    image_vae, video_vae = tiny_pair
    enc, dec = _grad_norms(video_vae, image_vae, RegConfig(lambda_dec=1.0, lambda_enc=0.0), "reg_dec")
    assert enc > 0 and dec == 0  # gradients reach E_v through the frozen D_i; D_v is not involved


def test_encoder_regularisation_gives_the_video_encoder_no_gradient(tiny_pair) -> None:
    image_vae, video_vae = tiny_pair
    enc, dec = _grad_norms(video_vae, image_vae, RegConfig(lambda_dec=0.0, lambda_enc=1.0), "reg_enc")
    assert enc == 0 and dec > 0  # the frozen E_i offers no path to E_v; only D_v learns


def test_dec_regularisation_on_images_follows_the_flag(tiny_pair) -> None:
    image_vae, video_vae = tiny_pair
    image = torch.rand(2, 3, 1, 16, 16) * 2 - 1
    model = TrainableVideoVAE(video_vae)
    for flag in (True, False):
        cfg = TrainConfig(loss=LossConfig(lpips="none"), reg=RegConfig(apply_dec_to_images=flag))
        losses, _ = GeneratorObjective(cfg, image_vae)(model, image, step=0)
        assert ("reg_dec" in losses.terms) is flag
