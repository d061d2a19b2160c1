"""N latents sampled once from a trained LDM with a fixed seed, saved with how they were made.

The file (``latents.safetensors``) holds ``latents``: ``N c h w`` float32 in the image VAE's own (unscaled)
units, i.e. the UNet's samples divided by the scaling factor, ready for any decoder; its metadata records the
seed, scheduler, steps, scaling factor, sample count and the digests of the UNet and the image VAE.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cvvae.ldm.config import LDMSampleConfig
from cvvae.ldm.models import LDMInfo, load_model, sampling_scheduler

LATENTS_KEY = "latents"


@torch.no_grad()
def sample_latents(
    unet: nn.Module, training_scheduler: Any, info: LDMInfo, config: LDMSampleConfig, progress: bool = True
) -> Tensor:
    """``config.num_samples`` unscaled latents ``N c h w`` (float32, CPU)."""
    from tqdm.auto import tqdm

    device = next(unet.parameters()).device
    shape = (config.num_samples, info.latent_channels, info.latent_size, info.latent_size)
    # All the initial noise at once on the CPU: sample i starts from the same noise whatever the batch size.
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(config.seed))
    scheduler = sampling_scheduler(config.scheduler, training_scheduler.config)
    out = []
    batches = noise.split(config.batch_size)
    for batch in tqdm(batches, desc="sample", disable=not progress):
        scheduler.set_timesteps(config.steps, device=device)  # also resets a multistep solver's history
        x = batch.to(device) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            prediction = unet(scheduler.scale_model_input(x, t), t).sample
            x = scheduler.step(prediction, t, x).prev_sample
        out.append((x / info.scaling_factor).float().cpu())
    return torch.cat(out)


def save_latents(path: str | Path, latents: Tensor, metadata: dict[str, Any]) -> Path:
    """Write ``latents`` and string metadata atomically (a partial file never has the final name)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    save_file(
        {LATENTS_KEY: latents.contiguous()}, str(tmp), metadata={k: str(v) for k, v in metadata.items()}
    )
    tmp.replace(path)
    return path


def load_latents(path: str | Path) -> tuple[Tensor, dict[str, str]]:
    """(latents ``N c h w``, metadata) of a file written by :func:`save_latents`."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"latents file {path} not found: sample with `python -m cvvae.ldm sample`")
    with safe_open(str(path), framework="pt") as fh:
        return fh.get_tensor(LATENTS_KEY), dict(fh.metadata() or {})


def sample_to_file(
    model_dir: str | Path, out_file: str | Path, config: LDMSampleConfig, device: str | None = None
) -> Path:
    """Sample from the trained model at ``model_dir`` (a run's ``final/``) into ``out_file``."""
    from cvvae.fingerprint import folder_digest

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    unet, scheduler, info = load_model(model_dir, device)
    latents = sample_latents(unet, scheduler, info, config)
    metadata = {
        "seed": config.seed, "scheduler": config.scheduler, "steps": config.steps,
        "num_samples": config.num_samples, "scaling_factor": repr(info.scaling_factor),
        "scaling_source": info.scaling_source, "units": "image VAE latents (UNet samples / scaling_factor)",
        "model": str(model_dir), "model_step": info.step, "ema": info.ema,
        "unet_sha256": folder_digest(Path(model_dir) / "unet"), "image_vae_sha256": info.image_vae_sha256,
    }  # fmt: skip
    return save_latents(out_file, latents, metadata)
