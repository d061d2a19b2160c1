"""Images the LDM trains on (training images and single video frames) and the held-out reference images.

Everything is ``B 3 H W`` float in [-1, 1] (the autoencoders' range) or ``N 3 H W`` uint8 (what a PNG holds).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from cvvae.ldm.config import LDMTrainConfig
from cvvae.train.config import DataConfig


class SyntheticImages:
    """Seeded random images shaped like the training batches; batch ``k`` depends only on (seed, k), so a
    resumed run draws what an uninterrupted one would."""

    def __init__(self, batch_size: int, resolution: int, seed: int) -> None:
        self.batch_size, self.resolution, self.seed = batch_size, resolution, seed
        self.step = 0

    def __iter__(self) -> SyntheticImages:
        return self

    def __next__(self) -> dict[str, Any]:
        gen = torch.Generator().manual_seed(self.seed * 100003 + self.step)
        # Low-frequency colour blobs upsampled: images with structure, not white noise.
        coarse = torch.rand(self.batch_size, 3, 4, 4, generator=gen) * 2 - 1
        images = torch.nn.functional.interpolate(coarse, size=self.resolution, mode="bicubic").clamp(-1, 1)
        self.step += 1
        return {"source": "synthetic", "images": images}

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])


class MixtureImages:
    """Training images and single frames of training videos (random crops), as the image VAE trained on:
    the mixture sampler of ``cvvae.data`` with one-frame clips, yielding ``B 3 H W``."""

    def __init__(self, config: LDMTrainConfig, data: DataConfig, seed: int) -> None:
        from cvvae.data import ImageDataset, MixtureSampler, MixtureSource, VideoClipDataset
        from cvvae.data.datasets import DecodedCache

        manifest = _checked_manifest(data)
        cache = DecodedCache() if config.cache_decoded else None
        res, split = config.resolution, data.train_split
        images = ImageDataset.from_manifest(manifest, split, res, "random", seed, on_error="skip")
        sources = [MixtureSource("images", images.use_cache(cache), config.batch_size, 1.0)]
        if config.use_video_frames:
            try:
                frames = VideoClipDataset.from_manifest(manifest, split, 1, 1, res, "random", seed, "skip")
                sources.append(MixtureSource("frames", frames.use_cache(cache), config.batch_size, 1.0))
            except ValueError:
                pass  # a manifest without training videos: images only
        self.sampler = MixtureSampler(sources, seed=seed)

    def __iter__(self) -> MixtureImages:
        return self

    def __next__(self) -> dict[str, Any]:
        batch = next(self.sampler)
        return {"source": batch["source"], "images": batch["video"][:, :, 0]}

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)


def _checked_manifest(data: DataConfig) -> Any:
    manifest = data.manifest_path()
    if not manifest.is_file():
        raise FileNotFoundError(
            f"manifest {manifest} not found: build the embedded dataset with `cvvae data embedded --config "
            f"PROFILE.yaml --out {data.root}`, or set ldm.train.synthetic_data=true for a smoke run"
        )
    return manifest


def training_batches(config: LDMTrainConfig, data: DataConfig, seed: int) -> Any:
    """The iterator of training batches (``{"source", "images"}``) with ``state_dict`` for resumption."""
    if config.synthetic_data:
        return SyntheticImages(config.batch_size, config.resolution, seed)
    return MixtureImages(config, data, seed)


def centre_crops(
    data: DataConfig, split: str, resolution: int, limit: int, video_frames: int = 0, seed: int = 0
) -> Tensor:
    """Up to ``limit`` centre crops of the images of ``split`` and, with ``video_frames`` > 0, that many
    frames (seeded random positions, centre crops) of each of its videos: ``N 3 H W`` in [-1, 1]."""
    from cvvae.data import ImageDataset, VideoClipDataset

    manifest = _checked_manifest(data)
    crops: list[Tensor] = []
    try:
        images = ImageDataset.from_manifest(manifest, split, resolution, "center", seed, on_error="skip")
        crops += [images[i]["video"][:, 0] for i in range(min(limit, len(images)))]
    except ValueError:
        pass  # no images in this split
    if video_frames > 0 and len(crops) < limit:
        try:
            # Centre crops of one frame at a seeded random position; draw k of a video is its epoch k.
            clips = VideoClipDataset.from_manifest(
                manifest, split, 1, 1, resolution, "center", seed, "skip", start="random"
            )
        except ValueError:
            clips = None  # no videos in this split
        pairs = [(i, k) for k in range(video_frames) for i in range(len(clips) if clips else 0)]
        for index, draw in pairs[: limit - len(crops)]:
            crops.append(clips.load(index, draw)["video"][:, 0])
    if not crops:
        raise ValueError(f"no images (or video frames) in split {split!r} of {manifest}")
    return torch.stack(crops)


def to_uint8(images: Tensor) -> Tensor:
    """[-1, 1] float -> uint8 (rounded, as a saved PNG holds it)."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
