"""`cvvae train-image-vae`: pretrain the small image VAE of a profile; rerunning resumes."""

from __future__ import annotations

import argparse

from cvvae.train.cli import add_run_arguments, finish, load_checked_profile


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, "image_vae", "seeded random images instead of a dataset")


def run(args: argparse.Namespace) -> int:
    from cvvae.train.config import resolve_image_vae_config
    from cvvae.train.trainer import train_image_vae

    overrides = list(args.overrides) + (["image_vae.train.synthetic_data=true"] if args.synthetic else [])
    run_config = resolve_image_vae_config(load_checked_profile(args.config, overrides), overrides)
    summary = train_image_vae(
        run_config, args.out, stop_after=args.stop_after, restart=args.restart, if_changed=args.if_changed,
        report_to=args.report_to,
    )  # fmt: skip
    return finish(summary)
