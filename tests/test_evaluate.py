"""`cvvae.evaluate.evaluate` with tiny stand-in autoencoders (no dependency on the model zoo)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from cvvae.evaluate import PER_CLIP_CSV, PER_FRAME_CSV, SUMMARY_CSV, LatentReference, evaluate
from cvvae.metrics import PSNR_CAP_DB, lpips_weights_available
from cvvae.metrics.reconstruction import SSIM_IMPL


class StandInAutoencoder:
    """Identity (or identity plus seeded noise) with the ``VideoAutoencoder`` interface; counts its calls.

    Latents are every 4th frame downsampled 2x (so latent frames follow the 1 + 4k rule); decoding returns the
    stored input, so the reconstruction is exact unless ``noise`` is set."""

    temporal_compression = 4
    spatial_compression = 2
    latent_channels = 3

    def __init__(self, noise: float = 0.0, name: str = "stand_in") -> None:
        self.noise, self.name = noise, name
        self.encode_calls = 0
        self._last: torch.Tensor | None = None

    def valid_num_frames(self, num_frames: int) -> int:
        return 1 + (num_frames - 1) // 4 * 4

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        self.encode_calls += 1
        self._last = video
        frames = video[:, :, ::4]
        return F.avg_pool3d(frames, kernel_size=(1, 2, 2))

    def decode(self, latents: torch.Tensor, num_frames: int) -> torch.Tensor:
        assert self._last is not None and self._last.shape[2] == num_frames
        out = self._last.clone()
        if self.noise:
            g = torch.Generator().manual_seed(0)
            out = out + self.noise * torch.randn(out.shape, generator=g)
        return out

    def reconstruct(self, video: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(video), video.shape[2])


def make_dataset(num_clips: int = 3, num_frames: int = 5, size: int = 32) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [
        {
            "video": torch.rand(3, num_frames, size, size, generator=g) * 1.2 - 0.6,
            "clip_id": f"clip{i}",
            "path": f"/videos/clip{i}.mp4",
        }
        for i in range(num_clips)
    ]


def test_identity_autoencoder_gives_perfect_scores_and_all_tables(tmp_path: Path) -> None:
    ae = StandInAutoencoder()
    per_clip = evaluate(ae, make_dataset(), tmp_path, "tiny", lpips_nets=(), progress=False)
    assert list(per_clip["clip_id"]) == ["clip0", "clip1", "clip2"]
    assert (per_clip["psnr"] == PSNR_CAP_DB).all() and (per_clip["ssim"] > 0.9999).all()
    assert (per_clip["tde"] == 0).all() and (per_clip["latent_frames"] == 2).all()
    assert pd.read_csv(tmp_path / PER_CLIP_CSV)["clip_id"].tolist() == ["clip0", "clip1", "clip2"]
    frames = pd.read_csv(tmp_path / PER_FRAME_CSV)
    assert len(frames) == 3 * 5 and frames["frame_index"].max() == 4
    assert frames.loc[frames["frame_index"] == 0, "tde"].isna().all()
    summary = pd.read_csv(tmp_path / SUMMARY_CSV)
    assert summary.loc[0, "protocol"] == "tiny" and summary.loc[0, "model"] == "stand_in"
    assert summary.loc[0, "ssim_impl"] == SSIM_IMPL and "Farneback" in summary.loc[0, "flow_impl"]
    assert summary.loc[0, "clips"] == 3


def test_noise_lowers_psnr_to_the_expected_level(tmp_path: Path) -> None:
    per_clip = evaluate(
        StandInAutoencoder(noise=0.04), make_dataset(1), tmp_path, "tiny", lpips_nets=(), progress=False
    )
    # sigma 0.04 on [-1, 1] = 0.02 on [0, 1] -> 34 dB (inputs stay inside the range: no clipping).
    assert per_clip.loc[0, "psnr"] == pytest.approx(34.0, abs=0.15)
    assert per_clip.loc[0, "tde"] > 0


def test_resume_skips_finished_clips_and_drops_partial_rows(tmp_path: Path) -> None:
    data = make_dataset(4)
    first = StandInAutoencoder()
    evaluate(first, data, tmp_path, "tiny", lpips_nets=(), limit=2, progress=False)
    assert first.encode_calls == 2
    # Simulate a crash in the middle of clip 2: its per-frame rows written, a torn line, no clip row.
    frames_path = tmp_path / PER_FRAME_CSV
    header = frames_path.read_text().splitlines()[0].split(",")
    partial = pd.DataFrame([{"clip_id": "clip2", "frame_index": 0}]).reindex(columns=header)
    with frames_path.open("a") as f:
        f.write(partial.to_csv(index=False, header=False) + "clip2,1,3")

    second = StandInAutoencoder()
    per_clip = evaluate(second, data, tmp_path, "tiny", lpips_nets=(), progress=False)
    assert second.encode_calls == 2  # only clip2 and clip3
    assert list(per_clip["clip_id"]) == ["clip0", "clip1", "clip2", "clip3"]
    frames = pd.read_csv(frames_path)
    assert len(frames) == 4 * 5 and frames.groupby("clip_id").size().eq(5).all()

    third = StandInAutoencoder()
    evaluate(third, data, tmp_path, "tiny", lpips_nets=(), resume=False, progress=False)
    assert third.encode_calls == 4


def test_resume_refuses_a_different_evaluation_in_the_same_folder(tmp_path: Path) -> None:
    evaluate(StandInAutoencoder(name="a"), make_dataset(1), tmp_path, "tiny", lpips_nets=(), progress=False)
    with pytest.raises(ValueError, match="different evaluation"):
        evaluate(
            StandInAutoencoder(name="b"), make_dataset(1), tmp_path, "tiny", lpips_nets=(), progress=False
        )


def test_frame_counts_the_model_cannot_encode_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="6 frames.*largest usable: 5"):
        evaluate(
            StandInAutoencoder(),
            make_dataset(1, num_frames=6),
            tmp_path,
            "tiny",
            lpips_nets=(),
            progress=False,
        )


def test_missing_lpips_weights_are_reported_as_na(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    out = tmp_path / "eval"
    per_clip = evaluate(
        StandInAutoencoder(), make_dataset(1), out, "tiny", lpips_nets=("alex",), progress=False
    )
    assert "lpips_alex" not in per_clip.columns
    summary = pd.read_csv(out / SUMMARY_CSV)
    assert summary.loc[0, "lpips_alex"] == "n/a (LPIPS weights not installed: run cvvae weights lpips)"
    assert json.loads((out / "meta.json").read_text())["lpips_na"]["alex"].startswith("LPIPS weights")


@pytest.mark.skipif(
    not lpips_weights_available("alex"), reason="LPIPS weights not installed: run cvvae weights lpips"
)
def test_lpips_columns_when_weights_are_installed(tmp_path: Path) -> None:
    per_clip = evaluate(
        StandInAutoencoder(noise=0.1), make_dataset(1), tmp_path, "tiny", lpips_nets=("alex",), progress=False
    )
    assert per_clip.loc[0, "lpips_alex"] > 0
    assert "lpips_alex" in pd.read_csv(tmp_path / PER_FRAME_CSV).columns


def test_latent_reference_measures_compatibility(tmp_path: Path) -> None:
    """An image 'decoder' that upsamples the stand-in's latents reproduces psi(X) up to the 2x pooling."""

    def decode_image(z: torch.Tensor) -> torch.Tensor:
        return F.interpolate(z, scale_factor=2, mode="nearest")

    def encode_image(x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2)

    reference = LatentReference(
        decode_image=decode_image, encode_image=encode_image, psi=lambda v: v[:, :, ::4], description="pool"
    )
    per_clip = evaluate(
        StandInAutoencoder(),
        make_dataset(1),
        tmp_path,
        "tiny",
        lpips_nets=(),
        latent_reference=reference,
        progress=False,
    )
    row = per_clip.iloc[0]
    assert row["latent_mse"] == 0 and row["latent_frechet"] == pytest.approx(0, abs=1e-6)
    assert row["latent_cosine"] == pytest.approx(1.0)
    assert 5 < row["compat_psnr"] < PSNR_CAP_DB  # pooling loses detail, so not perfect


