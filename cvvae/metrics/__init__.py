"""Evaluation metrics: per-frame reconstruction (PSNR, SSIM, LPIPS), temporal consistency (flicker), latent
compatibility with the image VAE, and set-level generation metrics (FVD, KVD, FID) plumbing.

Heavy dependencies (lpips, torchvision, OpenCV, torchmetrics) are imported by the functions that need them.
"""

from cvvae.metrics.latent import decode_latent_frames, latent_distance, posterior_statistics
from cvvae.metrics.reconstruction import (
    LPIPS_NETS,
    PSNR_CAP_DB,
    PSNR_IMPL,
    SSIM_IMPL,
    lpips_per_frame,
    mse_per_frame,
    psnr_from_mse,
    psnr_per_frame,
    reconstruction_metrics,
    ssim_per_frame,
)
from cvvae.metrics.temporal import (
    FLOW_IMPL,
    phase_profile,
    psnr_by_frame_index,
    temporal_difference_error,
    temporal_metrics,
    vbench_flicker_score,
)
from cvvae.metrics.weights import LPIPSWeightsMissing, format_na, lpips_cell, lpips_weights_available

__all__ = [
    "FLOW_IMPL",
    "LPIPS_NETS",
    "PSNR_CAP_DB",
    "PSNR_IMPL",
    "SSIM_IMPL",
    "LPIPSWeightsMissing",
    "decode_latent_frames",
    "format_na",
    "latent_distance",
    "posterior_statistics",
    "lpips_cell",
    "lpips_per_frame",
    "lpips_weights_available",
    "mse_per_frame",
    "phase_profile",
    "psnr_by_frame_index",
    "psnr_from_mse",
    "psnr_per_frame",
    "reconstruction_metrics",
    "ssim_per_frame",
    "temporal_difference_error",
    "temporal_metrics",
    "vbench_flicker_score",
]
