"""Image models applied to videos frame by frame.

A video ``B C T H W`` is folded into a batch of images ``(B T) C H W`` (the frames of one video contiguous),
the image model runs on it, in parts of at most ``batch_size`` images where memory is short, and the result
is unfolded back to ``B c T h w``. Training targets, evaluation and the zoo's per-frame adapters all apply
the image VAE this way. Only torch is imported, so the metrics can use it without loading the models.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def fold_frames(video: Tensor) -> Tensor:
    """``B C T H W`` -> ``(B T) C H W`` (frames of one video contiguous)."""
    return video.transpose(1, 2).flatten(0, 1)


def unfold_frames(images: Tensor, batch: int) -> Tensor:
    """``(B T) C H W`` -> ``B C T H W``."""
    return images.reshape(batch, -1, *images.shape[1:]).transpose(1, 2)


def in_batches(fn: Callable[[Tensor], Tensor], images: Tensor, batch_size: int | None = None) -> Tensor:
    """``fn`` on ``images`` at once, or on parts of ``batch_size`` images concatenated (None: at once)."""
    if not batch_size or images.shape[0] <= batch_size:
        return fn(images)
    return torch.cat([fn(part) for part in images.split(batch_size)])


def per_frame(fn: Callable[[Tensor], Tensor], video: Tensor, batch_size: int | None = None) -> Tensor:
    """An image function ``N C H W -> N c h w`` applied to every frame of ``video`` ``B C T H W``."""
    return unfold_frames(in_batches(fn, fold_frames(video), batch_size), video.shape[0])


def encode_images(
    image_vae: nn.Module, images: Tensor, use_mode: bool = True, generator: torch.Generator | None = None
) -> Tensor:
    """A diffusers ``AutoencoderKL``'s latents of ``N C H W`` images (``quant_conv`` included): the posterior
    mode, or a sample drawn with ``generator``."""
    posterior = image_vae.encode(images).latent_dist
    return posterior.mode() if use_mode else posterior.sample(generator=generator)


def decode_images(image_vae: nn.Module, latents: Tensor) -> Tensor:
    """A diffusers ``AutoencoderKL``'s images of ``N c h w`` latents (``post_quant_conv`` included)."""
    return image_vae.decode(latents).sample


def encode_frames(
    image_vae: nn.Module,
    video: Tensor,
    use_mode: bool = True,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
) -> Tensor:
    """E_i on every frame: ``B C T H W`` -> ``B c T h w``, without gradients (the image encoder is frozen, so
    it offers no gradient path back to a video model)."""
    with torch.no_grad():
        return per_frame(lambda x: encode_images(image_vae, x, use_mode, generator), video, batch_size)


def decode_frames(image_vae: nn.Module, latents: Tensor, batch_size: int | None = None) -> Tensor:
    """D_i on every latent frame: ``B c T h w`` -> ``B C T H W``. Gradients flow through the (frozen) decoder
    into the latents, which is what the decoder regularisation of CV-VAE trains the video encoder with."""
    return per_frame(lambda z: decode_images(image_vae, z), latents, batch_size)
