"""Torch datasets over manifests or file lists: video clips (``C T H W``) and images (``C 1 H W``).

Items are dicts ``{"video", "path", "source", "clip_id", "start", "stride"}`` with ``video`` float in [-1, 1].
Randomness (stride, start frame, crop) comes from a generator seeded by ``(seed, epoch, index)``, so the same
item is the same tensor whatever the worker, order or resumption point.

``on_error="raise"`` (evaluation) fails on a bad file, naming it; ``on_error="skip"`` (training) warns once
per bad file, counts it in ``skipped`` and returns the next good item instead.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from cvvae.data.clips import (
    ClipTooShortError,
    CropMode,
    StartMode,
    Stride,
    normalize_stride,
    resize_and_crop_frames,
    sample_clip_window,
)
from cvvae.data.manifest import (
    IMAGE_KINDS,
    VIDEO_KINDS,
    manifest_root,
    read_manifest,
    resolve_path,
    select_rows,
)
from cvvae.data.reader import MediaReadError, frames_to_tensor, read_image, read_video_frames, video_info

logger = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]
DatasetT = TypeVar("DatasetT", bound="_MediaDataset")


@dataclass(frozen=True)
class MediaEntry:
    """One file of a dataset."""

    path: Path
    source: str
    clip_id: str
    frames: int | None = None  # known frame count (from the manifest), saves opening the file twice


def _entries_from_manifest(
    manifest_csv: str | Path, split: str | None, kinds: set[str] | frozenset[str], root: str | Path | None
) -> list[MediaEntry]:
    manifest_csv = Path(manifest_csv)
    rows = select_rows(read_manifest(manifest_csv), split, kinds, manifest_name=str(manifest_csv))
    base = Path(root) if root is not None else manifest_root(manifest_csv)
    entries = []
    for row in rows.itertuples(index=False):
        frames = getattr(row, "frames", None)
        frames = (
            int(frames)
            if frames is not None and not (isinstance(frames, float) and np.isnan(frames))
            else None
        )
        entries.append(
            MediaEntry(
                path=resolve_path(base, row.path),
                source=str(row.source),
                clip_id=Path(row.path).stem,
                frames=frames,
            )
        )
    return entries


def _entries_from_paths(paths: Sequence[str | Path]) -> list[MediaEntry]:
    if not paths:
        raise ValueError("no files given: pass at least one path")
    return [MediaEntry(path=Path(p), source=Path(p).stem, clip_id=Path(p).stem) for p in paths]


class DecodedCache:
    """Decoded files kept in memory as uint8 (``T H W C`` videos, ``H W C`` images), keyed by path.

    Training reads the same few hundred files thousands of times; decoding them once and keeping the raw
    frames turns each later item into windowing, resizing and cropping. The frames are the decoder's, so the
    items are the same as without the cache. Several datasets (e.g. the mixture's 9- and 17-frame sources)
    can share one cache. Thread-safe: loader threads may fill it concurrently.
    """

    def __init__(self) -> None:
        self._frames: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._frames.values())

    def get(self, path: Path, decode: Any) -> np.ndarray:
        """The decoded array of ``path``; ``decode(path)`` runs on the first request only (a read error is
        not cached, so a bad file keeps raising)."""
        key = str(path)
        with self._lock:
            cached = self._frames.get(key)
        if cached is None:
            cached = decode(path)
            cached.setflags(write=False)  # items are views or copies of it, never writers
            with self._lock:
                cached = self._frames.setdefault(key, cached)
        return cached


class _MediaDataset(Dataset):
    """Shared bookkeeping: per-item generators, epochs, skip-or-raise; building from a manifest or paths."""

    # Manifest kinds a dataset of this class reads by default.
    MANIFEST_KINDS: frozenset[str] = frozenset()

    def __init__(self, entries: list[MediaEntry], seed: int, on_error: OnError) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if not entries:
            raise ValueError("the dataset is empty")
        self.entries = entries
        self.seed = int(seed)
        self.on_error: OnError = on_error
        self.epoch = 0
        self.skipped = 0  # bad files met so far (per process when loaded by DataLoader workers)
        self.bad_paths: set[str] = set()
        self.cache: DecodedCache | None = None  # see use_cache

    @classmethod
    def from_manifest(
        cls: type[DatasetT],
        manifest_csv: str | Path,
        split: str | None,
        *args: Any,
        root: str | Path | None = None,
        kinds: set[str] | frozenset[str] | None = None,
        **kwargs: Any,
    ) -> DatasetT:
        """Rows of ``split`` (all splits when None) whose kind is in ``kinds`` (default: the class's
        ``MANIFEST_KINDS``), paths relative to ``root`` (default: the manifest's folder). The other
        arguments are the constructor's after ``entries``."""
        kinds = cls.MANIFEST_KINDS if kinds is None else kinds
        return cls(_entries_from_manifest(manifest_csv, split, kinds, root), *args, **kwargs)

    @classmethod
    def from_paths(cls: type[DatasetT], paths: Sequence[str | Path], *args: Any, **kwargs: Any) -> DatasetT:
        """The files ``paths``; the other arguments are the constructor's after ``entries``."""
        return cls(_entries_from_paths(paths), *args, **kwargs)

    def __len__(self) -> int:
        return len(self.entries)

    def use_cache(self, cache: DecodedCache | None) -> _MediaDataset:
        """Read files through ``cache`` (decoded once, kept in memory); None decodes on every load."""
        self.cache = cache
        return self

    def set_epoch(self, epoch: int) -> None:
        """Change the random draws of every item (call once per pass over the data)."""
        self.epoch = int(epoch)

    def item_rng(self, index: int, epoch: int | None = None) -> np.random.Generator:
        epoch = self.epoch if epoch is None else epoch
        return np.random.default_rng([self.seed, int(epoch), int(index)])

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.load(index)

    def load(self, index: int, epoch: int | None = None) -> dict[str, Any]:
        """Item ``index`` as drawn in ``epoch`` (default: the current epoch)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        index %= len(self)
        for attempt in range(len(self)):
            current = (index + attempt) % len(self)
            entry = self.entries[current]
            try:
                return self._load_entry(entry, self.item_rng(current, epoch))
            except MediaReadError as err:
                if self.on_error == "raise":
                    raise
                self._note_skip(err)
        raise RuntimeError(
            f"every file of this dataset failed to load ({self.skipped} skips); see the warnings"
        )

    def _note_skip(self, err: MediaReadError) -> None:
        self.skipped += 1
        if err.path not in self.bad_paths:
            self.bad_paths.add(err.path)
            message = f"skipping unreadable file {err.path}: {err.reason}"
            warnings.warn(message, RuntimeWarning, stacklevel=3)
            logger.warning(message)

    def _load_entry(self, entry: MediaEntry, rng: np.random.Generator) -> dict[str, Any]:
        raise NotImplementedError


class VideoClipDataset(_MediaDataset):
    """Clips of ``num_frames`` frames at ``stride`` (int or inclusive ``(low, high)`` range), resized on the
    short side to ``resolution`` and cropped square.

    ``start`` picks the first frame: ``"first"`` (evaluation), ``"random"`` (training) or ``"center"``; by
    default it follows ``crop`` (random crop -> random start). ``temporal_compression`` checks the ``1 + 4k``
    frame rule of CV-VAE; pass 1 to allow any count.
    """

    MANIFEST_KINDS = VIDEO_KINDS

    def __init__(
        self,
        entries: list[MediaEntry],
        num_frames: int,
        stride: Stride | list[int] = 1,
        resolution: int = 256,
        crop: CropMode = "center",
        seed: int = 0,
        on_error: OnError = "raise",
        start: StartMode | None = None,
        temporal_compression: int = 4,
    ) -> None:
        from cvvae.models.frames import check_num_frames

        super().__init__(entries, seed, on_error)
        self.num_frames = check_num_frames(int(num_frames), temporal_compression)
        self.stride = normalize_stride(stride)
        self.resolution = int(resolution)
        self.crop: CropMode = crop
        self.start: StartMode = start or ("random" if crop == "random" else "first")
        if self.resolution < 1:
            raise ValueError(f"resolution must be positive, got {resolution}")

    def _load_entry(self, entry: MediaEntry, rng: np.random.Generator) -> dict[str, Any]:
        available = entry.frames if entry.frames is not None else video_info(entry.path).num_frames
        try:
            window = sample_clip_window(available, self.num_frames, self.stride, rng, self.start)
        except ClipTooShortError as err:
            raise MediaReadError(entry.path, f"video too short: {err}") from err
        if self.cache is None:
            frames = read_video_frames(entry.path, window.indices)
        else:
            decoded = self.cache.get(entry.path, read_video_frames)
            if max(window.indices) >= len(decoded):  # the manifest promised more frames than decode
                raise MediaReadError(
                    entry.path,
                    f"frame index {max(window.indices)} requested but the video has {len(decoded)} frames",
                )
            frames = decoded[window.indices]
        video = frames_to_tensor(resize_and_crop_frames(frames, self.resolution, self.crop, rng))
        return {
            "video": video,
            "path": str(entry.path),
            "source": entry.source,
            "clip_id": entry.clip_id,
            "start": window.start,
            "stride": window.stride,
        }


class ImageDataset(_MediaDataset):
    """Images as one-frame clips ``C 1 H W``: short-side resize to ``resolution`` and a square crop.

    Grayscale, palette and RGBA images are converted to RGB.
    """

    MANIFEST_KINDS = IMAGE_KINDS

    def __init__(
        self,
        entries: list[MediaEntry],
        resolution: int = 256,
        crop: CropMode = "center",
        seed: int = 0,
        on_error: OnError = "raise",
    ) -> None:
        super().__init__(entries, seed, on_error)
        self.resolution = int(resolution)
        self.crop: CropMode = crop
        self.num_frames = 1

    @classmethod
    def from_folder(cls, folder: str | Path, **kwargs: Any) -> ImageDataset:
        """Every image file under ``folder`` (sorted, recursive)."""
        from cvvae.data.reader import IMAGE_SUFFIXES

        folder = Path(folder)
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise FileNotFoundError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder}")
        return cls.from_paths(paths, **kwargs)

    def _load_entry(self, entry: MediaEntry, rng: np.random.Generator) -> dict[str, Any]:
        image = read_image(entry.path) if self.cache is None else self.cache.get(entry.path, read_image)
        video = frames_to_tensor(resize_and_crop_frames(image[None], self.resolution, self.crop, rng))
        return {
            "video": video,
            "path": str(entry.path),
            "source": entry.source,
            "clip_id": entry.clip_id,
            "start": 0,
            "stride": 1,
        }


def collate_items(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack ``video`` to ``B C T H W``; ints become a long tensor, everything else a list."""
    if not items:
        raise ValueError("cannot collate an empty batch")
    batch: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values)
        elif isinstance(values[0], int):
            batch[key] = torch.tensor(values, dtype=torch.long)
        else:
            batch[key] = values
    return batch
