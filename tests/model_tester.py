"""Tests every CV-VAE release passes, written once (the idea of diffusers' ``ModelTesterMixin``).

A test class mixes :class:`CVVAETesterMixin` in and gives ``model_class``, a tiny ``init_config``, the
release's manifest and subfolder and what its latents look like; pytest then runs every ``test_*`` here for
that model. The tiny configs are defined here because the fast-path and pipeline tests build the same models.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from diffusers import AutoencoderKL

from cvvae.models.base import CVVAEBase
from cvvae.models.tiling import causal_chunks, official_windows

DATA = Path(__file__).parent / "data"
# Four levels (8x in space, 4x in time) at the smallest widths GroupNorm(4) allows; no tiles.
TINY_CVVAE: dict[str, Any] = dict(
    ch=8, ch_mult=(1, 2, 2, 2), num_res_blocks=1, norm_num_groups=4, tile_spatial_size=None
)
TINY_CVVAE_SD3: dict[str, Any] = dict(
    block_out_channels=(8, 16, 16, 16), layers_per_block=1, norm_num_groups=4, tile_spatial_size=None
)


def tiny_model(cls: type[CVVAEBase], config: dict[str, Any], **overrides: Any) -> CVVAEBase:
    """``cls(**config, **overrides)`` in eval mode, with the weights of seed 0."""
    torch.manual_seed(0)
    return cls(**{**config, **overrides}).eval()


def tiny_image_vae(seed: int = 0) -> AutoencoderKL:
    """A four-level diffusers AutoencoderKL (8x in space) at GroupNorm(4)'s smallest widths, eval mode."""
    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=[8, 8, 16, 16],
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
    ).eval()


