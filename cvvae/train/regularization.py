"""What the latent regularisation terms of CV-VAE compare (paper Sec. 3.1, Eq. 1-3).

Both terms compare the video VAE with the frozen image VAE on psi(X), the frames the latent frames stand for
(``cvvae.models.frames.map_frames``; one psi draw per step, shared by the two terms). With ``first`` only
latent frame 0 is regularised: the target has a single frame and only the first latent frame is decoded by the
frozen image decoder (paper: "the loss reduces to image reconstruction").
"""

from __future__ import annotations

import torch
from torch import Tensor

from cvvae.models.frames import Mapping, map_frames
from cvvae.train.config import RegConfig


def regularization_targets(video: Tensor, reg: RegConfig, generator: torch.Generator | None = None) -> Tensor:
    """psi(X) under the run's mapping: ``B C T H W`` -> ``B C t H W``."""
    return map_frames(video, reg.mapping, reg.time_compression, reg.slice_position, generator)


def regularized_latents(latents: Tensor, mapping: Mapping) -> Tensor:
    """The latent frames compared with psi(X): all of them, or only frame 0 for ``first``."""
    return latents[:, :, :1] if mapping == "first" else latents
