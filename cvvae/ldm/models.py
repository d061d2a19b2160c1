"""The models of the LDM: the frozen image VAE, the UNet, the schedulers, and a trained model folder.

A trained model folder (``<run>/final``) holds ``unet/`` (``UNet2DModel.save_pretrained``), ``scheduler/``
(the DDPM training schedule) and ``ldm.json`` (scaling factor, latent shape, the image VAE's digest).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cvvae.ldm.config import NoiseConfig

LDM_FILE = "ldm.json"


def vae_downsampling(vae: nn.Module) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


def build_unet(model_kwargs: dict[str, Any], latent_channels: int, latent_size: int) -> nn.Module:
    """An unconditional diffusers ``UNet2DModel`` on ``latent_channels x latent_size^2`` latents."""
    from diffusers import UNet2DModel

    kwargs = dict(model_kwargs)
    levels = len(kwargs.get("block_out_channels", (224, 448, 672, 896)))
    # Attention only below the first level (where the token count is smallest), as the diffusers default.
    kwargs.setdefault("down_block_types", ["DownBlock2D"] + ["AttnDownBlock2D"] * (levels - 1))
    kwargs.setdefault("up_block_types", ["AttnUpBlock2D"] * (levels - 1) + ["UpBlock2D"])
    return UNet2DModel(
        sample_size=latent_size, in_channels=latent_channels, out_channels=latent_channels, **kwargs
    )


def training_scheduler(noise: NoiseConfig) -> Any:
    from diffusers import DDPMScheduler

    return DDPMScheduler(**asdict(noise))


def sampling_scheduler(scheduler_name: str, training_config: dict[str, Any]) -> Any:
    """DDIM (eta 0) or DPM-Solver++ built from the training schedule's config."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    if scheduler_name == "ddim":
        return DDIMScheduler.from_config(training_config)
    if scheduler_name == "dpm_solver":
        return DPMSolverMultistepScheduler.from_config(
            training_config, algorithm_type="dpmsolver++", solver_order=2
        )
    raise ValueError(f"unknown sampling scheduler {scheduler_name!r}; choose ddim or dpm_solver")


@dataclass
class LDMInfo:
    """What ``ldm.json`` records about a trained model."""

    scaling_factor: float
    """The UNet sees ``latents * scaling_factor``; decoders get the sampled latents divided by it."""
    scaling_source: str
    """How the factor was obtained (``std of N posterior samples`` or ``configured``)."""
    latent_channels: int
    latent_size: int
    resolution: int
    image_vae_sha256: str
    step: int
    ema: bool


def save_model(folder: Path, unet: nn.Module, scheduler: Any, info: LDMInfo) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(folder / "unet")
    scheduler.save_pretrained(folder / "scheduler")
    (folder / LDM_FILE).write_text(json.dumps(asdict(info), indent=2) + "\n")


def load_model(folder: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, Any, LDMInfo]:
    """(UNet in eval mode, the training scheduler, ``LDMInfo``) of a trained model folder."""
    from diffusers import DDPMScheduler, UNet2DModel

    folder = Path(folder)
    if not (folder / LDM_FILE).is_file():
        raise FileNotFoundError(
            f"{folder} is not a trained LDM folder (no {LDM_FILE}): run `cvvae train-ldm`"
        )
    info = LDMInfo(**json.loads((folder / LDM_FILE).read_text()))
    unet = UNet2DModel.from_pretrained(folder / "unet").to(device).eval().requires_grad_(False)
    scheduler = DDPMScheduler.from_pretrained(folder / "scheduler")
    return unet, scheduler, info
