"""Latent compatibility between a video VAE and the image VAE it should stay compatible with.

Two views: (1) decode every latent frame of the video VAE with the *frozen image decoder* and compare with
the mapped frames psi(X) (the paper's compatibility claim: image-decoder output close to psi(X)); (2) compare
the video VAE's latents with the image VAE's latents of the corresponding frames (``latent_distance``).
These functions take tensors and callables only, so they work with any model class.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from cvvae.metrics.reconstruction import as_video
from cvvae.metrics.stats import frechet_distance_from_features
from cvvae.per_frame import per_frame


def _position_vectors(z: Tensor) -> Tensor:
    """``B c t h w`` -> ``(B t h w) c``: one channel vector per latent position."""
    return z.movedim(1, -1).reshape(-1, z.shape[1])


def latent_distance(z: Tensor, z_ref: Tensor) -> dict[str, float]:
    """Distances between video-VAE latents ``z`` and reference image-VAE latents ``z_ref`` of the same frames.

    Both are unscaled latents ``B c t h w`` (or ``B c h w``) of equal shape. Returns a flat dict of floats
    (ready for a CSV row):

    - ``mse``: mean squared difference;
    - ``cosine``: mean cosine similarity of the per-position channel vectors;
    - ``frechet``: Fréchet distance between Gaussians fitted to the per-position channel vectors of each set
      (distribution match, insensitive to which position is which);
    - per channel ``i``: ``mean_c{i}``, ``ref_mean_c{i}``, ``mean_diff_c{i}`` (= mean - ref_mean),
      ``std_c{i}``, ``ref_std_c{i}``, ``std_diff_c{i}``;
    - ``mean_diff_abs_max``, ``std_diff_abs_max``: largest absolute differences over channels;
    - ``num_vectors``: how many channel vectors entered the statistics.
    """
    z, z_ref = as_video(z, "z"), as_video(z_ref, "z_ref")
    if z.shape != z_ref.shape:
        raise ValueError(
            f"latent shapes differ: {tuple(z.shape)} vs {tuple(z_ref.shape)}; map the video to the latent "
            "frames the video VAE produces (psi) before encoding it with the image VAE"
        )
    v = _position_vectors(z.detach().double())
    v_ref = _position_vectors(z_ref.detach().double())
    if v.shape[0] < 2:
        raise ValueError("need at least two latent positions to estimate per-channel statistics")
    out: dict[str, float] = {
        "mse": float(F.mse_loss(v, v_ref)),
        "cosine": float(F.cosine_similarity(v, v_ref, dim=1, eps=1e-12).mean()),
        "frechet": frechet_distance_from_features(v.cpu().numpy(), v_ref.cpu().numpy()),
        "num_vectors": float(v.shape[0]),
    }
    mean, ref_mean = v.mean(0), v_ref.mean(0)
    std, ref_std = v.std(0), v_ref.std(0)
    for i in range(v.shape[1]):
        out[f"mean_c{i}"] = float(mean[i])
        out[f"ref_mean_c{i}"] = float(ref_mean[i])
        out[f"mean_diff_c{i}"] = float(mean[i] - ref_mean[i])
        out[f"std_c{i}"] = float(std[i])
        out[f"ref_std_c{i}"] = float(ref_std[i])
        out[f"std_diff_c{i}"] = float(std[i] - ref_std[i])
    out["mean_diff_abs_max"] = float((mean - ref_mean).abs().max())
    out["std_diff_abs_max"] = float((std - ref_std).abs().max())
    return out


def decode_latent_frames(
    latents: Tensor, decode_image: Callable[[Tensor], Tensor], frames_per_batch: int = 8
) -> Tensor:
    """Decode every latent frame ``B c t h w`` on its own with an image decoder ``(N c h w) -> (N C H W)``;
    returns ``B C t H W``."""

    def decode_checked(part: Tensor) -> Tensor:
        images = decode_image(part)
        if images.ndim != 4 or images.shape[0] != part.shape[0]:
            raise ValueError(
                f"decode_image must map N c h w latents to N C H W images, got {tuple(images.shape)} for "
                f"{tuple(part.shape)}"
            )
        return images

    with torch.no_grad():
        return per_frame(decode_checked, as_video(latents, "latents"), frames_per_batch)


def posterior_statistics(mean: Tensor, logvar: Tensor) -> dict[str, float]:
    """How much a diagonal-Gaussian posterior can carry: the spread of its means against its own std.

    ``mean`` and ``logvar`` are the encoder's moments (any shape, equal). ``kl_nats_per_element`` is the KL to
    N(0, 1) averaged over latent elements (the rate the KL term charges). A posterior std close to the spread
    of the means is a rate-limited code (about one nat per element, what a KL weight of 1 with the
    sum-over-elements normalisation settles at); SD's image VAE (KL weight 1e-6) has a std far below it.
    """
    if mean.shape != logvar.shape:
        raise ValueError(
            f"mean and logvar must have one shape, got {tuple(mean.shape)} and {tuple(logvar.shape)}"
        )
    mean, logvar = mean.double(), logvar.double().clamp(-30.0, 20.0)
    std = torch.exp(0.5 * logvar)
    kl = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar)
    return {
        "mean_std": float(mean.std()),
        "posterior_std_median": float(std.median()),
        "posterior_std_mean": float(std.mean()),
        "kl_nats_per_element": float(kl.mean()),
    }
