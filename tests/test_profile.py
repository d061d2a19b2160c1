"""Strict profiles: unknown keys at any depth are refused with the valid keys named, by the loader and by
`--set`; the schema and the code name the same keys."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from cvvae import cli
from cvvae.profile import (
    ProfileError,
    apply_overrides,
    frozen_image_vae,
    load_profile,
    read_profile,
    schema,
    validate_profile,
)

ROOT = Path(__file__).resolve().parents[1]
CI = ROOT / "config" / "ci.yaml"


def _profile_with(tmp_path: Path, edit) -> Path:
    profile = yaml.safe_load(CI.read_text())
    edit(profile)
    path = tmp_path / "ci.yaml"
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    return path


PROFILES = sorted(p.stem for p in (ROOT / "config").glob("*.yaml"))


# ids are prefixed: a bare "gpu" id would read as the gpu marker and skip the test on CPU machines.
@pytest.mark.parametrize("profile", PROFILES, ids=[f"profile_{p}" for p in PROFILES])
def test_every_committed_profile_is_valid(profile: str) -> None:
    load_profile(ROOT / "config" / f"{profile}.yaml")


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("seeed=3", r"unknown key\(s\) \['seeed'\] at top level; valid keys: profile, description, seed"),
        ("data.rot=/x", r"unknown key\(s\) \['rot'\] at data; valid keys: root, manifest"),
        ("cvvae.train.stepz=3", r"unknown key\(s\) \['stepz'\]; valid keys: .*steps"),
        ("cvvae.train.loss.lpipz=none", r"lpipz.*valid keys: .*lpips"),
        ("data.embedded.clip_sise=8", r"clip_sise.*valid keys: .*clip_size"),
        ("evaluate.matrix.video=[nope]", r"evaluate.matrix.video: unknown model\(s\) \['nope'\]"),
        ("evaluate.models.x=cvvae:a?tilling=false", r"unknown option\(s\) \['tilling'\]"),
        ("notebooks.02_regularization_ablation.table6=1", r"unknown parameter\(s\) \['table6'\]"),
        ("notebooks.common.results_dir=x", r"unknown parameter\(s\) \['results_dir'\]"),
        ("protocols.video.split=val", r"unknown key\(s\) \['split'\] at protocols.video"),
        ("image_vae.model.latent_chanels=4", r"image_vae.model: unknown key\(s\) \['latent_chanels'\]"),
        ("cvvae.model.temporal_atention_init=zero", r"cvvae.model: unknown key\(s\)"),
        ("workflow.variants=[dec, nope]", r"workflow.variants: \['nope'\] are not defined"),
    ],
)
def test_unknown_keys_are_refused_at_any_depth(override: str, expected: str) -> None:
    profile = apply_overrides(read_profile(CI), [override])
    with pytest.raises(ProfileError, match=expected):
        validate_profile(profile, notebooks_dir=ROOT / "notebooks")


def test_what_the_code_accepts_the_schema_accepts() -> None:
    valid = [
        "evaluate.models.wan=diffusers_video:data/weights/wan?class_name=AutoencoderKLWan",
        "cvvae.model.temporal_attention_init=zero",
        "cvvae.model.tile_spatial_size=null",
        "data.manifest=data/m.csv",
        "protocols.video.dataset=data/real/webvid_val",
    ]
    validate_profile(apply_overrides(read_profile(CI), valid), notebooks_dir=ROOT / "notebooks")


def test_the_schema_names_the_keys_the_code_defines() -> None:
    from cvvae.data.protocols import ClipProtocol
    from cvvae.train.config import DataConfig

    properties = schema()["properties"]
    assert set(properties["data"]["properties"]) == {f.name for f in dataclasses.fields(DataConfig)} | {
        "embedded"
    }
    protocol_keys = set(properties["protocols"]["additionalProperties"]["properties"])
    assert protocol_keys == {f.name for f in dataclasses.fields(ClipProtocol)} - {"name"} | {"dataset"}


def test_a_typo_in_a_profile_fails_the_dry_run_naming_it(tmp_path: Path) -> None:
    import subprocess
    import sys

    def typo(profile: dict) -> None:
        profile["cvvae"]["train"]["stepz"] = profile["cvvae"]["train"].pop("steps")

    bad = _profile_with(tmp_path, typo)
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--config", f"profile_file={bad}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0
    assert "stepz" in result.stdout + result.stderr and "valid keys" in result.stdout + result.stderr


def test_cli_user_errors_are_one_line_with_exit_status_2(tmp_path: Path, capsys) -> None:
    code = cli.main(["train", "--config", str(CI), "--out", str(tmp_path / "run"), "--set", "seeed=3"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("cvvae train: error: ") and "seeed" in err
    assert not (tmp_path / "run").exists()  # refused before anything was written
    manifest = tmp_path / "manifest.csv"
    args = ["--model", "cvvae:/nowhere", "--protocol", "ci", "--manifest", str(manifest)]
    args += ["--out", str(tmp_path)]
    assert cli.main(["evaluate", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"manifest {manifest} not found" in err


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="seeed"):
        cli.main(["train", "--config", str(CI), "--out", str(tmp_path), "--set", "seeed=3", "--debug"])


def test_the_frozen_image_vae_is_the_pretrained_run_or_the_configured_folder() -> None:
    trained = {
        "workflow": {"train_image_vae": True},
        "cvvae": {"image_vae_path": "results/x/runs/image_vae/final"},
    }
    assert frozen_image_vae(trained).spec == "image_vae:results/x/runs/image_vae/final"
    # the workflow passes its runs folder, which follows an overridden results_dir
    assert frozen_image_vae(trained, "/tmp/r/runs") == ("/tmp/r/runs/image_vae/final", None)
    released = {
        "workflow": {"train_image_vae": False},
        "cvvae": {"image_vae_path": "w/sd", "image_vae_subfolder": "vae"},
    }
    location = frozen_image_vae(released, "/tmp/r/runs")
    assert location.spec == "image_vae:w/sd?subfolder=vae" and location.folder == Path("w/sd/vae")
    assert frozen_image_vae({}).spec is None
