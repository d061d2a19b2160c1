"""CV-VAE with 16 latent channels, compatible with the Stable Diffusion 3 image VAE (release ``vae3d_sd3``).

Config keys and parameter names are those of the release, so ``CVVAESD3Model.from_pretrained(path,
subfolder="vae3d_sd3")`` loads its weights without conversion. The call surface (``encode(x).latent_dist``,
``decode(z, num_frames=None).sample``, images as 4D input, ``1 + 4k`` frame rule, official temporal windows,
spatial tiles, slicing) is :class:`~cvvae.models.cvvae.CVVAEModel`'s, inherited from it.

Architecture (released config: ``block_out_channels=(128, 256, 512, 512)``, ``layers_per_block=2``,
``out_channels=16`` latent channels, ``half_3d``, causal encoder, centred decoder):

* encoder: causal 3D ``conv_in``; per level ``layers_per_block`` half-3D ResNet blocks, then a strided causal
  downsample after every level but the last, halving time too at even levels (0 and 2: 4x in time, 8x in
  space); mid block ResNet - per-frame attention - ResNet; GroupNorm, SiLU, causal ``conv_out`` to ``2 *
  out_channels`` (mean, log-variance);
* decoder (``up_blocks`` ordered from the deepest level): centred 3D ``conv_in``; the same mid block;
  ``layers_per_block + 1`` ResNet blocks per level, an upsample after every block but the last, doubling time
  (``T -> 2T - 1``) after up-blocks 0 and 2; GroupNorm, SiLU, centred ``conv_out``.

Padding and layer differences from the SD2.1-compatible release are listed in :mod:`cvvae.models.sd3_layers`.

Latent scale: the release ships no ``scaling_factor``. Its latents are regularised towards the SD3 image
VAE's, so ``scaling_factor=1.5305`` and ``shift_factor=0.0609`` (the SD3 image VAE's values) are config
defaults here, for a pipeline that feeds ``(z - shift_factor) * scaling_factor`` to an SD3 transformer. The
library itself keeps latents unscaled.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from typing import Any

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.models.activations import get_activation
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn

from .cvvae import CVVAEModel, TemporalChunking, _register_pipeline_keys
from .layers import GroupNorm
from .sd3_layers import (
    FrameAttention,
    Sd3ConvKind,
    Sd3Downsample3D,
    Sd3ResnetBlock3D,
    Sd3Upsample3D,
    make_sd3_conv,
)

DOWN_BLOCK_TYPE = "DownEncoderBlock3D"
UP_BLOCK_TYPE = "UpDecoderBlock3D"


def _time_resampled(level: int, num_levels: int) -> bool:
    """Whether block ``level`` (encoder order, or decoder ``up_blocks`` order) halves / doubles time."""
    return level % 2 == 0 and level != num_levels - 1


class _BlockSettings:
    """What every ResNet block and attention of one encoder or decoder shares."""

    def __init__(
        self,
        conv_kind: Sd3ConvKind,
        half_3d: bool,
        norm_num_groups: int,
        norm_eps: float,
        norm_per_frame: bool,
        act_fn: str,
    ) -> None:
        self.conv_kind = conv_kind
        self.half_3d, self.act_fn = half_3d, act_fn
        self.norm_num_groups, self.norm_eps, self.norm_per_frame = norm_num_groups, norm_eps, norm_per_frame

    def resnet(self, in_channels: int, out_channels: int) -> Sd3ResnetBlock3D:
        return Sd3ResnetBlock3D(
            in_channels,
            out_channels,
            self.conv_kind,
            self.half_3d,
            self.norm_num_groups,
            self.norm_eps,
            self.norm_per_frame,
            self.act_fn,
        )

    def norm(self, channels: int) -> GroupNorm:
        return GroupNorm(self.norm_num_groups, channels, self.norm_per_frame, self.norm_eps)


class DownEncoderBlock3D(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_layers: int,
        settings: _BlockSettings,
        down: bool | None,
    ) -> None:
        """``down``: None for no downsample, else whether it halves time too."""
        super().__init__()
        self.resnets = nn.ModuleList(
            settings.resnet(in_channels if i == 0 else out_channels, out_channels) for i in range(num_layers)
        )
        self.downsamplers = (
            None
            if down is None
            else nn.ModuleList([Sd3Downsample3D(out_channels, settings.conv_kind, down_time=down)])
        )


class UpDecoderBlock3D(nn.Module):
    def __init__(
        self, in_channels: int, out_channels: int, num_layers: int, settings: _BlockSettings, up: bool | None
    ) -> None:
        """``up``: None for no upsample, else whether it doubles time too."""
        super().__init__()
        self.resnets = nn.ModuleList(
            settings.resnet(in_channels if i == 0 else out_channels, out_channels) for i in range(num_layers)
        )
        self.upsamplers = (
            None
            if up is None
            else nn.ModuleList([Sd3Upsample3D(out_channels, settings.conv_kind, up_time=up)])
        )


class MidBlock3D(nn.Module):
    """ResNet, per-frame attention (optional), ResNet."""

    def __init__(self, channels: int, settings: _BlockSettings, add_attention: bool) -> None:
        super().__init__()
        attention = FrameAttention(channels, settings.norm_num_groups, settings.norm_eps)
        self.attentions = nn.ModuleList([attention] if add_attention else [])
        self.resnets = nn.ModuleList(
            [settings.resnet(channels, channels), settings.resnet(channels, channels)]
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.resnets[0](x)
        if len(self.attentions) > 0:
            x = self.attentions[0](x)
        return self.resnets[1](x)


class _CheckpointedStack(nn.Module):
    """Runs blocks with gradient checkpointing when diffusers has switched it on."""

    def __init__(self) -> None:
        super().__init__()
        self.gradient_checkpointing = False

    def _run(self, block: nn.Module, h: Tensor) -> Tensor:
        if torch.is_grad_enabled() and self.gradient_checkpointing:
            return self._gradient_checkpointing_func(block, h)
        return block(h)

    def _run_blocks(self, block: nn.Module, h: Tensor) -> Tensor:
        for resnet in block.resnets:
            h = self._run(resnet, h)
        resamplers = getattr(block, "downsamplers", None) or getattr(block, "upsamplers", None)
        for resampler in resamplers or ():
            h = resampler(h)
        return h


class Encoder3D(_CheckpointedStack):
    """Video -> moments (``2 * latent_channels``: mean, log-variance), 8x smaller in space, 4x in time."""

    def __init__(
        self,
        *,
        in_channels: int,
        latent_channels: int,
        block_out_channels: Sequence[int],
        layers_per_block: int,
        double_z: bool,
        mid_block_add_attention: bool,
        settings: _BlockSettings,
    ) -> None:
        super().__init__()
        levels = len(block_out_channels)
        kind = settings.conv_kind
        self.conv_in = make_sd3_conv(kind, in_channels, block_out_channels[0])
        self.down_blocks = nn.ModuleList()
        width = block_out_channels[0]
        for level, out in enumerate(block_out_channels):
            down = None if level == levels - 1 else _time_resampled(level, levels)
            self.down_blocks.append(DownEncoderBlock3D(width, out, layers_per_block, settings, down))
            width = out
        self.mid_block = MidBlock3D(width, settings, mid_block_add_attention)
        self.conv_norm_out = settings.norm(width)
        self.conv_act = get_activation(settings.act_fn)
        self.conv_out = make_sd3_conv(kind, width, 2 * latent_channels if double_z else latent_channels)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for block in self.down_blocks:
            h = self._run_blocks(block, h)
        h = self._run(self.mid_block, h)
        return self.conv_out(self.conv_act(self.conv_norm_out(h)))


class Decoder3D(_CheckpointedStack):
    """Latents -> video; ``1 + k`` latent frames become ``1 + 4k`` frames."""

    def __init__(
        self,
        *,
        latent_channels: int,
        out_channels: int,
        block_out_channels: Sequence[int],
        layers_per_block: int,
        mid_block_add_attention: bool,
        settings: _BlockSettings,
    ) -> None:
        super().__init__()
        levels = len(block_out_channels)
        kind = settings.conv_kind
        widths = list(reversed(block_out_channels))
        self.conv_in = make_sd3_conv(kind, latent_channels, widths[0])
        self.up_blocks = nn.ModuleList()  # registered before mid_block, as released
        self.mid_block = MidBlock3D(widths[0], settings, mid_block_add_attention)
        width = widths[0]
        for i, out in enumerate(widths):
            up = None if i == levels - 1 else _time_resampled(i, levels)
            self.up_blocks.append(UpDecoderBlock3D(width, out, layers_per_block + 1, settings, up))
            width = out
        self.conv_norm_out = settings.norm(width)
        self.conv_act = get_activation(settings.act_fn)
        self.conv_out = make_sd3_conv(kind, width, out_channels)

    def forward(self, z: Tensor) -> Tensor:
        h = self._run(self.mid_block, self.conv_in(z))
        for block in self.up_blocks:
            h = self._run_blocks(block, h)
        return self.conv_out(self.conv_act(self.conv_norm_out(h)))


class CVVAESD3Model(CVVAEModel):
    r"""The z=16 CV-VAE of the ``vae3d_sd3`` release (diffusers ``ModelMixin`` + ``ConfigMixin``).

    Config keys are those of the release (``out_channels`` is the number of *latent* channels, 16) plus
    defaulted extras: ``norm_eps`` (1e-6 as released), ``norm_per_frame`` (False as released; True normalises
    each frame alone, which makes the encoder frame-causal and ``causal_cache`` chunking exact),
    ``scaling_factor`` and ``shift_factor`` (see the module docstring), ``force_upcast`` (True, as the SD3
    image VAE's: pipelines decode fp16 latents in fp32) and ``latent_channels`` (derived: ``out_channels``,
    the key diffusers' SD3 pipeline reads). ``norm_num_groups`` can be lowered for tiny test models.

    Shapes, frame rules, temporal windows (``en_de_n_frames_a_time``), spatial tiles (``tile_spatial_size``,
    ``tile_overlap_ratio``), slicing and image mode are those of :class:`~cvvae.models.cvvae.CVVAEModel`:
    ``encode`` takes ``B 3 (1 + 4k) H W`` (or ``B 3 H W`` images) and gives latents ``B 16 (1 + k) H/8 W/8``;
    ``decode(z)`` gives ``1 + 4 (t - 1)`` frames, and ``decode(z4d)`` decodes every latent as one image
    (``B 16 h w`` in, ``B 3 H W`` out), as a diffusers image pipeline calls it.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 16,
        down_block_types: Sequence[str] = (DOWN_BLOCK_TYPE,) * 4,
        up_block_types: Sequence[str] = (UP_BLOCK_TYPE,) * 4,
        block_out_channels: Sequence[int] = (128, 256, 512, 512),
        layers_per_block: int = 2,
        norm_num_groups: int = 32,
        act_fn: str = "silu",
        double_z: bool = True,
        mid_block_add_attention: bool = True,
        causal_encoder: bool = True,
        causal_decoder: bool = False,
        half_3d: bool = True,
        en_de_n_frames_a_time: int | None = 16,
        time_n_compress: int | None = 4,
        spatial_n_compress: int | None = 8,
        tile_spatial_size: int | None = 576,
        num_video_frames: int | None = None,
        tile_overlap_ratio: float | None = 0.2222,
        reshape_z_dim_to_4: bool = False,
        reshape_x_dim_to_4: bool = False,
        norm_eps: float = 1e-6,
        norm_per_frame: bool = False,
        scaling_factor: float = 1.5305,
        shift_factor: float = 0.0609,
        latent_channels: int | None = None,
        force_upcast: bool = True,
    ) -> None:
        ModelMixin.__init__(self)  # CVVAEModel.__init__ builds the SD2.1 layout: skipped on purpose
        _check_sd3_config(
            down_block_types, up_block_types, block_out_channels, norm_num_groups, time_n_compress
        )
        _register_pipeline_keys(
            self,
            widths=tuple(block_out_channels),
            latent_channels=out_channels,
            given_widths=None,  # block_out_channels is this model's own architecture key
            given_latent_channels=latent_channels,
            spatial_n_compress=spatial_n_compress,
            time_n_compress=time_n_compress,
        )
        levels = len(block_out_channels)

        def settings(causal: bool) -> _BlockSettings:
            kind: Sd3ConvKind = "causal" if causal else "centred"
            return _BlockSettings(kind, half_3d, norm_num_groups, norm_eps, norm_per_frame, act_fn)

        self.encoder = Encoder3D(
            in_channels=in_channels,
            latent_channels=out_channels,
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            double_z=double_z,
            mid_block_add_attention=mid_block_add_attention,
            settings=settings(causal_encoder),
        )
        self.decoder = Decoder3D(
            latent_channels=out_channels,
            out_channels=in_channels,
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            mid_block_add_attention=mid_block_add_attention,
            settings=settings(causal_decoder),
        )
        # State read by the inherited encode/decode/tiling/windowing methods.
        self.time_compression = 2 ** sum(_time_resampled(level, levels) for level in range(levels))
        self.use_slicing = False
        self.use_tiling = tile_spatial_size is not None
        self.tile_sample_size = tile_spatial_size or 576
        self.tile_overlap = tile_overlap_ratio if tile_overlap_ratio is not None else 0.2222
        self.temporal_chunking: TemporalChunking = "official" if en_de_n_frames_a_time else None
        self.encode_chunk_frames = en_de_n_frames_a_time or 16

    @property
    def latent_channels(self) -> int:
        """Channels of one latent frame (the release's ``out_channels``: 16)."""
        return self.config.out_channels

    # ------------------------------------------------------------------ released config as data
    @classmethod
    def released_config(cls, variant: str = "vae3d_sd3") -> dict[str, Any]:
        """The release's ``config.json`` keys for ``vae3d_sd3`` as a dict."""
        if variant != "vae3d_sd3":
            raise ValueError(
                f"unknown released variant {variant!r} for CVVAESD3Model; choose 'vae3d_sd3' "
                "(the SD2.1-compatible 'vae3d' and 'vae3d_v1-1' are CVVAEModel)"
            )
        text = resources.files("cvvae.models").joinpath("configs/vae3d_sd3.json").read_text()
        return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}

    # ------------------------------------------------------------------ overrides for the SD3 config keys
    def set_temporal_chunking(self, mode: TemporalChunking, chunk_frames: int | None = None) -> None:
        """``"official"`` windows, exact ``"causal_cache"`` chunks or ``None``; see
        :meth:`CVVAEModel.set_temporal_chunking`."""
        if mode not in ("official", "causal_cache", None):
            raise ValueError(f"unknown temporal chunking {mode!r}; choose 'official', 'causal_cache' or None")
        chunk = chunk_frames or self.encode_chunk_frames
        if chunk % self.time_compression:
            raise ValueError(f"chunk_frames must be a multiple of {self.time_compression}, got {chunk}")
        if mode == "causal_cache":
            if not self.config.causal_encoder:
                raise ValueError("causal_cache chunking needs a causal encoder (causal_encoder=True)")
            if not self.config.norm_per_frame:
                raise ValueError(
                    "causal_cache chunking is exact only with per-frame normalisation (norm_per_frame=True); "
                    "this model's GroupNorm statistics span all frames of a pass. Use 'official' windows or "
                    "None."
                )
        self.temporal_chunking = mode
        self.encode_chunk_frames = chunk

    def _check_latent_channels(self, z: Tensor) -> None:
        if z.shape[1] != self.latent_channels:
            raise ValueError(
                f"expected {self.latent_channels} latent channels, got {z.shape[1]}: is this a latent of the "
                "SD3-compatible model (16 channels) rather than of the SD2.1-compatible one (4)?"
            )


