"""The video step: consecutive, independent image samples decoded as one CV-VAE latent video (paper Fig. 6).

A tiny image VAE (the session fixture of conftest.py), CV-VAEs inflated from it and a random latents file
written as ``cvvae.ldm.sample`` writes it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from cvvae.ldm.__main__ import main as ldm_main
from cvvae.ldm.config import LDMVideoConfig
from cvvae.ldm.sample import save_latents
from cvvae.ldm.video import (
    METRIC_COLUMNS,
    NOT_RUN,
    VIDEO,
    check_video_decoder,
    decode_video,
    frame_latent,
    image_frames,
    keyframe_indices,
    latent_videos,
    read_video_results,
    run_video_step,
    video_metrics,
)
from cvvae.profile import read_profile

ROOT = Path(__file__).resolve().parents[1]
LATENTS = 10  # two whole videos of 4 latents, and 2 left over


@pytest.fixture(scope="module")
def runs(image_vae_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs folder with two inflated CV-VAEs: ``inflated`` (as released: GroupNorm over all frames, with a
    training run's identity file) and ``per_frame`` (per-frame GroupNorm, temporal attention off: each frame
    ``4j`` is exactly the image-mode decoding of latent ``j``)."""
    from diffusers import AutoencoderKL

    from cvvae.models.inflate import inflate_from_image_vae

    folder = tmp_path_factory.mktemp("runs")
    vae = AutoencoderKL.from_pretrained(image_vae_dir)
    inflate_from_image_vae(vae).save_pretrained(folder / "inflated" / "final")
    (folder / "inflated" / "run_identity.json").write_text(json.dumps({"seed": 0, "train": {"lr": 1e-4}}))
    inflate_from_image_vae(vae, temporal_attention_init="zero", norm_per_frame=True).save_pretrained(
        folder / "per_frame" / "final"
    )
    return folder


