"""Short bf16 training of the full-width (released) CV-VAE on synthetic clips: steps/s and peak memory.

Random initialisation: an SD2.1-shaped image VAE (128/256/512/512, 2 layers per block, 4 latent channels) with
random weights stands in for the frozen image VAE and is inflated into the CV-VAE. No dataset, no LPIPS
weights and no downloads are needed. Run under ``accelerate launch --num_processes N`` for DDP.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from cvvae.train.config import MixtureSourceConfig, TrainConfig, from_dict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the JSON result and the run directory")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--grad-checkpointing", action="store_true")
    parser.add_argument("--no-gan", action="store_true", help="disable the discriminator")
    args = parser.parse_args(argv)

    from diffusers import AutoencoderKL

    from cvvae.models import inflate_from_image_vae
    from cvvae.train.config import DataConfig
    from cvvae.train.trainer import Trainer

    torch.manual_seed(0)  # same random weights on every process
    image_vae = AutoencoderKL(
        block_out_channels=[128, 256, 512, 512],
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        layers_per_block=2,
        latent_channels=4,
    ).eval()
    model = inflate_from_image_vae(image_vae)
    video = MixtureSourceConfig("vid", "video", args.resolution, 1, 1.0, num_frames=args.frames)
    config = from_dict(
        TrainConfig,
        {
            "steps": args.steps,
            "precision": args.precision,
            "grad_checkpointing": args.grad_checkpointing,
            "synthetic_data": True,
            "loss": {"lpips": "none", "disc_start": 0, "disc_enabled": not args.no_gan},
            "log_every": 1,
            "val_every": 0,
            "val_clips": 1,
            "val_num_frames": args.frames,
            "val_resolution": args.resolution,
            "ckpt_every": 10**9,
            "keep_ckpts": 1,
        },
    )
    config.mixture = [video]
    out = Path(args.out)
    trainer = Trainer(config, DataConfig(), 0, out / "run", model, image_vae, config)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    summary = trainer.fit()
    elapsed = time.perf_counter() - started
    result = {
        **summary,
        "wall_s": elapsed,
        "frames": args.frames,
        "resolution": args.resolution,
        "precision": args.precision,
        "grad_checkpointing": args.grad_checkpointing,
        "gan": not args.no_gan,
        "num_processes": trainer.accelerator.num_processes,
        "parameters_trained": sum(p.numel() for p in model.parameters()),
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    }
    if trainer.accelerator.is_main_process:
        name = f"train_smoke_{args.precision}_{trainer.accelerator.num_processes}proc.json"
        (out / name).write_text(json.dumps(result, indent=2))
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
