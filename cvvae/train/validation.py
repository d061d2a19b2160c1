"""Validation of a training run: PSNR of the reconstructions and, for CV-VAE, the latent alignment to the
frozen image VAE (``val_metrics.csv``), and a PNG grid of one clip (``samples/``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cvvae.per_frame import decode_frames, encode_frames
from cvvae.train.config import TrainConfig
from cvvae.train.regularization import regularization_targets, regularized_latents


def validation_metrics(
    model: nn.Module, clips: Tensor, config: TrainConfig, image_vae: nn.Module | None, seed: int, device: Any
) -> dict[str, float]:
    """Mean PSNR of the reconstructions of ``clips`` (``psnr_video``); for CV-VAE also the PSNR of
    D_i(E_v(X)) vs psi(X) and the latent distances to E_i(psi(X)) (``latent_mse``, ...)."""
    from cvvae.metrics.latent import latent_distance
    from cvvae.metrics.reconstruction import psnr_per_frame

    psnrs, dec_psnrs, distances = [], [], []
    reg = config.reg
    for clip in clips.split(1):
        clip = clip.to(device)
        out = model(clip, sample_posterior=False)
        psnrs.append(psnr_per_frame(out.recon.float().clamp(-1, 1), clip).mean().item())
        if config.kind == "cvvae" and image_vae is not None:
            gen = torch.Generator().manual_seed(seed)
            targets = regularization_targets(clip, reg, gen)
            latents = regularized_latents(out.latents, reg.mapping)
            decoded = decode_frames(image_vae, latents).float().clamp(-1, 1)
            dec_psnrs.append(psnr_per_frame(decoded, targets).mean().item())
            reference = encode_frames(image_vae, targets, use_mode=True)
            distances.append(latent_distance(latents.float(), reference.float()))
    row = {"psnr_video": float(np.mean(psnrs))}
    if dec_psnrs:
        row["psnr_image_decoder_vs_psi"] = float(np.mean(dec_psnrs))
        for key in ("mse", "cosine", "frechet"):
            if key in distances[0]:
                row[f"latent_{key}"] = float(np.mean([d[key] for d in distances]))
    return row


def save_grid(folder: Path, step: int, clip: Tensor, recon: Tensor) -> None:
    """The frames of ``clip`` above those of its reconstruction, as ``<folder>/step-<step>.png``."""
    from torchvision.utils import save_image

    folder.mkdir(exist_ok=True)
    frames = torch.cat([clip[0].transpose(0, 1), recon[0].float().clamp(-1, 1).transpose(0, 1)])
    save_image(frames * 0.5 + 0.5, folder / f"step-{step:08d}.png", nrow=clip.shape[2])
