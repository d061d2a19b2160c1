"""Per-frame reconstruction metrics on float videos: PSNR, SSIM and LPIPS (AlexNet and VGG).

Inputs are ``B C T H W`` (or images ``B C H W``) in [-1, 1]; both are clamped to [-1, 1] and mapped to
[0, 1] before PSNR and SSIM, the way a decoded video is displayed or saved. Every function returns one value
per frame, shape ``B T``. The implementations are pinned and named by the constants below, which tables print,
because the field's codebases disagree on them (data range, SSIM window, LPIPS backbone).
"""

from __future__ import annotations

import torch
from torch import Tensor

from cvvae.per_frame import fold_frames

# PSNR of identical frames is infinite; tables need a finite number, so the MSE is floored (as in the
# Open-Sora-Plan evaluation code, which reports 100 dB when the MSE is below 1e-10).
PSNR_MSE_FLOOR = 1e-10
PSNR_CAP_DB = 100.0
PSNR_IMPL = "per frame on [0,1] (clamped), data range 1, MSE floored at 1e-10 (cap 100 dB)"
SSIM_IMPL = (
    "torchmetrics.functional.image.structural_similarity_index_measure "
    "(gaussian 11, sigma 1.5, k1 0.01, k2 0.03, data range 1, per frame on [0,1], mean over RGB)"
)
LPIPS_NETS = ("alex", "vgg")


def as_video(x: Tensor, name: str = "video") -> Tensor:
    """View images ``B C H W`` as one-frame videos ``B C 1 H W``; reject anything else that is not 5-D."""
    if x.ndim == 4:
        return x.unsqueeze(2)
    if x.ndim != 5:
        raise ValueError(f"{name} must be B C T H W (or B C H W for images), got shape {tuple(x.shape)}")
    return x


def check_pair(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Bring a prediction/target pair to ``B C T H W`` float32 and check that they match."""
    pred, target = as_video(pred, "prediction"), as_video(target, "target")
    if pred.shape != target.shape:
        raise ValueError(
            f"prediction and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}; "
            "decode to the target's frame count and resolution before computing metrics"
        )
    if not pred.is_floating_point() or not target.is_floating_point():
        raise TypeError("metrics take float tensors in [-1, 1]; convert uint8 frames with x / 127.5 - 1")
    return pred.float(), target.float()


def to_unit_range(x: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1], clamping values the decoder put outside the range."""
    return ((x.clamp(-1.0, 1.0) + 1.0) / 2.0).float()


def mse_per_frame(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error per frame on [0, 1], shape ``B T`` (float64 to keep high-PSNR values exact)."""
    pred, target = check_pair(pred, target)
    diff = to_unit_range(pred).double() - to_unit_range(target).double()
    return diff.pow(2).mean(dim=(1, 3, 4))


def psnr_from_mse(mse: Tensor) -> Tensor:
    """PSNR in dB for data range 1, with the documented MSE floor."""
    return 10.0 * torch.log10(1.0 / mse.clamp_min(PSNR_MSE_FLOOR))


def psnr_per_frame(pred: Tensor, target: Tensor) -> Tensor:
    """PSNR per frame (dB), shape ``B T``; identical frames give ``PSNR_CAP_DB``."""
    return psnr_from_mse(mse_per_frame(pred, target)).float()


def ssim_per_frame(pred: Tensor, target: Tensor) -> Tensor:
    """SSIM per frame (see ``SSIM_IMPL``), shape ``B T``."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    pred, target = check_pair(pred, target)
    b, _, t = pred.shape[:3]
    if min(pred.shape[-2:]) < 11:
        raise ValueError(
            f"SSIM uses an 11x11 window; frames must be at least 11x11, got {tuple(pred.shape[-2:])}"
        )
    values = structural_similarity_index_measure(
        fold_frames(to_unit_range(pred)).double(),
        fold_frames(to_unit_range(target)).double(),
        gaussian_kernel=True,
        sigma=1.5,
        kernel_size=11,
        data_range=1.0,
        k1=0.01,
        k2=0.03,
        reduction="none",
    )
    return values.reshape(b, t).float()


def lpips_per_frame(pred: Tensor, target: Tensor, net: str = "alex", frames_per_batch: int = 32) -> Tensor:
    """LPIPS v0.1 per frame with the ``lpips`` package's calibrated linear layers on an ImageNet backbone
    (``net`` is "alex" or "vgg"), shape ``B T``.

    Raises ``LPIPSWeightsMissing`` when the backbone is not installed (run ``cvvae weights lpips``); never
    downloads and never falls back to a random backbone.
    """
    from cvvae.metrics.weights import load_lpips

    pred, target = check_pair(pred, target)
    model = load_lpips(net, device=pred.device)
    b, _, t = pred.shape[:3]
    # lpips takes [-1, 1]; clamp like the other metrics so all three see the same frames.
    x = fold_frames(pred.clamp(-1.0, 1.0))
    y = fold_frames(target.clamp(-1.0, 1.0))
    out = []
    with torch.no_grad():
        for start in range(0, x.shape[0], frames_per_batch):
            stop = start + frames_per_batch
            out.append(model(x[start:stop], y[start:stop]).flatten())
    return torch.cat(out).reshape(b, t).float()


def reconstruction_metrics(
    pred: Tensor, target: Tensor, lpips_nets: tuple[str, ...] = LPIPS_NETS
) -> dict[str, Tensor]:
    """All per-frame reconstruction metrics, each ``B T``: ``psnr``, ``ssim`` and ``lpips_<net>`` per net."""
    metrics = {"psnr": psnr_per_frame(pred, target), "ssim": ssim_per_frame(pred, target)}
    for net in lpips_nets:
        metrics[f"lpips_{net}"] = lpips_per_frame(pred, target, net=net)
    return metrics
