"""Mixture sampler ratios, determinism and resumption; paper mixture; protocols."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from cvvae.data import (
    PAPER_MIXTURE,
    PROTOCOLS,
    ClipProtocol,
    MixtureSampler,
    MixtureSource,
    build_mixture,
    paper_mixture,
    protocols_from_config,
    scaled_paper_mixture,
)


class TensorDataset:
    """Items whose video encodes (dataset id, index, epoch), so batches can be traced."""

    def __init__(self, ident: int, size: int, frames: int = 1) -> None:
        self.ident, self.size, self.frames = ident, size, frames

    def __len__(self) -> int:
        return self.size

    def load(self, index: int, epoch: int) -> dict:
        video = torch.full((3, self.frames, 4, 4), float(self.ident * 10000 + epoch * 100 + index))
        return {
            "video": video,
            "path": f"{self.ident}/{index}",
            "source": str(self.ident),
            "clip_id": str(index),
            "start": 0,
            "stride": 1,
        }


def make_sampler(seed: int = 0, **kwargs) -> MixtureSampler:
    sources = [
        MixtureSource("img", TensorDataset(1, 10), batch_size=4, weight=0.4),
        MixtureSource("img_large", TensorDataset(2, 5), batch_size=2, weight=0.1),
        MixtureSource("vid9", TensorDataset(3, 7, 9), batch_size=1, weight=0.25),
        MixtureSource("vid17", TensorDataset(4, 3, 17), batch_size=1, weight=0.25),
    ]
    return MixtureSampler(sources, seed=seed, **kwargs)


def test_source_ratios_follow_weights() -> None:
    sampler = make_sampler()
    counts = Counter(sampler.sources[sampler.source_index(step)].name for step in range(8000))
    for name, expected in {"img": 0.4, "img_large": 0.1, "vid9": 0.25, "vid17": 0.25}.items():
        assert abs(counts[name] / 8000 - expected) < 0.02, counts


def test_batches_have_source_shapes_and_visit_every_item_per_pass() -> None:
    sampler = make_sampler()
    seen: dict[str, list[float]] = {}
    for _ in range(200):
        batch = next(sampler)
        expected = {
            "img": (4, 3, 1, 4, 4),
            "img_large": (2, 3, 1, 4, 4),
            "vid9": (1, 3, 9, 4, 4),
            "vid17": (1, 3, 17, 4, 4),
        }[batch["source"]]
        assert tuple(batch["video"].shape) == expected
        seen.setdefault(batch["source"], []).extend(batch["video"][:, 0, 0, 0, 0].tolist())
    first_pass = [int(v) % 100 for v in seen["img"][:10]]  # epoch 0 of a 10-item dataset
    assert sorted(first_pass) == list(range(10))


def test_deterministic_and_resumable() -> None:
    reference = [next(make_sampler(seed=5))["video"].sum().item() for _ in range(1)]
    full = make_sampler(seed=5)
    values = [next(full)["video"].sum().item() for _ in range(40)]
    assert values[0] == reference[0]
    interrupted = make_sampler(seed=5)
    for _ in range(17):
        next(interrupted)
    state = interrupted.state_dict()
    resumed = make_sampler(seed=5)
    resumed.load_state_dict(state)
    assert [next(resumed)["video"].sum().item() for _ in range(23)] == values[17:]
    skipped = make_sampler(seed=5, start_step=17)
    assert [next(skipped)["video"].sum().item() for _ in range(23)] == values[17:]
    other_seed = make_sampler(seed=6)
    assert [next(other_seed)["video"].sum().item() for _ in range(40)] != values


def test_state_from_other_seed_is_rejected() -> None:
    with pytest.raises(ValueError, match="seed"):
        make_sampler(seed=1).load_state_dict(make_sampler(seed=2).state_dict())


def test_paper_mixture_settings() -> None:
    sampler = paper_mixture(
        TensorDataset(1, 4), TensorDataset(2, 4), TensorDataset(3, 4, 9), TensorDataset(4, 4, 17)
    )
    assert [s.batch_size for s in sampler.sources] == [8, 2, 1, 1]
    assert sampler.probabilities.tolist() == pytest.approx([0.4, 0.1, 0.25, 0.25])
    small = scaled_paper_mixture(scale=0.25, batch_scale=0.5, stride=(1, 2))
    assert [e.resolution for e in small] == [64, 128, 64, 48]
    assert [e.batch_size for e in small] == [4, 1, 1, 1]
    assert [e.num_frames for e in small] == [e.num_frames for e in PAPER_MIXTURE]


def test_build_mixture_rejects_unknown_keys(tmp_path) -> None:
    with pytest.raises(ValueError, match="valid keys"):
        build_mixture([{"name": "x", "kind": "image", "resolutoin": 32}], tmp_path / "manifest.csv")


def test_protocols() -> None:
    paper = PROTOCOLS["paper"]
    assert (paper.num_frames, paper.stride, paper.resolution, paper.crop) == (33, 3, 256, "center")
    assert paper.describe() == "paper: 33 frames, stride 3, 256x256 (short-side resize, centre crop)"
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        ClipProtocol("bad", num_frames=16, stride=1, resolution=64)
    registered = protocols_from_config({"tiny_eval": {"num_frames": 5, "stride": 2, "resolution": 16}})
    assert PROTOCOLS["tiny_eval"] is registered["tiny_eval"]
    with pytest.raises(ValueError, match="valid keys"):
        protocols_from_config({"x": {"frames": 5, "stride": 1, "resolution": 16}})
