"""CVVAEModel: released layout, call surface, temporal windows, causal cache, tiling, dtypes.

The tests both releases share live in ``tests/model_tester.py``; this file adds the SD2.1-compatible release's
own checks and those of the frame and tile helpers.
"""

from __future__ import annotations

import pytest
import torch
from model_tester import DATA, TINY_CVVAE, CVVAETesterMixin, random_video

from cvvae.models import CVVAEModel, check_num_frames, latent_frames, nearest_valid_frames, pixel_frames
from cvvae.models.layers import Upsample3D
from cvvae.models.tiling import blend_weights, run_spatial_tiles, tile_starts


class TestCVVAEModel(CVVAETesterMixin):
    model_class = CVVAEModel
    init_config = TINY_CVVAE
    manifest = DATA / "official_vae3d_state_dict.txt"
    released_subfolder = "vae3d"
    latent_key = "z_channels"
    latent_channels = 4
    other_latent_channels = 16
    slicing_tolerance = 1e-5

    def test_released_config_values(self):
        cfg = CVVAEModel.released_config()
        assert cfg["ch_mult"] == [1, 2, 4, 4] and cfg["en_de_n_frames_a_time"] == 16
        assert CVVAEModel.released_config("vae3d_v1-1") == cfg
        with pytest.raises(ValueError, match="vae3d_sd3"):
            CVVAEModel.released_config("vae3d_sd3")


def test_frame_rules():
    assert latent_frames(17) == 5 and pixel_frames(5) == 17
    assert nearest_valid_frames(16) == (13, 17) and nearest_valid_frames(17) == (17, 17)
    with pytest.raises(ValueError, match="13 or 17"):
        check_num_frames(16)


def test_upsample_time_drops_first_frame():
    up = Upsample3D(4, up_time=True)
    x = torch.randn(1, 4, 3, 2, 2)
    out = up(x)
    assert out.shape == (1, 4, 5, 4, 4)
    # frame 2t comes from the second channel half at input frame t, frame 2t-1 from the first half
    full = up.conv(
        torch.nn.functional.pad(
            torch.nn.functional.interpolate(x, scale_factor=(1, 2, 2)), (0, 0, 0, 0, 1, 1), mode="replicate"
        )
    )
    torch.testing.assert_close(out[:, :, 0], full[:, 4:, 0])
    torch.testing.assert_close(out[:, :, 1], full[:, :4, 1])


def test_tile_layout_and_blend_weights():
    assert tile_starts(600, 576, 448) == [0, 448]
    assert tile_starts(576, 576, 448) == [0]
    torch.testing.assert_close(blend_weights(4), torch.tensor([0.0, 0.25, 0.5, 0.75]))


@pytest.mark.parametrize("direction", ["encode", "decode"])
def test_tiles_blend_back_to_untiled_for_a_translation_equivariant_map(direction):
    # For a map without border effects the blended tiles must reproduce the untiled result exactly:
    # this pins tile offsets, blend weights, blend order and crops (a bug in any of them shows up here).
    x = random_video(3, 80, 72)
    if direction == "encode":
        fn = lambda v: torch.nn.functional.avg_pool3d(v, (1, 8, 8))  # noqa: E731
        kwargs = dict(tile=32, stride=24, out_overlap=1, out_stride=3)
    else:
        x = x[:, :, :, :10, :9]
        fn = lambda v: torch.nn.functional.interpolate(v, scale_factor=(1, 8, 8))  # noqa: E731
        kwargs = dict(tile=4, stride=3, out_overlap=8, out_stride=24)
    torch.testing.assert_close(run_spatial_tiles(fn, x, **kwargs), fn(x), rtol=1e-6, atol=1e-6)
