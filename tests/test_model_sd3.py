"""CVVAESD3Model (z=16, release ``vae3d_sd3``): released layout, padding and attention numerics, call surface,
temporal windows, causal cache, tiling, dtypes. The tests both releases share: ``tests/model_tester.py``.

``tests/data/official_vae3d_sd3_state_dict.txt`` lists every parameter name and shape of the released
configuration. It was derived by hand from the official module definitions (the weight file is not available
here): ``CVVAESD3Model`` in ``models/modeling_vae.py`` builds ``Encoder3D`` / ``Decoder3D`` of
``models/vae_models3d_sd3.py`` with ``in_channels=3, out_channels=16, block_out_channels=[128, 256, 512, 512],
layers_per_block=2, double_z, mid_block_add_attention, half_3d``; the blocks of ``models/vae_blocks3d_sd3.py``
were then walked in registration order:

* ``ResnetBlock3D``: ``norm1``, ``conv1`` (3x3x3), ``norm2``, ``conv2`` (2D 3x3 with ``half_3d``) and, when
  the width changes, ``conv_shortcut`` (2D 1x1); no ``time_emb_proj`` (``temb_channels=None``);
* ``DownEncoderBlock3D``: ``resnets``, then ``downsamplers.0.conv`` (3x3x3, after every level but the last);
* ``UpDecoderBlock3D``: ``layers_per_block + 1`` ``resnets``, then ``upsamplers.0.conv`` whose output width
  doubles when the block upsamples time (up-blocks 0 and 2);
* ``UNetMidBlock3D``: ``attentions.0`` (diffusers ``Attention`` with one head: ``group_norm``, ``to_q``,
  ``to_k``, ``to_v``, ``to_out.0``, all ``Linear``), then ``resnets.0`` and ``resnets.1``;
* encoder: ``conv_in``, ``down_blocks``, ``mid_block``, ``conv_norm_out``, ``conv_out`` (``2 * 16``
  channels); decoder: ``conv_in``, ``up_blocks`` (registered before ``mid_block``), ``mid_block``,
  ``conv_norm_out``, ``conv_out``.

The listing is written independently of ``cvvae/models/sd3.py``; it totals 69.08M encoder and 112.81M decoder
parameters (paper Table 8: 68M + 114M).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from model_tester import DATA, TINY_CVVAE_SD3, CVVAETesterMixin, read_manifest
from safetensors.torch import load_file, save_file

from cvvae.models import CVVAESD3Model
from cvvae.models.sd3_layers import FrameAttention, Sd3ResnetBlock3D, Sd3Upsample3D, make_sd3_conv

MANIFEST = DATA / "official_vae3d_sd3_state_dict.txt"


class TestCVVAESD3Model(CVVAETesterMixin):
    model_class = CVVAESD3Model
    init_config = TINY_CVVAE_SD3
    manifest = MANIFEST
    released_subfolder = "vae3d_sd3"
    latent_key = "out_channels"
    latent_channels = 16
    other_latent_channels = 4
    slicing_tolerance = 1e-4

    def test_parameter_count_is_paper_table_8(self):
        with torch.device("meta"):
            model = CVVAESD3Model.from_released_config()
        encoder = sum(p.numel() for p in model.encoder.parameters())
        decoder = sum(p.numel() for p in model.decoder.parameters())
        # Paper Table 8 rounds to 68M + 114M; the exact counts are 69.08M + 112.81M.
        assert math.isclose(encoder, 68e6, rel_tol=0.03) and math.isclose(decoder, 114e6, rel_tol=0.03)
        assert math.isclose(encoder + decoder, 182e6, rel_tol=0.005)
        assert encoder + decoder == sum(math.prod(s) for s in read_manifest(MANIFEST).values())

    def test_released_config_values_and_validation(self):
        cfg = CVVAESD3Model.released_config()
        assert cfg["out_channels"] == 16 and cfg["block_out_channels"] == [128, 256, 512, 512]
        with torch.device("meta"):
            model = CVVAESD3Model(**cfg)
        assert model.config.scaling_factor == 1.5305 and model.config.shift_factor == 0.0609
        with pytest.raises(ValueError, match="vae3d_sd3"):
            CVVAESD3Model.released_config("vae3d")
        with pytest.raises(ValueError, match="down_block_types"):
            self.tiny(down_block_types=["DownEncoderBlock2D"] * 4)
        with pytest.raises(ValueError, match="time_n_compress=4"):
            two = dict(down_block_types=["DownEncoderBlock3D"] * 2, up_block_types=["UpDecoderBlock3D"] * 2)
            self.tiny(block_out_channels=(8, 16), **two)
        with pytest.raises(ValueError, match="norm_num_groups"):
            self.tiny(norm_num_groups=3)

    def test_loads_official_config_and_legacy_attention_names(self, tmp_path):
        # An official-style folder: only the release's config keys, and attention weights under the older
        # query/key/value/proj_attn names, which diffusers maps onto to_q/to_k/to_v/to_out.0.
        model = self.tiny()
        model.save_pretrained(tmp_path)
        official = {k: v for k, v in CVVAESD3Model.released_config().items()}
        official.update(block_out_channels=[8, 16, 16, 16], layers_per_block=1, norm_num_groups=4)
        official.update(tile_spatial_size=None, _class_name="CVVAESD3Model")
        (tmp_path / "config.json").write_text(json.dumps(official))
        legacy = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
        weights = load_file(tmp_path / "diffusion_pytorch_model.safetensors")
        renamed = {}
        for key, value in weights.items():
            for new, old in legacy.items():
                key = key.replace(f"attentions.0.{new}.", f"attentions.0.{old}.")
            renamed[key] = value
        assert any(".query." in k for k in renamed)
        save_file(renamed, tmp_path / "diffusion_pytorch_model.safetensors")
        loaded = CVVAESD3Model.from_pretrained(tmp_path).eval()
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key

    @pytest.mark.parametrize("causal_decoder", [False, True])
    def test_decoder_sees_future_latents_only_when_centred(self, causal_decoder):
        model = self.tiny(norm_per_frame=True, causal_decoder=causal_decoder)
        model.set_temporal_chunking(None)
        z = torch.randn(1, 16, 3, 2, 2)
        z2 = z.clone()
        z2[:, :, 2] += 1.0  # the last latent frame decodes to frames 5..8
        with torch.no_grad():
            a, b = model.decode(z).sample, model.decode(z2).sample
        past_unchanged = torch.equal(a[:, :, :5], b[:, :, :5])
        assert past_unchanged == causal_decoder
        assert not torch.allclose(a[:, :, 5:], b[:, :, 5:])


# --- layer numerics -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("stride", [1, (1, 2, 2), (2, 2, 2)])
def test_causal_conv_replicates_space_and_first_frame(stride):
    torch.manual_seed(0)
    conv = make_sd3_conv("causal", 3, 4, 3, stride)
    x = torch.randn(1, 3, 5, 6, 6)
    expected = F.conv3d(F.pad(x, (1, 1, 1, 1, 2, 0), mode="replicate"), conv.weight, conv.bias, stride)
    torch.testing.assert_close(conv(x), expected, rtol=0, atol=0)
    # ... which is not what zero spatial padding gives
    zeros = F.pad(F.pad(x, (1, 1, 1, 1)), (0, 0, 0, 0, 2, 0), mode="replicate")
    assert not torch.allclose(conv(x), F.conv3d(zeros, conv.weight, conv.bias, stride))


def test_centred_conv_replicates_all_edges():
    torch.manual_seed(0)
    conv = make_sd3_conv("centred", 3, 4)
    x = torch.randn(1, 3, 4, 5, 5)
    expected = F.conv3d(F.pad(x, (1,) * 6, mode="replicate"), conv.weight, conv.bias)
    torch.testing.assert_close(conv(x), expected)


def test_upsample_interleaves_channel_halves_and_drops_first_frame():
    torch.manual_seed(0)
    up = Sd3Upsample3D(4, "centred", up_time=True)
    x = torch.randn(1, 4, 3, 2, 2)
    out = up(x)
    assert out.shape == (1, 4, 5, 4, 4)
    padded = F.pad(F.interpolate(x, scale_factor=(1, 2, 2)), (1,) * 6, mode="replicate")
    full = F.conv3d(padded, up.conv.weight, up.conv.bias)
    for t in range(3):  # output frame 2t + n (before the drop) is channel half n at input frame t
        if t > 0:
            torch.testing.assert_close(out[:, :, 2 * t - 1], full[:, :4, t])
        torch.testing.assert_close(out[:, :, 2 * t], full[:, 4:, t])


def test_resnet_block_matches_explicit_formula():
    torch.manual_seed(0)
    block = Sd3ResnetBlock3D(8, 12, "causal", half_3d=True, norm_num_groups=4)
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(2, 8, 3, 5, 5)
    h = F.silu(F.group_norm(x, 4, block.norm1.weight, block.norm1.bias, 1e-6))
    h = F.conv3d(F.pad(h, (1, 1, 1, 1, 2, 0), mode="replicate"), block.conv1.weight, block.conv1.bias)
    h = F.silu(F.group_norm(h, 4, block.norm2.weight, block.norm2.bias, 1e-6))
    frames = h.transpose(1, 2).flatten(0, 1)
    h = F.conv2d(frames, block.conv2.weight, block.conv2.bias, padding=1)
    skip = F.conv2d(x.transpose(1, 2).flatten(0, 1), block.conv_shortcut.weight, block.conv_shortcut.bias)
    expected = (skip + h).reshape(2, 3, 12, 5, 5).transpose(1, 2)
    torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)


def test_frame_attention_is_single_head_per_frame_with_residual():
    torch.manual_seed(0)
    attn = FrameAttention(8, norm_num_groups=4)
    for p in attn.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(2, 8, 3, 4, 5)
    out = attn(x)
    for b in range(2):
        for t in range(3):
            frame = x[b : b + 1, :, t]
            n = F.group_norm(frame, 4, attn.group_norm.weight, attn.group_norm.bias, 1e-6)
            tokens = n.flatten(2).transpose(1, 2)[0]  # (h w) c
            q, k, v = (F.linear(tokens, m.weight, m.bias) for m in (attn.to_q, attn.to_k, attn.to_v))
            mixed = torch.softmax(q @ k.T / math.sqrt(8), dim=-1) @ v
            y = F.linear(mixed, attn.to_out[0].weight, attn.to_out[0].bias).T.reshape(8, 4, 5)
            torch.testing.assert_close(out[b, :, t], frame[0] + y, rtol=1e-5, atol=1e-5)


# --- released weights ---------------------------------------------------------------------------------------
RELEASED = os.environ.get("CVVAE_RELEASED_DIR")


@pytest.mark.gpu
@pytest.mark.skipif(not RELEASED, reason="set CVVAE_RELEASED_DIR to the downloaded AILab-CVC/CV-VAE folder")
def test_released_sd3_weights_load_and_reconstruct():
    """``CVVAE_RELEASED_DIR=/path/to/CV-VAE pytest tests/test_model_sd3.py -m gpu -q -s`` with the
    ``vae3d_sd3`` folder of https://huggingface.co/AILab-CVC/CV-VAE downloaded there."""
    folder = Path(RELEASED)
    if not (folder / "vae3d_sd3").is_dir():
        pytest.skip(f"{folder / 'vae3d_sd3'} not downloaded")
    model, info = CVVAESD3Model.from_pretrained(folder, subfolder="vae3d_sd3", output_loading_info=True)
    assert not any(info.values()), info
    model = model.cuda().eval()
    tt, yy, xx = torch.meshgrid(
        torch.linspace(0, 1, 17), torch.linspace(-1, 1, 640), torch.linspace(-1, 1, 640), indexing="ij"
    )
    x = torch.stack([torch.sin(3 * xx + 2 * tt) * torch.cos(2 * yy), torch.cos(2 * xx * yy + tt), 0.5 * yy])
    x = x[None].cuda()
    with torch.no_grad():
        tiled = model(x).sample
        model.disable_tiling()
        untiled = model(x).sample
    psnr = lambda a, b: (10 * torch.log10(4 / (a - b).pow(2).mean())).item()  # noqa: E731
    print(f"vae3d_sd3: recon PSNR {psnr(untiled, x):.2f} dB, tiled vs untiled {psnr(tiled, untiled):.2f} dB")
    assert psnr(untiled, x) > 25
    assert (tiled - untiled).abs().max() < 0.5
