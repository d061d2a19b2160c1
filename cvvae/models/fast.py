"""Fast inference path of the CV-VAE encoder and decoder (both releases).

:func:`encoder_forward` and :func:`decoder_forward` compute what ``encoder(x)`` and ``decoder(z)`` compute,
for the SD2.1-compatible layers (:mod:`cvvae.models.layers`) and the SD3-compatible ones
(:mod:`cvvae.models.sd3_layers`), with the same windows, tiles, padding and statistics. Only the rounding
differs:

* activations are channels-last-3d (``B T H W C`` in memory), cuDNN's native layout for half-precision
  convolutions; per-frame 2D convs and attention read the same memory as views, without permute copies;
* GroupNorm statistics come from one pass over the activation in its own dtype, accumulated in fp32 around a
  per-channel pivot and combined in fp64 (exact up to rounding, whatever the mean); the normalisation and SiLU
  are applied in fp32 registers and written once in the activation dtype: no fp32 copy of the activation
  (Triton kernels on CUDA; the same arithmetic in PyTorch elsewhere);
* the normalised activation never exists whole: it is written straight into each convolution's input chunk;
* convolutions run in time chunks with exact halos (the frames each output still needs, with the layer's own
  time padding: repeated edge frames or zeros), so no input or output of cuDNN grows past ``chunk_bytes``
  (and the 2 GiB per-tensor limit of its kernels), and the chunks' outputs land in one preallocated tensor;
* the per-frame second conv of every ResNet block writes over its input frame by frame and adds the skip in
  the same step, so a block holds its input, one activation and a chunk.

Only inference is covered (no autograd, eval mode, no temporal cache); anything the path does not recognise
runs through the module itself.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import (
    CausalConv3d,
    Conv2dPerFrame,
    Downsample3D,
    GroupNorm,
    Layers,
    ResnetBlock3D,
    SpatialAttention,
    SpatioTemporalAttention,
    Upsample3D,
)
from .sd3_layers import (
    FrameAttention,
    ReplicateCausalConv3d,
    Sd3Downsample3D,
    Sd3ResnetBlock3D,
    Sd3Upsample3D,
)

try:  # Triton ships with CUDA builds of PyTorch; without it the PyTorch fallback below runs
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the installation
    triton = None

CL = torch.channels_last_3d
# A convolution whose whole input and output each fit in ``single_bytes`` runs in one piece; a larger one runs
# in time chunks whose input and output each fit in ``chunk_bytes`` (module attributes: tests shrink them).
single_bytes: int = 2**30
chunk_bytes: int = 256 * 2**20
# cuDNN's autotuner for the fast path's convolutions (set per call, restored after).
cudnn_benchmark: bool = True
# Use Triton kernels on CUDA (False: the PyTorch fallback everywhere, for comparisons).
use_triton: bool = True
# Nearest-2x upsample + 3x3 conv as one 2x2 conv per output pixel parity on the low-resolution input.
subpixel_upsample: bool = True


# ---------------------------------------------------------------------------------------------- switches
def wanted(mode: bool | None, module: nn.Module, x: Tensor) -> bool:
    """Whether the fast path runs: ``mode`` True/False forces it (True still needs inference), None means
    on CUDA in inference (no autograd, eval mode)."""
    if mode is False or torch.is_grad_enabled() or module.training:
        return False
    return mode is True or x.is_cuda


@contextlib.contextmanager
def _cudnn_settings(x: Tensor) -> Iterator[None]:
    if not x.is_cuda:
        yield
        return
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = cudnn_benchmark
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def _cl(x: Tensor) -> Tensor:
    return x.contiguous(memory_format=CL)


def _dense_cl(x: Tensor) -> bool:
    """``B C T H W`` whose ``T H W C`` block of every batch element is dense (frame slices of CL tensors)."""
    _, c, t, h, w = x.shape
    return x.stride(1) == 1 and x.stride(4) == c and x.stride(3) == w * c and x.stride(2) == h * w * c


# ------------------------------------------------------------------------------------------ Triton kernels
if triton is not None:

    @triton.jit
    def _stats_kernel(
        x_ptr,
        pivot_ptr,
        s1_ptr,
        s2_ptr,
        rows,
        channels,
        seg_stride,
        rows_per_prog,
        BLOCK_R: tl.constexpr,
        BLOCK_C: tl.constexpr,
    ):
        # Per segment (batch element or frame) and block of rows: sums of (x - pivot) and (x - pivot)^2 per
        # channel in fp32, kept per row of the tile until the end (one cross-thread reduction per program).
        seg = tl.program_id(0)
        blk = tl.program_id(1)
        nblk = tl.num_programs(1)
        cols = tl.arange(0, BLOCK_C)
        cmask = cols < channels
        pivot = tl.load(pivot_ptr + seg * channels + cols, mask=cmask, other=0.0)
        acc1 = tl.zeros([BLOCK_R, BLOCK_C], dtype=tl.float32)
        acc2 = tl.zeros([BLOCK_R, BLOCK_C], dtype=tl.float32)
        base = x_ptr + seg.to(tl.int64) * seg_stride
        r_start = blk * rows_per_prog
        r_end = tl.minimum(r_start + rows_per_prog, rows)
        for r in range(r_start, r_end, BLOCK_R):
            rr = r + tl.arange(0, BLOCK_R)
            mask = (rr < r_end)[:, None] & cmask[None, :]
            offs = rr.to(tl.int64)[:, None] * channels + cols[None, :]
            v = tl.load(base + offs, mask=mask, other=0.0).to(tl.float32)
            d = tl.where(mask, v - pivot[None, :], 0.0)
            acc1 += d
            acc2 += d * d
        out = (seg * nblk + blk) * channels + cols
        tl.store(s1_ptr + out, tl.sum(acc1, axis=0), mask=cmask)
        tl.store(s2_ptr + out, tl.sum(acc2, axis=0), mask=cmask)

    @triton.jit
    def _finalize_kernel(
        s1_ptr,
        s2_ptr,
        pivot_ptr,
        weight_ptr,
        bias_ptr,
        mean_ptr,
        scale_ptr,
        shift_ptr,
        nblk,
        channels,
        group_channels,
        rows,
        eps,
        BLOCK_N: tl.constexpr,
        BLOCK_G: tl.constexpr,
    ):
        # One program per (segment, group): the partial sums of every row block, combined in fp64, give the
        # group's mean and variance; folded with the affine weights into per-channel scale and shift.
        seg = tl.program_id(0)
        grp = tl.program_id(1)
        cols = grp * group_channels + tl.arange(0, BLOCK_G)
        cmask = tl.arange(0, BLOCK_G) < group_channels
        acc1 = tl.zeros([BLOCK_N, BLOCK_G], dtype=tl.float64)
        acc2 = tl.zeros([BLOCK_N, BLOCK_G], dtype=tl.float64)
        for n0 in range(0, nblk, BLOCK_N):
            nn_ = n0 + tl.arange(0, BLOCK_N)
            mask = (nn_ < nblk)[:, None] & cmask[None, :]
            offs = (seg * nblk + nn_)[:, None] * channels + cols[None, :]
            acc1 += tl.load(s1_ptr + offs, mask=mask, other=0.0).to(tl.float64)
            acc2 += tl.load(s2_ptr + offs, mask=mask, other=0.0).to(tl.float64)
        s1 = tl.sum(acc1, axis=0)
        s2 = tl.sum(acc2, axis=0)
        pivot = tl.load(pivot_ptr + seg * channels + cols, mask=cmask, other=0.0).to(tl.float64)
        mean_c = tl.where(cmask, pivot + s1 / rows, 0.0)
        mean = tl.sum(mean_c, axis=0) / group_channels
        d = pivot - mean
        # sum_r (x - m)^2 = sum_r ((x - p) + (p - m))^2 per channel, then over the group's channels
        ss = tl.where(cmask, s2 + 2.0 * d * s1 + rows * d * d, 0.0)
        var = tl.sum(ss, axis=0) / (rows * group_channels)
        rstd = 1.0 / tl.sqrt(var + eps)
        w = tl.load(weight_ptr + cols, mask=cmask, other=0.0).to(tl.float64)
        bias = tl.load(bias_ptr + cols, mask=cmask, other=0.0).to(tl.float64)
        out = seg * channels + cols
        tl.store(mean_ptr + out, (mean + 0.0 * w).to(tl.float32), mask=cmask)
        tl.store(scale_ptr + out, (rstd * w).to(tl.float32), mask=cmask)
        tl.store(shift_ptr + out, bias.to(tl.float32), mask=cmask)

    @triton.jit
    def _apply_kernel(
        x_ptr,
        y_ptr,
        mean_ptr,
        scale_ptr,
        shift_ptr,
        rows,
        channels,
        frame_rows,
        x_seg_stride,
        y_seg_stride,
        scale_frames,
        t0,
        PER_FRAME: tl.constexpr,
        ACT: tl.constexpr,
        BLOCK_R: tl.constexpr,
        BLOCK_C: tl.constexpr,
    ):
        # y = act((x - mean) * scale + shift) in fp32, stored in y's dtype; mean, scale and shift per
        # (segment, channel), the segment being the batch element, or (batch element, frame) for per-frame
        # statistics. Subtracting the mean first keeps fp32 exact for means far above the deviation.
        b = tl.program_id(0)
        rr = tl.program_id(1) * BLOCK_R + tl.arange(0, BLOCK_R)
        cols = tl.arange(0, BLOCK_C)
        mask = (rr < rows)[:, None] & (cols < channels)[None, :]
        offs = rr.to(tl.int64)[:, None] * channels + cols[None, :]
        v = tl.load(x_ptr + b.to(tl.int64) * x_seg_stride + offs, mask=mask, other=0.0).to(tl.float32)
        if PER_FRAME:
            frame = b * scale_frames + t0 + rr // frame_rows
            sidx = frame[:, None] * channels + cols[None, :]
        else:
            sidx = b * channels + cols[None, :] + 0 * rr[:, None]
        mean = tl.load(mean_ptr + sidx, mask=mask, other=0.0)
        scale = tl.load(scale_ptr + sidx, mask=mask, other=0.0)
        shift = tl.load(shift_ptr + sidx, mask=mask, other=0.0)
        v = (v - mean) * scale + shift
        if ACT:
            v = v / (1.0 + tl.exp(-v))
        tl.store(y_ptr + b.to(tl.int64) * y_seg_stride + offs, v.to(y_ptr.dtype.element_ty), mask=mask)


# Triton's interpreter runs the kernels on CPU tensors (tests of the kernels without a GPU).
_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


def _triton_ok(x: Tensor) -> bool:
    return use_triton and triton is not None and (x.is_cuda or _INTERPRET) and _dense_cl(x)


# ---------------------------------------------------------------------------------------------- GroupNorm
@dataclass
class _Norm:
    """Per-(segment, channel) fp32 ``mean``, ``scale`` and ``shift`` of a GroupNorm (+ optional SiLU) of one
    tensor, ``act((x - mean) * scale + shift)``; segments are batch elements, or ``(batch, frame)`` pairs when
    ``per_frame``."""

    mean: Tensor
    scale: Tensor
    shift: Tensor
    per_frame: bool
    act: bool
    frames: int


def _pivot(x: Tensor, per_frame: bool) -> Tensor:
    """Each segment's first pixel, per channel, as fp32 ``(segments, C)``: subtracted before summing, it keeps
    the sums small whatever the mean."""
    b, c, t = x.shape[:3]
    pivot = x[:, :, :, 0, 0].transpose(1, 2) if per_frame else x[:, :, 0, 0, 0]
    return pivot.reshape(b * t if per_frame else b, c).float().contiguous()


def _stats_triton(norm: nn.GroupNorm, x: Tensor, per_frame: bool) -> tuple[Tensor, Tensor, Tensor]:
    b, c, t, h, w = x.shape
    segs, rows = (b * t, h * w) if per_frame else (b, t * h * w)
    if per_frame and b > 1 and x.stride(0) != t * h * w * c:
        x = _cl(x)  # segment (b, t) must start at (b T + t) H W C
    pivot = _pivot(x, per_frame)
    block_c = triton.next_power_of_2(c)
    block_r = max(1, min(64, 4096 // block_c))
    target = max(1, 2048 // segs)  # about sixteen programs per multiprocessor
    rows_per_prog = max(block_r, triton.cdiv(triton.cdiv(rows, target), block_r) * block_r)
    nblk = triton.cdiv(rows, rows_per_prog)
    s1 = torch.empty(segs, nblk, c, device=x.device, dtype=torch.float32)
    s2 = torch.empty_like(s1)
    seg_stride = h * w * c if per_frame else x.stride(0)
    _stats_kernel[(segs, nblk)](
        x, pivot, s1, s2, rows, c, seg_stride, rows_per_prog, BLOCK_R=block_r, BLOCK_C=block_c
    )
    g = norm.num_groups
    mean = torch.empty(segs, c, device=x.device, dtype=torch.float32)
    scale, shift = torch.empty_like(mean), torch.empty_like(mean)
    weight = norm.weight if norm.weight is not None else torch.ones(c, device=x.device)
    bias = norm.bias if norm.bias is not None else torch.zeros(c, device=x.device)
    _finalize_kernel[(segs, g)](
        s1,
        s2,
        pivot,
        weight,
        bias,
        mean,
        scale,
        shift,
        nblk,
        c,
        c // g,
        rows,
        norm.eps,
        BLOCK_N=min(64, triton.next_power_of_2(nblk)),
        BLOCK_G=triton.next_power_of_2(c // g),
    )
    return mean, scale, shift


def _stats_torch(norm: nn.GroupNorm, x: Tensor, per_frame: bool) -> tuple[Tensor, Tensor, Tensor]:
    """The same statistics in PyTorch, in fp64 frame chunks (one chunk's fp64 copy at a time)."""
    b, c, t, h, w = x.shape
    segs, rows = (b * t, h * w) if per_frame else (b, t * h * w)
    pivot = _pivot(x, per_frame).double()
    s1 = torch.zeros(segs, c, dtype=torch.float64, device=x.device)
    s2 = torch.zeros_like(s1)
    step = max(1, chunk_bytes // max(1, b * c * h * w * 8))
    for t0 in range(0, t, step):
        part = x[:, :, t0 : t0 + step].double()
        n = part.shape[2]
        if per_frame:
            d = part - pivot.view(b, t, c)[:, t0 : t0 + n].transpose(1, 2)[..., None, None]
            s1.view(b, t, c)[:, t0 : t0 + n] += d.sum((3, 4)).transpose(1, 2)
            s2.view(b, t, c)[:, t0 : t0 + n] += d.square().sum((3, 4)).transpose(1, 2)
        else:
            d = part - pivot[:, :, None, None, None]
            s1 += d.sum((2, 3, 4))
            s2 += d.square().sum((2, 3, 4))
    g = norm.num_groups
    mean_c = pivot + s1 / rows
    mean_g = mean_c.view(segs, g, c // g).mean(-1, keepdim=True)
    d = pivot.view(segs, g, c // g) - mean_g
    # sum_r (x - m)^2 = sum_r ((x - p) + (p - m))^2 per channel, then over the group's channels
    ss = s2.view(segs, g, c // g) + 2 * d * s1.view(segs, g, c // g) + rows * d.square()
    var = ss.sum(-1, keepdim=True) / (rows * (c // g))
    rstd = torch.rsqrt(var + norm.eps)
    weight = norm.weight.double().view(1, g, c // g) if norm.weight is not None else 1.0
    bias = norm.bias.double().view(1, g, c // g) if norm.bias is not None else 0.0
    shape = (segs, g, c // g)
    return tuple(
        v.expand(shape).reshape(segs, c).float().contiguous()
        for v in (mean_g, rstd * weight, bias + 0 * rstd)
    )


def norm_params(norm: nn.GroupNorm, x: Tensor, act: bool, per_frame: bool | None = None) -> _Norm:
    """Exact GroupNorm statistics of ``x`` (``B C T H W``) folded with the affine weights into fp32
    ``scale, shift``; ``per_frame`` None takes the module's own setting."""
    if per_frame is None:
        per_frame = bool(getattr(norm, "per_frame", False))
    stats = _stats_triton if _triton_ok(x) else _stats_torch
    mean, scale, shift = stats(norm, x, per_frame)
    return _Norm(mean, scale, shift, per_frame, act, x.shape[2])


def write_normed(x: Tensor, nrm: _Norm, t0: int, n: int, out: Tensor, o0: int) -> None:
    """``out[:, :, o0:o0+n] = act(norm(x)[:, :, t0:t0+n])``."""
    src, dst = x[:, :, t0 : t0 + n], out[:, :, o0 : o0 + n]
    b, c = x.shape[:2]
    if _triton_ok(src) and _dense_cl(dst):
        block_c = triton.next_power_of_2(c)
        block_r = max(1, 8192 // block_c)
        rows = n * x.shape[3] * x.shape[4]
        grid = (b, triton.cdiv(rows, block_r))
        _apply_kernel[grid](
            src,
            dst,
            nrm.mean,
            nrm.scale,
            nrm.shift,
            rows,
            c,
            x.shape[3] * x.shape[4],
            src.stride(0),
            dst.stride(0),
            nrm.frames,
            t0,
            PER_FRAME=nrm.per_frame,
            ACT=nrm.act,
            BLOCK_R=block_r,
            BLOCK_C=block_c,
        )
        return
    if nrm.per_frame:
        shape = (b, nrm.frames, c)
        mean, scale, shift = (
            v.view(shape)[:, t0 : t0 + n].transpose(1, 2)[..., None, None]
            for v in (nrm.mean, nrm.scale, nrm.shift)
        )
    else:
        mean, scale, shift = (v[:, :, None, None, None] for v in (nrm.mean, nrm.scale, nrm.shift))
    y = (src.float() - mean) * scale + shift
    dst.copy_(F.silu(y) if nrm.act else y)


def normed(norm: nn.GroupNorm, x: Tensor, act: bool, per_frame: bool | None = None) -> Tensor:
    """The whole ``act(norm(x))`` as a new channels-last tensor."""
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=CL)
    write_normed(x, norm_params(norm, x, act, per_frame), 0, x.shape[2], out, 0)
    return out


# ---------------------------------------------------------------------------------------------- sources
class _Source:
    """Frames that feed a convolution: the tensor itself (``nrm`` None) or its normalisation."""

    def __init__(self, x: Tensor, nrm: _Norm | None = None) -> None:
        self.x, self.nrm = x, nrm

    def fill(self, buf: Tensor, o0: int, t0: int, n: int) -> None:
        if self.nrm is None:
            buf[:, :, o0 : o0 + n].copy_(self.x[:, :, t0 : t0 + n])
        else:
            write_normed(self.x, self.nrm, t0, n, buf, o0)


# ---------------------------------------------------------------------------------------------- convolutions
@dataclass
class ConvPlan:
    """How one conv layer pads and runs: time padding by hand (``pad_front``/``pad_back`` frames, repeated
    edge frames or zeros), spatial padding by the conv (``conv_padding``) or by hand (``space_pad``)."""

    weight: Tensor
    bias: Tensor | None
    stride: tuple[int, ...]
    conv_padding: tuple[int, ...]
    pad_front: int = 0
    pad_back: int = 0
    time_mode: Literal["replicate", "zeros"] = "replicate"
    space_pad: tuple[int, int, int, int, int, int] | None = None  # F.pad order: W, H, T
    space_mode: Literal["constant", "replicate"] = "constant"
    per_frame: bool = False
    upsample: bool = False
    owner: nn.Module | None = None  # the layer whose weights these are (caches derived weights)

    @property
    def k_t(self) -> int:
        return 1 if self.per_frame else self.weight.shape[2]

    @property
    def stride_t(self) -> int:
        return 1 if self.per_frame else self.stride[0]

    def out_frames(self, t: int) -> int:
        return (t + self.pad_front + self.pad_back - self.k_t) // self.stride_t + 1

    @property
    def pointwise_in_time(self) -> bool:
        """Output frame ``t`` needs input frame ``t`` only."""
        return self.k_t == 1 and self.stride_t == 1 and self.pad_front == self.pad_back == 0


def _plan_of(conv: nn.Conv2d | nn.Conv3d, conv_padding: tuple[int, ...], **padding: Any) -> ConvPlan:
    """The plan of ``conv`` (its weight, bias and stride) with the given padding."""
    return ConvPlan(conv.weight, conv.bias, conv.stride, conv_padding, **padding)


def conv_plan(module: nn.Module) -> ConvPlan | None:
    """The plan of a conv layer of either release, or None for a layer this path does not know."""
    if isinstance(module, Sd3Downsample3D):
        return conv_plan(module.conv)
    if isinstance(module, Downsample3D):
        return _plan_of(module.conv, (0, 0, 0), pad_front=2, space_pad=(0, 1, 0, 1, 0, 0))
    if isinstance(module, Upsample3D):
        conv = module.conv
        return _plan_of(conv, conv.padding, pad_front=1, pad_back=1, upsample=True, owner=conv)
    if isinstance(module, Sd3Upsample3D):
        plan = conv_plan(module.conv)
        if plan is not None:
            plan.upsample, plan.owner = True, module.conv
        return plan
    if isinstance(module, Conv2dPerFrame):
        if module.padding_mode != "zeros" or module.groups != 1 or module.dilation != (1, 1):
            return None
        return _plan_of(module, module.padding, per_frame=True)
    if not isinstance(module, nn.Conv3d) or module.groups != 1 or module.dilation != (1, 1, 1):
        return None
    if isinstance(module, ReplicateCausalConv3d):
        p = module.space_pad
        replicate = dict(space_pad=(p, p, p, p, 0, 0), space_mode="replicate")
        return _plan_of(module, (0, 0, 0), pad_front=module.time_pad, **replicate)
    if isinstance(module, CausalConv3d):
        pad = module.padding
        return _plan_of(module, (0, pad[1], pad[2]), pad_front=module.time_pad)
    if type(module) is not nn.Conv3d or isinstance(module.padding, str):
        return None
    pt, ph, pw = module.padding
    if module.padding_mode == "zeros":
        return _plan_of(module, (0, ph, pw), pad_front=pt, pad_back=pt, time_mode="zeros")
    if module.padding_mode == "replicate":
        replicate = dict(space_pad=(pw, pw, ph, ph, 0, 0), space_mode="replicate")
        return _plan_of(module, (0, 0, 0), pad_front=pt, pad_back=pt, time_mode="replicate", **replicate)
    return None


def _nearest2x(x: Tensor) -> Tensor:
    """Nearest 2x upsampling in space of a channels-last ``B C T H W`` tensor, channels-last out."""
    b, c, t, h, w = x.shape
    cl = x.permute(0, 2, 3, 4, 1)  # B T H W C view of the channels-last memory
    up = cl[:, :, :, None, :, None, :].expand(b, t, h, 2, w, 2, c).reshape(b, t, 2 * h, 2 * w, c)
    return up.permute(0, 4, 1, 2, 3)


def _gather(plan: ConvPlan, source: _Source, j0: int, j1: int) -> Tensor:
    """Padded frames ``[j0, j1)`` of the source (frame ``j`` is source frame ``j - pad_front``; outside the
    source, the edge frame repeated or zeros), channels-last."""
    x = source.x
    b, c, t, h, w = x.shape
    buf = torch.empty((b, c, j1 - j0, h, w), dtype=x.dtype, device=x.device, memory_format=CL)
    j = j0
    while j < j1:
        s = j - plan.pad_front
        if 0 <= s < t:  # a run of frames inside the source
            n = min(j1 - j, t - s)
            source.fill(buf, j - j0, s, n)
        else:
            n = 1
            if plan.time_mode == "zeros":
                buf[:, :, j - j0].zero_()
            else:
                source.fill(buf, j - j0, min(max(s, 0), t - 1), 1)
        j += n
    return buf


# Nearest 2x then a 3-tap kernel along one axis, per output parity, as 2 taps on the input: the even output
# 2i reads input rows (i - 1, i), the odd output 2i + 1 reads (i, i + 1).
_PARITY_TAPS = ((1.0, 0.0, 0.0), (0.0, 1.0, 1.0)), ((1.0, 1.0, 0.0), (0.0, 0.0, 1.0))


def _subpixel_weights(plan: ConvPlan) -> tuple[Tensor, Tensor | None]:
    """``(4 Cout, Cin, kt, 2, 2)`` weights; output block ``2 py + px`` is output pixel parity ``(py, px)``."""
    w = plan.weight
    key = (w.data_ptr(), w._version, w.dtype, w.device)
    cached = getattr(plan.owner, "_fast_subpixel", None)
    if cached is not None and cached[0] == key:
        return cached[1], cached[2]
    taps = torch.tensor(_PARITY_TAPS, dtype=torch.float32, device=w.device)  # parity, tap, kernel row
    blocks = [
        torch.einsum("ay,bx,oityx->oitab", taps[py], taps[px], w.float())
        for py in range(2)
        for px in range(2)
    ]
    weight = torch.cat(blocks).to(w.dtype).contiguous(memory_format=CL)
    bias = plan.bias.repeat(4) if plan.bias is not None else None
    if plan.owner is not None:
        plan.owner._fast_subpixel = (key, weight, bias)
    return weight, bias


def _shuffled(y: Tensor, cout: int) -> Tensor:
    """``(B, cout, n, H, 2, W, 2)`` view of a sub-pixel conv output ``(B, 4 cout, n, H + 1, W + 1)``: element
    ``[b, c, t, i, py, j, px]`` is output pixel ``(2 i + py, 2 j + px)`` (block ``2 py + px`` at ``(i + py,
    j + px)``)."""
    b, _, n, h1, w1 = y.shape
    sb, sc, st, sh, sw = y.stride()
    return y.as_strided(
        (b, cout, n, h1 - 1, 2, w1 - 1, 2),
        (sb, sc, st, sh, sh + 2 * cout * sc, sw, sw + cout * sc),
        y.storage_offset(),
    )


def _subpixel(plan: ConvPlan) -> bool:
    return plan.upsample and subpixel_upsample and not plan.per_frame and plan.stride == (1, 1, 1)


def _run_conv(plan: ConvPlan, x: Tensor) -> Tensor:
    if _subpixel(plan):
        if plan.space_pad is not None:
            x = F.pad(x, plan.space_pad, mode=plan.space_mode)
        weight, bias = _subpixel_weights(plan)
        return F.conv3d(x, weight, bias, 1, plan.conv_padding)
    if plan.upsample:
        x = _nearest2x(x)
    if plan.space_pad is not None:
        x = F.pad(x, plan.space_pad, mode=plan.space_mode)
    if plan.per_frame:
        b, c, t, h, w = x.shape
        if b > 1 and x.stride(0) != t * x.stride(2):
            x = _cl(x)  # a frame slice of a batch: make (B T) one dimension of a channels-last view
        frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        out = F.conv2d(frames, plan.weight, plan.bias, plan.stride, plan.conv_padding)
        return out.reshape(b, t, *out.shape[1:]).permute(0, 2, 1, 3, 4)
    return F.conv3d(x, plan.weight, plan.bias, plan.stride, plan.conv_padding)


def _chunk_frames(plan: ConvPlan, x: Tensor) -> int:
    """Output frames per chunk so that neither the chunk's input nor its output passes ``chunk_bytes``."""
    b, c, _, h, w = x.shape
    scale = 4 if plan.upsample else 1
    per_in = b * c * h * w * (1 if _subpixel(plan) else scale) * x.element_size()
    sh, sw = (plan.stride[-2], plan.stride[-1])
    per_out = b * plan.weight.shape[0] * scale * (h // sh) * (w // sw) * x.element_size()
    n_out = plan.out_frames(x.shape[2])
    if max(per_out * n_out, per_in * ((n_out - 1) * plan.stride_t + plan.k_t)) <= single_bytes:
        return n_out
    by_out = chunk_bytes // max(1, per_out)
    by_in = (chunk_bytes // max(1, per_in) - plan.k_t) // plan.stride_t + 1
    return max(1, min(by_out, by_in))


def conv_chunks(plan: ConvPlan, source: _Source) -> Iterator[tuple[int, int, Tensor]]:
    """``(a, b, y)``: output frames ``[a, b)`` of the conv, chunk by chunk."""
    n_out = plan.out_frames(source.x.shape[2])
    step = _chunk_frames(plan, source.x)
    for a in range(0, n_out, step):
        b = min(n_out, a + step)
        if source.nrm is None and plan.pointwise_in_time:
            chunk = source.x[:, :, a:b]  # no padding in time: the source frames themselves
        else:
            chunk = _gather(plan, source, a * plan.stride_t, (b - 1) * plan.stride_t + plan.k_t)
        y = _run_conv(plan, chunk)
        del chunk
        yield a, b, y


def run_conv(plan: ConvPlan, source: _Source, factor_t: int = 1) -> Tensor:
    """The whole conv output (``factor_t = 2``: a temporal upsample, channel halves become interleaved
    frames and the first is dropped)."""
    out: Tensor | None = None
    dest: Tensor | None = None
    n_out = plan.out_frames(source.x.shape[2])
    subpixel = _subpixel(plan)
    for a, b, y in conv_chunks(plan, source):
        if factor_t == 1 and not subpixel and a == 0 and b == n_out:
            return _cl(y)
        if subpixel:
            y = _shuffled(y, y.shape[1] // 4)
        if out is None:
            bb, c2, _, h, w = y.shape[:5]
            c = c2 // factor_t
            if subpixel:
                h, w = 2 * y.shape[3], 2 * y.shape[5]
            frames = n_out if factor_t == 1 else factor_t * n_out - 1
            out = torch.empty((bb, c, frames, h, w), dtype=y.dtype, device=y.device, memory_format=CL)
            # what the chunks are written into: the output, as (B, C, T, H/2, 2, W/2, 2) for sub-pixel
            dest = out.unflatten(4, (w // 2, 2)).unflatten(3, (h // 2, 2)) if subpixel else out
        assert dest is not None
        if factor_t == 1:
            dest[:, :, a:b].copy_(y)
            continue
        c = out.shape[1]
        # conv frame t, half n lands on output frame 2 t + n - 1 (the first, t = n = 0, is dropped)
        dest[:, :, 2 * a : 2 * b : 2].copy_(y[:, c:])
        first = max(a, 1)
        if first < b:
            dest[:, :, 2 * first - 1 : 2 * b - 1 : 2].copy_(y[:, :c, first - a :])
    assert out is not None
    return out


def conv(module: nn.Module, x: Tensor, nrm: _Norm | None = None) -> Tensor:
    """A conv layer (or resampler) of either release on ``x``, optionally normalised on the fly."""
    plan = conv_plan(module)
    if plan is None:
        if nrm is not None:
            x = _materialise(x, nrm)
        return _cl(module(x.contiguous()))
    factor_t = getattr(module, "factor_t", 1)
    return run_conv(plan, _Source(x, nrm), factor_t)


def _materialise(x: Tensor, nrm: _Norm) -> Tensor:
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=CL)
    write_normed(x, nrm, 0, x.shape[2], out, 0)
    return out


# ---------------------------------------------------------------------------------------------- blocks
def resnet(block: nn.Module, x: Tensor) -> Tensor:
    """A ResNet block of either release: ``skip(x) + conv2(act(norm2(conv1(act(norm1(x))))))``."""
    if isinstance(block, Sd3ResnetBlock3D):
        if not isinstance(block.nonlinearity, nn.SiLU):
            return _cl(block(x.contiguous()))
        skip_module = block.conv_shortcut
    elif isinstance(block, ResnetBlock3D):
        skip_module = block.nin_shortcut if block.in_channels != block.out_channels else None
    else:
        return _cl(block(x.contiguous()))
    h = conv(block.conv1, x, norm_params(block.norm1, x, act=True))
    nrm2 = norm_params(block.norm2, h, act=True)
    plan2 = conv_plan(block.conv2)
    skip_plan = conv_plan(skip_module) if skip_module is not None else None
    if plan2 is None or not plan2.pointwise_in_time or (skip_module is not None and skip_plan is None):
        out = conv(block.conv2, h, nrm2)
        del h
        return out.add_(conv(skip_module, x) if skip_module is not None else x)
    assert skip_plan is None or skip_plan.pointwise_in_time
    n_out = h.shape[2]
    for a, b, y in conv_chunks(plan2, _Source(h, nrm2)):
        y = y.add_(x[:, :, a:b] if skip_plan is None else _run_conv(skip_plan, x[:, :, a:b]))
        if a == 0 and b == n_out:
            return _cl(y)
        h[:, :, a:b].copy_(y)  # frames [a, b) of h are no longer read: conv2 is per frame
    return h


def _frame_tokens(x: Tensor) -> Tensor:
    """``(B T) (H W) C`` tokens: a view of a channels-last tensor."""
    b, c, t, h, w = x.shape
    return _cl(x).permute(0, 2, 3, 4, 1).reshape(b * t, h * w, c)


def _tokens_to_video(tokens: Tensor, b: int, t: int, h: int, w: int) -> Tensor:
    return tokens.reshape(b, t, h, w, -1).permute(0, 4, 1, 2, 3)


def _conv1x1_as_linear(module: nn.Conv2d) -> tuple[Tensor, Tensor | None]:
    return module.weight.flatten(1), module.bias


def _attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    return F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)).squeeze(1)


def _spatial_branch(block: SpatialAttention, x: Tensor) -> Tensor:
    """``proj_out(attention(norm(x)))`` per frame, as ``(B T) (H W) C`` tokens."""
    tokens = _frame_tokens(normed(block.norm, x, act=False, per_frame=True))
    weights = [_conv1x1_as_linear(m) for m in (block.q, block.k, block.v)]
    w_qkv = torch.cat([w for w, _ in weights])
    b_qkv = torch.cat([b for _, b in weights]) if all(b is not None for _, b in weights) else None
    q, k, v = F.linear(tokens, w_qkv, b_qkv).chunk(3, dim=-1)
    out = _attention(q, k, v)
    w_out, b_out = _conv1x1_as_linear(block.proj_out)
    return F.linear(out, w_out, b_out)


def attention(block: nn.Module, x: Tensor) -> Tensor:
    """An attention block of either release (or Identity) with its residual."""
    if isinstance(block, nn.Identity):
        return x
    b, c, t, h, w = x.shape
    if isinstance(block, SpatioTemporalAttention):
        spatial = _spatial_branch(block, x).reshape(b, t, h * w, c).transpose(1, 2).reshape(b * h * w, t, c)
        out = block.temporal_branch(spatial).reshape(b, h, w, t, c).permute(0, 4, 3, 1, 2)
        return _cl(x + out)
    if isinstance(block, SpatialAttention):
        return _cl(x + _tokens_to_video(_spatial_branch(block, x), b, t, h, w))
    if isinstance(block, FrameAttention) and _is_plain_vae_attention(block):
        tokens = _frame_tokens(normed(block.group_norm, x, act=False, per_frame=True))
        q, k, v = block.to_q(tokens), block.to_k(tokens), block.to_v(tokens)
        out = block.to_out[0](_attention(q, k, v))
        out = _tokens_to_video(out, b, t, h, w)
        return _cl((x + out) / block.rescale_output_factor)
    return _cl(block(x.contiguous()))


def _is_plain_vae_attention(block: FrameAttention) -> bool:
    """diffusers' single-head VAE attention with the default processor: what the shortcut above computes."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    return (
        block.heads == 1
        and block.group_norm is not None
        and block.spatial_norm is None
        and block.norm_q is None
        and block.norm_k is None
        and block.residual_connection
        and isinstance(block.processor, AttnProcessor2_0)
        and math.isclose(block.scale, block.inner_dim**-0.5)
    )


class _FastLayers(Layers):
    """The layers of a block (its ``run(h, layers)`` order) through this path."""

    def resnet(self, block: nn.Module, h: Tensor) -> Tensor:
        return resnet(block, h)

    def attention(self, block: nn.Module, h: Tensor) -> Tensor:
        return attention(block, h)

    def resample(self, layer: nn.Module, h: Tensor) -> Tensor:
        return conv(layer, h)


FAST = _FastLayers()


def _out(norm: nn.GroupNorm, act: nn.Module | None, conv_out: nn.Module, h: Tensor) -> Tensor:
    if act is not None and not isinstance(act, nn.SiLU):
        return conv_out(act(_materialise(h, norm_params(norm, h, act=False))).contiguous())
    return conv(conv_out, h, norm_params(norm, h, act=True)).contiguous()


def encoder_forward(encoder: nn.Module, x: Tensor) -> Tensor:
    """``encoder(x)`` through the fast path (inference only)."""
    with _cudnn_settings(x):
        h = conv(encoder.conv_in, _cl(x))
        if hasattr(encoder, "down"):  # SD2.1 release
            for stage in encoder.down:
                h = stage.run(h, FAST)
            h = encoder.mid.run(h, FAST)
            return _out(encoder.norm_out, None, encoder.conv_out, h)
        for block in encoder.down_blocks:  # SD3 release
            h = block.run(h, FAST)
        h = encoder.mid_block.run(h, FAST)
        return _out(encoder.conv_norm_out, encoder.conv_act, encoder.conv_out, h)


def decoder_forward(decoder: nn.Module, z: Tensor) -> Tensor:
    """``decoder(z)`` through the fast path (inference only)."""
    with _cudnn_settings(z):
        h = conv(decoder.conv_in, _cl(z))
        if hasattr(decoder, "up"):  # SD2.1 release
            h = decoder.mid.run(h, FAST)
            for stage in reversed(decoder.up):
                h = stage.run(h, FAST)
            return _out(decoder.norm_out, None, decoder.conv_out, h)
        h = decoder.mid_block.run(h, FAST)  # SD3 release
        for block in decoder.up_blocks:
            h = block.run(h, FAST)
        return _out(decoder.conv_norm_out, decoder.conv_act, decoder.conv_out, h)


def forward_fn(module: nn.Module, fast: Callable[[nn.Module, Tensor], Tensor], mode: bool | None):
    """``x -> module(x)``, through ``fast`` when :func:`wanted` says so."""

    def run(x: Tensor) -> Tensor:
        return fast(module, x) if wanted(mode, module, x) else module(x)

    return run


__all__ = [
    "ConvPlan",
    "GroupNorm",
    "conv_plan",
    "decoder_forward",
    "encoder_forward",
    "forward_fn",
    "norm_params",
    "normed",
    "wanted",
]
