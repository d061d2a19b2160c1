"""cvvae.models.svd_init: an SVD-style VAE built from an image VAE decodes like it before fine-tuning."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL, AutoencoderKLTemporalDecoder

from cvvae.models.image_vae import build_image_vae
from cvvae.models.svd_init import TemporalDecoderVAE, svd_vae_from_image_vae


def image_vae(seed: int = 0, **overrides) -> AutoencoderKL:
    torch.manual_seed(seed)
    config = dict(
        block_out_channels=(32, 64, 64, 64), layers_per_block=1, latent_channels=4, norm_num_groups=8
    )
    vae = build_image_vae({**config, **overrides}).eval()
    # random init leaves biases and norms near trivial values; perturb them so the copy is really tested
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return vae


def frames(n: int = 6, size: int = 32, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def assert_equivalent(vae: AutoencoderKL, video_vae: AutoencoderKLTemporalDecoder, num_frames: int = 3):
    x = frames()
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mode()
        torch.testing.assert_close(video_vae.encode(x).latent_dist.mode(), z)
        expected = vae.decode(z).sample
        got = video_vae.decode(z, num_frames=num_frames).sample  # two videos of three frames
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_study_config_decodes_like_image_vae():
    vae = image_vae()
    video_vae = svd_vae_from_image_vae(vae)
    assert isinstance(video_vae, AutoencoderKLTemporalDecoder)
    assert video_vae.config.norm_num_groups == 8 and video_vae.config.use_post_quant_conv
    assert_equivalent(vae, video_vae)


def test_svd_like_config_without_quant_convs():
    vae = image_vae(layers_per_block=2, norm_num_groups=32, use_quant_conv=False, use_post_quant_conv=False)
    video_vae = svd_vae_from_image_vae(vae)
    assert video_vae.post_quant_conv is None
    assert_equivalent(vae, video_vae, num_frames=6)


def test_temporal_layers_are_live_and_trainable():
    """The identity init must not be a dead end: temporal weights receive gradients, and once they move the
    decoder mixes neighbouring frames."""
    vae = image_vae()
    video_vae = svd_vae_from_image_vae(vae).train()
    z = vae.encode(frames()).latent_dist.mode().detach()
    video_vae.decode(z, num_frames=3).sample.square().mean().backward()
    block = video_vae.decoder.up_blocks[0].resnets[0]
    assert block.temporal_res_block.conv2.weight.grad.abs().sum() > 0
    assert block.time_mixer.mix_factor.requires_grad
    with torch.no_grad():
        block.temporal_res_block.conv2.weight.normal_(std=0.1)
        video_vae.eval()
        before = video_vae.decode(z, num_frames=3).sample
        z2 = z.clone()
        z2[1] += 1.0  # change frame 1 of the first video only
        after = video_vae.decode(z2, num_frames=3).sample
    assert not torch.allclose(before[0], after[0])  # frame 0 now sees frame 1
    torch.testing.assert_close(before[3:], after[3:])  # the second video is untouched


def test_save_and_reload(tmp_path):
    vae = image_vae()
    svd_vae_from_image_vae(vae).save_pretrained(tmp_path)
    reloaded = TemporalDecoderVAE.from_pretrained(tmp_path).eval()
    assert_equivalent(vae, reloaded)


def test_loads_plain_diffusers_checkpoint(tmp_path):
    torch.manual_seed(0)
    base = AutoencoderKLTemporalDecoder(
        block_out_channels=(32, 64), down_block_types=2 * ("DownEncoderBlock2D",), layers_per_block=2
    ).eval()
    base.save_pretrained(tmp_path)
    ours = TemporalDecoderVAE.from_pretrained(tmp_path).eval()
    z = torch.randn(4, 4, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(ours.decode(z, num_frames=2).sample, base.decode(z, num_frames=2).sample)


def test_rejects_unconvertible_image_vaes():
    with pytest.raises(ValueError, match="not divisible by 32"):
        svd_vae_from_image_vae(image_vae(block_out_channels=(16, 32, 32, 32)))
    with pytest.raises(ValueError, match="act_fn"):
        svd_vae_from_image_vae(image_vae(act_fn="relu"))
