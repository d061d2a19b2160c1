"""The video model a CV-VAE run trains: inflated from the frozen image VAE, loaded from a saved CV-VAE
(``cvvae.init_path``), or the SVD-style VAE built from the image VAE."""

from __future__ import annotations

from torch import nn

from cvvae.train.config import RunConfig


def build_video_model(run: RunConfig, image_vae: nn.Module) -> nn.Module:
    kind = run.train.kind
    if kind == "svd_vae":
        from cvvae.models.svd_init import svd_vae_from_image_vae

        return svd_vae_from_image_vae(image_vae)
    from cvvae.models import CVVAEModel, inflate_from_image_vae

    if run.init_path:
        from cvvae.models.loading import check_class, load_pretrained_strict

        check_class(run.init_path, ("CVVAEModel",), "a CV-VAE (cvvae.init_path)")
        return load_pretrained_strict(CVVAEModel, run.init_path, **run.model)
    return inflate_from_image_vae(image_vae, **run.model)
