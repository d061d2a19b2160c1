"""Real-dataset adapters on fake folder layouts: found files, seeded subsets, and helpful errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from cvvae.data import VideoClipDataset
from cvvae.data.real_datasets import DatasetNotFoundError, real_dataset_manifest, write_real_manifest


def touch(path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("coco2017_val", "images.cocodataset.org/zips/val2017.zip"),
        ("webvid_val", "github.com/m-bain/webvid"),
        ("ucf101", "crcv.ucf.edu/data/UCF101/UCF101.rar"),
        ("msrvtt", "MSRVTT.zip"),
    ],
)
def test_missing_dataset_says_what_and_where(tmp_path, name: str, hint: str) -> None:
    with pytest.raises(DatasetNotFoundError, match="root") as info:
        real_dataset_manifest(name, tmp_path / "absent")
    assert hint in str(info.value) and str(tmp_path / "absent") in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match=hint.replace(".", r"\.")):
        real_dataset_manifest(name, tmp_path / "empty")


def test_webvid_subset_is_seeded_and_recorded(tmp_path) -> None:
    root = tmp_path / "webvid"
    ids = [str(1000 + i) for i in range(30)]
    root.mkdir()
    metadata = pd.DataFrame({"videoid": ids, "name": [f"caption {i}" for i in ids]})
    metadata.to_csv(root / "results_2M_val.csv", index=False)
    for i, vid in enumerate(ids[:25]):  # five listed videos are absent
        touch(root / f"part{i % 3}" / f"{vid}.mp4")
    first = real_dataset_manifest("webvid_val", root, count=10, seed=7)
    again = real_dataset_manifest("webvid_val", root, count=10, seed=7)
    other = real_dataset_manifest("webvid_val", root, count=10, seed=8)
    assert first.equals(again) and not first.equals(other)
    assert len(first) == 10 and set(first["source"]) <= set(ids[:25])
    assert first["caption"].str.startswith("caption").all()
    with pytest.raises(ValueError, match="only 25 found"):
        real_dataset_manifest("webvid_val", root, count=1024)
    out = tmp_path / "manifests" / "webvid_val_10.csv"
    write_real_manifest("webvid_val", root, out, count=10, seed=7, list_dir=tmp_path / "lists")
    assert json.loads(out.with_suffix(".json").read_text())["seed"] == 7
    dataset = VideoClipDataset.from_manifest(out, "val", num_frames=33, stride=3, resolution=256)
    assert len(dataset) == 10 and all(entry.path.parent.parent == root for entry in dataset.entries)
    listing = tmp_path / "lists" / "webvid_val_10_seed7.txt"
    assert listing.read_text().split() == list(first["source"])
    touch(root / "part0" / f"{ids[25]}.mp4")  # more files on another machine: the committed list still rules
    again = write_real_manifest("webvid_val", root, tmp_path / "again.csv", subset_file=listing)
    assert list(again["source"]) == list(first["source"])
    listing.write_text("does_not_exist\n")
    with pytest.raises(DatasetNotFoundError, match="subset list"):
        write_real_manifest("webvid_val", root, tmp_path / "x.csv", subset_file=listing)


def test_ucf_sources_are_groups_and_msrvtt_sorted_numerically(tmp_path) -> None:
    for group in (1, 2):
        for clip in (1, 2):
            touch(tmp_path / "ucf" / "UCF-101" / "Biking" / f"v_Biking_g{group:02d}_c{clip:02d}.avi")
    ucf = real_dataset_manifest("ucf101", tmp_path / "ucf", count=None)
    assert sorted(set(ucf["source"])) == ["Biking_g01", "Biking_g02"] and len(ucf) == 4
    for number in (10, 2, 1):
        touch(tmp_path / "msr" / "videos" / "all" / f"video{number}.mp4")
    msr = real_dataset_manifest("msrvtt", tmp_path / "msr", count=None)
    assert list(msr["source"]) == ["video1", "video2", "video10"]
