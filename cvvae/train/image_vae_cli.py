"""`cvvae train-image-vae`: pretrain the small image VAE of a profile; rerunning resumes."""

from __future__ import annotations

import argparse

from cvvae.train.cli import add_run_arguments, run_training


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, "image_vae", "seeded random images instead of a dataset")


def run(args: argparse.Namespace) -> int:
    from cvvae.train.config import resolve_image_vae_config
    from cvvae.train.trainer import train_image_vae

    return run_training(
        args, "image_vae", resolve_image_vae_config, train_image_vae, report_to=args.report_to
    )