def random_video(t: int = 9, h: int = 16, w: int = 16, b: int = 1, seed: int = 1) -> torch.Tensor:
    """``b x 3 x t x h x w`` uniform in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, t, h, w, generator=g) * 2 - 1


def read_manifest(path: Path) -> dict[str, list[int]]:
    """Parameter name -> shape, one ``name [shape]`` a line, in registration order."""
    manifest = {}
    for line in path.read_text().splitlines():
        name, shape = line.split(" ", 1)
        manifest[name] = list(ast.literal_eval(shape))
    return manifest


class CVVAETesterMixin:
    model_class: ClassVar[type[CVVAEBase]]
    init_config: ClassVar[dict[str, Any]]
    manifest: ClassVar[Path]  # the released parameter names and shapes
    released_subfolder: ClassVar[str]  # where the release keeps the weights
    latent_key: ClassVar[str]  # the released config key that holds the latent channels
    latent_channels: ClassVar[int]
    other_latent_channels: ClassVar[int]  # the other release's: its latents are refused
    slicing_tolerance: ClassVar[float]

    def tiny(self, **overrides: Any) -> CVVAEBase:
        return tiny_model(self.model_class, self.init_config, **overrides)

    # --- layout and config ------------------------------------------------------------------------------
    def test_released_state_dict_matches_manifest(self):
        with torch.device("meta"):
            model = self.model_class.from_released_config()
        ours = {k: list(v.shape) for k, v in model.state_dict().items()}
        manifest = read_manifest(self.manifest)
        assert ours == manifest
        assert list(ours) == list(manifest)  # registration order too

    def test_released_config_is_accepted_unchanged(self):
        with torch.device("meta"):
            model = self.model_class(**self.model_class.released_config())
        assert model.latent_channels == self.latent_channels and model.temporal_compression == 4
        assert model.temporal_chunking == "official" and model.use_tiling

    @pytest.mark.parametrize("in_subfolder", [False, True])
    def test_save_load_round_trip(self, tmp_path, in_subfolder):
        model = self.tiny()
        subfolder = self.released_subfolder if in_subfolder else None
        model.save_pretrained(tmp_path / subfolder if subfolder else tmp_path)
        loaded, info = self.model_class.from_pretrained(
            tmp_path, subfolder=subfolder, output_loading_info=True
        )
        assert not info["missing_keys"] and not info["unexpected_keys"]
        saved = json.loads((tmp_path / (subfolder or "") / "config.json").read_text())
        assert saved["_class_name"] == self.model_class.__name__
        assert saved[self.latent_key] == self.latent_channels
        x = random_video(5)
        with torch.no_grad():
            assert torch.equal(model(x).sample, loaded.eval()(x).sample)

    # --- call surface -----------------------------------------------------------------------------------
    def test_shapes_and_posterior(self):
        model = self.tiny()
        assert isinstance(model, CVVAEBase)
        with torch.no_grad():
            for t, lt in [(1, 1), (5, 2), (9, 3)]:
                post = model.encode(random_video(t)).latent_dist
                assert post.mean.shape == (1, self.latent_channels, lt, 2, 2)
                assert torch.equal(post.mode(), post.mean)
                assert model.decode(post.mode()).sample.shape == (1, 3, t, 16, 16)
            a = post.sample(torch.Generator().manual_seed(3))
            b = post.sample(torch.Generator().manual_seed(3))
            assert torch.equal(a, b) and not torch.equal(a, post.mean)
            assert post.kl().shape == (1,)

    def test_frame_and_channel_errors(self):
        model = self.tiny()
        with pytest.raises(ValueError, match="5 or 9"):
            model.encode(random_video(8))
        wrong = self.other_latent_channels
        with pytest.raises(ValueError, match=f"{self.latent_channels} latent channels, got {wrong}"):
            model.decode(torch.zeros(1, wrong, 2, 2, 2))
        with pytest.raises(ValueError, match="input channels"):
            model.encode(torch.zeros(1, 4, 5, 16, 16))

    def test_image_mode(self):
        model = self.tiny()
        images = random_video(1)[:, :, 0].repeat(3, 1, 1, 1)
        images[1] *= -0.5
        with torch.no_grad():
            flat = model.encode(images).latent_dist.mode()  # 4D images in, B c h w latents out
            z5 = model.encode(images.unsqueeze(2)).latent_dist.mode()
            assert torch.equal(flat, z5[:, :, 0])
            out = model.decode(flat).sample  # 4D latents in, B C H W images out
            per_image = torch.cat([model.decode(flat[i : i + 1, :, None]).sample[:, :, 0] for i in range(3)])
            one_frame = model.decode(flat, num_frames=1).sample
        assert flat.shape == (3, self.latent_channels, 2, 2) and out.shape == (3, 3, 16, 16)
        torch.testing.assert_close(out, per_image)
        torch.testing.assert_close(one_frame, out)

    def test_decode_groups_4d_latents_into_videos_of_num_frames(self):
        model = self.tiny()
        z = torch.randn(2, self.latent_channels, 3, 2, 2)
        flat = z.transpose(1, 2).flatten(0, 1)  # (b t) c h w
        with torch.no_grad():
            video = model.decode(z).sample  # B C 9 H W
            # 4D latents give 4D frames, (B T) C H W, as diffusers' SVD VAE does
            torch.testing.assert_close(
                model.decode(flat, num_frames=3).sample, video.transpose(1, 2).flatten(0, 1)
            )

    # --- time -------------------------------------------------------------------------------------------
    def test_official_windows_equal_explicit_concatenation(self):
        model = self.tiny()
        model.set_temporal_chunking("official", chunk_frames=4)
        assert [(s.start, s.stop) for s in official_windows(9, 4)] == [(0, 5), (4, 9)]
        x = random_video(9)
        with torch.no_grad():
            z = model.encode(x).latent_dist.mode()
            enc = model.encoder
            expected = torch.cat([enc(x[:, :, 0:5]), enc(x[:, :, 4:9])[:, :, 1:]], dim=2).chunk(2, dim=1)[0]
            torch.testing.assert_close(z, expected, rtol=0, atol=0)
            out = model.decode(z).sample
            dec = model.decoder
            expected = torch.cat([dec(z[:, :, 0:2]), dec(z[:, :, 1:3])[:, :, 1:]], dim=2)
            torch.testing.assert_close(out, expected, rtol=0, atol=0)
            # windows really are separate passes: one pass over the whole clip differs
            model.set_temporal_chunking(None)
            assert not torch.allclose(model.encode(x).latent_dist.mode(), z)

    def test_encoder_is_causal_across_windows(self):
        model = self.tiny()
        model.set_temporal_chunking("official", chunk_frames=4)
        x = random_video(13)
        y = x.clone()
        y[:, :, 6:] = torch.rand_like(y[:, :, 6:])  # frames after the first window [0, 4]... [4, 8]
        with torch.no_grad():
            zx, zy = model.encode(x).latent_dist.mode(), model.encode(y).latent_dist.mode()
        torch.testing.assert_close(zx[:, :, :2], zy[:, :, :2], rtol=0, atol=0)  # window [0, 4] untouched
        assert not torch.allclose(zx[:, :, 2:], zy[:, :, 2:])

    def test_encoder_is_frame_causal_with_per_frame_norm(self):
        model = self.tiny(norm_per_frame=True)
        model.set_temporal_chunking(None)
        x = random_video(13)
        y = x.clone()
        y[:, :, 5] += 0.5  # latent 1 is built from frames 1..4, latent 2 from 5..8
        with torch.no_grad():
            zx, zy = model.encode(x).latent_dist.mode(), model.encode(y).latent_dist.mode()
        torch.testing.assert_close(zx[:, :, :2], zy[:, :, :2], rtol=0, atol=0)
        assert not torch.allclose(zx[:, :, 2], zy[:, :, 2])

    @pytest.mark.parametrize("chunk", [4, 8])
    def test_causal_cache_equals_one_pass(self, chunk):
        model = self.tiny(norm_per_frame=True)
        assert [(s.start, s.stop) for s in causal_chunks(17, chunk)][0] == (0, 1 + chunk)
        x = random_video(17)
        with torch.no_grad():
            model.set_temporal_chunking(None)
            whole = model.encode(x).latent_dist.mean
            model.set_temporal_chunking("causal_cache", chunk_frames=chunk)
            chunked = model.encode(x).latent_dist.mean
        torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)
        assert all(getattr(m, "temporal_cache", None) is None for m in model.modules())

    def test_causal_cache_refuses_window_norm_and_bad_chunks(self):
        with pytest.raises(ValueError, match="norm_per_frame"):
            self.tiny().set_temporal_chunking("causal_cache")
        with pytest.raises(ValueError, match="causal encoder"):
            self.tiny(causal_encoder=False, norm_per_frame=True).set_temporal_chunking("causal_cache")
        with pytest.raises(ValueError, match="multiple of 4"):
            self.tiny(norm_per_frame=True).set_temporal_chunking("causal_cache", chunk_frames=6)

    # --- tiles, batch, dtypes ---------------------------------------------------------------------------
    def test_tiling_switches_and_disable_restores(self):
        model = self.tiny()
        x = random_video(5, 48, 48)
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
        # The tiles really ran. A tiny random model is all border (a 4-latent tile), so its tiled output is
        # not close to the untiled one; closeness is checked on a border-free map in tests/test_model.py and,
        # for the released weights, in tests/test_model_released.py (GPU).
        assert not torch.equal(z_tiled, z_ref) and torch.isfinite(y_tiled).all()
        assert torch.equal(z_again, z_ref) and torch.equal(y_again, y_ref)

    def test_slicing_matches_batched(self):
        model = self.tiny()
        x = random_video(5, b=2)
        tol = self.slicing_tolerance
        with torch.no_grad():
            ref = model(x).sample
            model.enable_slicing()
            torch.testing.assert_close(model(x).sample, ref, rtol=tol, atol=tol)

    def test_gradient_checkpointing_gives_same_gradients(self):
        model = self.tiny().train()
        x = random_video(5)

        def grads() -> list[torch.Tensor]:
            model.zero_grad()
            model(x).sample.square().mean().backward()
            return [p.grad.clone() for p in model.parameters()]

        plain = grads()
        model.enable_gradient_checkpointing()
        assert model.encoder.gradient_checkpointing and model.decoder.gradient_checkpointing
        for a, b in zip(plain, grads(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)

    def test_bf16_runs_and_is_close_to_fp32(self):
        model = self.tiny()
        x = random_video(5)
        with torch.no_grad():
            ref = model(x).sample
            out = model.to(torch.bfloat16)(x.to(torch.bfloat16)).sample
        assert out.dtype == torch.bfloat16
        assert (out.float() - ref).abs().max() / ref.abs().max() < 0.05
