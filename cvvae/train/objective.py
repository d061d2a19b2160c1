"""The CV-VAE training objective (paper Eq. 3): L_AE + lambda1 * L_reg^dec + lambda2 * L_reg^en.

``TrainableVideoVAE`` puts the whole autoencoder forward pass of a step in one ``forward`` call (so that DDP
sees one forward per step), for the CV-VAE and for the SVD-style VAE (frozen image encoder, trained temporal
decoder). ``GeneratorObjective`` turns that output into the autoencoder loss; the discriminator step lives in
``losses.discriminator_loss``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from cvvae.per_frame import decode_frames, encode_frames
from cvvae.train.config import TrainConfig
from cvvae.train.losses import (
    ReconstructionLoss,
    RegularizationDistance,
    gan_active,
    generator_gan_terms,
    kl_loss,
)
from cvvae.train.regularization import regularization_targets, regularized_latents


@dataclass
class VAEForward:
    """What one autoencoder forward pass produces."""

    mean: Tensor
    logvar: Tensor
    latents: Tensor
    recon: Tensor
    recon_from_image_latents: Tensor | None = None


class TrainableVideoVAE(nn.Module):
    """Training view of a video VAE: ``forward(video) -> VAEForward``; ``last_layer`` for the GAN weight.

    ``model_family`` is the run's ``TrainConfig.kind``:

    ``cvvae``: ``CVVAEModel`` (tiling and temporal chunking off: training clips are processed whole).
    ``svd_vae``: diffusers ``AutoencoderKLTemporalDecoder`` whose encoder (the image VAE's) is frozen and
    applied per frame; only the decoder is trained, decoding each clip with ``num_frames = T``.
    ``image_vae``: diffusers ``AutoencoderKL`` trained on images (every frame encoded and decoded alone).
    """

    def __init__(self, vae: nn.Module, model_family: str = "cvvae") -> None:
        super().__init__()
        if model_family not in ("cvvae", "svd_vae", "image_vae"):
            raise ValueError(f"unknown model kind {model_family!r}; choose 'cvvae', 'svd_vae' or 'image_vae'")
        self.vae = vae
        self.model_family = model_family
        if model_family == "cvvae":
            for switch in ("disable_tiling", "disable_slicing"):
                if hasattr(vae, switch):
                    getattr(vae, switch)()
            if hasattr(vae, "set_temporal_chunking"):
                vae.set_temporal_chunking(None)
        elif model_family == "svd_vae":
            for module in (vae.encoder, getattr(vae, "quant_conv", None)):
                if module is not None:
                    module.requires_grad_(False)

    def last_layer(self) -> Tensor:
        """The decoder's last layer weight (where the adaptive GAN weight compares gradients)."""
        decoder = self.vae.decoder
        layer = getattr(decoder, "time_conv_out", None) or decoder.conv_out
        return getattr(layer, "conv", layer).weight

    def _encode(self, video: Tensor):
        if self.model_family == "cvvae":
            return self.vae.encode(video).latent_dist
        b, _, t = video.shape[:3]
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.model_family == "image_vae"):
            posterior = self.vae.encode(video.transpose(1, 2).flatten(0, 1)).latent_dist
        return _FramePosterior(posterior, b, t)

    def _decode(self, latents: Tensor, num_frames: int) -> Tensor:
        if self.model_family == "cvvae":
            return self.vae.decode(latents).sample
        b, _, t = latents.shape[:3]
        flat = latents.transpose(1, 2).flatten(0, 1)
        if self.model_family == "image_vae":
            frames = self.vae.decode(flat).sample
        else:
            frames = self.vae.decode(flat, num_frames=t).sample
        return frames.unflatten(0, (b, t)).transpose(1, 2)

    def forward(
        self,
        video: Tensor,
        generator: torch.Generator | None = None,
        image_latents: Tensor | None = None,
        sample_posterior: bool = True,
    ) -> VAEForward:
        posterior = self._encode(video)
        latents = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        recon = self._decode(latents, video.shape[2])
        extra = None if image_latents is None else self._decode(image_latents, video.shape[2])
        return VAEForward(posterior.mean, posterior.logvar, latents, recon, extra)


class _FramePosterior:
    """Per-frame diffusers posterior of (B T) images seen as B c T h w latents."""

    def __init__(self, posterior, b: int, t: int) -> None:
        self.posterior, self.b, self.t = posterior, b, t

    def _video(self, x: Tensor) -> Tensor:
        return x.unflatten(0, (self.b, self.t)).transpose(1, 2)

    @property
    def mean(self) -> Tensor:
        return self._video(self.posterior.mean)

    @property
    def logvar(self) -> Tensor:
        return self._video(self.posterior.logvar)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        return self._video(self.posterior.sample(generator=generator))

    def mode(self) -> Tensor:
        return self._video(self.posterior.mode())


