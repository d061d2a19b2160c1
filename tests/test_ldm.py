"""Latent diffusion model: the ldm section is validated, training resumes exactly, a changed config is
refused, the scaling factor is 1/std, and sampling -> decoding -> scoring runs end to end on tiny models."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from diffusers import AutoencoderKL
from PIL import Image

from cvvae import cli
from cvvae.ldm.__main__ import main as ldm_main
from cvvae.ldm.config import LDMSampleConfig, LDMScoreConfig, resolve_ldm_config
from cvvae.ldm.decode import GRIDS, decode_to_folder, read_pngs
from cvvae.ldm.models import load_model
from cvvae.ldm.sample import load_latents, sample_latents
from cvvae.ldm.score import score_features, score_folder
from cvvae.ldm.train import LDMTrainer, train_ldm
from cvvae.profile import ProfileError, read_profile, validate_profile
from cvvae.train.run_identity import RunConfigChanged

ROOT = Path(__file__).resolve().parents[1]
TINY_UNET = {
    "block_out_channels": [8, 16],
    "layers_per_block": 1,
    "norm_num_groups": 4,
    "attention_head_dim": 4,
}


@pytest.fixture(scope="module")
def image_vae_dir(tmp_path_factory) -> str:
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=[8, 8, 16, 16], down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=1, latent_channels=4, norm_num_groups=4,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("image_vae") / "final"
    vae.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A manifest of small coloured PNGs: 6 training and 5 held-out images."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    rows = []
    for index in range(11):
        split = "train" if index < 6 else "val"
        coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((40, 40), Image.BICUBIC).save(root / f"img{index}.png")
        rows.append({"path": f"img{index}.png", "kind": "image", "split": split})
    with (root / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ["path", "kind", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def _profile(image_vae_dir: str, data_root: str = "/nonexistent", **train: object) -> dict:
    settings = {"steps": 4, "batch_size": 2, "resolution": 32, "log_every": 1, "ckpt_every": 2,
                "warmup_steps": 1, "synthetic_data": True, "scaling_images": 4, **train}  # fmt: skip
    return {"seed": 0, "data": {"root": data_root},
            "ldm": {"image_vae_path": image_vae_dir, "model": TINY_UNET, "train": settings}}  # fmt: skip


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    unet, _, _ = load_model(run_dir / "final")
    return unet.state_dict()


def test_the_ldm_section_is_checked_key_by_key_in_a_complete_profile(image_vae_dir) -> None:
    base = read_profile(ROOT / "config" / "ci.yaml")
    good = copy.deepcopy(base) | {
        "ldm": {"model": TINY_UNET, "decoders": {"cv": "cvvae_image:{runs}/dec/final"}}
    }
    validate_profile(good, notebooks_dir=ROOT / "notebooks")
    for change, expected in (
        ({"train": {"stepz": 3}}, "stepz"),
        ({"model": {"blocks": 2}}, "ldm.model: unknown key"),
        ({"model": {"in_channels": 3}}, "derived from the image VAE"),
        ({"decoders": {"video": "cvvae:{runs}/dec/final"}}, "does not decode one latent image"),
        ({"sample": {"scheduler": "euler"}}, "not one of"),
    ):
        bad = copy.deepcopy(base) | {"ldm": change}
        with pytest.raises(ProfileError, match=expected):
            validate_profile(bad, notebooks_dir=ROOT / "notebooks")


def test_an_interrupted_and_resumed_run_matches_an_uninterrupted_one(image_vae_dir, tmp_path) -> None:
    run = resolve_ldm_config(_profile(image_vae_dir))
    whole = train_ldm(run, tmp_path / "whole", device="cpu")
    first = train_ldm(run, tmp_path / "split", stop_after=2, device="cpu")
    assert first["interrupted"] and first["step"] == 2 and not (tmp_path / "split" / "final").exists()
    second = train_ldm(run, tmp_path / "split", device="cpu")
    assert second["resumed"] and second["step"] == 4 and whole["step"] == 4
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = list(csv.DictReader((tmp_path / "split" / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3] and all(np.isfinite(float(r["loss"])) for r in rows)
    info = json.loads((tmp_path / "split" / "final" / "ldm.json").read_text())
    assert info["scaling_factor"] == whole["scaling_factor"] and info["step"] == 4 and info["ema"]


def test_a_changed_config_is_refused_and_restart_trains_afresh(image_vae_dir, tmp_path) -> None:
    train_ldm(resolve_ldm_config(_profile(image_vae_dir, steps=2)), tmp_path / "run", device="cpu")
    changed = resolve_ldm_config(_profile(image_vae_dir, steps=2, lr=3e-4))
    with pytest.raises(RunConfigChanged, match="lr"):
        train_ldm(changed, tmp_path / "run", device="cpu")
    assert not train_ldm(changed, tmp_path / "run", device="cpu", restart=True)["resumed"]
    # Bookkeeping does not change a run: it continues (here: nothing left to train).
    same = resolve_ldm_config(_profile(image_vae_dir, steps=2, lr=3e-4, log_every=5))
    assert train_ldm(same, tmp_path / "run", device="cpu")["resumed"]


def test_the_scaling_factor_is_one_over_the_latent_std_or_the_configured_value(
    image_vae_dir, dataset
) -> None:
    run = resolve_ldm_config(_profile(image_vae_dir, str(dataset), synthetic_data=False, scaling_images=6))
    trainer = LDMTrainer(run, "unused", device="cpu")
    trainer.compute_scaling_factor()
    from cvvae.ldm.data import centre_crops

    images = centre_crops(run.data, "train", 32, 6)
    dist = trainer.vae.encode(images).latent_dist
    noise = torch.randn(dist.mean.shape, generator=torch.Generator().manual_seed(run.seed))
    expected = 1 / (dist.mean + dist.std * noise).flatten().std().item()  # SD's scale_by_std, one batch
    assert trainer.scaling_factor == pytest.approx(expected, rel=1e-5)
    assert "6 training images" in trainer.scaling_source
    fixed = LDMTrainer(resolve_ldm_config(_profile(image_vae_dir, scaling_factor=0.18215)), "unused", "cpu")
    fixed.compute_scaling_factor()
    assert fixed.scaling_factor == 0.18215 and fixed.scaling_source == "configured"


def test_sampling_is_seeded_and_independent_of_the_batch_size(image_vae_dir, tmp_path) -> None:
    train_ldm(resolve_ldm_config(_profile(image_vae_dir, steps=1)), tmp_path / "run", device="cpu")
    unet, scheduler, info = load_model(tmp_path / "run" / "final")
    for kind in ("ddim", "dpm_solver"):
        one = sample_latents(unet, scheduler, info, LDMSampleConfig(4, 3, kind, 2, 4), progress=False)
        two = sample_latents(unet, scheduler, info, LDMSampleConfig(4, 3, kind, 2, 3), progress=False)
        other = sample_latents(unet, scheduler, info, LDMSampleConfig(4, 4, kind, 2, 4), progress=False)
        assert one.shape == (4, 4, 4, 4) and torch.isfinite(one).all()
        assert torch.allclose(one, two, atol=1e-5) and not torch.allclose(one, other)


def _stand_in_features(images: torch.Tensor) -> np.ndarray:
    """A tiny feature network: mean colour of each cell of a 2x2 grid plus per-channel contrast (15-d)."""
    x = images.float() / 255
    cells = torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)
    return torch.cat([cells, x.std(dim=(2, 3))], dim=1).double().numpy()


def test_end_to_end_train_sample_decode_score_and_the_notebook(image_vae_dir, dataset, tmp_path) -> None:
    from cvvae.models.inflate import inflate_from_image_vae
    from cvvae.models.zoo import load_autoencoder

    # Train on the manifest's images through the CLI (a complete profile: ci.yaml with an ldm section).
    profile = read_profile(ROOT / "config" / "ci.yaml")
    profile["data"] = {"root": str(dataset)}
    profile["ldm"] = _profile(image_vae_dir, synthetic_data=False, steps=2, scaling_images=4)["ldm"]
    config = tmp_path / "ci.yaml"
    config.write_text(yaml.safe_dump(profile))
    assert cli.main(["train-ldm", "--config", str(config), "--out", str(tmp_path / "run")]) == 0
    out = tmp_path / "generative"
    common = [
        "--config",
        str(config),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--set",
        "ldm.score.grid_samples=4",
    ]
    sampling = [
        "--set",
        "ldm.sample.num_samples=8",
        "--set",
        "ldm.sample.steps=2",
        "--set",
        "ldm.sample.batch_size=4",
    ]
    assert ldm_main(["sample", *common, *sampling, "--model", str(tmp_path / "run" / "final")]) == 0
    latents, meta = load_latents(out / "latents.safetensors")
    assert latents.shape == (8, 4, 4, 4) and torch.isfinite(latents).all()
    assert meta["seed"] == "0" and meta["scheduler"] == "ddim" and meta["steps"] == "2"
    assert float(meta["scaling_factor"]) > 0
    # Decoders: the image VAE, the same again, and an inflated CV-VAE in image mode.
    vae = AutoencoderKL.from_pretrained(image_vae_dir)
    inflate_from_image_vae(vae).save_pretrained(tmp_path / "inflated")
    decoders = {"image_vae": f"image_vae:{image_vae_dir}", "inflated": f"cvvae_image:{tmp_path / 'inflated'}"}
    for name, spec in decoders.items():
        images = decode_to_folder(out, name, load_autoencoder(spec), spec=spec, grid_samples=4)
        assert images.shape == (8, 3, 32, 32) and images.dtype == torch.uint8
    # The same image VAE again, through the command line: an identical decoder.
    assert ldm_main(["decode", *common, "--decoder", f"image_vae_copy=image_vae:{image_vae_dir}"]) == 0
    assert torch.equal(read_pngs(out / "decoded" / "inflated"), images)  # the PNGs hold the decoded bytes
    # Weights from outside the profile's runs have no run identity to record.
    assert json.loads((out / "decoded" / "image_vae_copy.json").read_text())["decoder_run_identity"] is None
    grid = Image.open(out / GRIDS / "inflated.png")
    assert grid.size == (4 * 32, 32)
    assert ldm_main(["reference", *common]) == 0
    assert len(read_pngs(out / "reference")) == 5
    table = score_folder(out, network=_stand_in_features, network_name="stand-in",
                         config=LDMScoreConfig(bootstrap=5, kid_subsets=4, kid_subset_size=4))  # fmt: skip
    assert list(table["decoder"]) == ["image_vae", "image_vae_copy", "inflated"]
    rows = table.set_index("decoder")
    assert np.isfinite(rows[["fid", "fid_lo", "fid_hi", "kid", "delta_fid"]].to_numpy(float)).all()
    copy_row = rows.loc["image_vae_copy"]
    assert copy_row["delta_fid"] == 0 and copy_row["delta_kid"] == 0 and copy_row["max_abs_diff"] == 0
    assert copy_row["psnr_vs_reference"] == np.inf
    assert copy_row["lpips_alex_vs_reference"] == 0 or "LPIPS weights not installed" in copy_row["note"]
    assert rows.loc["inflated", "samples"] == 8 and rows.loc["inflated", "feature_network"] == "stand-in"
    assert (out / "metrics.csv").is_file() and json.loads((out / "sampling.json").read_text())["seed"] == "0"
    # The feature files alone give the same table (scoring where the images and the network are not).
    assert sorted(p.name for p in (out / "features").glob("*.safetensors")) == [
        "image_vae.safetensors",
        "image_vae_copy.safetensors",
        "inflated.safetensors",
        "reference.safetensors",
    ]
    again = score_features(out, LDMScoreConfig(bootstrap=5, kid_subsets=4, kid_subset_size=4))
    pd.testing.assert_frame_equal(again, table)
    _run_notebook(tmp_path, config, out)


def _run_notebook(tmp_path: Path, config: Path, generative: Path) -> None:
    """The notebook shows the table and grid of a generative folder, and says n/a without one."""
    import papermill

    results = generative.parent
    for folder, expected in ((results, "image_vae_copy"), (tmp_path / "empty", "n/a")):
        folder.mkdir(exist_ok=True)
        executed = tmp_path / f"executed_{folder.name}.ipynb"
        papermill.execute_notebook(
            str(ROOT / "notebooks" / "06_generative_compatibility.ipynb"), str(executed),
            parameters={"profile": "ci", "config_path": str(config), "results_dir": str(folder)},
            cwd=str(ROOT), progress_bar=False, kernel_name="python3",
        )  # fmt: skip
        text = executed.read_text()
        assert expected in text
    assert (results / "tables" / "06_generative_compatibility.csv").is_file()
    assert (results / "figures" / "06_generative_compatibility_grid.png").is_file()


def test_run_identity_digest_follows_the_runs_identity_file(tmp_path: Path) -> None:
    from cvvae.train.run_identity import identity_digest as run_identity_digest

    assert run_identity_digest(tmp_path) is None  # not a training run
    (tmp_path / "run_identity.json").write_text(json.dumps({"train": {"lr": 1e-4}, "seed": 0}))
    first = run_identity_digest(tmp_path)
    (tmp_path / "run_identity.json").write_text(json.dumps({"seed": 0, "train": {"lr": 1e-4}}, indent=2))
    assert run_identity_digest(tmp_path) == first  # the settings, not their formatting
    (tmp_path / "run_identity.json").write_text(json.dumps({"train": {"lr": 4e-5}, "seed": 0}))
    assert run_identity_digest(tmp_path) != first
