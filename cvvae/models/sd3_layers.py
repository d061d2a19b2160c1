"""Building blocks of the z=16 (SD3-compatible) CV-VAE, ``vae3d_sd3``.

This release follows diffusers' ``AutoencoderKL`` layout (``down_blocks.N.resnets.M``, ``conv_shortcut``,
``downsamplers.0.conv``, ``upsamplers.0.conv``, ``mid_block.attentions.0.to_q`` ...), so its weights load
without key conversion. It differs from the SD2.1-compatible release (:mod:`cvvae.models.layers`) in:

* padding: every 3D conv pads *replicate* in space as well as in time (the SD2.1 release pads zeros in
  space). Causal convs repeat the first frame ``kernel - 1`` times in front; centred (decoder) convs repeat
  the edge frame once on each side. The 2D half of each ResNet block pads zeros, as a plain ``Conv2d``;
* downsampling: a causal strided 3x3x3 conv padded by one replicated pixel on *every* side (the SD2.1
  release pads zeros on the right and bottom only);
* the ResNet skip is a 2D 1x1 conv per frame (``conv_shortcut``) rather than a 3D 1x1x1 one;
* the mid-block attention of both encoder and decoder is spatial only (each frame on its own, single head,
  diffusers ``Attention``): there is no temporal attention;
* GroupNorm eps is 1e-6 everywhere.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from diffusers.models.activations import get_activation
from diffusers.models.attention_processor import Attention
from torch import Tensor, nn

from .layers import Conv2dPerFrame, GroupNorm, _CausalTimeMixin, frames_from_channel_groups, over_frames

Sd3ConvKind = Literal["causal", "centred"]


class ReplicateCausalConv3d(_CausalTimeMixin, nn.Conv3d):
    """3D conv that never looks at future frames; edge pixels replicated in space, the first frame repeated
    ``kernel - 1`` times in front in time (or the previous chunk's frames when a temporal cache is set)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int | tuple[int, int, int] = 1,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0)
        self.space_pad = kernel_size // 2
        self.time_pad = kernel_size - 1

    def forward(self, x: Tensor) -> Tensor:
        p = self.space_pad
        if p:
            # Replicate padding is separable, so space then time equals the released one-shot 3D pad.
            x = F.pad(x, (p, p, p, p, 0, 0), mode="replicate")
        return self._causal_conv(x, self.time_pad, self, super().forward)


def make_sd3_conv(
    kind: Sd3ConvKind,
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    stride: int | tuple[int, int, int] = 1,
) -> nn.Conv3d:
    """3D conv of the SD3 release: ``causal`` (encoder) or ``centred`` (decoder), replicate padding."""
    if kind == "causal":
        return ReplicateCausalConv3d(in_channels, out_channels, kernel_size, stride)
    if kind == "centred":
        return nn.Conv3d(
            in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, padding_mode="replicate"
        )
    raise ValueError(f"unknown conv kind {kind!r}; choose 'causal' or 'centred'")


class Sd3ResnetBlock3D(nn.Module):
    """Norm, act, conv1 (3D), norm, act, dropout, conv2 (2D per frame when ``half_3d``), plus skip
    (a per-frame 1x1 ``conv_shortcut`` when the width changes)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        conv_kind: Sd3ConvKind,
        half_3d: bool = True,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-6,
        norm_per_frame: bool = False,
        act_fn: str = "silu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = GroupNorm(norm_num_groups, in_channels, norm_per_frame, norm_eps)
        self.conv1 = make_sd3_conv(conv_kind, in_channels, out_channels)
        self.norm2 = GroupNorm(norm_num_groups, out_channels, norm_per_frame, norm_eps)
        self.dropout = nn.Dropout(dropout)
        if half_3d:
            self.conv2: nn.Module = Conv2dPerFrame(out_channels, out_channels, 3, padding=1)
        else:
            self.conv2 = make_sd3_conv(conv_kind, out_channels, out_channels)
        self.nonlinearity = get_activation(act_fn)
        self.conv_shortcut = (
            Conv2dPerFrame(in_channels, out_channels, 1) if in_channels != out_channels else None
        )

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(self.nonlinearity(self.norm1(x)))
        h = self.conv2(self.dropout(self.nonlinearity(self.norm2(h))))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return skip + h


class FrameAttention(Attention):
    """diffusers' single-head VAE self-attention (GroupNorm, ``to_q/to_k/to_v/to_out``, residual) applied to
    every frame of a ``B C T H W`` tensor on its own."""

    def __init__(self, channels: int, norm_num_groups: int = 32, norm_eps: float = 1e-6) -> None:
        super().__init__(
            channels,
            heads=1,
            dim_head=channels,
            rescale_output_factor=1.0,
            eps=norm_eps,
            norm_num_groups=norm_num_groups,
            residual_connection=True,
            bias=True,
            upcast_softmax=True,
            _from_deprecated_attn_block=True,  # also loads checkpoints with query/key/value/proj_attn names
        )

    def forward(self, hidden_states: Tensor, *args: object, **kwargs: object) -> Tensor:
        if hidden_states.dim() != 5:
            return super().forward(hidden_states, *args, **kwargs)
        attend = super().forward
        return over_frames(lambda frames: attend(frames, *args, **kwargs), hidden_states)


class Sd3Downsample3D(nn.Module):
    """Causal strided 3x3x3 conv: halves space, and time too when ``down_time`` (``T -> (T - 1) / 2 + 1``)."""

    def __init__(self, channels: int, conv_kind: Sd3ConvKind, down_time: bool) -> None:
        super().__init__()
        self.down_time = down_time
        stride = (2, 2, 2) if down_time else (1, 2, 2)
        self.conv = make_sd3_conv(conv_kind, channels, channels, 3, stride)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Sd3Upsample3D(nn.Module):
    """Nearest 2x in space, then a 3x3x3 conv. With ``up_time`` the conv has twice the channels, the two
    halves become two interleaved frames and the first frame is dropped: ``1 + k`` frames -> ``1 + 2k``."""

    def __init__(self, channels: int, conv_kind: Sd3ConvKind, up_time: bool) -> None:
        super().__init__()
        self.factor_t = 2 if up_time else 1
        self.conv = make_sd3_conv(conv_kind, channels, channels * self.factor_t)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest"))
        return frames_from_channel_groups(x, self.factor_t)
