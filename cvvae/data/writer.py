"""Writing clips and images.

Clips are stored losslessly, so that reconstruction metrics measure the autoencoder and not the storage codec;
decord reads both codecs back bit-exactly:

- ``h264rgb`` (default): H.264 in RGB (``libx264rgb``, ``-qp 0``) inside mp4, through imageio-ffmpeg's ffmpeg
  binary. No YUV 4:2:0 chroma subsampling, no quantisation; files about 2-4x smaller than raw frames. The
  encoder runs single-threaded with bit-exact flags, so the same frames give the same bytes.
- ``ffv1``: FFV1 inside AVI through OpenCV's bundled FFmpeg, for machines without an ffmpeg binary
  (imageio-ffmpeg's wheel carries an 80 MB one). Larger files than ``h264rgb``; AVI rather than Matroska
  because OpenCV's Matroska muxer writes different bytes on every run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

LOSSLESS_OUTPUT_PARAMS = [
    "-qp", "0",
    "-preset", "medium",
    "-threads", "1",
    "-map_metadata", "-1",
    "-fflags", "+bitexact",
    "-flags", "+bitexact",
]  # fmt: skip


VIDEO_CODECS = {"h264rgb": ".mp4", "ffv1": ".avi"}
"""Lossless clip codecs and the file extension each one writes."""


def video_extension(codec: str) -> str:
    if codec not in VIDEO_CODECS:
        raise ValueError(f"unknown video codec {codec!r}; choose one of {sorted(VIDEO_CODECS)}")
    return VIDEO_CODECS[codec]


def write_video(path: str | Path, frames: np.ndarray, fps: float, codec: str = "h264rgb") -> Path:
    """Write uint8 ``T H W 3`` RGB frames as a lossless clip (``codec``: see the module docstring)."""
    video_extension(codec)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 T H W 3 frames, got {frames.dtype} {frames.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if codec == "ffv1":
        return _write_ffv1(path, frames, fps)
    try:
        import imageio_ffmpeg
    except ImportError as err:
        raise ImportError(
            "codec h264rgb needs the imageio-ffmpeg package, part of cvvae's [data] extra "
            "(pip install 'cvvae[data]', or pip install imageio-ffmpeg); "
            "or set data.embedded.codec: ffv1, which writes lossless clips through OpenCV"
        ) from err
    height, width = frames.shape[1:3]
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (width, height),
        fps=float(fps),
        codec="libx264rgb",
        pix_fmt_in="rgb24",
        pix_fmt_out="rgb24",
        quality=None,
        macro_block_size=1,
        output_params=LOSSLESS_OUTPUT_PARAMS,
        ffmpeg_log_level="error",
    )
    writer.send(None)  # start the encoder
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return path


def _write_ffv1(path: Path, frames: np.ndarray, fps: float) -> Path:
    import cv2

    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), float(fps), (width, height))
    if not writer.isOpened():
        raise OSError(
            f"OpenCV cannot write FFV1 to {path} (its FFmpeg backend is missing); use data.embedded.codec: "
            "h264rgb (needs imageio-ffmpeg)"
        )
    try:
        for frame in frames:
            writer.write(np.ascontiguousarray(frame[..., ::-1]))  # OpenCV takes BGR
    finally:
        writer.release()
    return path


def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Write a uint8 ``H W 3`` RGB image as PNG."""
    import cv2

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected a uint8 H W 3 image, got {image.dtype} {image.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1])):
        raise OSError(f"could not write {path}")
    return path
