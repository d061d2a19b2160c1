"""Loaders: clip shapes, strides, crops, determinism and bad input, on files the tests write."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from cvvae.data import ImageDataset, MediaReadError, VideoClipDataset, read_video_frames
from cvvae.data.clips import ClipTooShortError, sample_clip_window
from cvvae.data.reader import video_info
from cvvae.data.writer import write_video


def numbered_frames(count: int, height: int = 24, width: int = 40) -> np.ndarray:
    """Frames whose mean value encodes their index, so tests can tell which frames a clip took."""
    frames = np.zeros((count, height, width, 3), dtype=np.uint8)
    for index in range(count):
        frames[index] = 5 * index
    return frames


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("media")
    write_video(root / "long.mp4", numbered_frames(40), fps=10)
    write_video(root / "short.mp4", numbered_frames(5), fps=10)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (30, 50, 3), dtype=np.uint8)).save(root / "rgb.png")
    Image.fromarray(rng.integers(0, 255, (30, 50), dtype=np.uint8)).save(root / "gray.png")
    Image.fromarray(rng.integers(0, 255, (30, 50, 4), dtype=np.uint8), "RGBA").save(root / "rgba.png")
    (root / "corrupt.mp4").write_bytes(b"this is not a video" * 50)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    data = (root / "long.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 3])
    rows = [
        ("long.mp4", "video", "a", 40, "train"),
        ("short.mp4", "video", "b", 5, "train"),
        ("rgb.png", "image", "c", 1, "train"),
        ("gray.png", "image", "d", 1, "train"),
        ("rgba.png", "image", "e", 1, "val"),
    ]
    manifest = pd.DataFrame(rows, columns=["path", "kind", "source", "frames", "split"])
    manifest.to_csv(root / "manifest.csv", index=False)
    return {"root": root, "manifest": root / "manifest.csv"}


def frame_values(video: torch.Tensor) -> list[int]:
    """Recover the frame indices written by ``numbered_frames`` from a [-1, 1] clip."""
    means = ((video.mean(dim=(0, 2, 3)) + 1) * 127.5).tolist()
    return [round(m / 5) for m in means]


def test_lossless_roundtrip(media: dict) -> None:
    frames = read_video_frames(media["root"] / "long.mp4")
    np.testing.assert_array_equal(frames, numbered_frames(40))


@pytest.mark.parametrize("width", [16, 24, 48, 72, 96])
def test_roundtrip_at_widths_decord_cannot_copy(tmp_path, width: int) -> None:
    rng = np.random.default_rng(width)
    frames = rng.integers(0, 256, (6, 24, width, 3), dtype=np.uint8)
    write_video(tmp_path / "clip.mp4", frames, fps=10)
    np.testing.assert_array_equal(read_video_frames(tmp_path / "clip.mp4", [0, 2, 5]), frames[[0, 2, 5]])
    info = video_info(tmp_path / "clip.mp4")
    assert (info.num_frames, info.height, info.width) == (6, 24, width)


def test_clip_shape_frames_and_stride(media: dict) -> None:
    ds = VideoClipDataset.from_paths([media["root"] / "long.mp4"], num_frames=9, stride=3, resolution=16)
    item = ds[0]
    assert item["video"].shape == (3, 9, 16, 16)
    assert item["video"].dtype == torch.float32
    assert item["video"].min() >= -1.0 and item["video"].max() <= 1.0
    assert item["start"] == 0 and item["stride"] == 3
    assert frame_values(item["video"]) == list(range(0, 25, 3))


def test_random_stride_range_and_start_are_deterministic(media: dict) -> None:
    kwargs = dict(num_frames=5, stride=(1, 8), resolution=16, crop="random", seed=3)
    a = VideoClipDataset.from_paths([media["root"] / "long.mp4"] * 8, **kwargs)
    b = VideoClipDataset.from_paths([media["root"] / "long.mp4"] * 8, **kwargs)
    items_a = [a[i] for i in range(8)]
    strides = {item["stride"] for item in items_a}
    assert len(strides) > 1 and all(1 <= s <= 8 for s in strides)
    for item_a, i in zip(items_a, range(8), strict=True):
        item_b = b[i]
        assert (item_a["start"], item_a["stride"]) == (item_b["start"], item_b["stride"])
        assert torch.equal(item_a["video"], item_b["video"])
        values = frame_values(item_a["video"])
        assert values == [item_a["start"] + k * item_a["stride"] for k in range(5)]
    a.set_epoch(1)
    assert [(a[i]["start"], a[i]["stride"]) for i in range(8)] != [(x["start"], x["stride"]) for x in items_a]


def test_stride_range_shrinks_to_fit_short_video() -> None:
    rng = np.random.default_rng(0)
    windows = [sample_clip_window(9, 5, (1, 8), rng, "random") for _ in range(20)]
    assert all(w.stride <= 2 and w.indices[-1] < 9 for w in windows)
    with pytest.raises(ClipTooShortError, match="needs 9 frames"):
        sample_clip_window(5, 5, 2)


def test_invalid_frame_count_names_nearest(media: dict) -> None:
    with pytest.raises(ValueError, match="9 or 13"):
        VideoClipDataset.from_paths([media["root"] / "long.mp4"], num_frames=10)


def test_manifest_filters_kinds_and_split(media: dict) -> None:
    videos = VideoClipDataset.from_manifest(media["manifest"], "train", num_frames=5, resolution=16)
    images = ImageDataset.from_manifest(media["manifest"], "train", resolution=16)
    assert len(videos) == 2 and len(images) == 2
    assert {videos[i]["source"] for i in range(2)} == {"a", "b"}
    with pytest.raises(ValueError, match="no rows"):
        VideoClipDataset.from_manifest(media["manifest"], "val", num_frames=5)


def test_gray_and_rgba_images_are_converted(media: dict) -> None:
    ds = ImageDataset.from_paths(
        [media["root"] / n for n in ("gray.png", "rgba.png", "rgb.png")], resolution=20
    )
    for i in range(3):
        video = ds[i]["video"]
        assert video.shape == (3, 1, 20, 20)
    gray = ds[0]["video"]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


@pytest.mark.parametrize("name", ["corrupt.mp4", "truncated.mp4", "missing.mp4"])
def test_bad_video_raises_naming_file(media: dict, name: str) -> None:
    ds = VideoClipDataset.from_paths([media["root"] / name], num_frames=33, resolution=16)
    with pytest.raises(MediaReadError, match=name):
        ds[0]


def test_short_video_raises_for_evaluation(media: dict) -> None:
    ds = VideoClipDataset.from_paths([media["root"] / "short.mp4"], num_frames=9, resolution=16)
    with pytest.raises(MediaReadError, match=r"short\.mp4.*too short"):
        ds[0]


def test_bad_image_raises_naming_file(media: dict) -> None:
    ds = ImageDataset.from_paths([media["root"] / "broken.png"], resolution=16)
    with pytest.raises(MediaReadError, match="broken.png"):
        ds[0]


def test_training_skips_bad_files_with_one_warning(media: dict) -> None:
    paths = [media["root"] / n for n in ("corrupt.mp4", "short.mp4", "long.mp4", "truncated.mp4")]
    ds = VideoClipDataset.from_paths(paths, num_frames=9, resolution=16, on_error="skip")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = [ds[0], ds[1], ds[0]]
    assert all(item["path"].endswith("long.mp4") for item in items)
    skip_warnings = [w for w in caught if "skipping" in str(w.message)]
    assert len(skip_warnings) == 2  # corrupt and short, each warned once although met twice / once
    assert ds.skipped == 5  # corrupt, short, short | short | corrupt, short
    assert ds.bad_paths == {str(paths[0]), str(paths[1])}


def test_uint8_and_tensor_transforms_agree() -> None:
    from cvvae.data.clips import resize_and_crop, resize_and_crop_frames
    from cvvae.data.reader import frames_to_tensor

    rng = np.random.default_rng(0)
    smooth = np.linspace(0, 255, 60)[None, None, :, None] * np.ones((2, 40, 60, 3))
    frames = np.clip(smooth + rng.normal(0, 2, smooth.shape), 0, 255).astype(np.uint8)
    fast = frames_to_tensor(resize_and_crop_frames(frames, 20, "center"))
    reference = resize_and_crop(frames_to_tensor(frames), 20, "center")
    assert fast.shape == reference.shape == (3, 2, 20, 20)
    assert (fast - reference).abs().mean() < 0.02
    same_size = resize_and_crop_frames(frames, 40, "center")
    np.testing.assert_array_equal(same_size, frames[:, :, 10:50])