@pytest.fixture(scope="module")
def latents_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    latents = torch.randn(LATENTS, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    path = tmp_path_factory.mktemp("generative") / "latents.safetensors"
    return save_latents(path, latents, {"seed": 0, "units": "image VAE latents"})


def _profile(tmp_path: Path, image_vae_dir: str) -> Path:
    profile = read_profile(ROOT / "config" / "ci.yaml")
    profile["data"] = {"root": str(tmp_path)}
    profile["ldm"] = {"image_vae_path": image_vae_dir}
    config = tmp_path / "ci.yaml"
    config.write_text(yaml.safe_dump(profile))
    return config


def test_keyframes_are_every_fourth_frame_and_each_frame_belongs_to_its_group() -> None:
    assert keyframe_indices(4) == [0, 4, 8, 12]
    assert [frame_latent(t) for t in range(13)] == [0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]


def test_the_video_step_writes_metrics_strips_and_the_decoder_identity(
    image_vae_dir: str, runs: Path, latents_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "generative"
    out.mkdir()
    (out / "latents.safetensors").write_bytes(latents_file.read_bytes())
    config = _profile(tmp_path, image_vae_dir)
    decoders = ["--decoder", "inflated=cvvae:{runs}/inflated/final",
                "--decoder", f"uniform=uniform_sampling:{image_vae_dir}"]  # fmt: skip
    args = ["video", "--config", str(config), "--out", str(out), "--runs", str(runs), "--device", "cpu"]
    assert ldm_main([*args, *decoders, "--set", "ldm.video.strips=1"]) == 0
    folder = out / VIDEO
    metrics = pd.read_csv(folder / "metrics.csv")
    # 16 videos asked for (the default), 2 fit in 10 latents; one row per video and decoder.
    assert list(metrics[["decoder", "video", "first_latent"]].itertuples(index=False, name=None)) == [
        ("inflated", 0, 0), ("inflated", 1, 4), ("uniform", 0, 0), ("uniform", 1, 4),
    ]  # fmt: skip
    assert set(METRIC_COLUMNS) <= set(metrics.columns) and (metrics["frames"] == 13).all()
    assert np.isfinite(metrics[METRIC_COLUMNS].to_numpy(float)).all()
    # The uniform-sampling baseline shows the image VAE's own images at the keyframes and blends linearly.
    uniform = metrics[metrics["decoder"] == "uniform"]
    assert (uniform["keyframe_psnr"] == 100).all() and (uniform["keyframe_is_best"] == 1).all()
    assert np.allclose(uniform["frame_diff"] * 4, uniform["keyframe_diff"], rtol=0.05)
    assert np.allclose(uniform["keyframe_diff"], uniform["image_vae_frame_diff"])
    per_frame = pd.read_csv(folder / "per_frame.csv")
    assert len(per_frame) == 2 * 2 * 13 and per_frame["keyframe"].sum() == 2 * 2 * 4
    summary = pd.read_csv(folder / "summary.csv").set_index("decoder")
    assert list(summary.index) == ["inflated", "uniform"] and (summary["videos"] == 2).all()
    assert summary.loc["inflated", "spec"] == "cvvae:{runs}/inflated/final"
    meta = json.loads((folder / "inflated" / "meta.json").read_text())
    assert meta["keyframes"] == [0, 4, 8, 12] and meta["frames"] == 13 and meta["videos"] == 2
    assert meta["decoder_run_identity"] == summary.loc["inflated", "decoder_run_identity"]
    assert meta["decoder_run_identity"] and meta["image_vae"] == f"image_vae:{image_vae_dir}"
    assert json.loads((folder / "uniform" / "meta.json").read_text())["decoder_run_identity"] is None
    # Strips: the 13 frames over the image VAE's 4 images (strips=1: one per decoder).
    assert sorted(p.name for p in (folder / "inflated").glob("*.png")) == ["strip_000.png"]
    assert Image.open(folder / "inflated" / "strip_000.png").size == (13 * 32, 2 * 32 + 2)


def test_frame_4j_of_a_per_frame_cvvae_is_latent_j_decoded_alone(runs: Path, latents_file: Path) -> None:
    """Where each latent frame lands, checked on a decoder whose frames do not mix: frame 4j equals the
    CV-VAE's image-mode decoding of latent j, and no other frame is as close to it."""
    from cvvae.ldm.sample import load_latents
    from cvvae.models.zoo import load_autoencoder

    video_mode = load_autoencoder(f"cvvae:{runs}/per_frame/final")
    image_mode = load_autoencoder(f"cvvae_image:{runs}/per_frame/final")
    videos = latent_videos(load_latents(latents_file)[0], videos=2)
    images = image_frames(videos, image_mode)
    for video, own_images in zip(videos, images, strict=True):
        frames = decode_video(video_mode, video)
        row, per_frame = video_metrics(frames, own_images, video_mode.temporal_compression)
        assert frames.shape == (13, 3, 32, 32)
        assert row["keyframe_psnr_min"] > 50 and row["keyframe_is_best"] == 1
        between = [f["psnr_vs_own_latent"] for f in per_frame if not f["keyframe"]]
        assert max(between) < 40


def test_too_few_latents_and_an_image_mode_decoder_are_refused(
    image_vae_dir: str, runs: Path, tmp_path: Path
) -> None:
    from cvvae.models.zoo import load_autoencoder

    three = save_latents(tmp_path / "latents.safetensors", torch.randn(3, 4, 4, 4), {"seed": 0})
    image_vae = f"image_vae:{image_vae_dir}"
    video_spec = {"inflated": "cvvae:{runs}/inflated/final"}
    with pytest.raises(ValueError, match="one latent video needs 4: sample more"):
        run_video_step(tmp_path, video_spec, runs, LDMVideoConfig(), image_vae)
    for spec in ("cvvae_image:{runs}/inflated/final", image_vae):
        with pytest.raises(ValueError, match="is not a video model; use a video-mode spec"):
            run_video_step(tmp_path, {"bad": spec}, runs, LDMVideoConfig(), image_vae, latents_file=three)
    with pytest.raises(ValueError, match="not a latent video"):
        check_video_decoder(load_autoencoder(image_vae), latent_channels=4)
    with pytest.raises(ValueError, match="no video decoders"):
        run_video_step(tmp_path, {}, runs, LDMVideoConfig(), image_vae)
    assert not (tmp_path / VIDEO).exists()


def test_the_profile_checks_the_video_decoders(image_vae_dir: str, tmp_path: Path) -> None:
    from cvvae.profile import ProfileError, validate_profile

    profile = read_profile(ROOT / "config" / "ci.yaml")
    profile["ldm"] = {"video": {"decoders": {"dec": "cvvae:{runs}/dec/final"}, "videos": 2}}
    validate_profile(profile, notebooks_dir=ROOT / "notebooks")
    profile["ldm"] = {"video": {"decoders": {"dec": "cvvae_image:{runs}/dec/final"}}}
    with pytest.raises(ProfileError, match="ldm.video.decoders.dec: kind 'cvvae_image'"):
        validate_profile(profile, notebooks_dir=ROOT / "notebooks")
    profile["ldm"] = {"video": {"latent_frames": 1}}
    with pytest.raises(ProfileError, match="latent_frames >= 2"):
        validate_profile(profile, notebooks_dir=ROOT / "notebooks")


def test_notebook_06_shows_the_video_table_and_strip(
    image_vae_dir: str, runs: Path, latents_file: Path, tmp_path: Path
) -> None:
    import papermill

    results = tmp_path / "results"
    out = results / "generative"
    out.mkdir(parents=True)
    (out / "latents.safetensors").write_bytes(latents_file.read_bytes())
    config = LDMVideoConfig(videos=1, strips=1, decoders={"inflated": "cvvae:{runs}/inflated/final"})
    run_video_step(out, config.decoders, runs, config, f"image_vae:{image_vae_dir}")
    assert read_video_results(results).strips and read_video_results(tmp_path / "empty").missing == [NOT_RUN]
    # One run, with the video step's output; tests/test_ldm.py runs the notebook on an empty results folder,
    # where this section prints NOT_RUN.
    executed = tmp_path / "executed.ipynb"
    papermill.execute_notebook(
        str(ROOT / "notebooks" / "06_generative_compatibility.ipynb"), str(executed),
        parameters={"profile": "ci", "config_path": str(_profile(tmp_path, image_vae_dir)),
                    "results_dir": str(results)},
        cwd=str(ROOT), progress_bar=False, kernel_name="python3",
    )  # fmt: skip
    text = executed.read_text()
    assert "| inflated" in text and NOT_RUN not in text
    assert (results / "tables" / "06_generative_video.csv").is_file()
    assert (results / "figures" / "06_generative_video_strip.png").is_file()
