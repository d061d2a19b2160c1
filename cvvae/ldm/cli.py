"""`cvvae train-ldm`: train the small latent diffusion model of a profile's ``ldm`` section; rerunning
resumes."""

from __future__ import annotations

import argparse

from cvvae.train.cli import add_run_arguments, run_training


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, "ldm", "seeded random images instead of a dataset")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


def run(args: argparse.Namespace) -> int:
    from cvvae.ldm.config import resolve_ldm_config
    from cvvae.ldm.train import train_ldm

    return run_training(args, "ldm", resolve_ldm_config, train_ldm, device=args.device)
