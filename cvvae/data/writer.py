"""Writing clips and images.

Clips are lossless H.264 in RGB (``libx264rgb``, ``-qp 0``) inside mp4: decord reads them back bit-exactly
(no YUV 4:2:0 chroma subsampling, no quantisation), so reconstruction metrics measure the autoencoder and not
the storage codec, while the files stay about 2-4x smaller than raw frames. The encoder runs single-threaded
with bit-exact flags, so the same frames give the same bytes.
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


def write_video(path: str | Path, frames: np.ndarray, fps: float) -> Path:
    """Write uint8 ``T H W 3`` RGB frames as a lossless mp4."""
    import imageio_ffmpeg

    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 T H W 3 frames, got {frames.dtype} {frames.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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
