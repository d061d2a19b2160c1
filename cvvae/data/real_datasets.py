"""Adapters for the paper's evaluation data: COCO2017 val, WebVid val, UCF-101 and MSR-VTT.

Each adapter finds the files under a root folder the user provides and writes a manifest in the embedded
dataset's format (paths relative to that root), so every loader and protocol works on it unchanged. Nothing is
downloaded: a missing dataset raises an error saying what to get, from where, and where to put it. Subsets
(the paper's 1,024 WebVid val videos, 2,048 UCF-101 / MSR-VTT videos) are drawn with a recorded seed from the
sorted list of files found, and the list is written next to the manifest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cvvae.data.manifest import MANIFEST_COLUMNS
from cvvae.data.reader import IMAGE_SUFFIXES, VIDEO_SUFFIXES


class DatasetNotFoundError(FileNotFoundError):
    """A real dataset (or part of it) is not where the configuration says."""


@dataclass(frozen=True)
class RealDatasetSpec:
    name: str
    kind: str  # manifest kind of its items
    paper_count: int | None  # items the paper evaluates (None: all)
    default_root: str
    how_to_get: str
    licence: str


REAL_DATASETS: dict[str, RealDatasetSpec] = {
    "coco2017_val": RealDatasetSpec(
        "coco2017_val",
        "image",
        None,
        "data/real/coco2017_val",
        "COCO 2017 validation images (5,000): http://images.cocodataset.org/zips/val2017.zip ; unzip so that "
        "<root>/val2017/*.jpg exist. Captions (for generation): "
        "http://images.cocodataset.org/annotations/annotations_trainval2017.zip -> <root>/annotations/.",
        "COCO terms of use (images: Flickr licences per image)",
    ),
    "webvid_val": RealDatasetSpec(
        "webvid_val",
        "video",
        1024,
        "data/real/webvid_val",
        "WebVid-10M validation split (Bain et al., 2021; https://github.com/m-bain/webvid). Its authors no "
        "longer distribute the videos; use a copy you are licensed to hold. Put the metadata CSV "
        "(results_2M_val.csv or results_10M_val.csv, columns videoid,name,...) in <root>/ and the videos "
        "anywhere below <root> named <videoid>.mp4.",
        "WebVid terms (research use); videos (c) Shutterstock",
    ),
    "ucf101": RealDatasetSpec(
        "ucf101",
        "video",
        2048,
        "data/real/ucf101",
        "UCF-101 (13,320 clips): https://www.crcv.ucf.edu/data/UCF101/UCF101.rar ; unpack so that "
        "<root>/UCF-101/<Class>/v_<Class>_gXX_cYY.avi exist.",
        "UCF-101 terms (research use)",
    ),
    "msrvtt": RealDatasetSpec(
        "msrvtt",
        "video",
        2048,
        "data/real/msrvtt",
        "MSR-VTT (10,000 clips, video0.mp4 ... video9999.mp4), commonly obtained from "
        "https://www.robots.ox.ac.uk/~maxbain/frozen-in-time/data/MSRVTT.zip ; unzip so that the videos lie "
        "anywhere below <root> (e.g. <root>/MSRVTT/videos/all/).",
        "MSR-VTT terms (research use)",
    ),
}


def _not_found(spec: RealDatasetSpec, root: Path, what: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"{spec.name}: {what} under {root}. Get it: {spec.how_to_get} Then pass its folder as the root "
        f"(default {spec.default_root}, or the path your profile's config gives for {spec.name})."
    )


def _files(root: Path, suffixes: frozenset[str], pattern: re.Pattern[str] | None = None) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in suffixes and (pattern is None or pattern.fullmatch(p.stem))
    )


def _subset(items: list, count: int | None, seed: int) -> list:
    """``count`` items drawn without replacement from the sorted list with ``seed``, kept in sorted order."""
    if count is None or count >= len(items):
        return list(items)
    chosen = np.random.default_rng(seed).choice(len(items), size=count, replace=False)
    return [items[i] for i in sorted(chosen)]


def _coco(root: Path, spec: RealDatasetSpec) -> pd.DataFrame:
    folder = root / "val2017"
    if not folder.is_dir():
        raise _not_found(spec, root, "no val2017/ folder")
    images = _files(folder, IMAGE_SUFFIXES)
    if not images:
        raise _not_found(spec, root, "no images in val2017/")
    return pd.DataFrame(
        {"path": [str(p.relative_to(root)) for p in images], "source": [p.stem for p in images]}
    )


def _webvid(root: Path, spec: RealDatasetSpec) -> pd.DataFrame:
    csvs = sorted(root.glob("results_*val*.csv"))
    if not csvs:
        raise _not_found(spec, root, "no results_*val*.csv metadata file")
    meta = pd.read_csv(csvs[0], dtype={"videoid": str})
    if "videoid" not in meta.columns:
        raise ValueError(f"{csvs[0]} has no videoid column; columns are {list(meta.columns)}")
    videos = {p.stem: p for p in _files(root, VIDEO_SUFFIXES)}
    meta = meta[meta["videoid"].isin(videos)].sort_values("videoid")
    if meta.empty:
        raise _not_found(spec, root, f"none of the {csvs[0].name} videos (<videoid>.mp4)")
    frame = pd.DataFrame(
        {"path": [str(videos[v].relative_to(root)) for v in meta["videoid"]], "source": list(meta["videoid"])}
    )
    if "name" in meta.columns:
        frame["caption"] = list(meta["name"])
    return frame


def _ucf101(root: Path, spec: RealDatasetSpec) -> pd.DataFrame:
    pattern = re.compile(r"v_(\w+)_g(\d+)_c(\d+)")
    videos = _files(root, VIDEO_SUFFIXES, pattern)
    if not videos:
        raise _not_found(spec, root, "no v_<Class>_gXX_cYY.avi videos")
    # Clips of one group come from one long video: the group is the source.
    sources = [pattern.fullmatch(p.stem).expand(r"\1_g\2") for p in videos]  # type: ignore[union-attr]
    return pd.DataFrame({"path": [str(p.relative_to(root)) for p in videos], "source": sources})


def _msrvtt(root: Path, spec: RealDatasetSpec) -> pd.DataFrame:
    videos = _files(root, VIDEO_SUFFIXES, re.compile(r"video\d+"))
    if not videos:
        raise _not_found(spec, root, "no video<N>.mp4 files")
    videos = sorted(videos, key=lambda p: int(p.stem[5:]))
    return pd.DataFrame(
        {"path": [str(p.relative_to(root)) for p in videos], "source": [p.stem for p in videos]}
    )


_FINDERS: dict[str, Callable[[Path, RealDatasetSpec], pd.DataFrame]] = {
    "coco2017_val": _coco,
    "webvid_val": _webvid,
    "ucf101": _ucf101,
    "msrvtt": _msrvtt,
}


def real_dataset_manifest(
    name: str,
    root: str | Path,
    count: int | None = -1,
    seed: int = 0,
    split: str = "val",
    subset: list[str] | None = None,
) -> pd.DataFrame:
    """Manifest rows of a real dataset under ``root``.

    ``count=-1`` draws the paper's count, ``None`` keeps all; ``subset`` (a list of ``source`` ids, e.g. a
    committed list from data/manifests/) selects exactly those items instead, and fails if any is missing.
    """
    if name not in REAL_DATASETS:
        raise KeyError(f"unknown real dataset {name!r}; known: {', '.join(REAL_DATASETS)}")
    spec = REAL_DATASETS[name]
    root = Path(root)
    if not root.is_dir():
        raise _not_found(spec, root, "the root folder does not exist")
    found = _FINDERS[name](root, spec)
    if subset is not None:
        absent = sorted(set(subset) - set(found["source"]))
        if absent:
            raise _not_found(spec, root, f"{len(absent)} items of the subset list (e.g. {absent[:3]})")
        rows = found[found["source"].isin(set(subset))].reset_index(drop=True)
    else:
        count = spec.paper_count if count == -1 else count
        if count is not None and count > len(found):
            raise ValueError(f"{name}: {count} items requested but only {len(found)} found under {root}")
        rows = found.iloc[_subset(list(range(len(found))), count, seed)].reset_index(drop=True)
    rows.insert(1, "kind", spec.kind)
    rows["licence"] = spec.licence
    for column in ("frames", "fps", "height", "width"):
        rows[column] = pd.NA  # read from the files when loaded
    rows["split"] = split
    extra = [c for c in rows.columns if c not in MANIFEST_COLUMNS]
    return rows[list(MANIFEST_COLUMNS) + extra]


def write_real_manifest(
    name: str,
    root: str | Path,
    out_csv: str | Path | None = None,
    count: int | None = -1,
    seed: int = 0,
    subset_file: str | Path | None = None,
    list_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Write the manifest (default ``<root>/manifest.csv``) and a ``.json`` sidecar recording dataset, root,
    count and seed; with ``list_dir``, also the chosen ids as ``<list_dir>/<name>_<count>_seed<seed>.txt``
    (a list to commit, so that others select the same items with ``subset_file``)."""
    root = Path(root)
    subset = None
    if subset_file is not None:
        subset = [line.strip() for line in Path(subset_file).read_text().splitlines() if line.strip()]
    rows = real_dataset_manifest(name, root, count, seed, subset=subset)
    out_csv = Path(out_csv) if out_csv is not None else root / "manifest.csv"
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    rows.to_csv(out_csv, index=False)
    record = {
        "dataset": name,
        "root": str(root.resolve()),
        "count": len(rows),
        "seed": None if subset is not None else seed,
        "subset_file": None if subset_file is None else str(subset_file),
        "paths_relative_to": "root",
    }
    out_csv.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    if list_dir is not None:
        listing = Path(list_dir) / f"{name}_{len(rows)}_seed{seed}.txt"
        listing.parent.mkdir(parents=True, exist_ok=True)
        listing.write_text("\n".join(rows["source"]) + "\n")
    return rows
