"""CV-VAE models: the video VAE, its layers, tiling, frame rules and inflation from an image VAE."""

from .cvvae import CVVAEModel, VideoDiagonalGaussian
from .frames import check_num_frames, latent_frames, nearest_valid_frames, pixel_frames
from .inflate import inflate_from_image_vae
from .sd3 import CVVAESD3Model as CVVAESD3Model  # explicit re-export

__all__ = [
    "CVVAEModel",
    "VideoDiagonalGaussian",
    "check_num_frames",
    "inflate_from_image_vae",
    "latent_frames",
    "nearest_valid_frames",
    "pixel_frames",
]
