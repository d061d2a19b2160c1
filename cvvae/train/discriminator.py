"""3D patch discriminator of CV-VAE (paper Fig. 3c/7: the LDM patch discriminator built from 3D convolutions).

Layout, following the released configuration (input 3 channels, width 64, 4 layers, full 3D, non-causal):
a stride-2 3D convolution, residual blocks that halve T, H and W with average pooling, two residual blocks at
full width without downsampling, each block followed by GroupNorm + LeakyReLU(0.2), and a final 3D convolution
to one channel of patch logits. Images enter as T = 1 clips.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _group_norm(channels: int) -> nn.GroupNorm:
    # 32 groups as in the VAE's Normalize, fewer for the narrow test models.
    return nn.GroupNorm(math.gcd(32, channels), channels, eps=1e-6)


def _pool_time_and_space(x: Tensor) -> Tensor:
    """Average-pool T, H and W by 2; an odd T first repeats frame 0 so that the first frame stays alone."""
    if x.shape[2] % 2 == 1:
        x = torch.cat([x[:, :, :1], x], dim=2)
    return F.avg_pool3d(x, kernel_size=2, stride=2)


class ResidualDownBlock3D(nn.Module):
    """GN -> LeakyReLU -> 3x3x3 conv -> (pool) -> GN -> LeakyReLU -> 3x3x3 conv, plus a pooled 1x1x1 skip."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool = True) -> None:
        super().__init__()
        self.downsample = downsample
        self.norm1 = _group_norm(in_channels)
        self.conv1 = nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm2 = _group_norm(out_channels)
        self.conv2 = nn.Conv3d(out_channels, out_channels, kernel_size=3, padding=1)
        self.skip = (
            nn.Conv3d(in_channels, out_channels, kernel_size=1)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.leaky_relu(self.norm1(x), 0.2))
        if self.downsample:
            h = _pool_time_and_space(h)
            x = _pool_time_and_space(x)
        h = self.conv2(F.leaky_relu(self.norm2(h), 0.2))
        return self.skip(x) + h


class NLayerDiscriminator3D(nn.Module):
    """Patch discriminator over B C T H W clips -> B 1 t h w logits."""

    def __init__(self, in_channels: int = 3, base_channels: int = 64, num_layers: int = 4) -> None:
        super().__init__()
        if num_layers < 2:
            raise ValueError(f"num_layers must be >= 2, got {num_layers}")
        layers: list[nn.Module] = [
            nn.Conv3d(in_channels, base_channels, kernel_size=3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        ]
        channels = base_channels
        for n in range(1, num_layers - 1):
            out = base_channels * min(2**n, 8)
            layers += [ResidualDownBlock3D(channels, out), _group_norm(out), nn.LeakyReLU(0.2)]
            channels = out
        top = base_channels * min(2**num_layers, 8)
        for _ in range(2):
            layers += [
                ResidualDownBlock3D(channels, top, downsample=False),
                _group_norm(top),
                nn.LeakyReLU(0.2),
            ]
            channels = top
        layers.append(nn.Conv3d(channels, 1, kernel_size=3, padding=1))
        self.main = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, video: Tensor) -> Tensor:
        if video.ndim == 4:  # B C H W image -> one-frame clip
            video = video.unsqueeze(2)
        return self.main(video)


def _init_weights(module: nn.Module) -> None:
    # N(0, 0.02) convolutions, as in the pix2pix/taming discriminators the paper builds on.
    if isinstance(module, nn.Conv3d):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
