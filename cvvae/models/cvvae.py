"""CV-VAE: a causal 3D video VAE whose latents live in the Stable Diffusion image VAE's latent space.

The parameter names and shapes are those of the released ``vae3d`` checkpoints, so
``CVVAEModel.from_pretrained(path, subfolder="vae3d")`` loads them without conversion.

Architecture (released config: ``ch=128, ch_mult=(1, 2, 4, 4), num_res_blocks=2, z_channels=4``):

* encoder: causal 3D conv in; per level ``num_res_blocks`` half-3D ResNet blocks (causal 3x3x3 conv, then a 2D
  3x3 conv per frame); downsample after every level but the last, halving time too at levels 0 and 2 (so 8x in
  space, 4x in time); mid block ResNet - spatial attention - ResNet; GroupNorm, SiLU, causal conv out to ``2
  z`` channels (mean and log-variance).
* decoder: centred (non-causal) 3D convs; mid block with spatial attention followed in series by temporal
  attention; per level ``num_res_blocks + 1`` ResNet blocks; upsample at every level but the first, doubling
  time at levels 3 and 1 (``T -> 2T - 1``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from typing import Any, Literal

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn
from torch.nn import functional as F

from . import fast
from .frames import check_num_frames
from .layers import ConvKind, Downsample3D, GroupNorm, ResnetBlock3D, Upsample3D, make_attention, make_conv
from .tiling import run_causal_cache, run_official_windows, run_spatial_tiles

TemporalChunking = Literal["official", "causal_cache"] | None


class VideoDiagonalGaussian(DiagonalGaussianDistribution):
    """diffusers' diagonal Gaussian; ``kl()`` sums over every non-batch dimension (channels, time, space)."""

    def kl(self, other: DiagonalGaussianDistribution | None = None) -> Tensor:
        if self.deterministic:
            return torch.zeros(self.mean.shape[0], device=self.mean.device)
        if other is None:
            terms = self.mean.pow(2) + self.var - 1.0 - self.logvar
        else:
            terms = (self.mean - other.mean).pow(2) / other.var + self.var / other.var - 1.0
            terms = terms - self.logvar + other.logvar
        return 0.5 * terms.flatten(1).sum(dim=1)


def _register_pipeline_keys(
    model: ConfigMixin,
    *,
    widths: tuple[int, ...],
    latent_channels: int,
    given_widths: Sequence[int] | None,
    given_latent_channels: int | None,
    spatial_n_compress: int | None,
    time_n_compress: int | None,
) -> None:
    """Record the config keys diffusers pipelines read from a ``vae``, derived from the architecture.

    ``StableDiffusionPipeline`` computes ``vae_scale_factor = 2 ** (len(block_out_channels) - 1)``; SD3 and
    the image processors read ``latent_channels``. The released configs have none of these keys, so they are
    derived here; a saved config that carries them must agree with the architecture.
    """
    levels = len(widths)
    if given_widths is not None and tuple(given_widths) != widths:
        raise ValueError(
            f"block_out_channels={list(given_widths)} does not match the architecture's widths {list(widths)}"
        )
    if given_latent_channels is not None and given_latent_channels != latent_channels:
        raise ValueError(
            f"latent_channels={given_latent_channels} does not match {latent_channels} latent channels"
        )
    spatial = 2 ** (levels - 1)
    if spatial_n_compress is not None and spatial_n_compress != spatial:
        raise ValueError(
            f"spatial_n_compress={spatial_n_compress} does not match the architecture: {levels} levels "
            f"downsample space by {spatial}"
        )
    time = 2 ** sum(1 for level in range(levels - 1) if level % 2 == 0)
    model.register_to_config(
        block_out_channels=list(widths),
        latent_channels=latent_channels,
        spatial_n_compress=spatial,
        time_n_compress=time_n_compress if time_n_compress is not None else time,
    )


