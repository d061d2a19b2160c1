"""cvvae.models.zoo diffusers_video adapter on tiny random CogVideoX and Wan VAEs."""

from __future__ import annotations

import pytest
import torch

from cvvae.models.zoo import load_autoencoder

TINY = {
    "AutoencoderKLWan": dict(
        base_dim=8, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1, temperal_downsample=[False, True, True]
    ),
    "AutoencoderKLCogVideoX": dict(
        block_out_channels=(8, 8, 8, 8), latent_channels=4, layers_per_block=1, norm_num_groups=4
    ),
}


@pytest.mark.parametrize("class_name", sorted(TINY))
def test_diffusers_video_round_trip(class_name, tmp_path):
    spec = {
        "kind": "diffusers_video",
        "class_name": class_name,
        "random_weights": True,
        "config": TINY[class_name],
    }
    ae = load_autoencoder(spec)
    assert (ae.name, ae.temporal_compression, ae.spatial_compression) == (class_name, 4, 8)
    x = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    z = ae.encode(x)
    assert z.shape == (1, 4, 3, 2, 2)
    assert ae.decode(z, 9).shape == x.shape
    # by path: the class comes from config.json
    ae.module.save_pretrained(tmp_path)
    again = load_autoencoder(f"diffusers_video:{tmp_path}")
    torch.testing.assert_close(again.encode(x), z)