def _check_sd3_config(
    down_block_types: Sequence[str],
    up_block_types: Sequence[str],
    block_out_channels: Sequence[int],
    norm_num_groups: int,
    time_n_compress: int | None,
) -> None:
    levels = len(block_out_channels)
    if levels < 1:
        raise ValueError("block_out_channels needs at least one level")
    if list(down_block_types) != [DOWN_BLOCK_TYPE] * levels:
        raise ValueError(
            f"down_block_types must be {levels} x {DOWN_BLOCK_TYPE!r} (one per block_out_channels entry), "
            f"got {list(down_block_types)}"
        )
    if list(up_block_types) != [UP_BLOCK_TYPE] * levels:
        raise ValueError(
            f"up_block_types must be {levels} x {UP_BLOCK_TYPE!r} (one per block_out_channels entry), "
            f"got {list(up_block_types)}"
        )
    if any(c % norm_num_groups for c in block_out_channels):
        raise ValueError(
            f"every width in block_out_channels {list(block_out_channels)} must divide by {norm_num_groups=}"
        )
    factor = 2 ** sum(_time_resampled(level, levels) for level in range(levels))
    if time_n_compress is not None and time_n_compress != factor:
        raise ValueError(
            f"time_n_compress={time_n_compress} does not match the architecture: {levels} levels compress "
            f"time by {factor}"
        )