@dataclass
class StepLosses:
    total: Tensor
    logs: dict[str, Tensor] = field(default_factory=dict)
    """Detached scalars for the log; read them on the host only when a row is written (a read waits for
    the GPU)."""
    terms: dict[str, Tensor] = field(default_factory=dict)
    """Unweighted loss terms with their graphs (``nll``, ``kl``, ``reg_dec``, ``reg_enc``, ``g_loss``)."""


class GeneratorObjective(nn.Module):
    """Autoencoder loss of one step: NLL + KL + lambda1 dec-reg + lambda2 enc-reg + weighted GAN term.

    Holds the learned log-variances (optimised with the autoencoder) and the frozen image VAE used as the
    regularisation target. The SVD-style VAE has no regularisation and no KL (its encoder is frozen).
    """

    def __init__(self, config: TrainConfig, image_vae: nn.Module | None) -> None:
        super().__init__()
        self.config = config
        self.rec = ReconstructionLoss(config.loss)
        self.reg_dec = RegularizationDistance(config.reg)
        # The learned log-variance wraps only the decoder term, as in the official code.
        self.reg_enc = RegularizationDistance(dataclasses.replace(config.reg, learn_logvar=False))
        self.image_vae = image_vae
        if image_vae is not None:
            image_vae.requires_grad_(False).eval()
        uses_reg = config.kind == "cvvae" and (config.reg.lambda_dec > 0 or config.reg.lambda_enc > 0)
        if uses_reg and image_vae is None:
            raise ValueError("latent regularisation needs the frozen image VAE (cvvae.image_vae_path)")

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in (self.rec.logvar, self.reg_dec.logvar) if p.requires_grad]

    def train(self, mode: bool = True) -> GeneratorObjective:
        super().train(mode)
        if self.image_vae is not None:  # the frozen image VAE never leaves eval mode
            self.image_vae.eval()
        return self

    def forward(
        self,
        model: nn.Module,
        video: Tensor,
        step: int,
        generator: torch.Generator | None = None,
        discriminator: nn.Module | None = None,
        last_layer: Tensor | None = None,
        noise_generator: torch.Generator | None = None,
    ) -> tuple[StepLosses, VAEForward]:
        """``generator`` draws on the host (psi's frame choice); ``noise_generator`` (default: the same)
        draws the posterior samples, on the model's device when it is a device generator."""
        cfg, reg = self.config, self.config.reg
        noise = generator if noise_generator is None else noise_generator
        use_reg = cfg.kind == "cvvae"
        is_image = video.shape[2] == 1
        use_dec = use_reg and reg.lambda_dec > 0 and (reg.apply_dec_to_images or not is_image)
        use_enc = use_reg and reg.lambda_enc > 0

        image_latents = enc_target = None
        # One psi draw per step, shared by both regularisation terms.
        targets = regularization_targets(video, reg, generator) if (use_dec or use_enc) else None
        if use_enc:
            image_latents = encode_frames(
                self.image_vae, targets, use_mode=reg.enc_latent == "mode", generator=noise
            )
            enc_target = video[:, :, :1] if reg.mapping == "first" else video
        out: VAEForward = model(video, generator=noise, image_latents=image_latents)

        nll, rec_mean = self.rec(video, out.recon)
        total = nll
        logs = {"nll": nll.detach(), "rec": rec_mean, "logvar": self.rec.logvar.detach()}
        terms = {"nll": nll}
        if cfg.kind != "svd_vae":  # the SVD-style VAE's encoder is frozen: its KL is a constant
            kl = kl_loss(out.mean, out.logvar)
            total = total + cfg.loss.kl_weight * kl
            logs["kl"] = kl.detach()
            terms["kl"] = kl
        if use_dec:
            latents = regularized_latents(out.latents, reg.mapping)
            decoded = decode_frames(self.image_vae, latents)
            dec_loss, dec_err = self.reg_dec(targets, decoded)
            total = total + reg.lambda_dec * dec_loss
            logs |= {"reg_dec": dec_loss.detach(), "reg_dec_err": dec_err}
            terms["reg_dec"] = dec_loss
        if use_enc:
            enc_loss, enc_err = self.reg_enc(enc_target, out.recon_from_image_latents)
            total = total + reg.lambda_enc * enc_loss
            logs |= {"reg_enc": enc_loss.detach(), "reg_enc_err": enc_err}
            terms["reg_enc"] = enc_loss
        if discriminator is not None and gan_active(cfg.loss, step):
            gan = generator_gan_terms(discriminator, out.recon, nll, last_layer, cfg.loss)
            total = total + gan.d_weight * cfg.loss.disc_factor * gan.g_loss
            logs |= {"g_loss": gan.g_loss.detach(), "d_weight": gan.d_weight}
            terms["g_loss"] = gan.g_loss
        logs["loss"] = total.detach()
        return StepLosses(total, logs, terms), out
