"""The study notebooks' figures (cvvae.notebook_utils): units, intervals from per-clip data, seeds pooled,
axes fitted to the data, legends outside, training curves, the claims forest and reconstruction grids."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from matplotlib import pyplot as plt  # noqa: E402

from cvvae import evaluate as ev  # noqa: E402
from cvvae import notebook_utils as nu  # noqa: E402

CLIPS = [f"c{i}" for i in range(6)]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _write_eval(results: Path, protocol: str, model: str, psnr: list[float], **extra: list[float]) -> None:
    folder = results / "eval" / protocol / model
    folder.mkdir(parents=True)
    clips = CLIPS[: len(psnr)]
    pd.DataFrame({"clip_id": clips, "psnr": psnr, **extra}).to_csv(folder / "per_clip.csv", index=False)
    # per frame: frame t of clip i has psnr[i] + t (so frame-index means are easy to predict)
    rows = [
        {"clip_id": c, "frame_index": t, "psnr": p + t}
        for c, p in zip(clips, psnr, strict=True)
        for t in range(9)
    ]
    pd.DataFrame(rows).to_csv(folder / "per_frame.csv", index=False)


@pytest.fixture
def study(tmp_path: Path) -> nu.Study:
    results = tmp_path / "results" / "t"
    _write_eval(results, "video", "cvvae", [30.0, 31.0, 32.0, 33.0, 34.0, 35.0], ssim=[0.8] * 6)
    _write_eval(results, "video", "cvvae_seed1", [32.0, 33.0, 34.0, 35.0, 36.0, 37.0], ssim=[0.9] * 6)
    _write_eval(results, "video", "enc", [29.0, 30.5, 31.0, 32.0, 33.5, 34.0], ssim=[0.7] * 6)
    config = {"evaluate": {"matrix": {"video": ["cvvae", "enc", "cvvae_seed1", "svd_vae"]}}}
    return nu.Study(profile="t", config=config, results_dir=results)


def _legend_outside(fig, ax) -> bool:
    fig.canvas.draw()
    legend = ax.get_legend() or fig.legends[0]
    box = legend.get_window_extent()
    axes = ax.get_window_extent()
    return box.x0 >= axes.x1 or box.y1 <= axes.y0 or box.x1 <= axes.x0 or box.y0 >= axes.y1


def test_axis_labels_name_units() -> None:
    assert nu.axis_label("psnr") == "PSNR (dB)"
    assert "(dB)" in nu.axis_label("compat_psnr") and "(dB)" in nu.axis_label("psnr_video")
    assert "pixels" in nu.axis_label("tof") and "[0, 1]" in nu.axis_label("tde")
    assert "0-1" in nu.axis_label("ssim") and "lower is better" in nu.axis_label("lpips_alex")


def test_seed_runs_are_pooled_with_their_base_model(study: nu.Study) -> None:
    assert nu.split_seed("cvvae_seed1") == ("cvvae", 1) and nu.split_seed("cvvae") == ("cvvae", 0)
    iv = nu.clip_intervals(study.clips("video"), "psnr")
    assert list(iv["model"]) == ["cvvae", "enc"]  # svd_vae not evaluated: no row, no error
    assert {*nu.INTERVAL_COLUMNS, *nu.SEED_COLUMNS} <= set(iv.columns)
    row = iv.set_index("model").loc["cvvae"]
    assert row["seeds"] == 2 and row["clips"] == 6
    assert row["mean"] == pytest.approx(33.5)  # per clip (30+32)/2 ... (35+37)/2
    assert (row["seed_min"], row["seed_max"]) == (pytest.approx(32.5), pytest.approx(34.5))
    assert row["ci_low"] < row["mean"] < row["ci_high"]
    assert row["ci_high"] - row["ci_low"] < 4.0  # an interval of the mean, not the range of the clips
    again = nu.clip_intervals(study.clips("video"), "psnr")
    pd.testing.assert_frame_equal(iv, again)  # fixed bootstrap seed


def test_interval_figure_fits_the_axis_to_the_data_and_keeps_the_legend_outside(study: nu.Study) -> None:
    iv = nu.clip_intervals(study.clips("video"), "psnr")
    fig = nu.interval_figure(iv, "psnr", title="video")
    ax = fig.axes[0]
    assert "(dB)" in ax.get_ylabel()
    low, high = ax.get_ylim()
    assert 25.0 < low < iv["ci_low"].min() and high > iv["ci_high"].max()  # not from 0, all CIs visible
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cvvae", "enc"]  # no separate seed bars
    assert not ax.patches  # points and error bars, no bars
    assert _legend_outside(fig, ax)
    # the seed spread is drawn for the model with two seeds only
    seed_markers = [c for c in ax.collections if c.get_label() == "lowest / highest seed mean"]
    assert seed_markers and len(seed_markers[0].get_offsets()) == 1


def test_empty_data_gives_an_na_figure_not_an_error() -> None:
    empty = nu.clip_intervals(pd.DataFrame(columns=["model", "protocol"]), "psnr")
    fig = nu.interval_figure(empty, "psnr", title="nothing")
    assert any("n/a" in t.get_text() for t in fig.axes[0].texts)


def test_frame_intervals_by_index_and_by_index_mod_4(study: nu.Study) -> None:
    frames = study.frames("video")  # cvvae_seed1 included, pooled into cvvae
    by_frame = nu.frame_intervals(frames, "psnr")
    cvvae = by_frame[by_frame["model"] == "cvvae"].set_index("frame")
    assert list(cvvae.index) == list(range(9))
    assert cvvae.loc[3, "mean"] == pytest.approx(33.5 + 3)
    assert (cvvae["ci_low"] < cvvae["mean"]).all() and (cvvae["seeds"] == 2).all()
    mod = nu.frame_intervals(frames, "psnr", period=4)
    cv_mod = mod[mod["model"] == "cvvae"].set_index("frame_mod4")
    assert list(cv_mod.index) == [0, 1, 2, 3]
    # residue 0 is frames 4 and 8 (frame 0 left out): offset (4 + 8) / 2 = 6; residue 1 is frames 1, 5
    assert cv_mod.loc[0, "mean"] == pytest.approx(33.5 + 6)
    assert cv_mod.loc[1, "mean"] == pytest.approx(33.5 + 3)
    fig = nu.interval_line_figure(by_frame, "psnr", title="per frame")
    ax = fig.axes[0]
    assert "(dB)" in ax.get_ylabel() and ax.get_xlabel() == "frame index"
    assert len(ax.collections) == 2  # one CI band per model
    assert _legend_outside(fig, ax)
    fig = nu.interval_figure(mod, "psnr", x="frame_mod4", hue="model", xlabel="frame index mod 4")
    assert fig.axes[0].get_ylim()[0] > 25.0 and fig.axes[0].get_xlabel() == "frame index mod 4"


def test_validation_curves_of_every_run_in_runs_and_runs_meta(study: nu.Study) -> None:
    for folder, run, values in [
        ("runs", "dec", [10.0, 14.0, 16.0]),
        ("runs_meta", "dec_seed1", [10.5, 13.0, 15.0]),
        ("runs_meta", "none", [10.0, 12.0, 13.0]),
    ]:
        path = study.results_dir / folder / run
        path.mkdir(parents=True)
        frame = pd.DataFrame({"step": [0, 50, 100], "psnr_video": values, "latent_mse": [1.0, 0.5, 0.4]})
        frame.to_csv(path / "val_metrics.csv", index=False)
    (study.results_dir / "runs_meta" / "no_log").mkdir()
    assert nu.run_names(study) == ["dec", "dec_seed1", "none"]
    history = nu.alignment_history(study, nu.run_names(study), ["psnr_video"])
    fig = nu.validation_figure(history, "psnr_video", title="validation")
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"dec", "dec_seed1", "none"}
    assert all(line.get_xdata()[0] == 0 for line in lines.values())  # initialisation is the first point
    assert lines["dec_seed1"].get_color() == lines["dec"].get_color()  # a seed shares its base's colour
    assert lines["dec_seed1"].get_linestyle() != lines["dec"].get_linestyle()
    assert lines["none"].get_color() != lines["dec"].get_color()
    assert "(dB)" in ax.get_ylabel() and "step 0" in ax.get_xlabel()
    assert ax.get_ylim()[0] > 5.0 and _legend_outside(fig, ax)


def test_claims_forest_has_the_claims_intervals(study: nu.Study) -> None:
    forest = nu.claims_forest(study.results_dir)
    assert {"claim", "comparison", "metric", "verdict", *nu.INTERVAL_COLUMNS} <= set(forest.columns)
    row = forest[forest["claim"] == "table6_dec_vs_enc"].iloc[0]
    # seeds pooled per clip: (33.5 ... 38.5 averaged seeds) - enc, mean over the 6 clips
    cvvae = np.mean([[30, 31, 32, 33, 34, 35], [32, 33, 34, 35, 36, 37]], axis=0)
    enc = np.array([29.0, 30.5, 31.0, 32.0, 33.5, 34.0])
    assert row["mean"] == pytest.approx(float((cvvae - enc).mean()))
    assert row["ci_low"] < row["mean"] < row["ci_high"] and row["seeds"] == 2 and row["clips"] == 6
    absent = forest[forest["claim"] == "compatibility"].iloc[0]
    assert absent["verdict"] == "n/a" and np.isnan(absent["mean"])
    fig = nu.forest_figure(forest, title="claims")
    psnr_axes = [ax for ax in fig.axes if ax.get_xlabel() == "A - B: PSNR (dB)"]
    assert psnr_axes and all(ax.get_xlabel().startswith("A - B") for ax in fig.axes)
    labels = [t.get_text() for t in psnr_axes[0].get_yticklabels()]
    assert any(label.startswith("table6_dec_vs_enc: cvvae - enc") for label in labels)
    assert fig.legends and _legend_outside(fig, psnr_axes[0])


def _write_strips(folder: Path, clip: str, colour: int, decoder: bool) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    strip = np.full((8, 3 * 8, 3), colour, dtype=np.uint8)
    Image.fromarray(np.zeros_like(strip)).save(folder / nu.STRIP_GT_PNG)
    Image.fromarray(strip).save(folder / nu.STRIP_PNG)
    if decoder:
        Image.fromarray(strip[:, :16] // 2).save(folder / nu.STRIP_IMAGE_DECODER_PNG)
    info = {"clip_id": clip, "frames": [0, 4, 8], "latent_frames": [0, 2] if decoder else None}
    (folder / nu.STRIP_JSON).write_text(json.dumps(info))


def test_strip_file_names_match_the_evaluation() -> None:
    assert (nu.STRIP_JSON, nu.STRIP_GT_PNG, nu.STRIP_PNG, nu.STRIP_IMAGE_DECODER_PNG) == (
        ev.STRIP_JSON,
        ev.STRIP_GT_PNG,
        ev.STRIP_PNG,
        ev.STRIP_IMAGE_DECODER_PNG,
    )


def test_reconstruction_grid_without_strips_is_an_na_note(study: nu.Study) -> None:
    rows, frames, clip = nu.reconstruction_grid(study, "video", ["cvvae", "enc"], "cvvae")
    assert rows == [] and frames == [] and clip == ""
    fig = nu.grid_figure(rows, frames, title="grid", missing="no strips in results/t")
    assert any("n/a: no strips in results/t" in t.get_text() for t in fig.axes[0].texts)


def test_reconstruction_grid_assembles_the_models_strips(study: nu.Study) -> None:
    _write_strips(study.eval_dir("video", "cvvae"), "c0", 200, decoder=True)
    _write_strips(study.eval_dir("video", "enc"), "c1", 100, decoder=False)  # another clip: not comparable
    rows, frames, clip = nu.reconstruction_grid(study, "video", ["cvvae", "enc", "svd_vae"], "cvvae")
    assert clip == "c0" and frames == [0, 4, 8]
    assert [r.label for r in rows[:4]] == ["ground truth", "cvvae", "enc", "svd_vae"]
    assert len(rows) == 5  # the image decoder last
    assert rows[1].cells[2][0, 0, 0] == 200 and rows[0].cells[0].max() == 0
    assert all(c is None for c in rows[2].cells) and "another clip" in rows[2].note
    assert all(c is None for c in rows[3].cells) and "no strip" in rows[3].note  # in the profile, no strip
    decoder = rows[4]
    assert decoder.label.startswith("image decoder") and "cvvae" in decoder.label
    # latent frames 0 and 2 sit under frames 0 and 8; frame 4 (latent frame 1) was not written
    assert decoder.cells[0] is not None and decoder.cells[1] is None and decoder.cells[2][0, 0, 0] == 100
    fig = nu.grid_figure(rows, frames, title="grid")
    assert len(fig.axes) == 5 * 3
    assert [ax.get_title() for ax in fig.axes[:3]] == ["frame 0", "frame 4", "frame 8"]
    assert sum(t.get_text() == "n/a" for ax in fig.axes for t in ax.texts) == 3 + 3 + 1


def test_saved_plots_are_small_stable_palette_pngs(tmp_path: Path, study: nu.Study) -> None:
    from PIL import Image

    study.output_dir = tmp_path / "out"
    iv = nu.clip_intervals(study.clips("video"), "psnr")
    study.save_figure(nu.interval_figure(iv, "psnr"), "a")
    first = (study.figures_dir / "a.png").read_bytes()
    study.save_figure(nu.interval_figure(iv, "psnr"), "a")
    assert (study.figures_dir / "a.png").read_bytes() == first  # byte-stable re-runs
    assert Image.open(study.figures_dir / "a.png").mode == "P" and len(first) < 60_000
    _write_strips(study.eval_dir("video", "cvvae"), "c0", 200, decoder=True)
    rows, frames, _ = nu.reconstruction_grid(study, "video", ["cvvae"], "cvvae")
    study.save_figure(nu.grid_figure(rows, frames), "grid")
    assert Image.open(study.figures_dir / "grid.png").mode == "RGBA"  # photographs keep their colours


def test_strips_written_by_evaluate_make_a_grid(study: nu.Study) -> None:
    """End to end: `cvvae.evaluate.evaluate` writes the strips, `reconstruction_grid` reads them."""
    import torch.nn.functional as F

    from tests.test_evaluate import StandInAutoencoder, make_dataset

    reference = ev.LatentReference(
        decode_image=lambda z: F.interpolate(z, scale_factor=2, mode="nearest"), psi=lambda v: v[:, :, ::4]
    )
    data = make_dataset(2, num_frames=9, size=16)
    for model in ("cvvae", "enc"):
        folder = study.eval_dir("video", model)
        ev.evaluate(
            StandInAutoencoder(),
            data,
            folder,
            "video",
            lpips_nets=(),
            latent_reference=reference,
            progress=False,
        )
    rows, frames, clip = nu.reconstruction_grid(study, "video", ["cvvae", "enc"], "cvvae")
    assert clip == "clip0" and frames == [0, 4, 8]
    assert [r.label.split("\n")[0] for r in rows] == ["ground truth", "cvvae", "enc", "image decoder on"]
    assert all(cell is not None and cell.shape == (16, 16, 3) for row in rows for cell in row.cells)
    truth = ((data[0]["video"][:, 8].clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy()
    assert np.abs(rows[1].cells[2].astype(float) - truth).max() <= 1  # the identity model's frame 8
