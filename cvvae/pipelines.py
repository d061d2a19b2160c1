"""CV-VAE inside diffusers pipelines.

**Image pipelines.** :class:`~cvvae.models.CVVAEModel` (4 latent channels, SD2.1's latent space) and
:class:`~cvvae.models.CVVAESD3Model` (16 channels, SD3's) are drop-in ``vae`` components: 4D images encode
to 4D latents, 4D latents decode to 4D images, ``decode`` accepts the ``generator`` pipelines pass, and the
config carries ``block_out_channels``, ``latent_channels`` and ``scaling_factor`` as diffusers reads them::

    from diffusers import StableDiffusionPipeline
    from cvvae.models import CVVAEModel

    vae = CVVAEModel.from_pretrained("weights/CV-VAE", subfolder="vae3d")
    pipe = StableDiffusionPipeline.from_pretrained("weights/stable-diffusion-2-1-base", vae=vae)
    image = pipe("a red fox in the snow", num_inference_steps=25).images[0]

**Image-to-video (SVD-style).** ``StableVideoDiffusionPipeline.decode_latents`` cuts the latents into
chunks of ``decode_chunk_size`` frames and passes each chunk's length as ``num_frames``, the number of
*pixel* frames of the SVD VAE. CV-VAE reads ``num_frames`` as *latent* frames and turns ``1 + k`` of them
into ``1 + 4k`` pixel frames, so that method mixes up chunks and frame counts.
:class:`CVVAEVideoDiffusionPipeline` replaces it and counts frames the CV-VAE way;
:func:`decode_video_latents` is the same decoding as a plain function, for use as the ``decode_latents`` of
another video pipeline.

Without ``transformers`` installed, diffusers' pipelines (and this subclass) raise an ``ImportError`` naming
it when built.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import StableVideoDiffusionPipeline
from torch import Tensor, nn

from cvvae.models.frames import latent_frames, pixel_frames

__all__ = ["CVVAEVideoDiffusionPipeline", "decode_video_latents"]


def _temporal_compression(vae: nn.Module) -> int:
    return int(getattr(vae, "temporal_compression_ratio", None) or vae.config.time_n_compress)


def decode_video_latents(vae: nn.Module, latents: Tensor) -> Tensor:
    """Decode a video pipeline's latents with a CV-VAE: ``B t c h w`` (scaled, as the UNet sees them) ->
    float32 frames ``B C (1 + 4 (t - 1)) H W``, the layout ``VideoProcessor.postprocess_video`` takes.

    The latents are divided by ``vae.config.scaling_factor`` and decoded as one video per batch element.
    Memory is bounded by the model's own temporal windows (``set_temporal_chunking``) and spatial tiles
    (``enable_tiling``), not by a chunk size.
    """
    if latents.dim() != 5:
        raise ValueError(f"expected B t c h w latents, got shape {tuple(latents.shape)}")
    video = latents.transpose(1, 2) / vae.config.scaling_factor  # B c t h w, as CV-VAE decodes
    frames = vae.decode(video.to(vae.dtype)).sample
    return frames.float()


class CVVAEVideoDiffusionPipeline(StableVideoDiffusionPipeline):
    r"""``StableVideoDiffusionPipeline`` with a CV-VAE as its ``vae`` (image-to-video in CV-VAE's latents).

    The UNet denoises *latent* frames, and CV-VAE decodes ``t`` of them into ``1 + 4 (t - 1)`` frames.
    ``num_frames`` is therefore the number of frames of the output video and must be ``1 + 4k``
    (5, 9, ..., 25: ``ValueError`` otherwise); the UNet denoises ``1 + k`` latent frames. Left out, the UNet's
    ``config.num_frames`` latent frames are denoised. Every other argument is
    ``StableVideoDiffusionPipeline``'s; ``decode_chunk_size`` is accepted and unused (see
    :func:`decode_video_latents`). The conditioning image is encoded by CV-VAE's image mode (``B 3 H W`` ->
    ``B 4 h w``), as the SVD VAE encodes it.
    """

    def latent_frames_for(self, num_frames: int) -> int:
        """Latent frames the UNet denoises for a video of ``num_frames`` (``1 + 4k``) frames."""
        return latent_frames(num_frames, _temporal_compression(self.vae))

    def video_frames_for(self, num_latent_frames: int) -> int:
        """Frames of the video decoded from ``num_latent_frames`` latent frames."""
        return pixel_frames(num_latent_frames, _temporal_compression(self.vae))

    def decode_latents(self, latents: Tensor, num_frames: int, decode_chunk_size: int = 14) -> Tensor:
        """``B t c h w`` latents -> ``B C (1 + 4 (t - 1)) H W`` frames; ``num_frames`` is ``t`` here, the
        latent frames the parent pipeline passes."""
        if latents.shape[1] != num_frames:
            raise ValueError(f"got {latents.shape[1]} latent frames, expected {num_frames}")
        return decode_video_latents(self.vae, latents)

    @torch.no_grad()
    def __call__(
        self,
        image: Any,
        height: int = 576,
        width: int = 1024,
        num_frames: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """``StableVideoDiffusionPipeline.__call__`` with ``num_frames`` counted in output frames (1 + 4k);
        the output video has exactly ``num_frames`` frames."""
        latent_count = None if num_frames is None else self.latent_frames_for(num_frames)
        return super().__call__(image, height=height, width=width, num_frames=latent_count, **kwargs)
