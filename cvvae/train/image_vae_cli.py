"""`cvvae train-image-vae`: pretrain the small image VAE of a profile; rerunning resumes."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="profile YAML, e.g. config/default.yaml")
    parser.add_argument("--out", required=True, help="run directory; the model is saved to OUT/final")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="DOTTED.KEY=VALUE",
        help="override a profile key, e.g. image_vae.train.steps=100 (repeatable)",
    )
    parser.add_argument("--synthetic", action="store_true", help="seeded random images instead of a dataset")


def run(args: argparse.Namespace) -> int:
    from cvvae.train.config import load_profile, resolve_image_vae_config
    from cvvae.train.trainer import train_image_vae

    overrides = list(args.overrides) + (["image_vae.train.synthetic_data=true"] if args.synthetic else [])
    config = resolve_image_vae_config(load_profile(args.config), overrides)
    summary = train_image_vae(config, args.out)
    print(json.dumps(summary))
    return 143 if summary["interrupted"] else 0