def test_the_identity_not_the_display_name_decides_which_clips_are_reused(tmp_path: Path) -> None:
    data = make_dataset(2)
    spec = {"model": {"kind": "cvvae", "weights_sha256": "aaa"}}
    evaluate(
        StandInAutoencoder(name="a"), data, tmp_path, "tiny", lpips_nets=(), progress=False, identity=spec
    )
    renamed = StandInAutoencoder(name="renamed")
    evaluate(renamed, data, tmp_path, "tiny", lpips_nets=(), progress=False, identity=spec)
    assert renamed.encode_calls == 0  # same model under another name: every clip reused

    retrained = {"model": {"kind": "cvvae", "weights_sha256": "bbb"}}
    with pytest.raises(ValueError, match=r"identity.model.weights_sha256: 'aaa' -> 'bbb'"):
        evaluate(
            StandInAutoencoder(), data, tmp_path, "tiny", lpips_nets=(), progress=False, identity=retrained
        )
    fresh = StandInAutoencoder()
    evaluate(
        fresh, data, tmp_path, "tiny", lpips_nets=(), progress=False, identity=retrained, if_changed="restart"
    )
    assert fresh.encode_calls == 2  # retrained weights: nothing reused
    assert json.loads((tmp_path / "meta.json").read_text())["identity"] == retrained


