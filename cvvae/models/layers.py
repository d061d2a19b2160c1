"""Building blocks of the CV-VAE encoder and decoder.

Module and parameter names follow the released checkpoints (``norm1``, ``conv1``, ``nin_shortcut``,
``q``/``k``/``v``/``proj_out``, ``q_t``/.../``norm_t``, ``downsample.conv``, ``upsample.conv``), so the
released state dicts load without key conversion.

Padding rules of the released model, reproduced here:

* causal 3D convs (encoder): zero padding in space, the first frame repeated ``kernel - 1`` times in front
  (``replicate``), nothing behind;
* centred 3D convs (decoder, ``causal_decoder=False``): ``nn.Conv3d(padding=1)``, i.e. zeros in time and
  space;
* spatial+temporal downsample: zeros on the right/bottom in space, the first frame repeated twice in front;
* spatial+temporal upsample: nearest 2x in space, then a 3x3x3 conv with zero spatial padding and one
  replicated frame on each side in time; a temporal upsample conv has twice the channels, the two halves
  become two interleaved frames, and the first output frame is dropped (``T -> 2T - 1``).

Causal layers can carry a :class:`TemporalCache`: the frames of the previous chunk that the next chunk's first
outputs still need. With the cache a causal stack processed chunk by chunk gives the unchunked result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from typing_extensions import Self

ConvKind = Literal["causal", "centred", "per_frame"]
TensorFn = Callable[[Tensor], Tensor]


class TemporalCache:
    """Frames that each causal layer carries from one temporal chunk to the next (keyed by layer)."""

    def __init__(self) -> None:
        self.frames: dict[int, Tensor] = {}

    def clear(self) -> None:
        self.frames.clear()


class _CausalTimeMixin:
    """Front padding in time: the first frame repeated, or the previous chunk's frames when caching."""

    temporal_cache: TemporalCache | None = None

    def _pad_time_front(self, x: Tensor, pad: int) -> Tensor:
        cache = self.temporal_cache
        if cache is not None and id(self) in cache.frames:
            return torch.cat([cache.frames[id(self)], x], dim=2)
        if pad == 0:
            return x
        # F.pad(replicate) keeps a channels-last-3d layout, unlike repeat + cat.
        return F.pad(x, (0, 0, 0, 0, pad, 0), mode="replicate")

    def _remember_tail(self, padded: Tensor, n_out: int, stride_t: int) -> None:
        # The next output starts at padded frame n_out * stride_t: everything from there on is still needed.
        if self.temporal_cache is not None:
            self.temporal_cache.frames[id(self)] = padded[:, :, n_out * stride_t :].detach()

    def _causal_conv(self, x: Tensor, pad: int, conv: nn.Conv3d, run: TensorFn) -> Tensor:
        """``run`` (``conv``'s forward) over ``x`` with ``pad`` frames in front; keeps what the next chunk
        needs."""
        padded = self._pad_time_front(x, pad)
        if padded.shape[2] < conv.kernel_size[0]:
            raise ValueError(
                f"causal conv got {padded.shape[2]} frames (with carried frames), needs {conv.kernel_size[0]}"
            )
        out = run(padded)
        self._remember_tail(padded, out.shape[2], conv.stride[0])
        return out


class CausalConv3d(_CausalTimeMixin, nn.Conv3d):
    """3D conv that never looks at future frames: ``kernel - 1`` frames of front padding, none behind."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        pad = kernel_size // 2
        # Spatial zero padding is left to the conv itself (no extra copy); time is padded by hand.
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=(0, pad, pad))
        self.time_pad = kernel_size - 1

    def forward(self, x: Tensor) -> Tensor:
        return self._causal_conv(x, self.time_pad, self, super().forward)


def over_frames(fn: TensorFn, x: Tensor) -> Tensor:
    """``fn`` over the frames of ``x`` (``B C T H W``) folded into the batch, the result unfolded again."""
    b, _, t, h, w = x.shape
    out = fn(x.permute(0, 2, 1, 3, 4).reshape(b * t, -1, h, w))
    return out.reshape(b, t, *out.shape[1:]).permute(0, 2, 1, 3, 4)


class Conv2dPerFrame(nn.Conv2d):
    """2D conv applied to every frame of a ``B C T H W`` tensor (the ``half_3d`` second conv)."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 4:
            return super().forward(x)
        return over_frames(super().forward, x)


def make_conv(conv_type: ConvKind, in_channels: int, out_channels: int, kernel_size: int) -> nn.Module:
    """Conv with 'same' output size of the given kind (``causal``, ``centred`` 3D, or ``per_frame`` 2D)."""
    pad = kernel_size // 2
    if conv_type == "causal":
        return CausalConv3d(in_channels, out_channels, kernel_size)
    if conv_type == "centred":
        return nn.Conv3d(in_channels, out_channels, kernel_size, padding=pad)
    if conv_type == "per_frame":
        return Conv2dPerFrame(in_channels, out_channels, kernel_size, padding=pad)
    raise ValueError(f"unknown conv kind {conv_type!r}")


