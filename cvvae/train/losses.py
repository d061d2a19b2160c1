"""Training losses: L1/L2 + LPIPS reconstruction NLL, KL, hinge GAN with adaptive weight, regularisation.

Normalisation follows the official implementation, so that its weights (LPIPS 0.5, KL 1.0, disc 0.5)
keep their meaning: reconstruction and regularisation maps are summed over pixels and divided by the number
of frames (video frames are rearranged into a batch of images); the KL is summed over latent elements and
divided by the batch size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cvvae.metrics.weights import LPIPSWeightsMissing
from cvvae.metrics.weights import build_lpips as build_frozen_lpips
from cvvae.per_frame import fold_frames
from cvvae.train.config import LossConfig, RegConfig


def frames_as_images(video: Tensor) -> Tensor:
    """B C T H W -> (B T) C H W (images pass through)."""
    return video if video.ndim == 4 else fold_frames(video)


def build_lpips(backbone: str) -> nn.Module:
    """The frozen LPIPS loss network; a missing backbone is an error naming both ways out."""
    try:
        return build_frozen_lpips(backbone)
    except LPIPSWeightsMissing as err:
        raise LPIPSWeightsMissing(
            f"{err}. Or train without the perceptual term: `--set <section>.loss.lpips=none` "
            "(recorded as a deviation)."
        ) from err


class ReconstructionLoss(nn.Module):
    """Per-frame pixel (L1/L2) + weighted LPIPS map, wrapped in the learned log-variance NLL."""

    def __init__(self, config: LossConfig) -> None:
        super().__init__()
        self.rec_loss = config.rec_loss
        self.lpips_weight = config.lpips_weight if config.lpips != "none" else 0.0
        self.perceptual = build_lpips(config.lpips) if self.lpips_weight > 0 else None
        self.logvar = nn.Parameter(torch.tensor(config.logvar_init), requires_grad=config.learn_logvar)

    def train(self, mode: bool = True) -> ReconstructionLoss:
        super().train(mode)
        if self.perceptual is not None:  # LPIPS stays in eval mode (its dropout layers are off)
            self.perceptual.eval()
        return self

    def rec_map(self, target: Tensor, recon: Tensor) -> Tensor:
        """Per-pixel reconstruction error of (B T) C H W frames, LPIPS broadcast per frame."""
        target, recon = frames_as_images(target), frames_as_images(recon)
        error = (recon - target).abs() if self.rec_loss == "l1" else (recon - target).square()
        if self.perceptual is not None:
            error = error + self.lpips_weight * self.perceptual(target.float(), recon.float())
        return error

    def forward(self, target: Tensor, recon: Tensor) -> tuple[Tensor, Tensor]:
        """Return (nll, mean reconstruction error for logging)."""
        error = self.rec_map(target, recon)
        nll = error / torch.exp(self.logvar) + self.logvar
        return nll.sum() / error.shape[0], error.detach().mean()


def kl_loss(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) summed over latent elements, divided by the batch size."""
    logvar = logvar.clamp(-30.0, 20.0)  # the same clamp as diffusers' DiagonalGaussianDistribution
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).sum() / mean.shape[0]


class RegularizationDistance(nn.Module):
    """Distance of a regularisation term: squared error (paper) or L1 (official), optionally a learned NLL."""

    def __init__(self, config: RegConfig) -> None:
        super().__init__()
        self.distance = config.distance
        self.logvar = nn.Parameter(torch.zeros(()), requires_grad=config.learn_logvar)
        self.use_logvar = config.learn_logvar

    def forward(self, target: Tensor, recon: Tensor) -> tuple[Tensor, Tensor]:
        """Return (loss, mean error for logging); summed over pixels per frame, averaged over frames."""
        target, recon = frames_as_images(target), frames_as_images(recon)
        error = (recon - target).abs() if self.distance == "l1" else (recon - target).square()
        value = error / torch.exp(self.logvar) + self.logvar if self.use_logvar else error
        return value.sum() / error.shape[0], error.detach().mean()


def hinge_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def vanilla_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    return 0.5 * (F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean())


def adaptive_gan_weight(nll: Tensor, g_loss: Tensor, last_layer: Tensor, max_weight: float = 1.0e4) -> Tensor:
    """||d nll / d W|| / ||d g / d W|| at the decoder's last layer W, clamped to [0, max_weight], detached."""
    nll_grad = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    weight = torch.linalg.vector_norm(nll_grad) / (torch.linalg.vector_norm(g_grad) + 1.0e-4)
    return weight.clamp(0.0, max_weight).detach()


@dataclass
class GanTerms:
    g_loss: Tensor
    d_weight: Tensor


def gan_active(config: LossConfig, step: int) -> bool:
    """Whether the GAN terms are on at optimisation step ``step`` (0-based)."""
    return config.disc_enabled and step >= config.disc_start


def generator_gan_terms(
    discriminator: nn.Module, recon: Tensor, nll: Tensor, last_layer: Tensor | None, config: LossConfig
) -> GanTerms:
    """Generator loss -mean(D(x_rec)) and its weight disc_weight * adaptive weight.

    The discriminator runs with detached parameters: the generator step sends gradients into the
    reconstruction only, so the discriminator's gradients (and their DDP synchronisation) belong to its
    own step.
    """
    params = {name: p.detach() for name, p in discriminator.named_parameters()}
    buffers = dict(discriminator.named_buffers())
    g_loss = -torch.func.functional_call(discriminator, {**params, **buffers}, (recon,)).mean()
    if config.adaptive_weight and last_layer is not None:
        weight = adaptive_gan_weight(nll, g_loss, last_layer, config.adaptive_weight_max)
    else:
        weight = torch.ones((), device=recon.device)
    return GanTerms(g_loss=g_loss, d_weight=weight * config.disc_weight)


def discriminator_loss(
    discriminator: nn.Module, real: Tensor, fake: Tensor, config: LossConfig
) -> tuple[Tensor, dict[str, Tensor]]:
    """disc_factor * hinge/vanilla loss. Real and fake share one forward call (one DDP forward per step)."""
    logits = discriminator(torch.cat([real, fake]).detach())
    logits_real, logits_fake = logits.chunk(2)
    d_loss_fn = hinge_d_loss if config.disc_loss == "hinge" else vanilla_d_loss
    loss = config.disc_factor * d_loss_fn(logits_real, logits_fake)
    logs = {"logits_real": logits_real.detach().mean(), "logits_fake": logits_fake.detach().mean()}
    return loss, logs