def test_nan_input_pixels_are_refused_naming_the_clip(tmp_path: Path) -> None:
    data = make_dataset(2)
    data[1]["video"][0, 2, 3, 4] = float("nan")
    with pytest.raises(ValueError, match=r"clip clip1 \(/videos/clip1.mp4\) has 1 NaN or infinite pixel"):
        evaluate(StandInAutoencoder(), data, tmp_path, "tiny", lpips_nets=(), progress=False)


def test_fp16_on_the_cpu_warns(tmp_path: Path) -> None:
    # no clip is needed: the warning comes at the start (the stand-in has no fp16 kernels on the CPU)
    with pytest.warns(RuntimeWarning, match="fp16 on the CPU"):
        evaluate(StandInAutoencoder(), make_dataset(1), tmp_path, "t", lpips_nets=(), dtype="fp16", limit=0)


def test_strip_frames_start_latent_groups() -> None:
    from cvvae.evaluate import strip_frames

    assert strip_frames(1) == [0]
    assert strip_frames(9) == [0, 4, 8]
    assert strip_frames(17) == [0, 4, 12, 16]
    assert strip_frames(65) == [0, 20, 44, 64]
    assert all(f % 4 == 0 for f in strip_frames(33))


def test_the_first_clip_leaves_small_strips_of_fixed_frames(tmp_path: Path) -> None:
    """Ground truth, reconstruction and image-decoder strips of clip 0 at frames 0, 4, 8; the images are the
    clip's pixels (exact for the identity stand-in), downscaled to at most 64 px high."""
    import numpy as np
    from PIL import Image

    from cvvae.evaluate import (
        STRIP_GT_PNG,
        STRIP_IMAGE_DECODER_PNG,
        STRIP_JSON,
        STRIP_MAX_SIZE,
        STRIP_PNG,
    )

    reference = LatentReference(
        decode_image=lambda z: F.interpolate(z, scale_factor=2, mode="nearest"),
        psi=lambda v: v[:, :, ::4],
    )
    data = make_dataset(2, num_frames=9, size=32)
    evaluate(
        StandInAutoencoder(),
        data,
        tmp_path,
        "tiny",
        lpips_nets=(),
        latent_reference=reference,
        progress=False,
    )
    info = json.loads((tmp_path / STRIP_JSON).read_text())
    assert info == {"clip_id": "clip0", "frames": [0, 4, 8], "latent_frames": [0, 1, 2]}
    gt = np.asarray(Image.open(tmp_path / STRIP_GT_PNG))
    assert gt.shape == (32, 3 * 32, 3)
    expected = ((data[0]["video"][:, 4].clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy()
    assert np.abs(gt[:, 32:64].astype(float) - expected).max() <= 1
    assert np.array_equal(np.asarray(Image.open(tmp_path / STRIP_PNG)), gt)  # identity reconstruction
    assert np.asarray(Image.open(tmp_path / STRIP_IMAGE_DECODER_PNG)).shape == (32, 96, 3)

    # larger frames are scaled down; a per-frame model (latents not aligned with psi) has no decoder strip
    big = tmp_path / "big"
    reference_all = LatentReference(decode_image=lambda z: z, psi=lambda v: v)
    evaluate(
        StandInAutoencoder(),
        make_dataset(1, num_frames=5, size=128),
        big,
        "tiny",
        lpips_nets=(),
        latent_reference=reference_all,
        progress=False,
    )
    strip = Image.open(big / STRIP_PNG)
    assert strip.size == (2 * STRIP_MAX_SIZE, STRIP_MAX_SIZE)
    assert not (big / STRIP_IMAGE_DECODER_PNG).exists()
    assert json.loads((big / STRIP_JSON).read_text())["latent_frames"] is None
    assert (big / STRIP_PNG).stat().st_size < 40_000
