"""The batches a training run sees: the joint image/video mixture of a manifest (or its seeded synthetic
stand-in) and the fixed validation clips."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from cvvae.train.config import DataConfig, TrainConfig


class SyntheticMixture:
    """Seeded smooth random clips shaped like the configured mixture (throughput smoke runs, no dataset).

    Same interface as ``cvvae.data.MixtureSampler``: infinite ``{"source", "video"}`` batches, state dicts.
    """

    def __init__(self, sources: list[Any], seed: int) -> None:
        self.sources, self.seed, self.step = sources, seed, 0
        weights = np.array([s.weight for s in sources], dtype=np.float64)
        self.cumulative = np.cumsum(weights / weights.sum())

    def __iter__(self) -> SyntheticMixture:
        return self

    def __next__(self) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, self.step])
        source = self.sources[min(int(np.searchsorted(self.cumulative, rng.random())), len(self.sources) - 1)]
        frames = source.num_frames if source.kind == "video" else 1
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        low = max(1, source.resolution // 8)
        coarse = torch.randn(source.batch_size * frames, 3, low, low, generator=generator)
        video = torch.nn.functional.interpolate(coarse, size=source.resolution, mode="bilinear").tanh()
        video = video.unflatten(0, (source.batch_size, frames)).transpose(1, 2).contiguous()
        self.step += 1
        return {"source": source.name, "video": video}

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])


def build_sampler(config: TrainConfig, data: DataConfig, seed: int) -> Any:
    """The joint image/video mixture of ``config.mixture`` (or its synthetic stand-in); with
    ``config.cache_decoded`` its sources share one in-memory cache of decoded files."""
    if config.synthetic_data:
        return SyntheticMixture(config.mixture, seed)
    from cvvae.data import ImageDataset, MixtureSampler, MixtureSource, VideoClipDataset
    from cvvae.data.datasets import DecodedCache

    cache = DecodedCache() if config.cache_decoded else None

    manifest = data.manifest_path()
    if not manifest.is_file():
        raise FileNotFoundError(
            f"training manifest {manifest} not found: build the embedded dataset with `cvvae data embedded "
            f"--config PROFILE.yaml --out {data.root}`, point data.root to a folder with a manifest.csv, "
            "or set cvvae.train.synthetic_data=true for a throughput smoke run"
        )
    sources = []
    for src in config.mixture:
        if src.kind == "image":
            dataset = ImageDataset.from_manifest(
                manifest, data.train_split, src.resolution, src.crop, seed, on_error="skip"
            )
        else:
            dataset = VideoClipDataset.from_manifest(
                manifest, data.train_split, src.num_frames, src.stride, src.resolution, src.crop, seed, "skip"
            )
        sources.append(MixtureSource(src.name, dataset.use_cache(cache), src.batch_size, src.weight))
    return MixtureSampler(sources, seed=seed)


def validation_clips(config: TrainConfig, data: DataConfig, seed: int) -> Tensor | None:
    """The first ``config.val_clips`` centre-cropped clips of the val split with frames ``config.val_stride``
    apart (images for the image VAE), or seeded synthetic ones; None when the split has none."""
    if config.synthetic_data:
        source = config.mixture[-1]
        frames = config.val_num_frames if config.kind != "image_vae" else 1
        spec = type(source)(name="val", kind="video", resolution=config.val_resolution, num_frames=frames)
        spec.batch_size = config.val_clips
        return next(SyntheticMixture([spec], seed + 99991))["video"]
    from cvvae.data import ImageDataset, VideoClipDataset

    manifest = data.manifest_path()
    try:
        if config.kind == "image_vae":
            dataset = ImageDataset.from_manifest(
                manifest, data.val_split, config.val_resolution, "center", seed, on_error="skip"
            )
        else:
            dataset = VideoClipDataset.from_manifest(
                manifest, data.val_split, config.val_num_frames, config.val_stride, config.val_resolution,
                "center", seed, "skip",
            )  # fmt: skip
    except (FileNotFoundError, ValueError) as err:
        print(f"validation skipped: {err}")
        return None
    items = [dataset[i]["video"] for i in range(min(config.val_clips, len(dataset)))]
    return torch.stack(items) if items else None
