"""CVVAESD3Model (z=16, release ``vae3d_sd3``): released layout, padding and attention numerics, call surface,
temporal windows, causal cache, tiling, dtypes.

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

import ast
import json
import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from cvvae.models import CVVAESD3Model
from cvvae.models.base import CVVAEBase
from cvvae.models.sd3_layers import FrameAttention, Sd3ResnetBlock3D, Sd3Upsample3D, make_sd3_conv

MANIFEST = Path(__file__).parent / "data" / "official_vae3d_sd3_state_dict.txt"


def tiny(**overrides) -> CVVAESD3Model:
    torch.manual_seed(0)
    cfg = dict(
        block_out_channels=(8, 16, 16, 16), layers_per_block=1, norm_num_groups=4, tile_spatial_size=None
    )
    return CVVAESD3Model(**{**cfg, **overrides}).eval()


def video(t: int = 9, h: int = 16, w: int = 16, b: int = 1, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, t, h, w, generator=g) * 2 - 1


def read_manifest() -> dict[str, list[int]]:
    manifest = {}
    for line in MANIFEST.read_text().splitlines():
        name, shape = line.split(" ", 1)
        manifest[name] = list(ast.literal_eval(shape))
    return manifest


# --- layout -------------------------------------------------------------------------------------------------
def test_released_state_dict_matches_manifest():
    with torch.device("meta"):
        model = CVVAESD3Model.from_released_config()
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    manifest = read_manifest()
    assert ours == manifest
    assert list(ours) == list(manifest)  # registration order too


def test_parameter_count_is_paper_table_8():
    with torch.device("meta"):
        model = CVVAESD3Model.from_released_config()
    encoder = sum(p.numel() for p in model.encoder.parameters())
    decoder = sum(p.numel() for p in model.decoder.parameters())
    # Paper Table 8 rounds to 68M + 114M; the exact counts are 69.08M + 112.81M.
    assert math.isclose(encoder, 68e6, rel_tol=0.03) and math.isclose(decoder, 114e6, rel_tol=0.03)
    assert math.isclose(encoder + decoder, 182e6, rel_tol=0.005)
    assert encoder + decoder == sum(math.prod(s) for s in read_manifest().values())


def test_released_config_is_accepted_unchanged_and_validated():
    cfg = CVVAESD3Model.released_config()
    assert cfg["out_channels"] == 16 and cfg["block_out_channels"] == [128, 256, 512, 512]
    with torch.device("meta"):
        model = CVVAESD3Model(**cfg)
    assert model.latent_channels == 16 and model.temporal_compression == 4
    assert model.temporal_chunking == "official" and model.use_tiling
    assert model.config.scaling_factor == 1.5305 and model.config.shift_factor == 0.0609
    with pytest.raises(ValueError, match="vae3d_sd3"):
        CVVAESD3Model.released_config("vae3d")
    with pytest.raises(ValueError, match="down_block_types"):
        tiny(down_block_types=["DownEncoderBlock2D"] * 4)
    with pytest.raises(ValueError, match="time_n_compress=4"):
        two = dict(down_block_types=["DownEncoderBlock3D"] * 2, up_block_types=["UpDecoderBlock3D"] * 2)
        tiny(block_out_channels=(8, 16), **two)
    with pytest.raises(ValueError, match="norm_num_groups"):
        tiny(norm_num_groups=3)


@pytest.mark.parametrize("subfolder", [None, "vae3d_sd3"])
def test_save_load_round_trip(tmp_path, subfolder):
    model = tiny()
    model.save_pretrained(tmp_path / subfolder if subfolder else tmp_path)
    loaded, info = CVVAESD3Model.from_pretrained(tmp_path, subfolder=subfolder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    saved = json.loads((tmp_path / (subfolder or "") / "config.json").read_text())
    assert saved["_class_name"] == "CVVAESD3Model" and saved["out_channels"] == 16
    x = video(5)
    with torch.no_grad():
        assert torch.equal(model(x).sample, loaded.eval()(x).sample)


def test_loads_official_config_and_legacy_attention_names(tmp_path):
    # An official-style folder: only the release's config keys, and attention weights under the older
    # query/key/value/proj_attn names, which diffusers maps onto to_q/to_k/to_v/to_out.0.
    model = tiny()
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


# --- call surface -------------------------------------------------------------------------------------------
def test_shapes_and_posterior():
    model = tiny()
    assert isinstance(model, CVVAEBase)
    with torch.no_grad():
        for t, lt in [(1, 1), (5, 2), (9, 3)]:
            post = model.encode(video(t)).latent_dist
            assert post.mean.shape == (1, 16, lt, 2, 2)
            assert model.decode(post.mode()).sample.shape == (1, 3, t, 16, 16)
        a = post.sample(torch.Generator().manual_seed(3))
        assert torch.equal(a, post.sample(torch.Generator().manual_seed(3))) and not torch.equal(a, post.mean)
        assert post.kl().shape == (1,)


def test_frame_and_channel_errors():
    model = tiny()
    with pytest.raises(ValueError, match="5 or 9"):
        model.encode(video(8))
    with pytest.raises(ValueError, match="16 latent channels, got 4"):
        model.decode(torch.zeros(1, 4, 2, 2, 2))
    with pytest.raises(ValueError, match="input channels"):
        model.encode(torch.zeros(1, 4, 5, 16, 16))


def test_image_mode():
    model = tiny()
    images = video(1)[:, :, 0].repeat(3, 1, 1, 1)
    images[1] *= -0.5
    with torch.no_grad():
        flat = model.encode(images).latent_dist.mode()  # 4D images in, B c h w latents out
        assert torch.equal(flat, model.encode(images.unsqueeze(2)).latent_dist.mode()[:, :, 0])
        out = model.decode(flat).sample  # 4D latents in, B C H W images out
        per_image = torch.cat([model.decode(flat[i : i + 1, :, None]).sample[:, :, 0] for i in range(3)])
    assert out.shape == (3, 3, 16, 16)
    torch.testing.assert_close(out, per_image)


def test_decode_groups_4d_latents_into_videos_of_num_frames():
    model = tiny()
    z = torch.randn(2, 16, 3, 2, 2)
    flat = z.transpose(1, 2).flatten(0, 1)
    with torch.no_grad():
        video = model.decode(z).sample  # B C 9 H W
        # 4D latents give 4D frames, (B T) C H W, as diffusers' SVD VAE does
        torch.testing.assert_close(
            model.decode(flat, num_frames=3).sample, video.transpose(1, 2).flatten(0, 1)
        )


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


# --- time ---------------------------------------------------------------------------------------------------
def test_official_windows_equal_explicit_concatenation():
    model = tiny()
    model.set_temporal_chunking("official", chunk_frames=4)
    x = video(9)
    with torch.no_grad():
        z = model.encode(x).latent_dist.mode()
        enc = model.encoder
        expected = torch.cat([enc(x[:, :, 0:5]), enc(x[:, :, 4:9])[:, :, 1:]], dim=2).chunk(2, dim=1)[0]
        torch.testing.assert_close(z, expected, rtol=0, atol=0)
        out = model.decode(z).sample
        dec = model.decoder
        expected = torch.cat([dec(z[:, :, 0:2]), dec(z[:, :, 1:3])[:, :, 1:]], dim=2)
        torch.testing.assert_close(out, expected, rtol=0, atol=0)
        model.set_temporal_chunking(None)
        assert not torch.allclose(model.encode(x).latent_dist.mode(), z)


def test_encoder_is_causal_across_windows():
    model = tiny()
    model.set_temporal_chunking("official", chunk_frames=4)
    x = video(13)
    y = x.clone()
    y[:, :, 6:] = torch.rand_like(y[:, :, 6:])
    with torch.no_grad():
        zx, zy = model.encode(x).latent_dist.mode(), model.encode(y).latent_dist.mode()
    torch.testing.assert_close(zx[:, :, :2], zy[:, :, :2], rtol=0, atol=0)
    assert not torch.allclose(zx[:, :, 2:], zy[:, :, 2:])


def test_encoder_is_frame_causal_with_per_frame_norm():
    model = tiny(norm_per_frame=True)
    model.set_temporal_chunking(None)
    x = video(13)
    y = x.clone()
    y[:, :, 5] += 0.5  # latent 1 is built from frames 1..4, latent 2 from 5..8
    with torch.no_grad():
        zx, zy = model.encode(x).latent_dist.mode(), model.encode(y).latent_dist.mode()
    torch.testing.assert_close(zx[:, :, :2], zy[:, :, :2], rtol=0, atol=0)
    assert not torch.allclose(zx[:, :, 2], zy[:, :, 2])


@pytest.mark.parametrize("causal_decoder", [False, True])
def test_decoder_sees_future_latents_only_when_centred(causal_decoder):
    model = tiny(norm_per_frame=True, causal_decoder=causal_decoder)
    model.set_temporal_chunking(None)
    z = torch.randn(1, 16, 3, 2, 2)
    z2 = z.clone()
    z2[:, :, 2] += 1.0  # the last latent frame decodes to frames 5..8
    with torch.no_grad():
        a, b = model.decode(z).sample, model.decode(z2).sample
    past_unchanged = torch.equal(a[:, :, :5], b[:, :, :5])
    assert past_unchanged == causal_decoder
    assert not torch.allclose(a[:, :, 5:], b[:, :, 5:])


@pytest.mark.parametrize("chunk", [4, 8])
def test_causal_cache_equals_one_pass(chunk):
    model = tiny(norm_per_frame=True)
    x = video(17)
    with torch.no_grad():
        model.set_temporal_chunking(None)
        whole = model.encode(x).latent_dist.mean
        model.set_temporal_chunking("causal_cache", chunk_frames=chunk)
        chunked = model.encode(x).latent_dist.mean
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)
    assert all(getattr(m, "temporal_cache", None) is None for m in model.modules())


def test_causal_cache_refuses_window_norm_and_bad_chunks():
    with pytest.raises(ValueError, match="norm_per_frame"):
        tiny().set_temporal_chunking("causal_cache")
    with pytest.raises(ValueError, match="causal encoder"):
        tiny(causal_encoder=False, norm_per_frame=True).set_temporal_chunking("causal_cache")
    with pytest.raises(ValueError, match="multiple of 4"):
        tiny(norm_per_frame=True).set_temporal_chunking("causal_cache", chunk_frames=6)


# --- tiles, batch, dtypes -----------------------------------------------------------------------------------
def test_tiling_switches_and_disable_restores():
    model = tiny()
    x = video(5, 48, 48)
    with torch.no_grad():
        z_ref = model.encode(x).latent_dist.mode()
        y_ref = model.decode(z_ref).sample
        model.enable_tiling(tile_sample_size=32, tile_overlap_ratio=0.25)
        z_tiled = model.encode(x).latent_dist.mode()
        y_tiled = model.decode(z_ref).sample
        model.disable_tiling()
        z_again = model.encode(x).latent_dist.mode()
        y_again = model.decode(z_ref).sample
    assert z_tiled.shape == z_ref.shape and y_tiled.shape == y_ref.shape
    assert not torch.equal(z_tiled, z_ref) and torch.isfinite(y_tiled).all()  # the tiles really ran
    assert torch.equal(z_again, z_ref) and torch.equal(y_again, y_ref)


def test_slicing_matches_batched():
    model = tiny()
    x = video(5, b=2)
    with torch.no_grad():
        ref = model(x).sample
        model.enable_slicing()
        torch.testing.assert_close(model(x).sample, ref, rtol=1e-4, atol=1e-4)


def test_gradient_checkpointing_gives_same_gradients():
    model = tiny().train()
    x = video(5)

    def grads() -> list[torch.Tensor]:
        model.zero_grad()
        model(x).sample.square().mean().backward()
        return [p.grad.clone() for p in model.parameters()]

    plain = grads()
    model.enable_gradient_checkpointing()
    assert model.encoder.gradient_checkpointing and model.decoder.gradient_checkpointing
    for a, b in zip(plain, grads(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_bf16_runs_and_is_close_to_fp32():
    model = tiny()
    x = video(5)
    with torch.no_grad():
        ref = model(x).sample
        out = model.to(torch.bfloat16)(x.to(torch.bfloat16)).sample
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() / ref.abs().max() < 0.05


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
