"""`cvvae train-ldm`: train the small latent diffusion model of a profile's ``ldm`` section; rerunning
resumes."""

from __future__ import annotations

import argparse

from cvvae.train.cli import add_run_arguments, finish, load_checked_profile


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, "ldm", "seeded random images instead of a dataset")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


def run(args: argparse.Namespace) -> int:
    from cvvae.ldm.config import resolve_ldm_config
    from cvvae.ldm.train import train_ldm

    overrides = list(args.overrides) + (["ldm.train.synthetic_data=true"] if args.synthetic else [])
    run_config = resolve_ldm_config(load_checked_profile(args.config, overrides), overrides)
    summary = train_ldm(
        run_config, args.out, stop_after=args.stop_after, restart=args.restart, if_changed=args.if_changed,
        device=args.device,
    )  # fmt: skip
    return finish(summary)