def _frames_as_batch(x: Tensor) -> Tensor:
    """``B C T H W`` -> ``(B T) C H W``, the 4D layout of diffusers' image and SVD-style VAEs."""
    return x.transpose(1, 2).flatten(0, 1)


def _conv_kind(use_3d_conv: bool, causal: bool) -> ConvKind:
    if not use_3d_conv:
        return "per_frame"
    return "causal" if causal else "centred"


class _Stage(nn.Module):
    """One resolution level: ``block`` (ResNet blocks), ``attn`` (optional), down- or upsample."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()


class _Mid(nn.Module):
    def __init__(self, channels: int, attn: nn.Module, make_block: Any) -> None:
        super().__init__()
        self.block_1 = make_block(channels, channels)
        self.attn_1 = attn
        self.block_2 = make_block(channels, channels)


class Encoder(nn.Module):
    """Video -> moments (``2 z`` channels: mean, then log-variance); 8x smaller in space, 4x in time."""

    def __init__(
        self,
        *,
        in_channels: int,
        ch: int,
        ch_mult: tuple[int, ...],
        num_res_blocks: int,
        z_channels: int,
        double_z: bool,
        attn_resolutions: tuple[int, ...],
        dropout: float,
        conv_kind: ConvKind,
        half_3d: bool,
        attn_type: str,
        norm_num_groups: int,
        norm_per_frame: bool,
        norm_eps: float = 1e-5,
        resolution: int = 256,
    ) -> None:
        super().__init__()
        self.gradient_checkpointing = False

        def block(cin: int, cout: int) -> ResnetBlock3D:
            return ResnetBlock3D(
                cin, cout, conv_kind, half_3d, dropout, norm_num_groups, norm_per_frame, norm_eps
            )

        def attention(c: int) -> nn.Module:
            return make_attention(attn_type, c, norm_num_groups, norm_per_frame, norm_eps)

        self.conv_in = make_conv(conv_kind, in_channels, ch, 3)
        self.down = nn.ModuleList()
        block_in, res = ch, resolution
        for level, mult in enumerate(ch_mult):
            stage = _Stage()
            for _ in range(num_res_blocks):
                stage.block.append(block(block_in, ch * mult))
                block_in = ch * mult
                if res in attn_resolutions:
                    stage.attn.append(attention(block_in))
            if level != len(ch_mult) - 1:
                stage.downsample = Downsample3D(block_in, down_time=level % 2 == 0)
                res //= 2
            self.down.append(stage)
        self.mid = _Mid(block_in, attention(block_in), block)
        self.norm_out = GroupNorm(norm_num_groups, block_in, norm_per_frame, norm_eps)
        self.conv_out = make_conv(conv_kind, block_in, 2 * z_channels if double_z else z_channels, 3)

    def _run_block(self, block: nn.Module, h: Tensor) -> Tensor:
        if torch.is_grad_enabled() and self.gradient_checkpointing:
            return self._gradient_checkpointing_func(block, h)
        return block(h)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            for i, block in enumerate(stage.block):
                h = self._run_block(block, h)
                if len(stage.attn) > 0:
                    h = stage.attn[i](h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self._run_block(self.mid.block_1, h)
        h = self.mid.attn_1(h)
        h = self._run_block(self.mid.block_2, h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Latents -> video; ``1 + k`` latent frames become ``1 + 4k`` frames."""

    def __init__(
        self,
        *,
        out_ch: int,
        ch: int,
        ch_mult: tuple[int, ...],
        num_res_blocks: int,
        z_channels: int,
        attn_resolutions: tuple[int, ...],
        dropout: float,
        conv_kind: ConvKind,
        half_3d: bool,
        attn_type: str,
        norm_num_groups: int,
        norm_per_frame: bool,
        norm_eps: float = 1e-5,
        resolution: int = 256,
    ) -> None:
        super().__init__()
        self.gradient_checkpointing = False

        def block(cin: int, cout: int) -> ResnetBlock3D:
            return ResnetBlock3D(
                cin, cout, conv_kind, half_3d, dropout, norm_num_groups, norm_per_frame, norm_eps
            )

        def attention(c: int) -> nn.Module:
            return make_attention(attn_type, c, norm_num_groups, norm_per_frame, norm_eps)

        levels = len(ch_mult)
        block_in = ch * ch_mult[-1]
        res = resolution // 2 ** (levels - 1)
        self.conv_in = make_conv(conv_kind, z_channels, block_in, 3)
        self.mid = _Mid(block_in, attention(block_in), block)
        stages: list[_Stage] = []
        for level in reversed(range(levels)):
            stage = _Stage()
            for _ in range(num_res_blocks + 1):
                stage.block.append(block(block_in, ch * ch_mult[level]))
                block_in = ch * ch_mult[level]
                if res in attn_resolutions:
                    stage.attn.append(attention(block_in))
            if level != 0:
                stage.upsample = Upsample3D(block_in, up_time=level % 2 == 1)
                res *= 2
            stages.insert(0, stage)
        self.up = nn.ModuleList(stages)  # indexed by level, as released
        self.norm_out = GroupNorm(norm_num_groups, block_in, norm_per_frame, norm_eps)
        self.conv_out = make_conv(conv_kind, block_in, out_ch, 3)

    def _run_block(self, block: nn.Module, h: Tensor) -> Tensor:
        if torch.is_grad_enabled() and self.gradient_checkpointing:
            return self._gradient_checkpointing_func(block, h)
        return block(h)

    def forward(self, z: Tensor) -> Tensor:
        h = self.conv_in(z)
        h = self._run_block(self.mid.block_1, h)
        h = self.mid.attn_1(h)
        h = self._run_block(self.mid.block_2, h)
        for stage in reversed(self.up):
            for i, block in enumerate(stage.block):
                h = self._run_block(block, h)
                if len(stage.attn) > 0:
                    h = stage.attn[i](h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class CVVAEModel(ModelMixin, ConfigMixin):
    r"""The CV-VAE video autoencoder (diffusers ``ModelMixin`` + ``ConfigMixin``).

    Config keys are those of the released ``config.json`` plus three defaulted extras: ``norm_num_groups`` (32
    as released; smaller for tiny test models), ``norm_eps`` (GroupNorm eps, 1e-5 as released; 1e-6 when
    inflated from a diffusers image VAE, whose eps that is) and ``norm_per_frame`` (False as released: ResNet
    GroupNorm statistics span all frames of a window; True normalises each frame alone, which makes the
    encoder strictly frame-causal and the ``causal_cache`` chunking exact). The keys diffusers pipelines read
    from a ``vae`` are derived from the architecture when absent (as in the released config) and checked
    against it when present: ``block_out_channels`` (``ch * ch_mult``, so that a pipeline's
    ``vae_scale_factor`` is 8), ``latent_channels`` (``z_channels``), ``spatial_n_compress`` and
    ``time_n_compress``.

    Shapes and frame rules:

    * ``encode(x)``: ``x`` is ``B C T H W`` with ``T = 1 + 4k`` (``ValueError`` otherwise), or ``B C H W``: a
      batch of images (``T = 1``), or, when ``num_video_frames`` is set, ``(B T) C H W`` frames regrouped into
      videos of ``num_video_frames``. Returns ``AutoencoderKLOutput(latent_dist)`` with latents ``B z (1 + k)
      H/8 W/8`` for 5D input and in the input's 4D layout for 4D input (``B z h/8 w/8`` for images, as
      diffusers' ``AutoencoderKL``; ``(B t) z h w`` with ``num_video_frames``).
    * ``decode(z, num_frames=None, generator=None)``: ``z`` is ``B z t h w`` (gives ``B C (1 + 4 (t - 1)) H
      W``), or 4D ``(B t) z h w``: regrouped into videos of ``num_frames`` *latent* frames when given, else of
      ``num_latent_frames`` (derived from ``num_video_frames``) when set, else every latent is its own image.
      4D latents give 4D output, ``(B T) C H W``: ``decode(z4d)`` is therefore the image mode of diffusers'
      image pipelines (``B C H W`` images). ``reshape_x_dim_to_4`` also flattens the output of 5D latents.
      ``generator`` is accepted for diffusers' pipelines and unused (decoding is deterministic).
      ``reshape_z_dim_to_4`` is accepted for config compatibility and, as released, has no effect.
    * Temporal chunking (default ``official`` when ``en_de_n_frames_a_time`` is set): encode windows of
      ``en_de_n_frames_a_time + 1`` frames, decode windows of ``en_de_n_frames_a_time / time_n_compress + 1``
      latent frames, overlapping by one frame whose repeat is dropped. See :meth:`set_temporal_chunking`.
    * Spatial tiling (on when ``tile_spatial_size`` is set, as released): tiles of ``tile_spatial_size``
      pixels (``/ spatial_n_compress`` latents) overlapping by ``tile_overlap_ratio``, blended linearly.
    """

    config_name = "config.json"
    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        double_z: bool = True,
        z_channels: int = 4,
        in_channels: int = 3,
        out_ch: int = 3,
        ch: int = 128,
        ch_mult: tuple[int, ...] = (1, 2, 4, 4),
        num_res_blocks: int = 2,
        attn_resolutions: tuple[int, ...] = (),
        dropout: float = 0.0,
        use_3d_conv: bool = True,
        half_3d: bool = True,
        causal_encoder: bool = True,
        causal_decoder: bool = False,
        encoder_attn_type: str = "vanilla-xformers",
        decoder_attn_type: str = "spatial-temporal-xformer",
        scaling_factor: float = 0.18215,
        force_upcast: bool = True,
        en_de_n_frames_a_time: int | None = 16,
        time_n_compress: int | None = 4,
        spatial_n_compress: int | None = 8,
        tile_spatial_size: int | None = 576,
        num_video_frames: int | None = None,
        tile_overlap_ratio: float | None = 0.2222,
        reshape_z_dim_to_4: bool = False,
        reshape_x_dim_to_4: bool = False,
        norm_num_groups: int = 32,
        norm_per_frame: bool = False,
        norm_eps: float = 1e-5,
        block_out_channels: tuple[int, ...] | None = None,
        latent_channels: int | None = None,
    ) -> None:
        super().__init__()
        if len(ch_mult) < 1:
            raise ValueError("ch_mult needs at least one level")
        if any(ch * m % norm_num_groups for m in ch_mult):
            raise ValueError(
                f"every width ch * ch_mult ({ch} * {list(ch_mult)}) must divide by {norm_num_groups=}"
            )
        n_time_down = sum(1 for level in range(len(ch_mult) - 1) if level % 2 == 0)
        if time_n_compress is not None and time_n_compress != 2**n_time_down:
            raise ValueError(
                f"time_n_compress={time_n_compress} does not match the architecture: {len(ch_mult)} levels "
                f"halve time {n_time_down} times (factor {2**n_time_down})"
            )
        _register_pipeline_keys(
            self,
            widths=tuple(ch * m for m in ch_mult),
            latent_channels=z_channels,
            given_widths=block_out_channels,
            given_latent_channels=latent_channels,
            spatial_n_compress=spatial_n_compress,
            time_n_compress=time_n_compress,
        )
        common = dict(
            ch=ch,
            ch_mult=tuple(ch_mult),
            num_res_blocks=num_res_blocks,
            z_channels=z_channels,
            attn_resolutions=tuple(attn_resolutions),
            dropout=dropout,
            half_3d=half_3d,
            norm_num_groups=norm_num_groups,
            norm_per_frame=norm_per_frame,
            norm_eps=norm_eps,
        )
        self.encoder = Encoder(
            in_channels=in_channels,
            double_z=double_z,
            conv_kind=_conv_kind(use_3d_conv, causal_encoder),
            attn_type=encoder_attn_type,
            **common,
        )
        self.decoder = Decoder(
            out_ch=out_ch,
            conv_kind=_conv_kind(use_3d_conv, causal_decoder),
            attn_type=decoder_attn_type,
            **common,
        )
        self.time_compression = 2**n_time_down
        self.use_slicing = False
        self.use_tiling = tile_spatial_size is not None
        self.tile_sample_size = tile_spatial_size or 576
        self.tile_overlap = tile_overlap_ratio if tile_overlap_ratio is not None else 0.2222
        self.temporal_chunking: TemporalChunking = "official" if en_de_n_frames_a_time else None
        self.encode_chunk_frames = en_de_n_frames_a_time or 16

    # ------------------------------------------------------------------ released config as data
    @classmethod
    def released_config(cls, variant: str = "vae3d") -> dict[str, Any]:
        """The released ``config.json`` of ``vae3d`` (also used by ``vae3d_v1-1``) as a dict."""
        if variant not in ("vae3d", "vae3d_v1-1"):
            raise ValueError(f"unknown released variant {variant!r}; choose 'vae3d' or 'vae3d_v1-1'")
        text = resources.files("cvvae.models").joinpath("configs/vae3d.json").read_text()
        return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}

    @classmethod
    def from_released_config(cls, **overrides: Any) -> CVVAEModel:
        """A randomly initialised model with the released architecture (``overrides`` replace keys)."""
        return cls(**{**cls.released_config(), **overrides})

    @property
    def spatial_compression_ratio(self) -> int:
        """Pixels per latent along height and width (8 as released), as diffusers' video VAEs name it."""
        return self.config.spatial_n_compress

    @property
    def temporal_compression_ratio(self) -> int:
        """Pixel frames per latent frame after the first (4 as released): ``T = 1 + 4 (t - 1)``."""
        return self.time_compression

    # ------------------------------------------------------------------ diffusers-style switches
    def enable_tiling(
        self, tile_sample_size: int | None = None, tile_overlap_ratio: float | None = None
    ) -> None:
        """Encode and decode in overlapping spatial tiles of ``tile_sample_size`` pixels (default: config)."""
        self.use_tiling = True
        if tile_sample_size is not None:
            if tile_sample_size % self.config.spatial_n_compress:
                raise ValueError(f"tile size must be a multiple of {self.config.spatial_n_compress}")
            self.tile_sample_size = tile_sample_size
        if tile_overlap_ratio is not None:
            if not 0 <= tile_overlap_ratio < 1:
                raise ValueError("tile_overlap_ratio must be in [0, 1)")
            self.tile_overlap = tile_overlap_ratio

    def disable_tiling(self) -> None:
        self.use_tiling = False

    def enable_slicing(self) -> None:
        """Encode and decode one batch element at a time."""
        self.use_slicing = True

    def disable_slicing(self) -> None:
        self.use_slicing = False

    def set_temporal_chunking(self, mode: TemporalChunking, chunk_frames: int | None = None) -> None:
        """Choose how long videos are split in time.

        * ``"official"``: the released overlapping windows (``chunk_frames + 1`` pixel frames per encode
          round, ``chunk_frames / time_n_compress + 1`` latent frames per decode round).
        * ``"causal_cache"``: the encoder runs over chunks of ``chunk_frames`` frames (after a first chunk of
          ``1 + chunk_frames``), carrying every causal layer's last frames: equal to one pass over the whole
          video. Needs ``causal_encoder=True`` and ``norm_per_frame=True`` (released GroupNorm statistics span
          all frames, which no chunking can reproduce exactly). The decoder (non-causal as released) keeps the
          official windows in this mode.
        * ``None``: one pass over the whole video (memory grows with its length).
        """
        if mode not in ("official", "causal_cache", None):
            raise ValueError(f"unknown temporal chunking {mode!r}; choose 'official', 'causal_cache' or None")
        chunk = chunk_frames or self.encode_chunk_frames
        if chunk % self.time_compression:
            raise ValueError(f"chunk_frames must be a multiple of {self.time_compression}, got {chunk}")
        if mode == "causal_cache":
            if not (self.config.causal_encoder and self.config.use_3d_conv):
                raise ValueError("causal_cache chunking needs a causal 3D encoder (causal_encoder=True)")
            if not self.config.norm_per_frame:
                raise ValueError(
                    "causal_cache chunking is exact only with per-frame normalisation (norm_per_frame=True); "
                    "this "
                    "model's GroupNorm statistics span all frames of a pass. Use 'official' windows or None."
                )
        self.temporal_chunking = mode
        self.encode_chunk_frames = chunk

    # ------------------------------------------------------------------ fast inference path
    fast_path: bool | None = None

    def set_fast_path(self, mode: bool | None) -> None:
        """How encode and decode run the encoder and decoder: ``None`` (default) through
        :mod:`cvvae.models.fast` on CUDA in inference (no autograd, eval mode), ``True`` there on any device,
        ``False`` always through the modules' own ``forward``. Same function; rounding differs."""
        self.fast_path = mode

    def _run_encoder(self, x: Tensor) -> Tensor:
        if fast.wanted(self.fast_path, self, x):
            return fast.encoder_forward(self.encoder, x)
        return self.encoder(x)

    def _run_decoder(self, z: Tensor) -> Tensor:
        if fast.wanted(self.fast_path, self, z):
            return fast.decoder_forward(self.decoder, z)
        return self.decoder(z)

    # ------------------------------------------------------------------ encode
    def _spatial_encode(self, x: Tensor) -> Tensor:
        return self._encode_tiles(self._run_encoder, x)

    def _encode_video(self, x: Tensor) -> Tensor:
        if self.temporal_chunking == "official":
            return run_official_windows(self._spatial_encode, x, self.encode_chunk_frames)
        if self.temporal_chunking == "causal_cache":

            def chunked(tile: Tensor) -> Tensor:
                return run_causal_cache(self.encoder, tile, self.encode_chunk_frames, self.encoder.modules())

            return self._encode_tiles(chunked, x)
        return self._spatial_encode(x)

    def _encode_tiles(self, fn: Any, x: Tensor) -> Tensor:
        """Apply an encoding function to spatial tiles of ``x`` when tiling is on."""
        if not self.use_tiling:
            return fn(x)
        s = self.config.spatial_n_compress
        tile, latent_tile = self.tile_sample_size, self.tile_sample_size // s
        latent_overlap = round(latent_tile * self.tile_overlap)
        return run_spatial_tiles(
            fn,
            x,
            tile=tile,
            stride=round(tile * (1 - self.tile_overlap)),
            out_overlap=latent_overlap,
            out_stride=latent_tile - latent_overlap,
        )

    def _as_video(self, x: Tensor) -> Tensor:
        if x.dim() == 5:
            return x
        if x.dim() != 4:
            raise ValueError(f"expected B C T H W video or B C H W images, got shape {tuple(x.shape)}")
        t = self.config.num_video_frames
        if t is None:
            return x.unsqueeze(2)
        if x.shape[0] % t:
            raise ValueError(f"{x.shape[0]} frames do not split into videos of num_video_frames={t}")
        return x.reshape(-1, t, *x.shape[1:]).transpose(1, 2)

    def encode(
        self, x: Tensor, return_dict: bool = True
    ) -> AutoencoderKLOutput | tuple[VideoDiagonalGaussian]:
        """Encode ``B C T H W`` (``T = 1 + 4k``) or ``B C H W`` to a diagonal Gaussian over the latents."""
        video = self._as_video(x)
        check_num_frames(video.shape[2], self.time_compression)
        if video.shape[1] != self.config.in_channels:
            raise ValueError(f"expected {self.config.in_channels} input channels, got {video.shape[1]}")
        if self.use_slicing and video.shape[0] > 1:
            moments = torch.cat([self._encode_video(part) for part in video.split(1)])
        else:
            moments = self._encode_video(video)
        if x.dim() == 4:  # 4D in, 4D latents out: what diffusers' image and SVD pipelines expect
            moments = _frames_as_batch(moments)
        posterior = VideoDiagonalGaussian(moments)
        return AutoencoderKLOutput(latent_dist=posterior) if return_dict else (posterior,)

    # ------------------------------------------------------------------ decode
    def _spatial_decode(self, z: Tensor) -> Tensor:
        if not self.use_tiling:
            return self._run_decoder(z)
        s = self.config.spatial_n_compress
        tile, latent_tile = self.tile_sample_size, self.tile_sample_size // s
        pixel_overlap = round(tile * self.tile_overlap)
        return run_spatial_tiles(
            self._run_decoder,
            z,
            tile=latent_tile,
            stride=round(latent_tile * (1 - self.tile_overlap)),
            out_overlap=pixel_overlap,
            out_stride=tile - pixel_overlap,
        )

    def _decode_video(self, z: Tensor) -> Tensor:
        if self.temporal_chunking is None:
            return self._spatial_decode(z)
        stride = self.encode_chunk_frames // self.time_compression
        return run_official_windows(self._spatial_decode, z, stride)

    def _latents_as_video(self, z: Tensor, num_frames: int | None) -> Tensor:
        if z.dim() == 5:
            return z
        if z.dim() != 4:
            raise ValueError(f"expected B c t h w or (B t) c h w latents, got shape {tuple(z.shape)}")
        t = num_frames
        if t is None and self.config.num_video_frames is not None:
            t = 1 + (self.config.num_video_frames - 1) // self.time_compression
        if t is None:
            return z.unsqueeze(2)
        if z.shape[0] % t:
            raise ValueError(f"{z.shape[0]} latent frames do not split into videos of {t} latent frames")
        return z.reshape(-1, t, *z.shape[1:]).transpose(1, 2)

    def _check_latent_channels(self, z: Tensor) -> None:
        if z.shape[1] != self.config.z_channels:
            raise ValueError(f"expected {self.config.z_channels} latent channels, got {z.shape[1]}")

    def decode(
        self,
        z: Tensor,
        num_frames: int | None = None,
        return_dict: bool = True,
        generator: torch.Generator | None = None,
    ) -> DecoderOutput | tuple[Tensor]:
        """Decode latents; ``num_frames`` counts *latent* frames per video for 4D input (see class docs).

        ``generator`` is accepted because diffusers' pipelines pass it; decoding draws no random numbers.
        """
        video = self._latents_as_video(z, num_frames)
        self._check_latent_channels(video)
        if self.use_slicing and video.shape[0] > 1:
            x = torch.cat([self._decode_video(part) for part in video.split(1)])
        else:
            x = self._decode_video(video)
        if z.dim() == 4 or self.config.reshape_x_dim_to_4:  # 4D latents in, (B T) C H W out
            x = _frames_as_batch(x)
        return DecoderOutput(sample=x) if return_dict else (x,)

    def forward(
        self,
        sample: Tensor,
        sample_posterior: bool = False,
        return_dict: bool = True,
        generator: torch.Generator | None = None,
        num_frames: int | None = None,
    ) -> DecoderOutput | tuple[Tensor]:
        """Encode, take the posterior mode (or a seeded sample), decode."""
        posterior = self.encode(sample).latent_dist
        z = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        return self.decode(z, num_frames=num_frames, return_dict=return_dict)
