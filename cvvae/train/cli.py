"""`cvvae train`: train a CV-VAE variant (or the SVD-style VAE) of a profile; rerunning resumes."""

from __future__ import annotations

import argparse
import json

# Exit status of a run stopped by SIGTERM after writing its checkpoint (128 + 15, as a shell reports it).
INTERRUPTED_EXIT = 143


def add_run_arguments(parser: argparse.ArgumentParser, section: str, synthetic_help: str) -> None:
    """The arguments every training command shares: profile, run directory, overrides, synthetic data."""
    parser.add_argument("--config", required=True, help="profile YAML, e.g. config/default.yaml")
    parser.add_argument("--out", required=True, help="run directory; an existing checkpoint there is resumed")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="DOTTED.KEY=VALUE",
        help=f"override a profile key, e.g. {section}.train.steps=100 (repeatable)",
    )
    parser.add_argument("--synthetic", action="store_true", help=synthetic_help)


def finish(summary: dict) -> int:
    print(json.dumps(summary))
    return INTERRUPTED_EXIT if summary["interrupted"] else 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, "cvvae", "seeded random clips instead of a dataset")
    parser.add_argument(
        "--variant", default=None, help="variant from cvvae.variants, merged before --set (default: none)"
    )


def run(args: argparse.Namespace) -> int:
    from cvvae.train.config import load_profile, resolve_cvvae_config
    from cvvae.train.trainer import train

    overrides = list(args.overrides) + (["cvvae.train.synthetic_data=true"] if args.synthetic else [])
    return finish(train(resolve_cvvae_config(load_profile(args.config), args.variant, overrides), args.out))
