"""The dataset manifest: one CSV row per file, paths relative to the dataset root.

Columns: ``path, kind, source, licence, frames, fps, height, width, split``. ``kind`` is ``image``, ``video``
(cut from a real video) or ``camera_video`` (a still image moved by a synthetic camera); ``source`` names the
original image or video, so that splits can be checked for overlap.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

MANIFEST_COLUMNS: tuple[str, ...] = (
    "path",
    "kind",
    "source",
    "licence",
    "frames",
    "fps",
    "height",
    "width",
    "split",
)
IMAGE_KINDS: frozenset[str] = frozenset({"image"})
VIDEO_KINDS: frozenset[str] = frozenset({"video", "camera_video"})


def read_manifest(manifest_csv: str | Path) -> pd.DataFrame:
    """Read and check a manifest; raises ``FileNotFoundError``/``ValueError`` that say what is wrong."""
    manifest_csv = Path(manifest_csv)
    if not manifest_csv.is_file():
        raise FileNotFoundError(
            f"manifest {manifest_csv} does not exist. Build the embedded dataset with "
            "`cvvae data embedded --out data/embedded`, or write a manifest for a real dataset with "
            "`cvvae data manifest` (see data/README.md)."
        )
    frame = pd.read_csv(manifest_csv, dtype={"path": str, "kind": str, "source": str, "split": str})
    missing = [column for column in ("path", "kind", "split") if column not in frame.columns]
    if missing:
        raise ValueError(
            f"manifest {manifest_csv} lacks the columns {missing}; expected {', '.join(MANIFEST_COLUMNS)}"
        )
    if "source" not in frame.columns:
        frame["source"] = frame["path"]
    return frame


def select_rows(
    frame: pd.DataFrame, split: str | None, kinds: Iterable[str], manifest_name: str = "manifest"
) -> pd.DataFrame:
    """Rows of ``split`` (all splits when None) whose kind is in ``kinds``; an empty result is an error."""
    kinds = set(kinds)
    mask = frame["kind"].isin(kinds)
    if split is not None:
        mask &= frame["split"] == split
    rows = frame[mask].reset_index(drop=True)
    if rows.empty:
        have = frame.groupby(["split", "kind"]).size().to_dict()
        raise ValueError(
            f"{manifest_name} has no rows with split={split!r} and kind in {sorted(kinds)}; it has {have}"
        )
    return rows


def resolve_path(root: Path, relative: str) -> Path:
    """Manifest paths are relative to the dataset root unless absolute."""
    path = Path(relative)
    return path if path.is_absolute() else root / path


def manifest_root(manifest_csv: str | Path) -> Path:
    """Folder that the manifest's relative paths start from: the ``root`` recorded in a ``<manifest>.json``
    sidecar (written for real datasets), else the manifest's own folder."""
    manifest_csv = Path(manifest_csv)
    sidecar = manifest_csv.with_suffix(".json")
    if sidecar.is_file():
        root = json.loads(sidecar.read_text()).get("root")
        if root:
            return Path(root)
    return manifest_csv.parent


def manifest_digest(manifest_csv: str | Path) -> str:
    """SHA-256 of the manifest bytes (used to show that a build is reproducible)."""
    return hashlib.sha256(Path(manifest_csv).read_bytes()).hexdigest()


def manifest_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Counts, frames and sources per split and kind (for `cvvae data info`)."""
    grouped = frame.groupby(["split", "kind"])
    summary = grouped.agg(items=("path", "size"), sources=("source", "nunique"))
    if "frames" in frame.columns:
        summary["frames"] = grouped["frames"].sum()
    return summary.reset_index()
