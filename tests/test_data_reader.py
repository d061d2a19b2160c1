"""Video backends of cvvae.data.reader: decord where installed, OpenCV otherwise, same frames either way."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from cvvae.data import reader
from cvvae.data.reader import MediaReadError, iter_video_chunks, read_video_frames, video_backend, video_info
from cvvae.data.writer import write_video


def random_frames(count: int = 13, height: int = 24, width: int = 40) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module", params=["h264rgb", "ffv1"])
def clip(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    suffix = ".avi" if request.param == "ffv1" else ".mp4"
    frames = random_frames()
    return write_video(folder / f"clip{suffix}", frames, fps=10, codec=request.param), frames


@pytest.fixture
def without_decord(monkeypatch):
    """As on a machine where decord has no wheel: importing it fails."""
    monkeypatch.delenv(reader.BACKEND_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "decord", None)


def test_opencv_is_chosen_when_decord_is_missing(without_decord, monkeypatch):
    assert video_backend() == "opencv"
    monkeypatch.setenv(reader.BACKEND_ENV, "decord")
    with pytest.raises(ImportError, match="decord is not installed"):
        video_backend()
    monkeypatch.setenv(reader.BACKEND_ENV, "ffmpeg")
    with pytest.raises(ValueError, match="decord, opencv"):
        video_backend()


def test_decord_is_preferred_where_installed(monkeypatch):
    pytest.importorskip("decord")
    monkeypatch.delenv(reader.BACKEND_ENV, raising=False)
    assert video_backend() == "decord"
    monkeypatch.setenv(reader.BACKEND_ENV, "opencv")
    assert video_backend() == "opencv"


def test_opencv_fallback_reads_the_written_frames(clip, without_decord):
    path, frames = clip
    assert video_info(path) == reader.VideoInfo(13, 10.0, 24, 40)
    np.testing.assert_array_equal(read_video_frames(path), frames)
    np.testing.assert_array_equal(read_video_frames(path, [12, 3, 3, 0]), frames[[12, 3, 3, 0]])
    chunks = list(iter_video_chunks(path, chunk=5))
    assert [len(c) for c in chunks] == [5, 5, 3]
    np.testing.assert_array_equal(np.concatenate(chunks), frames)


def test_both_backends_decode_the_same_frames(clip, monkeypatch):
    pytest.importorskip("decord")
    path, _ = clip
    decoded = {}
    for backend in reader.VIDEO_BACKENDS:
        monkeypatch.setenv(reader.BACKEND_ENV, backend)
        decoded[backend] = (
            video_info(path),
            read_video_frames(path, [1, 7]),
            np.concatenate(list(iter_video_chunks(path))),
        )
    assert decoded["decord"][0] == decoded["opencv"][0]
    for a, b in zip(decoded["decord"][1:], decoded["opencv"][1:], strict=True):
        np.testing.assert_array_equal(a, b)


def test_opencv_fallback_errors_name_the_file(clip, tmp_path, without_decord):
    path, _ = clip
    with pytest.raises(MediaReadError, match="has 13 frames"):
        read_video_frames(path, [13])
    with pytest.raises(MediaReadError, match="does not exist"):
        video_info(tmp_path / "missing.mp4")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"not a video" * 100)
    with pytest.raises(MediaReadError, match="corrupt.mp4"):
        read_video_frames(corrupt)
