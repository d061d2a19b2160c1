"""File boundary of the data package: video reading (decord, or OpenCV where decord has no wheel), image
reading, uint8 <-> [-1, 1] tensors.

Everything here returns uint8 ``T H W C`` arrays (the file format) or converts them to the library's float
``C T H W`` tensors in [-1, 1]. Reading errors are raised as :class:`MediaReadError` naming the file, so that
datasets can decide to skip or fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg"})

VideoBackend = Literal["decord", "opencv"]
VIDEO_BACKENDS: tuple[VideoBackend, ...] = ("decord", "opencv")
BACKEND_ENV = "CVVAE_VIDEO_BACKEND"


class MediaReadError(RuntimeError):
    """A video or image file is missing, unreadable, or too short for the requested clip."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class VideoInfo:
    """Frame count, rate and size of a video file."""

    num_frames: int
    fps: float
    height: int
    width: int


def video_backend() -> VideoBackend:
    """The video decoder in use: ``"decord"`` where it is installed (wheels for x86-64 Linux and Windows),
    else ``"opencv"``.

    ``CVVAE_VIDEO_BACKEND=opencv`` (or ``decord``) forces one. Both decode through ffmpeg and number frames
    the same way; OpenCV reads frames in order from the start (no seeking), so it is slower on clips that
    start late in a long video.
    """
    forced = os.environ.get(BACKEND_ENV, "").strip().lower()
    if forced and forced not in VIDEO_BACKENDS:
        raise ValueError(f"{BACKEND_ENV}={forced!r}; choose one of {', '.join(VIDEO_BACKENDS)}")
    if forced == "opencv":
        return "opencv"
    try:
        import decord  # noqa: F401  (imported here: heavy, and absent where it has no wheel)
    except ImportError as err:
        if forced == "decord":
            raise ImportError(
                f"{BACKEND_ENV}=decord but decord is not installed "
                "(it has wheels for x86-64 Linux and Windows only)"
            ) from err
        return "opencv"
    return "decord"


class _OpenCVVideo:
    """The part of decord's ``VideoReader`` this module uses (length, fps), read through OpenCV."""

    def __init__(self, path: Path) -> None:
        import cv2

        capture = cv2.VideoCapture(str(path))
        try:
            if not capture.isOpened():
                raise MediaReadError(path, "cannot be decoded as a video (OpenCV cannot open it)")
            self._length = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
            self._fps = float(capture.get(cv2.CAP_PROP_FPS))
        finally:
            capture.release()

    def __len__(self) -> int:
        return self._length

    def get_avg_fps(self) -> float:
        return self._fps


def _open_video(path: str | Path, num_threads: int = 1):
    path = Path(path)
    if not path.is_file():
        raise MediaReadError(path, "video file does not exist; check the dataset root and the manifest paths")
    if video_backend() == "opencv":
        reader = _OpenCVVideo(path)
    else:
        import decord

        try:
            reader = decord.VideoReader(str(path), num_threads=num_threads)
        except Exception as err:  # decord raises its own DECORDError or RuntimeError for corrupt containers
            raise MediaReadError(path, f"cannot be decoded as a video ({type(err).__name__}: {err})") from err
    if len(reader) == 0:
        raise MediaReadError(path, "video has no decodable frames")
    return reader


def _is_decord_stride_bug(err: Exception) -> bool:
    # decord 0.6 fails to copy RGB frames of some widths (e.g. 16, 24, 48, 72 px) with this message, whatever
    # the codec; OpenCV's ffmpeg backend decodes them fine.
    return "must exactly match" in str(err)


def _opencv_chunks(path: Path, chunk: int, start: int = 0) -> Iterator[np.ndarray]:
    """Every frame from ``start`` on, in order, as RGB chunks of at most ``chunk`` frames."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise MediaReadError(path, "OpenCV cannot open it")
        for _ in range(start):
            if not capture.grab():
                return
        frames: list[np.ndarray] = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame[..., ::-1])  # BGR -> RGB
            if len(frames) == chunk:
                yield np.ascontiguousarray(np.stack(frames))
                frames = []
        if frames:
            yield np.ascontiguousarray(np.stack(frames))
    finally:
        capture.release()


def _opencv_frames(path: Path, indices: list[int]) -> np.ndarray:
    """Decode ``indices`` with OpenCV's ffmpeg backend, reading every frame in order (no seeking, so the
    numbering matches decord's)."""
    import cv2

    wanted = set(indices)
    last = max(indices)
    found: dict[int, np.ndarray] = {}
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise MediaReadError(path, "OpenCV cannot open it")
        for number in range(last + 1):
            if not capture.grab():
                break
            if number in wanted:
                ok, frame = capture.retrieve()
                if not ok:
                    break
                found[number] = frame[..., ::-1]  # BGR -> RGB
    finally:
        capture.release()
    if len(found) != len(wanted):
        raise MediaReadError(
            path, f"only {len(found)} of the {len(wanted)} requested frames could be decoded"
        )
    return np.ascontiguousarray(np.stack([found[i] for i in indices]))


