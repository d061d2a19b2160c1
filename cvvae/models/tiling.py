"""Temporal chunking and spatial tiling for the CV-VAE.

Temporal chunking, two modes:

* ``official`` (as released): independent windows of ``stride + 1`` frames that overlap by one frame (``[0,
  stride]``, ``[stride, 2 stride]``, ...); the first output frame of every later window is dropped, because it
  repeats the last frame of the window before. Encoding uses ``stride = 16`` pixel frames, decoding ``stride =
  4`` latent frames. Each window is a separate pass: results differ from a single pass over the video.
* ``causal_cache``: the video is cut into ``1 + chunk`` frames followed by chunks of ``chunk`` frames; every
  causal layer carries the frames the next chunk still needs (:class:`~cvvae.models.layers.TemporalCache`), so
  the result equals one pass over the whole video while memory stays that of one chunk.

Spatial tiling (as released): tiles of ``tile`` input pixels every ``stride`` pixels, the last tile starting
where it first reaches the border; neighbouring output tiles are blended linearly over ``overlap`` output
pixels (weight ``i / overlap`` for the later tile) and cropped to ``out_stride``. Tiling and temporal windows
commute (blending is per frame and the tile grid only depends on height and width), so tiles are the outer
loop here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from .layers import TemporalCache

TensorFn = Callable[[Tensor], Tensor]


def official_windows(num_frames: int, stride: int) -> list[slice]:
    """Frame slices of the released overlapping windows: ``[n stride, (n + 1) stride + 1)``."""
    rounds = max(1, math.ceil((num_frames - 1) / stride))
    return [slice(n * stride, (n + 1) * stride + 1) for n in range(rounds)]


def run_official_windows(fn: TensorFn, x: Tensor, stride: int) -> Tensor:
    """Apply ``fn`` to each released window of ``x`` (``B C T H W``) and join the results in time,
    dropping the first frame of every window after the first."""
    outputs = []
    for n, window in enumerate(official_windows(x.shape[2], stride)):
        out = fn(x[:, :, window])
        outputs.append(out if n == 0 else out[:, :, 1:])
    return torch.cat(outputs, dim=2)


def causal_chunks(num_frames: int, chunk: int) -> list[slice]:
    """``[0, 1 + chunk)``, then consecutive slices of ``chunk`` frames (the last may be shorter)."""
    bounds = [0, min(num_frames, 1 + chunk)]
    while bounds[-1] < num_frames:
        bounds.append(min(num_frames, bounds[-1] + chunk))
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def run_causal_cache(fn: TensorFn, x: Tensor, chunk: int, modules: Iterable[nn.Module]) -> Tensor:
    """Apply a causal ``fn`` chunk by chunk, carrying each causal layer's trailing frames between chunks."""
    layers = [m for m in modules if hasattr(m, "temporal_cache")]
    cache = TemporalCache()
    for layer in layers:
        layer.temporal_cache = cache
    try:
        return torch.cat([fn(x[:, :, piece]) for piece in causal_chunks(x.shape[2], chunk)], dim=2)
    finally:
        for layer in layers:
            layer.temporal_cache = None


def tile_starts(size: int, tile: int, stride: int) -> list[int]:
    """Start offsets of the released tiling loop along one axis."""
    starts = []
    for start in range(0, size, stride):
        starts.append(start)
        if start + tile >= size:
            break
    return starts


def blend_weights(
    overlap: int, dtype: torch.dtype = torch.float32, device: torch.device | None = None
) -> Tensor:
    """Weight of the later tile across the overlap: ``0, 1/overlap, ..., (overlap-1)/overlap``."""
    return torch.arange(overlap, dtype=dtype, device=device) / overlap


def _blend(previous: Tensor, current: Tensor, overlap: int, dim: int) -> Tensor:
    overlap = min(overlap, previous.shape[dim], current.shape[dim])
    if overlap <= 0:
        return current
    shape = [1] * current.dim()
    shape[dim] = overlap
    w = blend_weights(overlap, device=current.device).view(shape)
    head = (1 - w) * previous.narrow(dim, previous.shape[dim] - overlap, overlap) + w * current.narrow(
        dim, 0, overlap
    )
    rest = current.narrow(dim, overlap, current.shape[dim] - overlap)
    return torch.cat([head.to(current.dtype), rest], dim=dim)


def run_spatial_tiles(
    fn: TensorFn, x: Tensor, tile: int, stride: int, out_overlap: int, out_stride: int
) -> Tensor:
    """Apply ``fn`` to overlapping spatial tiles of ``x`` (``B C T H W``) and blend the outputs linearly."""
    rows_in, cols_in = tile_starts(x.shape[3], tile, stride), tile_starts(x.shape[4], tile, stride)
    if len(rows_in) == 1 and len(cols_in) == 1:
        return fn(x)
    grid = [[fn(x[:, :, :, i : i + tile, j : j + tile]) for j in cols_in] for i in rows_in]
    for i, row in enumerate(grid):
        for j in range(len(row)):
            if i > 0:
                row[j] = _blend(grid[i - 1][j], row[j], out_overlap, dim=3)
            if j > 0:
                row[j] = _blend(row[j - 1], row[j], out_overlap, dim=4)
    lines = []
    for i, row in enumerate(grid):
        cropped = []
        for j, out in enumerate(row):
            if i < len(grid) - 1:
                out = out[:, :, :, :out_stride]
            if j < len(row) - 1:
                out = out[:, :, :, :, :out_stride]
            cropped.append(out)
        lines.append(torch.cat(cropped, dim=4))
    return torch.cat(lines, dim=3)
