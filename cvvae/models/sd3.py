"""CV-VAE with 16 latent channels, compatible with the Stable Diffusion 3 image VAE (release ``vae3d_sd3``).

Config keys and parameter names are those of the release, so ``CVVAESD3Model.from_pretrained(path,
subfolder="vae3d_sd3")`` loads its weights without conversion. The call surface (``encode(x).latent_dist``,
``decode(z, num_frames=None).sample``, images as 4D input, ``1 + 4k`` frame rule, official temporal windows,
spatial tiles, slicing) is :class:`~cvvae.models.cvvae.CVVAEModel`'s: both subclass
:class:`~cvvae.models.base.CVVAEBase`.

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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from diffusers.configuration_utils import register_to_config
from diffusers.models.activations import get_activation
from torch import Tensor, nn

from .base import CVVAEBase
from .layers import PLAIN, BlockSettings, CheckpointedStack, Layers
from .sd3_layers import (
    FrameAttention,
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


@dataclass(frozen=True)
class _Layout:
    """The shape of the encoder and the decoder, from the config."""

    block_out_channels: tuple[int, ...]
    layers_per_block: int
    latent_channels: int
    mid_block_add_attention: bool


@dataclass(frozen=True)
class _Blocks(BlockSettings):
    """What every ResNet block and attention of one encoder or decoder of this release shares."""

    act_fn: str = "silu"

    def resnet(self, in_channels: int, out_channels: int) -> Sd3ResnetBlock3D:
        return Sd3ResnetBlock3D(in_channels, out_channels, act_fn=self.act_fn, **self.resnet_options())


class _ResnetBlocks(nn.Module):
    """``resnets``, then at most one resampler, kept in a list under the subclass's ``resampler_name`` (as
    released: ``downsamplers.0`` / ``upsamplers.0``)."""

    resampler_name: ClassVar[str]
    resampler_kind: ClassVar[type[nn.Module]]

    def __init__(
        self, in_channels: int, out_channels: int, num_layers: int, blocks: _Blocks, time: bool | None
    ) -> None:
        """``time``: None for no resampler, else whether it resamples time too."""
        super().__init__()
        self.resnets = nn.ModuleList(
            blocks.resnet(in_channels if i == 0 else out_channels, out_channels) for i in range(num_layers)
        )
        resampler = None if time is None else self.resampler_kind(out_channels, blocks.conv_kind, time)
        setattr(self, self.resampler_name, None if resampler is None else nn.ModuleList([resampler]))

    def run(self, h: Tensor, layers: Layers) -> Tensor:
        for resnet in self.resnets:
            h = layers.resnet(resnet, h)
        for resampler in getattr(self, self.resampler_name) or ():
            h = layers.resample(resampler, h)
        return h


class DownEncoderBlock3D(_ResnetBlocks):
    resampler_name = "downsamplers"
    resampler_kind = Sd3Downsample3D


class UpDecoderBlock3D(_ResnetBlocks):
    resampler_name = "upsamplers"
    resampler_kind = Sd3Upsample3D


class MidBlock3D(nn.Module):
    """ResNet, per-frame attention (optional), ResNet."""

    def __init__(self, channels: int, blocks: _Blocks, add_attention: bool) -> None:
        super().__init__()
        attention = FrameAttention(channels, blocks.norm_num_groups, blocks.norm_eps)
        self.attentions = nn.ModuleList([attention] if add_attention else [])
        self.resnets = nn.ModuleList([blocks.resnet(channels, channels), blocks.resnet(channels, channels)])

    def run(self, h: Tensor, layers: Layers) -> Tensor:
        h = layers.resnet(self.resnets[0], h)
        if len(self.attentions) > 0:
            h = layers.attention(self.attentions[0], h)
        return layers.resnet(self.resnets[1], h)

    def forward(self, x: Tensor) -> Tensor:
        return self.run(x, PLAIN)


class Encoder3D(CheckpointedStack):
    """Video -> moments (``2 * latent_channels``: mean, log-variance), 8x smaller in space, 4x in time."""

    def __init__(self, in_channels: int, double_z: bool, layout: _Layout, blocks: _Blocks) -> None:
        super().__init__()
        widths = layout.block_out_channels
        levels = len(widths)
        self.conv_in = make_sd3_conv(blocks.conv_kind, in_channels, widths[0])
        self.down_blocks = nn.ModuleList()
        width = widths[0]
        for level, out in enumerate(widths):
            down = None if level == levels - 1 else _time_resampled(level, levels)
            self.down_blocks.append(DownEncoderBlock3D(width, out, layout.layers_per_block, blocks, down))
            width = out
        self.mid_block = MidBlock3D(width, blocks, layout.mid_block_add_attention)
        self.conv_norm_out = blocks.norm(width)
        self.conv_act = get_activation(blocks.act_fn)
        z = layout.latent_channels
        self.conv_out = make_sd3_conv(blocks.conv_kind, width, 2 * z if double_z else z)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for block in self.down_blocks:
            h = block.run(h, self)
        h = self.checkpointed(self.mid_block, h)
        return self.conv_out(self.conv_act(self.conv_norm_out(h)))


class Decoder3D(CheckpointedStack):
    """Latents -> video; ``1 + k`` latent frames become ``1 + 4k`` frames."""

    def __init__(self, out_channels: int, layout: _Layout, blocks: _Blocks) -> None:
        super().__init__()
        widths = list(reversed(layout.block_out_channels))
        levels = len(widths)
        self.conv_in = make_sd3_conv(blocks.conv_kind, layout.latent_channels, widths[0])
        self.up_blocks = nn.ModuleList()  # registered before mid_block, as released
        self.mid_block = MidBlock3D(widths[0], blocks, layout.mid_block_add_attention)
        width = widths[0]
        for i, out in enumerate(widths):
            up = None if i == levels - 1 else _time_resampled(i, levels)
            self.up_blocks.append(UpDecoderBlock3D(width, out, layout.layers_per_block + 1, blocks, up))
            width = out
        self.conv_norm_out = blocks.norm(width)
        self.conv_act = get_activation(blocks.act_fn)
        self.conv_out = make_sd3_conv(blocks.conv_kind, width, out_channels)

    def forward(self, z: Tensor) -> Tensor:
        h = self.checkpointed(self.mid_block, self.conv_in(z))
        for block in self.up_blocks:
            h = block.run(h, self)
        return self.conv_out(self.conv_act(self.conv_norm_out(h)))


class CVVAESD3Model(CVVAEBase):
    r"""The z=16 CV-VAE of the ``vae3d_sd3`` release (diffusers ``ModelMixin`` + ``ConfigMixin``).

    Config keys are those of the release (``out_channels`` is the number of *latent* channels, 16) plus
    defaulted extras: ``norm_eps`` (1e-6 as released), ``norm_per_frame`` (False as released; True normalises
    each frame alone, which makes the encoder frame-causal and ``causal_cache`` chunking exact),
    ``scaling_factor`` and ``shift_factor`` (see the module docstring), ``force_upcast`` (True, as the SD3
    image VAE's: pipelines decode fp16 latents in fp32) and ``latent_channels`` (derived: ``out_channels``,
    the key diffusers' SD3 pipeline reads). ``norm_num_groups`` can be lowered for tiny test models.

    Shapes, frame rules, temporal windows (``en_de_n_frames_a_time``), spatial tiles (``tile_spatial_size``,
    ``tile_overlap_ratio``), slicing and image mode are those of :class:`~cvvae.models.base.CVVAEBase`:
    ``encode`` takes ``B 3 (1 + 4k) H W`` (or ``B 3 H W`` images) and gives latents ``B 16 (1 + k) H/8 W/8``;
    ``decode(z)`` gives ``1 + 4 (t - 1)`` frames, and ``decode(z4d)`` decodes every latent as one image
    (``B 16 h w`` in, ``B 3 H W`` out), as a diffusers image pipeline calls it.
    """

    _released_configs = {"vae3d_sd3": "vae3d_sd3.json"}
    _other_variants = " (the SD2.1-compatible 'vae3d' and 'vae3d_v1-1' are CVVAEModel)"
    _latent_channels_hint = (
        ": is this a latent of the SD3-compatible model (16 channels) rather than of the SD2.1-compatible "
        "one (4)?"
    )

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
        _check_sd3_config(down_block_types, up_block_types, block_out_channels, norm_num_groups)
        super().__init__(widths=block_out_channels, latent_channels=out_channels)

        def blocks(causal: bool) -> _Blocks:
            return _Blocks.from_config(self.config, "causal" if causal else "centred")

        layout = _Layout(tuple(block_out_channels), layers_per_block, out_channels, mid_block_add_attention)
        self.encoder = Encoder3D(in_channels, double_z, layout, blocks(causal_encoder))
        self.decoder = Decoder3D(in_channels, layout, blocks(causal_decoder))


def _check_sd3_config(
    down_block_types: Sequence[str],
    up_block_types: Sequence[str],
    block_out_channels: Sequence[int],
    norm_num_groups: int,
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
