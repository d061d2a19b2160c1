"""Validation PSNR over steps of every run: the tidy table, the figure, the Convergence section."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cvvae import report, training_curves

STEPS = [0, 100, 200, 300, 400, 500]
# Converged: ends above its start and gains <= 0.2 dB over the last 20% of its steps.
CONVERGED = [19.0, 19.8, 20.2, 20.4, 20.5, 20.55]
# Not converged: still climbing steeply at the end.
IMPROVING = [19.0, 19.2, 19.4, 19.7, 20.1, 20.9]


def write_log(results: Path, folder: str, run: str, psnr: list[float]) -> Path:
    path = results / folder / run / "val_metrics.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"step": STEPS[: len(psnr)], "psnr_video": psnr, "latent_mse": 0.1}).to_csv(
        path, index=False
    )
    return path


@pytest.fixture
def results(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    write_log(results, "runs", "dec", CONVERGED)
    write_log(results, "runs_meta", "dec_seed1", [v + 0.1 for v in CONVERGED])  # a committed copy only
    write_log(results, "runs", "enc", IMPROVING)
    write_log(results, "runs_meta", "enc", CONVERGED)  # runs/ wins over the committed copy
    write_log(results, "runs", "image_vae", [10.0, 15.0, 18.0, 19.0, 19.5, 19.55])
    (results / "runs" / "inflated").mkdir()  # a run folder without a validation log
    return results


def test_seed_runs_belong_to_their_variant() -> None:
    assert training_curves.variant_of("dec_seed2") == ("dec", 2)
    assert training_curves.variant_of("dec_first") == ("dec_first", 0)
    assert training_curves.variant_of("image_vae") == ("image_vae", 0)


def test_logs_come_from_runs_then_runs_meta_sorted(results: Path) -> None:
    logs = training_curves.find_logs(results)
    assert list(logs) == ["dec", "dec_seed1", "enc", "image_vae"]
    assert logs["enc"] == results / "runs" / "enc" / "val_metrics.csv"
    assert logs["dec_seed1"].parent.parent.name == "runs_meta"


def test_the_table_has_every_step_of_every_run_with_its_status(results: Path) -> None:
    df = training_curves.curves_table(results)
    assert list(df.columns) == ["run", "step", "psnr_video", "converged"]
    assert len(df) == 4 * len(STEPS)
    enc = df[df["run"] == "enc"]
    assert enc["psnr_video"].tolist() == IMPROVING  # from runs/, not runs_meta/
    converged = df.groupby("run")["converged"].first().to_dict()
    assert converged == {"dec": True, "dec_seed1": True, "enc": False, "image_vae": True}


def test_the_figure_and_the_table_are_written(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    curves = training_curves.write_training_curves(results, out)
    assert curves.figure == out / "figures" / "validation_psnr.png"
    assert curves.figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(curves.table)
    assert table.equals(training_curves.curves_table(results))
    assert table.loc[table["run"] == "enc", "converged"].eq(False).all()
    assert [s.run for s in curves.statuses] == ["dec", "dec_seed1", "enc", "image_vae"]
    assert "still improving" in next(s.reason for s in curves.statuses if s.run == "enc")
    first = curves.figure.read_bytes()
    training_curves.write_training_curves(results, out)
    assert curves.figure.read_bytes() == first  # deterministic: same logs, same bytes


def test_without_logs_there_is_no_figure_and_a_clear_message(tmp_path: Path) -> None:
    results = tmp_path / "results"
    (results / "runs" / "inflated").mkdir(parents=True)
    curves = training_curves.write_training_curves(results)
    assert curves.figure is None and curves.table is None and curves.statuses == []
    assert "No validation logs" in curves.message
    assert not (results / "figures").exists() and not (results / "tables").exists()
    section = "\n".join(report.convergence_section(results))
    assert "## Convergence" in section and "No validation logs" in section


def test_the_report_links_the_figure_under_convergence(
    results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the Convergence section is under test: no profile validation (slow imports), no verdicts.
    monkeypatch.setattr(report, "load_profile", lambda path: {"profile": "p", "description": "d"})
    monkeypatch.setattr(report, "claims_section", lambda *args: [])
    cfg = tmp_path / "p.yaml"
    text = report.build_report(cfg, results)
    section = text[text.index("## Convergence") :].split("\n## ")[0]
    assert "- enc: not converged (still improving" in section
    assert "- dec: converged" in section
    assert "figures/validation_psnr.png" in section and "tables/validation_curves.csv" in section
    assert text.count("figures/validation_psnr.png") == 1  # not listed again among the notebooks' figures
    assert (results / "figures" / "validation_psnr.png").is_file()


def test_the_report_says_when_a_run_folder_replaces_another_runs_record(tmp_path: Path, capsys) -> None:
    from cvvae.report import copy_run_meta

    run, meta = tmp_path / "runs" / "dec", tmp_path / "runs_meta" / "dec"
    for folder, lr in ((run, 1e-4), (meta, 4e-5)):
        folder.mkdir(parents=True)
        (folder / "run_identity.json").write_text(json.dumps({"train": {"lr": lr}}))
        (folder / "val_metrics.csv").write_text(f"step,psnr_video\n0,{lr}\n")
    assert copy_run_meta(tmp_path) == ["dec"]
    assert "recorded another run of dec" in capsys.readouterr().err
    assert (meta / "run_identity.json").read_text() == (run / "run_identity.json").read_text()
    assert copy_run_meta(tmp_path) == ["dec"]  # the same run again: nothing to say
    assert capsys.readouterr().err == ""
