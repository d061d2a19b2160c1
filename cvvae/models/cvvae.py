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

from dataclasses import dataclass

from diffusers.configuration_utils import register_to_config
from torch import Tensor, nn
from torch.nn import functional as F

from .base import CVVAEBase, VideoDiagonalGaussian
from .layers import (
    BlockSettings,
    CheckpointedStack,
    ConvKind,
    Downsample3D,
    Layers,
    ResnetBlock3D,
    Upsample3D,
    make_attention,
    make_conv,
)

__all__ = ["CVVAEModel", "Decoder", "Encoder", "VideoDiagonalGaussian"]


def _conv_kind(use_3d_conv: bool, causal: bool) -> ConvKind:
    if not use_3d_conv:
        return "per_frame"
    return "causal" if causal else "centred"


@dataclass(frozen=True)
class _Layout:
    """The shape of the encoder and the decoder, from the config."""

    ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    z_channels: int
    attn_resolutions: tuple[int, ...]
    resolution: int = 256

    def width(self, level: int) -> int:
        return self.ch * self.ch_mult[level]


@dataclass(frozen=True)
class _Blocks(BlockSettings):
    """What every ResNet block and attention of one encoder or decoder of this release shares."""

    attn_type: str = "none"

    def resnet(self, in_channels: int, out_channels: int) -> ResnetBlock3D:
        return ResnetBlock3D(in_channels, out_channels, **self.resnet_options())

    def attention(self, channels: int) -> nn.Module:
        return make_attention(
            self.attn_type, channels, self.norm_num_groups, self.norm_per_frame, self.norm_eps
        )


class _Stage(nn.Module):
    """One resolution level: ``block`` (ResNet blocks), ``attn`` (one per block, or none), then the
    ``downsample`` or ``upsample`` a level may have."""

    def __init__(
        self, blocks: _Blocks, in_channels: int, out_channels: int, num_blocks: int, attention: bool
    ) -> None:
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()
        for i in range(num_blocks):
            self.block.append(blocks.resnet(in_channels if i == 0 else out_channels, out_channels))
            if attention:
                self.attn.append(blocks.attention(out_channels))

    def run(self, h: Tensor, layers: Layers) -> Tensor:
        for i, block in enumerate(self.block):
            h = layers.resnet(block, h)
            if len(self.attn) > 0:
                h = layers.attention(self.attn[i], h)
        for name in ("downsample", "upsample"):
            if hasattr(self, name):
                h = layers.resample(getattr(self, name), h)
        return h


class _Mid(nn.Module):
    """ResNet, attention, ResNet."""

    def __init__(self, channels: int, blocks: _Blocks) -> None:
        super().__init__()
        attention = blocks.attention(channels)  # drawn first: a seeded init depends on creation order
        self.block_1 = blocks.resnet(channels, channels)
        self.attn_1 = attention
        self.block_2 = blocks.resnet(channels, channels)

    def run(self, h: Tensor, layers: Layers) -> Tensor:
        h = layers.resnet(self.block_1, h)
        h = layers.attention(self.attn_1, h)
        return layers.resnet(self.block_2, h)


class Encoder(CheckpointedStack):
    """Video -> moments (``2 z`` channels: mean, then log-variance); 8x smaller in space, 4x in time."""

    def __init__(self, in_channels: int, double_z: bool, layout: _Layout, blocks: _Blocks) -> None:
        super().__init__()
        levels = len(layout.ch_mult)
        self.conv_in = make_conv(blocks.conv_kind, in_channels, layout.ch, 3)
        self.down = nn.ModuleList()
        block_in, res = layout.ch, layout.resolution
        for level in range(levels):
            width = layout.width(level)
            stage = _Stage(blocks, block_in, width, layout.num_res_blocks, res in layout.attn_resolutions)
            block_in = width
            if level != levels - 1:
                stage.downsample = Downsample3D(block_in, down_time=level % 2 == 0)
                res //= 2
            self.down.append(stage)
        self.mid = _Mid(block_in, blocks)
        self.norm_out = blocks.norm(block_in)
        z = layout.z_channels
        self.conv_out = make_conv(blocks.conv_kind, block_in, 2 * z if double_z else z, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            h = stage.run(h, self)
        h = self.mid.run(h, self)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(CheckpointedStack):
    """Latents -> video; ``1 + k`` latent frames become ``1 + 4k`` frames."""

    def __init__(self, out_ch: int, layout: _Layout, blocks: _Blocks) -> None:
        super().__init__()
        levels = len(layout.ch_mult)
        block_in = layout.width(levels - 1)
        res = layout.resolution // 2 ** (levels - 1)
        self.conv_in = make_conv(blocks.conv_kind, layout.z_channels, block_in, 3)
        self.mid = _Mid(block_in, blocks)
        stages: list[_Stage] = []
        for level in reversed(range(levels)):
            width = layout.width(level)
            stage = _Stage(blocks, block_in, width, layout.num_res_blocks + 1, res in layout.attn_resolutions)
            block_in = width
            if level != 0:
                stage.upsample = Upsample3D(block_in, up_time=level % 2 == 1)
                res *= 2
            stages.insert(0, stage)
        self.up = nn.ModuleList(stages)  # indexed by level, as released
        self.norm_out = blocks.norm(block_in)
        self.conv_out = make_conv(blocks.conv_kind, block_in, out_ch, 3)

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid.run(self.conv_in(z), self)
        for stage in reversed(self.up):
            h = stage.run(h, self)
        return self.conv_out(F.silu(self.norm_out(h)))


class CVVAEModel(CVVAEBase):
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

    Shapes, frame rules, temporal windows, spatial tiles, slicing and image mode: see
    :class:`~cvvae.models.base.CVVAEBase`.
    """

    _released_configs = {"vae3d": "vae3d.json", "vae3d_v1-1": "vae3d.json"}
    _other_variants = " (the SD3-compatible 'vae3d_sd3' is CVVAESD3Model)"

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
        if len(ch_mult) < 1:
            raise ValueError("ch_mult needs at least one level")
        if any(ch * m % norm_num_groups for m in ch_mult):
            raise ValueError(
                f"every width ch * ch_mult ({ch} * {list(ch_mult)}) must divide by {norm_num_groups=}"
            )
        super().__init__(widths=[ch * m for m in ch_mult], latent_channels=z_channels)

        def blocks(causal: bool, attn_type: str) -> _Blocks:
            kind = _conv_kind(use_3d_conv, causal)
            return _Blocks.from_config(self.config, kind, attn_type=attn_type)

        layout = _Layout(ch, tuple(ch_mult), num_res_blocks, z_channels, tuple(attn_resolutions))
        self.encoder = Encoder(in_channels, double_z, layout, blocks(causal_encoder, encoder_attn_type))
        self.decoder = Decoder(out_ch, layout, blocks(causal_decoder, decoder_attn_type))

    def _encoder_is_causal(self) -> bool:
        # causal_cache carries frames through causal 3D convs only (use_3d_conv=True, as released)
        return bool(self.config.causal_encoder and self.config.use_3d_conv)