class GroupNorm(nn.GroupNorm):
    """GroupNorm with fp32 statistics for half-precision inputs.

    By default (as released) the statistics of a ``B C T H W`` tensor span all its frames; with
    ``per_frame=True`` each frame is normalised on its own, which makes the encoder strictly frame-causal.
    """

    def __init__(
        self, num_groups: int, num_channels: int, per_frame: bool = False, eps: float = 1e-5
    ) -> None:
        super().__init__(num_groups, num_channels, eps=eps, affine=True)
        self.per_frame = per_frame

    def forward(self, x: Tensor) -> Tensor:
        if self.per_frame and x.dim() == 5:
            return over_frames(self._normalise, x)
        return self._normalise(x)

    def _normalise(self, x: Tensor) -> Tensor:
        if x.dtype in (torch.float16, torch.bfloat16):
            out = F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps)
            return out.to(x.dtype)
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)


class ResnetBlock3D(nn.Module):
    """Norm, SiLU, conv1 (3D), norm, SiLU, dropout, conv2 (2D per frame when ``half_3d``), plus skip."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        conv_kind: ConvKind,
        half_3d: bool = True,
        dropout: float = 0.0,
        norm_num_groups: int = 32,
        norm_per_frame: bool = False,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = GroupNorm(norm_num_groups, in_channels, norm_per_frame, norm_eps)
        self.conv1 = make_conv(conv_kind, in_channels, out_channels, 3)
        self.norm2 = GroupNorm(norm_num_groups, out_channels, norm_per_frame, norm_eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = make_conv("per_frame" if half_3d else conv_kind, out_channels, out_channels, 3)
        if in_channels != out_channels:
            self.nin_shortcut = make_conv(conv_kind, in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        skip = self.nin_shortcut(x) if self.in_channels != self.out_channels else x
        return skip + h


class Downsample3D(_CausalTimeMixin, nn.Module):
    """Stride-2 3x3x3 conv; halves time too when ``down_time`` (causal front padding of two frames)."""

    def __init__(self, channels: int, down_time: bool) -> None:
        super().__init__()
        self.down_time = down_time
        stride = (2, 2, 2) if down_time else (1, 2, 2)
        self.conv = nn.Conv3d(channels, channels, kernel_size=3, stride=stride, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, (0, 1, 0, 1))  # zeros right and bottom, as the SD VAE does
        return self._causal_conv(x, 2, self.conv, self.conv)


def frames_from_channel_groups(x: Tensor, factor_t: int) -> Tensor:
    """``B (f C) T H W`` -> ``B C (f T - 1) H W``: channel ``n C + c`` at frame ``t`` becomes channel ``c`` at
    frame ``f t + n``, then the first frame is dropped (the temporal upsample of both releases)."""
    if factor_t == 1:
        return x
    b, cf, t, h, w = x.shape
    c = cf // factor_t
    x = x.reshape(b, factor_t, c, t, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c, t * factor_t, h, w)
    return x[:, :, 1:]


class Upsample3D(nn.Module):
    """Nearest 2x in space, 3x3x3 conv; with ``up_time`` the conv's two channel halves become two frames
    (``T -> 2T``) and the first frame is dropped (``2T - 1``), so ``1 + k`` frames become ``1 + 2k``."""

    def __init__(self, channels: int, up_time: bool) -> None:
        super().__init__()
        self.factor_t = 2 if up_time else 1
        self.conv = nn.Conv3d(channels, channels * self.factor_t, kernel_size=3, padding=(0, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
        x = self.conv(F.pad(x, (0, 0, 0, 0, 1, 1), mode="replicate"))
        return frames_from_channel_groups(x, self.factor_t)


def _single_head_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Softmax attention with one head over ``(..., tokens, channels)``, scale ``channels ** -0.5``."""
    return F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)).squeeze(1)


class SpatialAttention(nn.Module):
    """Single-head self-attention over the pixels of each frame, with a residual (the SD VAE mid block)."""

    def __init__(
        self, channels: int, norm_num_groups: int = 32, norm_per_frame: bool = False, norm_eps: float = 1e-5
    ) -> None:
        super().__init__()
        self.norm = GroupNorm(norm_num_groups, channels, norm_per_frame, norm_eps)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def spatial_branch(self, x: Tensor) -> Tensor:
        """``proj_out(attention(norm(x)))`` per frame, as ``(B T) C H W``."""
        b, c, t, h, w = x.shape
        # As released, frames are folded into the batch before the norm: statistics per frame.
        normed = self.norm(x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w))
        q, k, v = (proj(normed).flatten(2).transpose(1, 2) for proj in (self.q, self.k, self.v))
        out = _single_head_attention(q, k, v).transpose(1, 2).reshape(b * t, c, h, w)
        return self.proj_out(out)

    def forward(self, x: Tensor) -> Tensor:
        b, c, t, h, w = x.shape
        out = self.spatial_branch(x).reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)
        return x + out