def video_info(path: str | Path) -> VideoInfo:
    """Frame count, fps and size, read from the container and the first frame."""
    path = Path(path)
    reader = _open_video(path)
    if isinstance(reader, _OpenCVVideo):
        height, width = _opencv_frames(path, [0]).shape[1:3]
        return VideoInfo(len(reader), reader.get_avg_fps(), int(height), int(width))
    try:
        height, width = reader[0].shape[:2]
    except Exception as err:
        if not _is_decord_stride_bug(err):
            raise MediaReadError(
                path, f"first frame cannot be decoded ({type(err).__name__}: {err})"
            ) from err
        height, width = _opencv_frames(path, [0]).shape[1:3]
    return VideoInfo(len(reader), float(reader.get_avg_fps()), int(height), int(width))


def read_video_frames(path: str | Path, indices: list[int] | None = None, num_threads: int = 1) -> np.ndarray:
    """Decode the frames at ``indices`` (all frames when None) as uint8 ``T H W C`` RGB.

    decord does the work where it is installed (see :func:`video_backend`), OpenCV elsewhere; frames of the
    widths decord 0.6 cannot copy are decoded by OpenCV too (the same frames, bit for bit). Raises
    :class:`MediaReadError` when the file is missing or corrupt, or when an index lies beyond the frames the
    file really has (a truncated file often reports more frames than it can decode).
    """
    path = Path(path)
    reader = _open_video(path, num_threads=num_threads)
    total = len(reader)
    indices = list(range(total)) if indices is None else [int(i) for i in indices]
    if not indices:
        raise ValueError("no frame indices requested")
    if min(indices) < 0 or max(indices) >= total:
        raise MediaReadError(path, f"frame index {max(indices)} requested but the video has {total} frames")
    if isinstance(reader, _OpenCVVideo):
        frames = _opencv_frames(path, indices)
    else:
        try:
            frames = reader.get_batch(indices).asnumpy()
        except Exception as err:
            if not _is_decord_stride_bug(err):
                raise MediaReadError(
                    path, f"decoding frames failed ({type(err).__name__}: {err}); truncated?"
                ) from err
            frames = _opencv_frames(path, indices)
    if frames.shape[0] != len(indices):
        raise MediaReadError(path, f"decoded {frames.shape[0]} of {len(indices)} requested frames")
    return frames


def iter_video_chunks(path: str | Path, chunk: int = 32) -> Iterator[np.ndarray]:
    """Every frame of a video, in order, as uint8 ``T H W C`` RGB chunks of at most ``chunk`` frames, so that
    long or large videos can be processed in bounded memory."""
    path = Path(path)
    reader = _open_video(path)
    if isinstance(reader, _OpenCVVideo):
        yield from _opencv_chunks(path, chunk)
        return
    for first in range(0, len(reader), chunk):
        try:
            batch = reader.get_batch(list(range(first, min(first + chunk, len(reader))))).asnumpy()
        except Exception as err:
            if not _is_decord_stride_bug(err):
                raise MediaReadError(
                    path, f"decoding frames failed ({type(err).__name__}: {err}); truncated?"
                ) from err
            yield from _opencv_chunks(path, chunk, start=first)  # the rest through OpenCV
            return
        yield batch


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as uint8 ``H W 3`` RGB; grayscale, palette and RGBA files are converted (alpha dropped
    onto black), 16-bit files are rescaled."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise MediaReadError(path, "image file does not exist; check the dataset root and the manifest paths")
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in {"I;16", "I;16B", "I;16L", "I"}:
                array = np.asarray(image, dtype=np.float64)
                scale = 255.0 / max(float(array.max()), 1.0)
                return np.repeat((array * scale).round().astype(np.uint8)[..., None], 3, axis=-1)
            if image.mode in {"RGBA", "LA", "PA"} or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
                image = Image.alpha_composite(background, rgba)
            return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise MediaReadError(path, f"cannot be read as an image ({type(err).__name__}: {err})") from err


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``T H W C`` -> float32 ``C T H W`` in [-1, 1]."""
    if frames.dtype != np.uint8 or frames.ndim != 4:
        raise ValueError(f"expected uint8 T H W C frames, got {frames.dtype} with shape {frames.shape}")
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float()
    return video.div_(127.5).sub_(1.0)
