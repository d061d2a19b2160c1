"""`cvvae train`: train a CV-VAE variant (or the SVD-style VAE) of a profile; rerunning resumes."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="profile YAML, e.g. config/default.yaml")
    parser.add_argument(
        "--variant", default=None, help="variant name from cvvae.variants (default: cvvae.train)"
    )
    parser.add_argument("--out", required=True, help="run directory; an existing checkpoint there is resumed")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="DOTTED.KEY=VALUE",
        help="override a profile key after the variant merge, e.g. cvvae.train.steps=100 (repeatable)",
    )
    parser.add_argument("--synthetic", action="store_true", help="seeded random clips instead of a dataset")


def run(args: argparse.Namespace) -> int:
    from cvvae.train.config import load_profile, resolve_cvvae_config
    from cvvae.train.trainer import train

    overrides = list(args.overrides) + (["cvvae.train.synthetic_data=true"] if args.synthetic else [])
    config = resolve_cvvae_config(load_profile(args.config), args.variant, overrides)
    summary = train(config, args.out)
    print(json.dumps(summary))
    return 143 if summary["interrupted"] else 0
