"""How much does an image VAE's KL term limit its code? Posterior statistics on a folder of images.

Prints, over the images: the spread of the posterior means, the posterior std (median and mean), the KL to
N(0, 1) per latent element (nats), and the PSNR of the decoded posterior mode and of a posterior sample. A
posterior std near the spread of the means is a rate-limited code: each latent element carries about one nat.

    python scripts/latent_posterior.py results/gpu/runs/image_vae/final data/embedded/gpu/images/val
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cvvae.data.reader import read_image
from cvvae.metrics.latent import posterior_statistics
from cvvae.metrics.reconstruction import psnr_from_mse


def load_images(folder: Path, size: int, limit: int) -> torch.Tensor:
    files = sorted(folder.glob("*.png"))[:limit]
    if not files:
        raise SystemExit(f"latent_posterior: no .png images in {folder}")
    frames = [torch.from_numpy(np.ascontiguousarray(read_image(f))).permute(2, 0, 1) for f in files]
    batch = torch.stack([F.interpolate(f[None].float(), size=(size, size), mode="area")[0] for f in frames])
    return batch / 127.5 - 1.0


@torch.no_grad()
def image_vae_statistics(vae_folder: Path, images: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """``posterior_statistics`` of the VAE on ``images``, plus the PSNR of its mode and of a sample."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(vae_folder).eval()
    posterior = vae.encode(images).latent_dist
    target = (images + 1) / 2

    def decoded_psnr(latents: torch.Tensor) -> float:
        recon = ((vae.decode(latents).sample + 1) / 2).clamp(0, 1)
        return float(psnr_from_mse((recon - target).square().mean(dim=(1, 2, 3))).mean())

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
