"""The paper's numbers as data, side-by-side tables, the report and the notebook helpers."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
import pytest

from cvvae import notebook_utils as nu
from cvvae import report, tables


def test_paper_tables_have_complete_grids() -> None:
    for name, table in tables.PAPER_TABLES.items():
        df = table.frame()
        assert not df.empty, name
        # every row has the same (dataset, metric) cells, and every row id has a printed label
        cells = df.groupby("row").apply(lambda g: tuple(zip(g["dataset"], g["metric"], strict=True)))
        assert cells.nunique() == 1, name
        assert set(df["row"]) == set(table.rows), name
        assert not df.duplicated(["row", "dataset", "metric"]).any(), name


def test_transcribed_values_spot_check() -> None:
    # Table 1, Ours (2D+3D), WebVid PSNR; Table 7 Random COCO LPIPS; Table 8 CVVAE-SD3 WebVid SSIM
    assert tables.paper_value("table1", "cvvae_2d3d", "webvid_val", "psnr") == 28.5
    assert tables.paper_value("table7", "random", "coco_val", "lpips") == 0.138
    assert tables.paper_value("table8", "cvvae_sd3", "webvid_val", "ssim") == 0.899
    assert math.isnan(tables.paper_value("table6", "none", "coco_val", "psnr"))
    with pytest.raises(KeyError, match="known tables"):
        tables.paper_frame("table99")


def test_grid_rejects_wrong_number_of_values() -> None:
    with pytest.raises(ValueError, match="expected 6 numbers"):
        tables._grid({"x": [1.0, 2.0]}, ("a", "b"), ("psnr", "ssim", "lpips"))


def _ours() -> pd.DataFrame:
    return pd.DataFrame(
        [
            ("image_vae", "image", "psnr", 27.0, "p"),
            ("image_vae", "video", "lpips_alex", 0.10, "p"),
            ("cvvae", "video", "psnr", 28.0, "p"),
            ("inflated", "video", "psnr", 20.0, "p"),
            ("cvvae", "video", "lpips_vgg", float("nan"), "p"),
        ],
        columns=["row", "dataset", "metric", "value", "protocol"],
    )


def test_side_by_side_joins_and_signs() -> None:
    out = tables.side_by_side(
        _ours(),
        "table1",
        {"image_vae": "vae_sd21", "cvvae": "cvvae_2d3d", "inflated": None},
        {"image": "coco_val", "video": "webvid_val"},
    )
    by = out.set_index(["row", "dataset", "metric"])
    assert by.loc[("image_vae", "image", "psnr"), "paper"] == 26.6
    assert by.loc[("image_vae", "image", "psnr"), "delta"] == pytest.approx(0.4)
    assert bool(by.loc[("image_vae", "image", "psnr"), "better"]) is True
    # LPIPS is lower-is-better and our backbone-specific metric matches the paper's generic LPIPS
    assert by.loc[("image_vae", "video", "lpips_alex"), "paper"] == 0.145
    assert bool(by.loc[("image_vae", "video", "lpips_alex"), "better"]) is True
    assert bool(by.loc[("cvvae", "video", "psnr"), "better"]) is False
    # no paper row, or no value of ours: no delta, no verdict
    assert math.isnan(by.loc[("inflated", "video", "psnr"), "paper"])
    assert pd.isna(by.loc[("inflated", "video", "psnr"), "better"])
    assert pd.isna(by.loc[("cvvae", "video", "lpips_vgg"), "delta"])
    assert list(out.columns)[-1] == "protocol"
    assert list(dict.fromkeys(out["row"])) == ["image_vae", "cvvae", "inflated"]  # caller's order kept
    compact = tables.compact(out)
    assert compact.loc[compact["model"] == "image_vae", "image psnr"].item() == "27.00 (26.60)"
    assert compact.loc[compact["model"] == "inflated", "video psnr"].item() == "20.00"


def test_side_by_side_requires_every_row_mapped() -> None:
    with pytest.raises(ValueError, match="row_map"):
        tables.side_by_side(_ours(), "table1", {"image_vae": "vae_sd21"}, {"image": "coco_val"})
    with pytest.raises(ValueError, match="long form"):
        tables.side_by_side(pd.DataFrame({"row": ["a"]}), "table1", {"a": None}, {})


def test_write_table_markdown_shows_na(tmp_path) -> None:
    df = pd.DataFrame({"model": ["a", "b"], "psnr": [30.123456, float("nan")]})
    csv = tables.write_table(df, tmp_path, "t", caption="Cap", notes=["note one"])
    text = (tmp_path / "t.md").read_text()
    assert csv.is_file() and "**Cap**" in text and "n/a" in text and "- note one" in text
    assert pd.read_csv(csv)["psnr"].iloc[0] == pytest.approx(30.123456)


def test_wide_keeps_order() -> None:
    w = tables.wide(_ours().rename(columns={"value": "ours"}))
    assert list(w.index) == ["image_vae", "cvvae", "inflated"]
    assert list(w.columns)[:2] == ["image/psnr", "video/lpips_alex"]


def _fake_results(root, profile: str = "t") -> tuple:
    import yaml

    # a complete profile (the ci one) with this test's name and models
    cfg = yaml.safe_load((Path(__file__).parents[1] / "config" / "ci.yaml").read_text())
    cfg.update(profile=profile, description="test profile")
    cfg["evaluate"] = {
        "matrix": {"video": ["m1", "m2"], "image": ["m1"]},
        "models": {"m1": "image_vae:m1", "m2": "image_vae:m2"},
    }
    (root / "config").mkdir()
    (root / "Snakefile").write_text("")
    (root / "cvvae").mkdir()
    cfg_path = root / "config" / f"{profile}.yaml"

    cfg_path.write_text(yaml.safe_dump(cfg))
    results = root / "results" / profile
    for model, psnr in [("m1", [20.0, 22.0]), ("m2", [30.0, 31.0])]:
        d = results / "eval" / "video" / model
        d.mkdir(parents=True)
        pd.DataFrame({"clip": ["c0", "c1"], "psnr": psnr, "ssim": [0.5, 0.7]}).to_csv(
            d / "per_clip.csv", index=False
        )
        pd.DataFrame({"clip": ["c0"] * 3, "frame": [0, 1, 2], "psnr": psnr + [psnr[0]]}).to_csv(
            d / "per_frame.csv", index=False
        )
    run = results / "runs" / "dec"
    run.mkdir(parents=True)
    pd.DataFrame({"step": [0, 10], "latent_mse": [1.0, 0.5]}).to_csv(run / "val_metrics.csv", index=False)
    (run / "config.yaml").write_text("seed: 0\n")
    (run / "model.safetensors").write_bytes(b"x")
    return cfg_path, results


def test_study_helpers_summarise_and_mark_missing(tmp_path, monkeypatch) -> None:
    cfg_path, results = _fake_results(tmp_path)
    monkeypatch.chdir(tmp_path / "results")  # open_study moves to the repository root
    study = nu.open_study("t", "config/t.yaml", "results/t")
    summary = nu.metrics_table(study, "video", ["m1", "m2"], ["psnr", "lpips_alex"])
    assert summary["psnr"].tolist() == [21.0, 30.5]
    assert summary["clips"].tolist() == [2, 2]
    assert summary["lpips_alex"].isna().all()  # not measured -> NaN, printed n/a
    empty = nu.metrics_table(study, "image", ["m1"], ["psnr"])
    assert empty.empty and any("image/m1" in m for m in study.missing)
    curve = nu.per_frame_curve(study, "video", ["m1"])
    assert curve["value"].tolist() == [20.0, 22.0, 20.0]
    history = nu.alignment_history(study, ["dec", "absent"])
    assert history[history["metric"] == "latent_mse"]["value"].tolist() == [1.0, 0.5]
    assert any("run absent" in m for m in study.missing)
    comp = nu.comparison_table(
        study, "table1", {"m1": "vae_sd21", "m2": None}, {"video": "webvid_val"}, ["psnr"]
    )
    assert comp.set_index("row").loc["m1", "paper"] == 28.9


def test_report_assembles_tables_figures_and_run_meta(tmp_path, monkeypatch) -> None:
    cfg_path, results = _fake_results(tmp_path)
    monkeypatch.chdir(tmp_path)
    tables.write_table(
        pd.DataFrame({"a": [1.0]}), results / "tables", "01_reconstruction_table1", caption="T1"
    )
    (results / "figures").mkdir()
    (results / "figures" / "03_per_frame_psnr.png").write_bytes(b"png")
    (results / "benchmarks").mkdir()
    (results / "benchmarks" / "train_dec.tsv").write_text("s\th:m:s\tmax_rss\n12.5\t0:00:12\t100\n")
    text = report.build_report(cfg_path, results)
    assert "**T1**" in text and "figures/03_per_frame_psnr.png" in text
    assert "train_dec" in text and "12.5" in text
    assert (results / "runs_meta" / "dec" / "val_metrics.csv").is_file()
    assert not (results / "runs_meta" / "dec" / "model.safetensors").exists()
    assert report.run(type("A", (), {"config": cfg_path, "results": results})()) == 0
    assert (results / "README.md").read_text() == report.build_report(cfg_path, results)


def test_report_includes_the_study_notes_after_the_verdicts(tmp_path, monkeypatch) -> None:
    cfg_path, results = _fake_results(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert "How this study was run" not in report.build_report(cfg_path, results)
    (results / "NOTES.md").write_text("## How this study was run\n\nOn one GPU.\n")
    text = report.build_report(cfg_path, results)
    assert text.index("## Claim-by-claim verdict") < text.index("## How this study was run")


def test_regenerate_command_follows_the_profile_kind() -> None:
    assert report.regenerate_command({"profile": "gpu", "workflow": {"gpu": True}}) == (
        "snakemake --workflow-profile profiles/gpu --config profile=gpu"
    )
    cpu_command = report.regenerate_command({"profile": "ci", "workflow": {"gpu": False}})
    assert cpu_command == "snakemake --cores all --config profile=ci"


def test_the_wall_time_is_measured_after_a_run_and_read_back_from_a_checkout(tmp_path) -> None:
    results = tmp_path / "results"
    (results / "logs").mkdir(parents=True)
    (results / "runs").mkdir()
    times = pd.DataFrame({"step": ["train_a", "train_b"], "seconds": [100.0, 50.0], "max_rss_mb": [1.0, 1.0]})
    for step, end in [("train_a", 1_000.0), ("train_b", 1_200.0)]:
        log = results / "logs" / f"{step}.log"
        log.write_text("")
        os.utime(log, (end, end))
    assert report.recorded_elapsed(results, times) == 1_200.0 - 900.0  # measured, then recorded
    (results / "runs").rmdir()  # a fresh checkout: no runs, file times reset
    for step in ("train_a", "train_b"):
        os.utime(results / "logs" / f"{step}.log", (5_000.0, 5_000.0))
    assert report.recorded_elapsed(results, times) == 300.0
