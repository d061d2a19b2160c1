"""Data: decord reading, clip sampling, protocols, the embedded dataset builder, real-dataset adapters and the
joint image/video mixture sampler. Tensors are float ``C T H W`` in [-1, 1]."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cvvae.data.clips import ClipTooShortError, ClipWindow, resize_and_crop, sample_clip_window
from cvvae.data.datasets import ImageDataset, VideoClipDataset, collate_items
from cvvae.data.manifest import MANIFEST_COLUMNS, read_manifest
from cvvae.data.mixture import (
    PAPER_MIXTURE,
    MixtureEntry,
    MixtureSampler,
    MixtureSource,
    build_mixture,
    paper_mixture,
    scaled_paper_mixture,
)
from cvvae.data.protocols import (
    PROTOCOLS,
    ClipProtocol,
    get_protocol,
    protocols_from_config,
    register_protocol,
)
from cvvae.data.reader import MediaReadError, read_image, read_video_frames

if TYPE_CHECKING:
    from cvvae.data.embedded import EmbeddedDataConfig, build_embedded_dataset

__all__ = [
    "MANIFEST_COLUMNS",
    "PAPER_MIXTURE",
    "PROTOCOLS",
    "ClipProtocol",
    "ClipTooShortError",
    "ClipWindow",
    "EmbeddedDataConfig",
    "ImageDataset",
    "MediaReadError",
    "MixtureEntry",
    "MixtureSampler",
    "MixtureSource",
    "VideoClipDataset",
    "build_embedded_dataset",
    "build_mixture",
    "collate_items",
    "get_protocol",
    "paper_mixture",
    "protocols_from_config",
    "read_image",
    "read_manifest",
    "read_video_frames",
    "register_protocol",
    "resize_and_crop",
    "sample_clip_window",
    "scaled_paper_mixture",
]


def __getattr__(name: str) -> Any:
    # The builder pulls in OpenCV and the media sources; load it only when asked for.
    if name in {"EmbeddedDataConfig", "build_embedded_dataset"}:
        from cvvae.data import embedded

        return getattr(embedded, name)
    raise AttributeError(f"module 'cvvae.data' has no attribute {name!r}")
