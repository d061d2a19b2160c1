"""Trainer: the loss goes down, resume after an interruption is exact, run files are written, CLI errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL

from cvvae.models.image_vae import build_image_vae, load_image_vae
from cvvae.profile import read_profile as load_profile
from cvvae.train.config import resolve_cvvae_config, resolve_image_vae_config
from cvvae.train.models import build_video_model
from cvvae.train.schedule import warmup_cosine
from cvvae.train.trainer import Trainer, train, train_image_vae

PROFILE = Path(__file__).parent / "data" / "tiny_profile.yaml"
TINY = [
    "cvvae.train.mixture.0.resolution=16",
    "cvvae.train.mixture.1.resolution=16",
    "cvvae.train.mixture.1.num_frames=5",
    "cvvae.train.val_resolution=16",
    "cvvae.train.val_num_frames=5",
]


def _run_config(image_vae_dir: str, variant: str = "dec", extra: list[str] | None = None):
    overrides = [f"cvvae.image_vae_path={image_vae_dir}", *TINY, *(extra or [])]
    return resolve_cvvae_config(load_profile(PROFILE), variant, overrides)


def _losses(run_dir: Path) -> list[tuple[str, str, str]]:
    with (run_dir / "metrics.csv").open() as fh:
        return [(r["step"], r["loss"], r["d_loss"]) for r in csv.DictReader(fh)]


def test_a_few_steps_on_one_batch_reduce_the_loss(image_vae_dir, tmp_path) -> None:
    run = _run_config(image_vae_dir, extra=["cvvae.train.loss.disc_enabled=false"])
    image_vae = load_image_vae(run.image_vae_path)
    trainer = Trainer(run.train, run.data, 0, tmp_path, build_video_model(run, image_vae), image_vae, run)
    video = torch.rand(1, 3, 5, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    losses = [trainer.generator_step(video)["loss"] for _ in range(10)]
    assert sum(losses[-3:]) / 3 < 0.95 * losses[0]  # posterior sampling makes single steps noisy


def test_progress_lines_go_out_in_one_write_each(image_vae_dir, tmp_path, record_stdout_writes) -> None:
    run = _run_config(image_vae_dir, extra=["cvvae.train.steps=2", "cvvae.train.loss.disc_enabled=false"])
    stdout_writes = record_stdout_writes()
    train(run, tmp_path / "run")  # stderr is no terminal under pytest, so the trainer prints lines
    progress = [w for w in stdout_writes if w.startswith("step ")]
    assert [w.split()[1] for w in progress] == ["1/2", "2/2"]
    assert all(w.endswith(" steps/s\n") and w.count("\n") == 1 for w in progress)
    assert "\n" not in stdout_writes  # a newline written alone would be a line in two writes


def test_interrupted_and_resumed_run_matches_an_uninterrupted_one(image_vae_dir, tmp_path) -> None:
    run = _run_config(image_vae_dir, extra=["cvvae.train.steps=4", "cvvae.train.ckpt_every=100"])
    full = train(run, tmp_path / "full")
    assert full["step"] == 4 and not full["interrupted"]

    first = train(run, tmp_path / "split", stop_after=2)
    assert first["interrupted"] and first["step"] == 2
    second = train(run, tmp_path / "split")
    assert second["resumed"] and second["step"] == 4

    reference, resumed = _losses(tmp_path / "full"), _losses(tmp_path / "split")
    assert [r[0] for r in resumed] == ["0", "1", "2", "3"]
    assert resumed == reference  # exact equality on CPU in fp32, GAN steps included
    assert any(r[2] for r in reference)  # a discriminator step took place

    run_dir = tmp_path / "full"
    config_text = (run_dir / "config.yaml").read_text()
    assert "LPIPS" in config_text and "deviations" in config_text  # lpips: none is recorded
    assert (run_dir / "environment.json").is_file()
    assert (run_dir / "final" / "config.json").is_file()
    assert list((run_dir / "samples").glob("*.png"))
    with (run_dir / "val_metrics.csv").open() as fh:
        row = next(csv.DictReader(fh))
    assert float(row["psnr_video"]) > 0 and "psnr_image_decoder_vs_psi" in row and "latent_mse" in row
    assert len(list((run_dir / "checkpoints").glob("step-*"))) <= run.train.keep_ckpts


def test_image_vae_pretraining_saves_a_loadable_autoencoder(tmp_path) -> None:
    run = resolve_image_vae_config(
        load_profile(PROFILE), ["image_vae.train.steps=2", "image_vae.train.resolution=16"]
    )
    summary = train_image_vae(run, tmp_path)
    assert summary["step"] == 2
    vae = AutoencoderKL.from_pretrained(tmp_path / "final")
    assert list(vae.config.block_out_channels) == [8, 8, 16, 16]


def test_missing_image_vae_and_manifest_give_actionable_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="train-image-vae"):
        load_image_vae(str(tmp_path / "nowhere"))
    run = resolve_image_vae_config(
        load_profile(PROFILE), [f"data.root={tmp_path}", "image_vae.train.synthetic_data=false"]
    )
    with pytest.raises(FileNotFoundError, match="cvvae data embedded"):
        train_image_vae(run, tmp_path / "run")


def test_warmup_cosine_schedule() -> None:
    f = warmup_cosine(2, 10, 0.1)
    assert f(0) == 0.5 and f(1) == 1.0 and f(2) == 1.0
    assert f(10) == pytest.approx(0.1) and f(50) == pytest.approx(0.1)
    assert f(6) == pytest.approx(0.1 + 0.9 * 0.5)


def test_config_validation_names_valid_keys() -> None:
    profile = load_profile(PROFILE)
    with pytest.raises(ValueError, match="valid keys: .*lambda_dec"):
        resolve_cvvae_config(profile, "dec", ["cvvae.train.reg.lamda_dec=1"])
    with pytest.raises(ValueError, match="unknown variant"):
        resolve_cvvae_config(profile, "nope")
    with pytest.raises(ValueError, match="not one of"):
        resolve_cvvae_config(profile, "dec", ["cvvae.train.reg.mapping=median"])
    for name in profile["cvvae"]["variants"]:
        assert resolve_cvvae_config(profile, name).variant == name
    assert resolve_cvvae_config(profile, "svd_vae").train.kind == "svd_vae"
    assert resolve_cvvae_config(profile, "dec_noimg").train.reg.apply_dec_to_images is False


def test_a_variant_seed_overrides_the_profile_seed() -> None:
    profile = load_profile(PROFILE)
    profile["seed"] = 3
    profile["cvvae"]["variants"]["dec_seed1"] = {"seed": 1, "reg": {"lambda_dec": 1.0}}
    assert resolve_cvvae_config(profile, "dec").seed == 3
    assert resolve_cvvae_config(profile, "dec_seed1").seed == 1
    with pytest.raises(ValueError, match="seed"):
        resolve_cvvae_config(profile, "dec", ["cvvae.train.seed=one"])


def test_exponent_numbers_without_a_dot_are_numbers() -> None:
    profile = load_profile(PROFILE)
    assert resolve_cvvae_config(profile, "dec", ["cvvae.train.lr=3e-5"]).train.lr == pytest.approx(3e-5)
    with pytest.raises(ValueError, match="expected a number"):
        resolve_cvvae_config(profile, "dec", ["cvvae.train.lr=fast"])


@pytest.fixture
def fresh_accelerator_state():
    # accelerate keeps one process-wide state; a test that needs another precision starts from a clean one.
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_bf16_validation_runs_the_frozen_image_vae_under_autocast(
    image_vae_dir, tmp_path, fresh_accelerator_state
) -> None:
    # The frozen image VAE is not prepared by accelerate; bf16 latents must still decode through it.
    run = _run_config(
        image_vae_dir, extra=["cvvae.train.precision=bf16", "cvvae.train.loss.disc_enabled=false"]
    )
    image_vae = load_image_vae(run.image_vae_path)
    trainer = Trainer(run.train, run.data, 0, tmp_path, build_video_model(run, image_vae), image_vae, run)
    trainer.validation_clips = lambda: torch.rand(1, 3, 5, 16, 16) * 2 - 1  # type: ignore[method-assign]
    row = trainer.validate()
    assert row is not None and torch.isfinite(torch.tensor(row["psnr_image_decoder_vs_psi"]))


# ------------------------------------------------------------------ a run folder never pairs a new config
# with old weights


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(run_dir / "final" / "diffusion_pytorch_model.safetensors")


def test_a_changed_config_is_refused_naming_the_keys_and_restart_retrains(image_vae_dir, tmp_path) -> None:
    from cvvae.train.run_identity import RunConfigChanged

    steps = ["cvvae.train.steps=2", "cvvae.train.loss.disc_enabled=false"]
    run = _run_config(image_vae_dir, "dec", steps)
    assert train(run, tmp_path)["step"] == 2
    old = _final_weights(tmp_path)

    changed = _run_config(
        image_vae_dir, "dec", [*steps, "cvvae.train.reg.lambda_dec=0", "cvvae.train.lr=1e-2"]
    )
    with pytest.raises(RunConfigChanged, match=r"train\.lr: 0\.001 -> 0\.01.*--restart") as error:
        train(changed, tmp_path)
    assert "train.reg.lambda_dec: 1.0 -> 0.0" in str(error.value)
    assert all(torch.equal(old[k], v) for k, v in _final_weights(tmp_path).items())  # left untouched

    summary = train(changed, tmp_path, restart=True)
    assert summary["step"] == 2 and not summary["resumed"]
    assert any(not torch.equal(old[k], v) for k, v in _final_weights(tmp_path).items())
    # the workflow's choice: start afresh when the config changed, continue when it did not
    assert train(run, tmp_path, if_changed="restart")["resumed"] is False
    assert train(run, tmp_path, if_changed="restart")["resumed"] is True


def test_bookkeeping_settings_and_the_variant_name_do_not_change_a_run(image_vae_dir, tmp_path) -> None:
    steps = ["cvvae.train.steps=2", "cvvae.train.loss.disc_enabled=false"]
    train(_run_config(image_vae_dir, "dec", steps), tmp_path)
    again = _run_config(
        image_vae_dir, "dec_random", [*steps, "cvvae.train.log_every=5", "cvvae.train.ckpt_every=7"]
    )
    assert train(again, tmp_path)["resumed"]


def test_a_retrained_image_vae_changes_the_identity(image_vae_dir, tmp_path) -> None:
    from cvvae.train.run_identity import run_identity

    before = run_identity(_run_config(image_vae_dir))
    copy = tmp_path / "image_vae"
    vae = AutoencoderKL.from_pretrained(image_vae_dir)
    vae.save_pretrained(copy)
    assert run_identity(_run_config(str(copy))) == before  # same bytes elsewhere: same run
    with torch.no_grad():
        next(vae.parameters()).add_(1.0)
    vae.save_pretrained(copy)
    assert run_identity(_run_config(str(copy)))["image_vae_sha256"] != before["image_vae_sha256"]


def test_a_run_folder_without_a_recorded_config_is_not_continued(image_vae_dir, tmp_path) -> None:
    from cvvae.train.run_identity import IDENTITY_FILE, RunConfigChanged

    run = _run_config(image_vae_dir, "dec", ["cvvae.train.steps=2", "cvvae.train.loss.disc_enabled=false"])
    train(run, tmp_path)
    (tmp_path / IDENTITY_FILE).unlink()  # as left by an older version
    with pytest.raises(RunConfigChanged, match="without run_identity.json"):
        train(run, tmp_path)


def test_sigint_stops_after_the_step_with_a_checkpoint(image_vae_dir, tmp_path) -> None:
    import signal

    from cvvae.train.checkpoint import latest_checkpoint

    run = _run_config(image_vae_dir, "dec", ["cvvae.train.steps=6", "cvvae.train.ckpt_every=100",
                                            "cvvae.train.loss.disc_enabled=false"])  # fmt: skip
    image_vae = load_image_vae(run.image_vae_path)
    trainer = Trainer(run.train, run.data, 0, tmp_path, build_video_model(run, image_vae), image_vae, run)
    step = trainer.generator_step

    def interrupted_step(video):
        if trainer.step == 1:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C during the second step
        return step(video)

    trainer.generator_step = interrupted_step  # type: ignore[method-assign]
    before = signal.getsignal(signal.SIGINT)
    summary = trainer.fit()
    assert summary["interrupted"] and summary["step"] == 2
    assert latest_checkpoint(tmp_path).name == "step-00000002"
    assert signal.getsignal(signal.SIGINT) is before
    assert json.loads((tmp_path / "data_report.json").read_text())["skipped_loads"] == 0


def test_environment_names_the_cpu_and_its_math_libraries(image_vae_dir, tmp_path) -> None:
    run = _run_config(image_vae_dir, "dec", ["cvvae.train.steps=1", "cvvae.train.loss.disc_enabled=false"])
    train(run, tmp_path)
    info = json.loads((tmp_path / "environment.json").read_text())
    assert info["cpu"] and info["cpu_capability"] and info["blas"] and "onednn" in info and "openmp" in info


def test_a_checkpoint_folder_with_missing_tensors_is_refused_with_their_names(
    image_vae_dir, tmp_path
) -> None:
    from safetensors.torch import load_file, save_file

    from cvvae.models.loading import CheckpointError

    folder = tmp_path / "vae"
    AutoencoderKL.from_pretrained(image_vae_dir).save_pretrained(folder)
    weights = folder / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    dropped = sorted(tensors)[:5]
    save_file({k: v for k, v in tensors.items() if k not in dropped}, weights)
    with pytest.raises(CheckpointError, match=r"missing tensor\(s\): " + dropped[0].replace(".", r"\.")):
        load_image_vae(str(folder))


def test_unreadable_training_files_are_counted_in_the_run_folder(image_vae_dir, tmp_path) -> None:
    import numpy as np
    import pandas as pd
    from PIL import Image

    data = tmp_path / "data"
    data.mkdir()
    rows = []
    for i in range(3):
        Image.fromarray(np.full((24, 24, 3), 60 * i, dtype=np.uint8)).save(data / f"ok{i}.png")
        rows.append({"path": f"ok{i}.png", "kind": "image", "source": f"ok{i}", "split": "train"})
    (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    rows.append({"path": "broken.png", "kind": "image", "source": "broken", "split": "train"})
    manifest = pd.DataFrame(rows).assign(licence="test", frames=1, fps=0, height=24, width=24)
    manifest.to_csv(data / "manifest.csv", index=False)
    run = _run_config(
        image_vae_dir,
        "dec",
        [f"data.root={data}", "cvvae.train.synthetic_data=false", "cvvae.train.steps=4",
         "cvvae.train.loss.disc_enabled=false", "cvvae.train.val_clips=0",
         "cvvae.train.mixture=[{name: img, kind: image, resolution: 16, batch_size: 4}]"],
    )  # fmt: skip
    with pytest.warns(RuntimeWarning, match="broken.png"):
        summary = train(run, tmp_path / "run")
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert summary["skipped_loads"] == report["skipped_loads"] >= 1
    assert report["sources"]["img"]["bad_files"] == [str(data / "broken.png")]


def test_the_same_config_trains_the_same_svd_style_vae_twice(tmp_path) -> None:
    # Its temporal layers are initialised from the global generator, which must be seeded by the run.
    from safetensors.torch import load_file

    torch.manual_seed(0)
    widths = {"block_out_channels": [32, 32, 32, 32], "norm_num_groups": 8}
    wide = build_image_vae({**widths, "layers_per_block": 1, "latent_channels": 4})
    wide.save_pretrained(tmp_path / "image_vae")
    run = _run_config(str(tmp_path / "image_vae"), "svd_vae", ["cvvae.train.steps=2"])
    weights = []
    for name in ("first", "second"):
        torch.rand(7)  # whatever ran before in the process must not matter
        train(run, tmp_path / name)
        weights.append(load_file(tmp_path / name / "final" / "diffusion_pytorch_model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_experiment_trackers_receive_the_logged_rows_and_the_config(tmp_path) -> None:
    from accelerate.tracking import GeneralTracker

    class Recorder(GeneralTracker):
        name = "recorder"
        requires_logging_directory = False

        def __init__(self) -> None:
            super().__init__()
            self.config: dict = {}
            self.rows: list[tuple[int, dict]] = []

        @property
        def tracker(self):
            return self

        def store_init_configuration(self, values: dict) -> None:
            self.config = dict(values)

        def log(self, values: dict, step: int | None = None, **kwargs) -> None:
            self.rows.append((step, dict(values)))

    recorder = Recorder()
    run = resolve_image_vae_config(
        load_profile(PROFILE), ["image_vae.train.steps=3", "image_vae.train.resolution=16"]
    )
    train_image_vae(run, tmp_path, report_to=[recorder])
    assert [step for step, _ in recorder.rows] == [0, 1, 2] and all("loss" in row for _, row in recorder.rows)
    assert recorder.config["train.steps"] == 3 and recorder.config["seed"] == 0


def test_compile_settings_are_bookkeeping_and_the_mode_is_checked(image_vae_dir) -> None:
    from cvvae.train.run_identity import run_identity

    eager = run_identity(_run_config(image_vae_dir))
    graphs = ["cvvae.train.compile=true", "cvvae.train.compile_mode=reduce-overhead"]
    assert run_identity(_run_config(image_vae_dir, extra=graphs)) == eager  # same weights, same run
    with pytest.raises(ValueError, match="reduce-overhead"):
        _run_config(image_vae_dir, extra=["cvvae.train.compile_mode=fast"])
