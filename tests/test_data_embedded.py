"""Embedded dataset builder at a tiny size: determinism, disjoint splits, readable clips, config errors;
scene cuts and camera motion on synthetic input."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from cvvae.data import ImageDataset, VideoClipDataset, read_video_frames
from cvvae.data.cli import add_arguments, run
from cvvae.data.embedded import EmbeddedDataConfig, build_embedded_dataset
from cvvae.data.manifest import MANIFEST_COLUMNS, manifest_digest
from cvvae.data.motion import camera_trajectory, render_camera_clip
from cvvae.data.scenes import detect_cuts, shot_segments
from cvvae.data.sources import opencv_doc_sources
from cvvae.data.writer import write_video

TINY = {
    "image_size": 32,
    "train_images": 3,
    "val_images": 2,
    "clip_size": 32,
    "clip_frames": 9,
    "train_real_clips": 2,
    "train_camera_clips": 2,
    "val_real_clips": 1,
    "val_camera_clips": 1,
    "opencv_doc": "off",
}


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("embedded")
    first = build_embedded_dataset(root / "a", TINY)
    second = build_embedded_dataset(root / "b", {**TINY, "workers": 2})  # parallel rendering: same dataset
    other = build_embedded_dataset(root / "c", {**TINY, "seed": 1})
    return {"root": root, "first": first, "second": second, "other": other}


def test_counts_and_columns(builds: dict) -> None:
    manifest = builds["first"]
    counts = manifest.groupby(["split", "kind"]).size().to_dict()
    assert counts == {
        ("train", "camera_video"): 2,
        ("train", "image"): 3,
        ("train", "video"): 2,
        ("val", "camera_video"): 1,
        ("val", "image"): 2,
        ("val", "video"): 1,
    }
    expected = ["path", "kind", "source", "licence", "frames", "fps", "height", "width", "split"]
    assert list(manifest.columns) == list(MANIFEST_COLUMNS) == expected
    assert manifest["licence"].str.len().min() > 0
    info = json.loads((builds["root"] / "a" / "build_info.json").read_text())
    assert info["manifest_sha256"] == manifest_digest(builds["root"] / "a" / "manifest.csv")
    assert "carphone" in info["split_sources"]["val"]


def test_same_seed_same_bytes_other_seed_differs(builds: dict) -> None:
    a, b, c = (builds["root"] / name for name in ("a", "b", "c"))
    assert manifest_digest(a / "manifest.csv") == manifest_digest(b / "manifest.csv")
    for path in builds["first"]["path"]:
        assert (a / path).read_bytes() == (b / path).read_bytes(), path
    assert manifest_digest(a / "manifest.csv") != manifest_digest(c / "manifest.csv") or any(
        (a / p).read_bytes() != (c / p).read_bytes() for p in builds["first"]["path"]
    )


def test_ffv1_codec_stores_the_same_frames_deterministically(builds: dict, tmp_path) -> None:
    ffv1 = build_embedded_dataset(tmp_path / "f", {**TINY, "codec": "ffv1", "workers": 2})
    again = build_embedded_dataset(tmp_path / "g", {**TINY, "codec": "ffv1"})
    h264 = builds["first"]
    assert ffv1["path"].str.replace(".avi", ".mp4").tolist() == h264["path"].tolist()
    for ffv1_path, h264_path in zip(ffv1["path"], h264["path"], strict=True):
        if ffv1_path.endswith(".avi"):
            assert (tmp_path / "f" / ffv1_path).read_bytes() == (tmp_path / "g" / ffv1_path).read_bytes()
            frames = read_video_frames(tmp_path / "f" / ffv1_path)
            np.testing.assert_array_equal(frames, read_video_frames(builds["root"] / "a" / h264_path))
    assert again.equals(ffv1)


def test_ffv1_clip_of_a_width_decord_cannot_copy_reads_back_exactly(tmp_path) -> None:
    frames = np.random.default_rng(0).integers(0, 256, (5, 24, 48, 3), dtype=np.uint8)
    path = write_video(tmp_path / "clip.avi", frames, 10.0, codec="ffv1")
    np.testing.assert_array_equal(read_video_frames(path), frames)


def test_bad_codec_or_workers_are_rejected() -> None:
    with pytest.raises(ValueError, match="codec must be one of"):
        EmbeddedDataConfig(codec="h265")
    with pytest.raises(ValueError, match="workers must be >= 0"):
        EmbeddedDataConfig(workers=-1)
    with pytest.raises(ValueError, match="unknown video codec"):
        write_video("/nonexistent/x.mp4", np.zeros((1, 8, 8, 3), np.uint8), 1.0, codec="vp9")


def test_train_and_val_sources_are_disjoint(builds: dict) -> None:
    for manifest in (builds["first"], builds["other"]):
        sources = {
            split: {name for entry in rows["source"] for name in entry.split("+")}
            for split, rows in manifest.groupby("split")
        }
        assert sources["train"] and sources["val"]
        assert not sources["train"] & sources["val"]


def test_clips_load_with_frame_counts(builds: dict) -> None:
    root = builds["root"] / "a"
    for path, frames in builds["first"].loc[builds["first"]["kind"] != "image", ["path", "frames"]].values:
        assert read_video_frames(root / path).shape == (frames, 32, 32, 3)
    clips = VideoClipDataset.from_manifest(
        root / "manifest.csv", "train", num_frames=5, stride=2, resolution=24
    )
    assert len(clips) == 4 and clips[0]["video"].shape == (3, 5, 24, 24)
    images = ImageDataset.from_manifest(root / "manifest.csv", "val", resolution=16)
    assert len(images) == 2 and images[1]["video"].shape == (3, 1, 16, 16)


def test_real_clips_move(builds: dict) -> None:
    root = builds["root"] / "a"
    for path in builds["first"].loc[builds["first"]["kind"] != "image", "path"]:
        frames = read_video_frames(root / path).astype(np.float32)
        assert np.abs(np.diff(frames, axis=0)).mean() > 0.5, f"{path} is (nearly) static"


def test_unknown_config_key_names_valid_keys() -> None:
    with pytest.raises(ValueError, match="valid keys: seed, image_size"):
        EmbeddedDataConfig.from_mapping({"imgae_size": 64})
    with pytest.raises(ValueError, match="9 or 13"):
        EmbeddedDataConfig(clip_frames=12)


def test_cli_reads_profile_section(tmp_path) -> None:
    import argparse

    profile = tmp_path / "profile.yaml"
    tiny = {
        **TINY,
        "train_real_clips": 0,
        "val_real_clips": 0,
        "train_camera_clips": 1,
        "val_camera_clips": 0,
    }
    profile.write_text(json.dumps({"data": {"embedded": tiny}}))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args(["embedded", "--out", str(tmp_path / "out"), "--config", str(profile)])) == 0
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv")
    assert len(manifest) == 3 + 2 + 1
    out = str(tmp_path / "more")
    args = ["embedded", "--out", out, "--config", str(profile), "--set", "train_camera_clips=2"]
    assert run(parser.parse_args(args)) == 0
    assert len(pd.read_csv(tmp_path / "more" / "manifest.csv")) == 3 + 2 + 2  # --set wins over the profile
    with pytest.raises(FileNotFoundError, match="opencv_doc=require"):
        missing = str(tmp_path / "no_opencv_doc")
        run(parser.parse_args([*args, "--set", "opencv_doc=require", "--set", f"opencv_doc_dir={missing}"]))
    profile.write_text(json.dumps({"data": {"embedded": {"bogus": 1}}}))
    with pytest.raises(ValueError, match="bogus"):
        run(parser.parse_args(["embedded", "--out", str(tmp_path / "x"), "--config", str(profile)]))


def test_scene_cuts_split_shots() -> None:
    rng = np.random.default_rng(0)
    shot_a = np.repeat(rng.integers(0, 120, (1, 24, 32, 3), dtype=np.uint8), 10, axis=0)
    shot_b = np.repeat(rng.integers(130, 255, (1, 24, 32, 3), dtype=np.uint8), 7, axis=0)
    frames = np.concatenate([shot_a, shot_b])
    frames = np.clip(frames.astype(int) + rng.integers(-2, 3, frames.shape), 0, 255).astype(np.uint8)
    cuts = detect_cuts(frames)
    assert cuts == [10]
    assert shot_segments(len(frames), cuts) == [(0, 10), (10, 17)]


def test_camera_path_is_smooth_and_inside_source() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        trajectory, motion = camera_trajectory((300, 400), 64, 17, rng, speed=(0.2, 2.0))
        step = np.linalg.norm(np.diff(trajectory.center, axis=0), axis=1)
        assert step.max() < 4.0 * max(trajectory.scale.max(), 1.0)  # a few source pixels per frame at most
        accel = np.abs(np.diff(step))
        assert accel.max() < 0.5
        assert np.all(trajectory.center >= 0) and np.all(trajectory.center[:, 0] <= 400)


def test_camera_clip_is_deterministic_and_has_moving_foreground() -> None:
    rng_image = np.random.default_rng(0)
    background = np.full((120, 160, 3), 90, np.uint8) + rng_image.integers(
        0, 20, (120, 160, 3), dtype=np.uint8
    )
    foreground = np.full((80, 80, 3), 250, np.uint8)
    clip_a, _ = render_camera_clip(background, [foreground], 32, 9, np.random.default_rng(5))
    clip_b, _ = render_camera_clip(background, [foreground], 32, 9, np.random.default_rng(5))
    assert clip_a.shape == (9, 32, 32, 3) and np.array_equal(clip_a, clip_b)
    bright = (clip_a.mean(axis=-1) > 200).astype(float)
    ys, xs = np.mgrid[0:32, 0:32]
    centroids = [
        (float((ys * m).sum() / m.sum()), float((xs * m).sum() / m.sum())) for m in bright if m.sum()
    ]
    assert len(centroids) >= 2
    assert np.hypot(*np.subtract(centroids[0], centroids[-1])) > 0.5  # the layer moved


def test_opencv_doc_media_unpacked_when_gzipped(tmp_path) -> None:
    doc = tmp_path / "doc"
    doc.mkdir()
    write_video(tmp_path / "vtest.mp4", np.zeros((5, 32, 32, 3), np.uint8), fps=10)
    with gzip.open(doc / "vtest.avi.gz", "wb") as packed:
        packed.write((tmp_path / "vtest.mp4").read_bytes())
    missing: list[str] = []
    found = opencv_doc_sources(doc, tmp_path / "unpacked", missing)
    assert [s.name for s in found] == ["opencv_vtest"]
    assert read_video_frames(found[0].path).shape == (5, 32, 32, 3)
    assert any("tree.avi" in m for m in missing)
    assert opencv_doc_sources(tmp_path / "absent", tmp_path / "u") == []
