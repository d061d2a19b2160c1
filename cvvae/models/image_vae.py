"""The image VAE of the study (diffusers ``AutoencoderKL``): a fresh one to pretrain, a saved one frozen.

Every part that reads an image VAE from a folder (the trainers' regularisation target, inflation, the LDM,
the zoo) loads it here: strictly (every tensor present and used) and refusing a folder of another class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from .loading import check_class, load_pretrained_strict

IMAGE_VAE_CLASSES = ("AutoencoderKL",)


def image_vae_kwargs(model_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``AutoencoderKL`` keyword arguments with the block types filled in to match ``block_out_channels``."""
    kwargs = dict(model_kwargs)
    levels = len(kwargs.get("block_out_channels", (64,)))
    kwargs.setdefault("down_block_types", ["DownEncoderBlock2D"] * levels)
    kwargs.setdefault("up_block_types", ["UpDecoderBlock2D"] * levels)
    return kwargs


def build_image_vae(model_kwargs: dict[str, Any]) -> nn.Module:
    """A fresh diffusers ``AutoencoderKL`` (block types filled in to match ``block_out_channels``)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(**image_vae_kwargs(model_kwargs))


def load_image_vae(
    path: str | Path,
    subfolder: str | None = None,
    *,
    setting: str = "cvvae.image_vae_path",
    what: str = "an image VAE (diffusers AutoencoderKL)",
) -> nn.Module:
    """The saved ``AutoencoderKL`` at ``path/subfolder``, in eval mode without gradients.

    A missing folder raises ``FileNotFoundError`` saying how to make one and to point ``setting`` (the
    profile key or flag the path came from) at it; a folder of another class raises, naming ``what`` was
    expected.
    """
    from diffusers import AutoencoderKL

    folder = Path(path) / (subfolder or "")
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"image VAE not found at {folder}: expected a diffusers AutoencoderKL folder with config.json "
            "and weights. Small profiles: run `cvvae train-image-vae --config PROFILE.yaml --out RUN_DIR` "
            f"and point {setting} to RUN_DIR/final. Paper scale: download the SD2.1 VAE (model hub repo "
            f"stabilityai/stable-diffusion-2-1-base, folder vae/) and point {setting} to that folder."
        )
    check_class(folder, IMAGE_VAE_CLASSES, what)
    return load_pretrained_strict(AutoencoderKL, folder).eval().requires_grad_(False)
