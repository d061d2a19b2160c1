"""`cvvae train`: train a CV-VAE variant (or the SVD-style VAE) of a profile; rerunning resumes."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

# Exit status of a run stopped by SIGTERM or SIGINT after writing its checkpoint (128 + 15, as a shell
# reports SIGTERM).
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
    parser.add_argument(
        "--restart", action="store_true", help="discard what the run directory holds and train from step 0"
    )
    parser.add_argument(
        "--report-to",
        nargs="+",
        default=[],
        metavar="TRACKER",
        help="experiment trackers beside the CSV logs, through accelerate (e.g. tensorboard; its package "
        "must be installed); files under <out>/trackers/",
    )
    parser.add_argument(
        "--stop-after",
        type=int,
        default=None,
        metavar="N",
        help="stop with a checkpoint after N steps of this call, as SIGTERM would (training in time-limited "
        "holds of a machine); the same command continues",
    )
    parser.add_argument(
        "--if-changed",
        choices=["error", "restart"],
        default="error",
        help="when the run directory was trained with a different config: stop with the differing keys "
        "(error, the default) or start afresh (restart; the workflow's choice)",
    )


def load_checked_profile(path: str, overrides: list[str]) -> dict:
    """The profile at ``path``, validated as a whole and again with ``overrides`` applied, so that a typo in
    a ``--set`` key fails here with the valid keys named instead of being ignored."""
    from cvvae.profile import apply_overrides, load_profile, validate_profile

    profile = load_profile(path)
    if overrides:
        validate_profile(apply_overrides(profile, overrides), f"{path} with --set {' '.join(overrides)}")
    return profile


def finish(summary: dict) -> int:
    """Print the run's summary as one JSON line and return the exit status. The line goes out in one write:
    every rank of a distributed run prints one to the same pipe, and with unbuffered output (PYTHONUNBUFFERED)
    ``print`` writes the text and its newline separately, so two ranks' lines could run together."""
    print(json.dumps(summary) + "\n", end="", flush=True)
    return INTERRUPTED_EXIT if summary["interrupted"] else 0


def run_training(
    args: argparse.Namespace,
    section: str,
    resolve: Callable[[dict, list[str]], Any],
    train: Callable[..., dict],
    **options: Any,
) -> int:
    """Resolve the run config of profile section ``section`` (``--set``, ``--synthetic``) with ``resolve``,
    train it with ``train`` (``options`` passed on) and return the exit status."""
    overrides = list(args.overrides) + ([f"{section}.train.synthetic_data=true"] if args.synthetic else [])
    run_config = resolve(load_checked_profile(args.config, overrides), overrides)
    summary = train(
        run_config, args.out, stop_after=args.stop_after, restart=args.restart, if_changed=args.if_changed,
        **options,
    )  # fmt: skip
    return finish(summary)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, "cvvae", "seeded random clips instead of a dataset")
    parser.add_argument(
        "--variant", default=None, help="variant from cvvae.variants, merged before --set (default: none)"
    )


def run(args: argparse.Namespace) -> int:
    from cvvae.train.config import resolve_cvvae_config
    from cvvae.train.trainer import train

    def resolve(profile: dict, overrides: list[str]) -> Any:
        return resolve_cvvae_config(profile, args.variant, overrides)

    return run_training(args, "cvvae", resolve, train, report_to=args.report_to)
