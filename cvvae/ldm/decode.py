"""The one latents file through each decoder: PNG folders, grid strips and the held-out reference images.

Layout of a generative folder (``results/<profile>/generative/``)::

    latents.safetensors        the sampled latents (cvvae.ldm.sample)
    decoded/<decoder>/         000000.png ... one PNG per latent, in the latents' order
    decoded/<decoder>.json     the decoder's spec, the latents it decoded and the run identity of the
                               training run it came from (so a later run of that name is not paired
                               with these images)
    reference/                 held-out images (centre crops) the FID is measured against
    grids/<decoder>.png        the first samples side by side (the same latents for every decoder)
    metrics.csv                FID/KID/PSNR per decoder (cvvae.ldm.score)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from cvvae.ldm.data import to_uint8

DECODED = "decoded"
REFERENCE = "reference"
GRIDS = "grids"


def decoder_run_identity(spec: str, runs_dir: str | Path) -> str | None:
    """The identity digest of the training run a decoder spec reads (``{runs}/<run>/...``), or None for
    weights from elsewhere."""
    from cvvae.profile import spec_run
    from cvvae.train.run_identity import identity_digest

    run = spec_run(spec)
    return identity_digest(Path(runs_dir) / run) if run else None


def decode_latents(latents: Tensor, decoder: Any, batch_size: int = 32) -> Tensor:
    """Decode unscaled latents ``N c h w`` with a ``cvvae.models.zoo.VideoAutoencoder`` in image mode (each
    latent a one-frame video); uint8 ``N 3 H W``."""
    if latents.ndim != 4:
        raise ValueError(f"expected latents N c h w, got shape {tuple(latents.shape)}")
    if getattr(decoder, "temporal_compression", 1) != 1:
        raise ValueError(f"{decoder.name} is not in image mode; use an image_vae or cvvae_image spec")
    out = []
    for part in latents.split(batch_size):
        images = decoder.decode(part[:, :, None], 1)[:, :, 0]
        out.append(to_uint8(images.cpu()))
    return torch.cat(out)


def write_pngs(images: Tensor, folder: Path) -> Path:
    """uint8 ``N 3 H W`` as ``folder/000000.png`` ...; files of an earlier, larger set are removed."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    for index, image in enumerate(images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{index:06d}.png")
    return folder


def read_pngs(folder: str | Path) -> Tensor:
    """The PNGs of ``folder`` in name order as uint8 ``N 3 H W``."""
    paths = sorted(Path(folder).glob("*.png"))
    if not paths:
        raise FileNotFoundError(f"no PNG images in {folder}")
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def write_grid(images: Tensor, path: Path, count: int) -> Path:
    """The first ``count`` images side by side in one PNG strip."""
    path.parent.mkdir(parents=True, exist_ok=True)
    strip = torch.cat(list(images[:count]), dim=2)  # 3 H (count W)
    Image.fromarray(strip.permute(1, 2, 0).numpy()).save(path)
    return path


def decode_to_folder(
    out_dir: str | Path,
    name: str,
    decoder: Any,
    latents_file: str | Path | None = None,
    spec: str | None = None,
    grid_samples: int = 8,
    batch_size: int = 32,
    run_identity: str | None = None,
) -> Tensor:
    """Decode ``latents_file`` (default: ``out_dir/latents.safetensors``) with ``decoder`` into
    ``out_dir/decoded/<name>/`` and ``out_dir/grids/<name>.png``; returns the uint8 images.
    ``run_identity`` (:func:`decoder_run_identity`) is recorded with them."""
    from cvvae.fingerprint import file_digest
    from cvvae.ldm.sample import load_latents

    out_dir = Path(out_dir)
    latents_file = Path(latents_file or out_dir / "latents.safetensors")
    latents, metadata = load_latents(latents_file)
    images = decode_latents(latents, decoder, batch_size)
    write_pngs(images, out_dir / DECODED / name)
    write_grid(images, out_dir / GRIDS / f"{name}.png", grid_samples)
    record = {"decoder": name, "spec": spec, "latents": str(latents_file), "samples": len(images),
              "latents_sha256": file_digest(latents_file), "sampling": metadata,
              "decoder_run_identity": run_identity}  # fmt: skip
    (out_dir / DECODED / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    return images


def decoder_from_spec(spec: str, runs_dir: str | Path, device: str | torch.device = "cpu") -> Any:
    """``cvvae.models.zoo.load_autoencoder`` of a spec with ``{runs}`` expanded."""
    from cvvae.models.zoo import load_autoencoder

    return load_autoencoder(spec.replace("{runs}", str(runs_dir)), device=device)


def write_reference(out_dir: str | Path, images: Tensor, grid_samples: int = 8) -> Path:
    """Held-out images (float ``N 3 H W`` in [-1, 1]) as ``out_dir/reference/`` PNGs and a grid strip."""
    out_dir = Path(out_dir)
    as_uint8 = to_uint8(images)
    write_grid(as_uint8, out_dir / GRIDS / f"{REFERENCE}.png", grid_samples)
    return write_pngs(as_uint8, out_dir / REFERENCE)