class SpatioTemporalAttention(SpatialAttention):
    """Spatial attention followed *in series* by temporal attention, one residual around both.

    As released: ``x + proj_out_t(attn_t(norm_t(proj_out(attn_s(norm(x))))))``; the temporal attention sees
    the spatial branch's output at every pixel as a sequence over frames, behind a LayerNorm, and has no
    residual of its own.
    """

    def __init__(
        self, channels: int, norm_num_groups: int = 32, norm_per_frame: bool = False, norm_eps: float = 1e-5
    ) -> None:
        super().__init__(channels, norm_num_groups, norm_per_frame, norm_eps)
        self.q_t = nn.Linear(channels, channels)
        self.k_t = nn.Linear(channels, channels)
        self.v_t = nn.Linear(channels, channels)
        self.proj_out_t = nn.Linear(channels, channels)
        self.norm_t = nn.LayerNorm(channels)

    def temporal_branch(self, tokens: Tensor) -> Tensor:
        """Temporal attention over ``(B H W) T C`` tokens."""
        normed = self.norm_t(tokens)
        out = _single_head_attention(self.q_t(normed), self.k_t(normed), self.v_t(normed))
        return self.proj_out_t(out)

    def forward(self, x: Tensor) -> Tensor:
        b, c, t, h, w = x.shape
        spatial = self.spatial_branch(x).reshape(b, t, c, h * w).permute(0, 3, 1, 2).reshape(b * h * w, t, c)
        out = self.temporal_branch(spatial).reshape(b, h, w, t, c).permute(0, 4, 3, 1, 2)
        return x + out


ATTENTION_TYPES: dict[str, Callable[..., nn.Module] | None] = {
    "vanilla": SpatialAttention,
    "vanilla-xformers": SpatialAttention,  # same function; xformers replaced by torch SDPA
    "spatial-temporal-xformer": SpatioTemporalAttention,
    "none": None,
}


def make_attention(
    attn_type: str, channels: int, norm_num_groups: int, norm_per_frame: bool, norm_eps: float = 1e-5
) -> nn.Module:
    """Attention block by its released ``*_attn_type`` name."""
    if attn_type not in ATTENTION_TYPES:
        raise ValueError(f"unknown attention type {attn_type!r}; choose one of {sorted(ATTENTION_TYPES)}")
    cls = ATTENTION_TYPES[attn_type]
    return nn.Identity() if cls is None else cls(channels, norm_num_groups, norm_per_frame, norm_eps)


@dataclass(frozen=True)
class BlockSettings:
    """What every ResNet block, norm and attention of one encoder or decoder shares."""

    conv_kind: str
    half_3d: bool
    norm_num_groups: int
    norm_per_frame: bool
    norm_eps: float
    dropout: float = 0.0

    def norm(self, channels: int) -> GroupNorm:
        return GroupNorm(self.norm_num_groups, channels, self.norm_per_frame, self.norm_eps)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], conv_kind: str, **extra: Any) -> Self:
        """Every field named as a key of a model's ``config`` (``half_3d``, ``norm_*``, ``dropout``,
        ``act_fn``: both releases use these names) from there, ``conv_kind`` and ``extra`` as given."""
        named = {f.name: config[f.name] for f in fields(cls) if f.name in config}
        return cls(conv_kind=conv_kind, **{**named, **extra})

    def resnet_options(self) -> dict[str, Any]:
        """These settings as keyword arguments: the ResNet blocks of both releases take each of them."""
        return {f.name: getattr(self, f.name) for f in fields(BlockSettings)}


class Layers:
    """How a block runs each kind of layer: here the layer's own forward.

    Blocks describe their layer order once (``run(h, layers)``); gradient checkpointing and the fast inference
    path (:mod:`cvvae.models.fast`) run the same order with their own ``Layers``.
    """

    def resnet(self, block: nn.Module, h: Tensor) -> Tensor:
        return block(h)

    def attention(self, block: nn.Module, h: Tensor) -> Tensor:
        return block(h)

    def resample(self, layer: nn.Module, h: Tensor) -> Tensor:
        return layer(h)


PLAIN = Layers()


class CheckpointedStack(nn.Module, Layers):
    """An encoder or decoder whose ResNet blocks run with gradient checkpointing once diffusers switches it
    on (``enable_gradient_checkpointing`` sets ``gradient_checkpointing`` and the checkpointing function)."""

    def __init__(self) -> None:
        super().__init__()
        self.gradient_checkpointing = False

    def checkpointed(self, block: nn.Module, h: Tensor) -> Tensor:
        if torch.is_grad_enabled() and self.gradient_checkpointing:
            return self._gradient_checkpointing_func(block, h)
        return block(h)

    def resnet(self, block: nn.Module, h: Tensor) -> Tensor:
        return self.checkpointed(block, h)
