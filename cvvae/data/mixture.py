"""Joint image and video training batches: the paper's mixture of four sources (Sec. 4.1).

Each step first draws a source by weight, then the source's next batch. Both draws are pure functions of
``(seed, step)`` and of the per-source batch counter, so an interrupted run restored from ``state_dict()``
(or rebuilt with ``start_step``) sees exactly the batches it would have seen.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from cvvae.config_keys import reject_unknown_keys
from cvvae.data.datasets import ImageDataset, VideoClipDataset, collate_items


@dataclass(frozen=True)
class MixtureSource:
    """A dataset with its batch size and sampling weight."""

    name: str
    dataset: Any  # a map-style dataset whose items are dicts with a ``video`` tensor
    batch_size: int
    weight: float

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"mixture source {self.name!r}: batch_size must be >= 1, got {self.batch_size}")
        if not self.weight > 0 or not math.isfinite(self.weight):
            raise ValueError(f"mixture source {self.name!r}: weight must be positive, got {self.weight}")
        if len(self.dataset) == 0:
            raise ValueError(f"mixture source {self.name!r}: its dataset is empty")


class MixtureSampler:
    """Infinite deterministic iterator of batches ``{"source": name, "video": B C T H W, ...}``.

    Items of a source are visited in a fresh seeded permutation per pass (epoch), so every item is seen
    once per pass; datasets with a ``load(index, epoch)`` method also get the pass as their epoch, so random
    crops and strides change between passes.
    """

    def __init__(
        self, sources: Sequence[MixtureSource], seed: int = 0, start_step: int = 0, executor: Any = None
    ) -> None:
        if not sources:
            raise ValueError("MixtureSampler needs at least one source")
        names = [source.name for source in sources]
        if len(set(names)) != len(names):
            raise ValueError(f"mixture source names must be unique, got {names}")
        self.sources = list(sources)
        self.seed = int(seed)
        weights = np.array([source.weight for source in self.sources], dtype=np.float64)
        self.probabilities = weights / weights.sum()
        self.step = 0
        self.batches_drawn = [0] * len(self.sources)
        self._permutations: dict[tuple[int, int], np.ndarray] = {}
        # A concurrent.futures executor loads the items of a batch in parallel (same items, same order).
        self.executor = executor
        if start_step:
            self.fast_forward(start_step)

    # -- deterministic draws -------------------------------------------------------------------------------
    def source_index(self, step: int) -> int:
        """Which source step ``step`` uses."""
        uniform = np.random.default_rng([self.seed, 0, int(step)]).random()
        return int(
            min(np.searchsorted(np.cumsum(self.probabilities), uniform, side="right"), len(self.sources) - 1)
        )

    def _permutation(self, source: int, epoch: int) -> np.ndarray:
        key = (source, epoch)
        if key not in self._permutations:
            if len(self._permutations) > 4 * len(self.sources):  # only the current passes are needed
                self._permutations.clear()
            size = len(self.sources[source].dataset)
            self._permutations[key] = np.random.default_rng([self.seed, 1, source, epoch]).permutation(size)
        return self._permutations[key]

    def batch_indices(self, source: int, batch_number: int) -> list[tuple[int, int]]:
        """``(index, epoch)`` pairs of the ``batch_number``-th batch of ``source``."""
        spec = self.sources[source]
        size = len(spec.dataset)
        pairs = []
        for position in range(batch_number * spec.batch_size, (batch_number + 1) * spec.batch_size):
            epoch, offset = divmod(position, size)
            pairs.append((int(self._permutation(source, epoch)[offset]), epoch))
        return pairs

    # -- iteration -----------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        source = self.source_index(self.step)
        spec = self.sources[source]
        pairs = self.batch_indices(source, self.batches_drawn[source])
        if self.executor is None or len(pairs) == 1:
            items = [self._load(spec.dataset, index, epoch) for index, epoch in pairs]
        else:
            items = list(self.executor.map(lambda pair: self._load(spec.dataset, *pair), pairs))
        batch = collate_items(items)
        batch["source"] = spec.name
        batch["step"] = self.step
        self.batches_drawn[source] += 1
        self.step += 1
        return batch

    @staticmethod
    def _load(dataset: Any, index: int, epoch: int) -> dict[str, Any]:
        load = getattr(dataset, "load", None)
        return load(index, epoch) if callable(load) else dataset[index]

    # -- resumption ----------------------------------------------------------------------------------------
    def fast_forward(self, step: int) -> None:
        """Move to ``step`` without loading data (replays the cheap source draws)."""
        if step < self.step:
            self.step, self.batches_drawn = 0, [0] * len(self.sources)
        while self.step < step:
            self.batches_drawn[self.source_index(self.step)] += 1
            self.step += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "seed": self.seed,
            "batches_drawn": {s.name: n for s, n in zip(self.sources, self.batches_drawn, strict=True)},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if int(state.get("seed", self.seed)) != self.seed:
            raise ValueError(
                f"sampler state was saved with seed {state['seed']}, this sampler has seed {self.seed}"
            )
        drawn = dict(state.get("batches_drawn", {}))
        names = [s.name for s in self.sources]
        if drawn and set(drawn) != set(names):
            raise ValueError(f"sampler state has sources {sorted(drawn)}, this sampler has {sorted(names)}")
        if drawn:
            self.step = int(state["step"])
            self.batches_drawn = [int(drawn[name]) for name in names]
        else:
            self.fast_forward(int(state["step"]))

    def describe(self) -> str:
        return "; ".join(
            f"{s.name}: bs {s.batch_size}, {p:.0%}"
            for s, p in zip(self.sources, self.probabilities, strict=True)
        )


# ----------------------------------------------------------------------------------------------------------
# Config-driven mixtures


@dataclass(frozen=True)
class MixtureEntry:
    """One source described by data (the keys of a profile's ``mixture`` list)."""

    name: str
    kind: str = "video"  # "image" or "video"
    resolution: int = 64
    batch_size: int = 1
    weight: float = 1.0
    num_frames: int = 1
    stride: int | tuple[int, int] = 1
    crop: str = "random"


PAPER_MIXTURE: tuple[MixtureEntry, ...] = (
    MixtureEntry("image_256", "image", 256, 8, 0.40),
    MixtureEntry("image_512", "image", 512, 2, 0.10),
    MixtureEntry("video_9x256", "video", 256, 1, 0.25, num_frames=9),
    MixtureEntry("video_17x192", "video", 192, 1, 0.25, num_frames=17),
)
"""Paper Sec. 4.1. The paper gives no frame stride; the official config draws it from [1, 8]."""


def scaled_paper_mixture(
    scale: float = 1.0, batch_scale: float = 1.0, stride: int | tuple[int, int] = (1, 8)
) -> list[MixtureEntry]:
    """The paper's four settings with resolutions multiplied by ``scale`` (rounded to a multiple of 8, at
    least 8) and batch sizes by ``batch_scale`` (at least 1); weights and frame counts unchanged."""
    entries = []
    for entry in PAPER_MIXTURE:
        resolution = max(8, int(round(entry.resolution * scale / 8)) * 8)
        batch_size = max(1, int(round(entry.batch_size * batch_scale)))
        entries.append(
            replace(
                entry,
                resolution=resolution,
                batch_size=batch_size,
                stride=stride if entry.kind == "video" else 1,
            )
        )
    return entries


def _entry_from(value: MixtureEntry | Mapping[str, Any] | Any) -> MixtureEntry:
    if isinstance(value, MixtureEntry):
        return value
    if isinstance(value, Mapping):
        data = dict(value)
    elif hasattr(value, "__dataclass_fields__"):  # e.g. the training config's MixtureSourceConfig
        data = {name: getattr(value, name) for name in value.__dataclass_fields__}
    else:
        raise TypeError(f"cannot read a mixture source from {type(value).__name__}")
    reject_unknown_keys(data, MixtureEntry.__dataclass_fields__, "mixture source")
    if isinstance(data.get("stride"), list):
        data["stride"] = tuple(data["stride"])
    return MixtureEntry(**data)


def build_mixture(
    entries: Sequence[MixtureEntry | Mapping[str, Any] | Any],
    manifest_csv: str | Path,
    split: str = "train",
    seed: int = 0,
    on_error: str = "skip",
    root: str | Path | None = None,
    start_step: int = 0,
) -> MixtureSampler:
    """A :class:`MixtureSampler` over a manifest from entries (``MixtureEntry``, mappings with its keys,
    or dataclasses with the same fields)."""
    sources = []
    for number, raw in enumerate(entries):
        entry = _entry_from(raw)
        item_seed = seed * 1000 + number  # distinct augmentations per source
        if entry.kind == "image":
            dataset: Any = ImageDataset.from_manifest(
                manifest_csv, split, entry.resolution, entry.crop, item_seed, on_error, root=root
            )
        elif entry.kind == "video":
            dataset = VideoClipDataset.from_manifest(
                manifest_csv,
                split,
                entry.num_frames,
                entry.stride,
                entry.resolution,
                entry.crop,
                item_seed,
                on_error,
                root=root,
            )
        else:
            raise ValueError(
                f"mixture source {entry.name!r}: kind must be 'image' or 'video', got {entry.kind!r}"
            )
        sources.append(MixtureSource(entry.name, dataset, entry.batch_size, entry.weight))
    return MixtureSampler(sources, seed=seed, start_step=start_step)


def paper_mixture(
    image_256: Any,
    image_512: Any,
    video_9x256: Any,
    video_17x192: Any,
    seed: int = 0,
    batch_scale: float = 1.0,
) -> MixtureSampler:
    """The paper's four sources over datasets the caller built (at the resolutions their names say, or
    scaled ones for small profiles); batch sizes 8/2/1/1 times ``batch_scale``, weights 40/10/25/25 %."""
    datasets = (image_256, image_512, video_9x256, video_17x192)
    sources = [
        MixtureSource(entry.name, dataset, max(1, int(round(entry.batch_size * batch_scale))), entry.weight)
        for entry, dataset in zip(PAPER_MIXTURE, datasets, strict=True)
    ]
    return MixtureSampler(sources, seed=seed)
