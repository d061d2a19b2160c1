"""How much does an image VAE's KL term limit its code? Posterior statistics on a folder of images.

Prints, over the images: the spread of the posterior means, the posterior std (median and mean), the KL to
N(0, 1) per latent element (nats), and the PSNR of the decoded posterior mode and of a posterior sample. A
posterior std near the spread of the means is a rate-limited code: each latent element carries about one nat.

    python scripts/latent_posterior.py results/gpu/runs/image_vae/final data/embedded/gpu/images/val
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from cvvae.data.reader import frames_to_tensor, read_image
from cvvae.metrics.latent import posterior_statistics
from cvvae.metrics.reconstruction import psnr_per_frame
from cvvae.models.image_vae import load_image_vae


def load_images(folder: Path, size: int, limit: int) -> torch.Tensor:
    """The first ``limit`` .png images of ``folder`` as ``B C H W`` in [-1, 1], area-resized to ``size``."""
    files = sorted(folder.glob("*.png"))[:limit]
    if not files:
        raise SystemExit(f"latent_posterior: no .png images in {folder}")
    frames = [frames_to_tensor(read_image(f)[None])[:, 0] for f in files]  # C H W each
    return torch.stack([F.interpolate(f[None], size=(size, size), mode="area")[0] for f in frames])


@torch.no_grad()
def image_vae_statistics(vae_folder: Path, images: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """``posterior_statistics`` of the VAE on ``images``, plus the PSNR of its mode and of a sample."""
    vae = load_image_vae(vae_folder, setting="the vae argument")
    posterior = vae.encode(images).latent_dist

    def decoded_psnr(latents: torch.Tensor) -> float:
        recon = vae.decode(latents).sample
        return float(psnr_per_frame(recon[:, :, None], images[:, :, None]).mean())

    return {
        "images": float(images.shape[0]),
        **posterior_statistics(posterior.mean, posterior.logvar),
        "psnr_mode": decoded_psnr(posterior.mean),
        "psnr_sample": decoded_psnr(posterior.sample(torch.Generator().manual_seed(seed))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("vae", type=Path, help="a diffusers AutoencoderKL folder")
    parser.add_argument("images", type=Path, help="a folder of .png images")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--limit", type=int, default=64)
    args = parser.parse_args()
    stats = image_vae_statistics(args.vae, load_images(args.images, args.size, args.limit))
    for key, value in stats.items():
        print(f"{key}\t{value:.4g}")


if __name__ == "__main__":
    main()
