"""Feeding the trainer: the in-memory decode cache, the prefetch loader and its resumption, parameter groups,
and a real-data run with loader threads that resumes exactly and logs its step-0 validation."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from diffusers import AutoencoderKL
from PIL import Image

from cvvae.data import ImageDataset, MixtureSampler, MixtureSource, VideoClipDataset
from cvvae.data.datasets import DecodedCache
from cvvae.data.writer import write_video
from cvvae.models import inflate_from_image_vae
from cvvae.profile import read_profile
from cvvae.train.config import TrainConfig, resolve_cvvae_config
from cvvae.train.loader import PrefetchLoader
from cvvae.train.optim import build_adamw, is_linearised_scaled
from cvvae.train.trainer import train

PROFILE = Path(__file__).parent / "data" / "tiny_profile.yaml"


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(3):
        write_video(root / f"v{i}.mp4", rng.integers(0, 255, (12, 20, 24, 3), dtype=np.uint8), fps=10)
        Image.fromarray(rng.integers(0, 255, (20, 28, 3), dtype=np.uint8)).save(root / f"i{i}.png")
        split = "val" if i == 2 else "train"
        rows += [(f"v{i}.mp4", "video", f"v{i}", 12, split), (f"i{i}.png", "image", f"i{i}", 1, split)]
    pd.DataFrame(rows, columns=["path", "kind", "source", "frames", "split"]).to_csv(
        root / "manifest.csv", index=False
    )
    return root


class CountingCache(DecodedCache):
    def __init__(self) -> None:
        super().__init__()
        self.decodes = 0

    def get(self, path, decode):
        def counted(p):
            self.decodes += 1
            return decode(p)

        return super().get(path, counted)


def _datasets(media: Path) -> tuple[VideoClipDataset, ImageDataset]:
    videos = VideoClipDataset.from_manifest(media / "manifest.csv", "train", 5, [1, 2], 16, "random", seed=3)
    images = ImageDataset.from_manifest(media / "manifest.csv", "train", 16, "random", seed=3)
    return videos, images


def test_cached_items_equal_decoded_ones_and_each_file_is_decoded_once(media: Path) -> None:
    plain = _datasets(media)
    cache = CountingCache()
    cached = [d.use_cache(cache) for d in _datasets(media)]
    for epoch in range(3):
        for fresh, kept in zip(plain, cached, strict=True):
            for index in range(len(fresh)):
                assert torch.equal(fresh.load(index, epoch)["video"], kept.load(index, epoch)["video"])
    assert cache.decodes == 4 and len(cache) == 4 and cache.nbytes > 0  # 2 videos + 2 images


def _sampler(media: Path, seed: int = 0) -> MixtureSampler:
    videos, images = _datasets(media)
    sources = [MixtureSource("img", images, 2, 0.5), MixtureSource("vid", videos, 1, 0.5)]
    return MixtureSampler(sources, seed=seed)


def test_prefetch_loader_yields_the_samplers_batches_and_resumes_where_training_was(media: Path) -> None:
    plain = _sampler(media, 1)
    reference = [next(plain)["video"] for _ in range(8)]
    loader = PrefetchLoader(_sampler(media, 1), workers=2, depth=3)
    taken = [next(loader)["video"] for _ in range(5)]
    state = loader.state_dict()  # the thread has run ahead; the state is where training is
    assert state["step"] == 5
    loader.shutdown()
    resumed = PrefetchLoader(_sampler(media, 1), workers=0, depth=2)
    resumed.load_state_dict(state)
    taken += [next(resumed)["video"] for _ in range(3)]
    resumed.shutdown()
    assert all(torch.equal(a, b) for a, b in zip(reference, taken, strict=True))


def test_prefetch_loader_raises_the_samplers_error() -> None:
    class Broken:
        def __next__(self):
            raise RuntimeError("bad batch")

        def state_dict(self):
            return {"step": 0}

        def load_state_dict(self, state):
            pass

    loader = PrefetchLoader(Broken(), workers=1)
    with pytest.raises(RuntimeError, match="bad batch"):
        next(loader)


def _cvvae() -> torch.nn.Module:
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=[8, 8, 16, 16], down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=1, latent_channels=4, norm_num_groups=4,
    )  # fmt: skip
    return inflate_from_image_vae(vae)


def test_linearised_tensor_gets_its_own_lr_group_only_when_asked() -> None:
    model = _cvvae()
    names = [n for n, _ in model.named_parameters() if is_linearised_scaled(n)]
    assert names == ["decoder.mid.attn_1.proj_out.weight", "decoder.mid.attn_1.proj_out.bias"]
    assert len(build_adamw(TrainConfig(), model.named_parameters(), [], 1e-4).param_groups) == 1
    opt = build_adamw(TrainConfig(linearised_lr_scale=1e-4), model.named_parameters(), [], 1e-4)
    assert [len(g["params"]) for g in opt.param_groups][1] == 2
    assert opt.param_groups[1]["lr"] == pytest.approx(1e-8)
    assert not opt.defaults.get("fused")  # CPU parameters: the plain AdamW


def test_real_data_run_with_loader_threads_resumes_exactly_and_logs_step_zero(media: Path, tmp_path) -> None:
    image_vae = tmp_path / "image_vae"
    torch.manual_seed(0)
    AutoencoderKL(
        block_out_channels=[8, 8, 16, 16], down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=1, latent_channels=4, norm_num_groups=4,
    ).save_pretrained(image_vae)  # fmt: skip
    overrides = [
        f"data.root={media}", f"cvvae.image_vae_path={image_vae}", "cvvae.train.synthetic_data=false",
        "cvvae.train.mixture.0.resolution=16", "cvvae.train.mixture.1.resolution=16",
        "cvvae.train.mixture.1.num_frames=5", "cvvae.train.val_resolution=16", "cvvae.train.val_num_frames=5",
        "cvvae.train.num_workers=2", "cvvae.train.steps=4", "cvvae.train.linearised_lr_scale=1e-4",
        "cvvae.train.loss.disc_schedule=every_step",
    ]  # fmt: skip
    run = resolve_cvvae_config(read_profile(PROFILE), "dec", overrides)
    full = train(run, tmp_path / "full")
    train(run, tmp_path / "split", stop_after=2)
    second = train(run, tmp_path / "split")
    assert full["step"] == second["step"] == 4 and second["resumed"]

    def rows(run_dir: Path, name: str) -> list[dict]:
        with (run_dir / name).open() as fh:
            return list(csv.DictReader(fh))

    key = ("step", "source", "loss", "d_loss")
    assert [tuple(r[k] for k in key) for r in rows(tmp_path / "split", "metrics.csv")] == [
        tuple(r[k] for k in key) for r in rows(tmp_path / "full", "metrics.csv")
    ]
    assert rows(tmp_path / "full", "metrics.csv")[1]["d_loss"]  # both networks on every step
    val = rows(tmp_path / "split", "val_metrics.csv")
    assert [r["step"] for r in val] == ["0", "4"]  # step 0 once, although the run was split
    assert val == rows(tmp_path / "full", "val_metrics.csv")


def test_validation_clips_take_frames_val_stride_apart(media: Path) -> None:
    from cvvae.train.config import DataConfig
    from cvvae.train.sampling import validation_clips

    data = DataConfig(root=str(media))
    every = validation_clips(TrainConfig(val_clips=1, val_num_frames=9, val_resolution=16), data, 0)
    strided_config = TrainConfig(val_clips=1, val_num_frames=5, val_stride=2, val_resolution=16)
    strided = validation_clips(strided_config, data, 0)
    assert every.shape[2] == 9 and strided.shape[2] == 5
    # Both clips span 9 frames from the same start: the strided one is every other frame of the other.
    assert torch.equal(every[0, :, ::2], strided[0])
    assert not torch.equal(every[0, :, :5], strided[0])
    with pytest.raises(ValueError, match="val_stride"):
        TrainConfig(val_stride=0)
