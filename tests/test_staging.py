"""A failed job leaves earlier results as they were: staged outputs, the notebook runner, the report."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from cvvae import report
from cvvae.notebook_run import run_notebook
from cvvae.staging import STAGING_DIR, staged_results

ROOT = Path(__file__).resolve().parents[1]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_staged_files_replace_the_results_only_on_success(tmp_path: Path) -> None:
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "t.csv").write_text("old")
    with pytest.raises(RuntimeError), staged_results(tmp_path, "job") as staging:
        (staging / "tables").mkdir()
        (staging / "tables" / "t.csv").write_text("half")
        raise RuntimeError("the job failed")
    assert (tmp_path / "tables" / "t.csv").read_text() == "old"
    assert not (tmp_path / STAGING_DIR).exists()
    with staged_results(tmp_path, "job") as staging:
        (staging / "tables").mkdir()
        (staging / "tables" / "t.csv").write_text("new")
        (staging / "figures").mkdir()
        (staging / "figures" / "f.png").write_bytes(b"png")
    assert (tmp_path / "tables" / "t.csv").read_text() == "new" and (tmp_path / "figures" / "f.png").is_file()
    assert not (tmp_path / STAGING_DIR).exists()


@pytest.fixture
def ci_results(tmp_path: Path) -> Path:
    """A copy of the committed ci results (inputs and outputs of the notebooks)."""
    results = tmp_path / "results" / "ci"
    shutil.copytree(ROOT / "results" / "ci", results)
    return results


def test_a_failing_notebook_leaves_its_tables_figures_and_executed_copy(ci_results: Path) -> None:
    profile = yaml.safe_load((ROOT / "config" / "ci.yaml").read_text())
    # table6/7 are saved first, then the notebook fails on a parameter that is not a list
    profile["notebooks"]["02_regularization_ablation"]["image_question_rows"] = 7
    before = _snapshot(ci_results)
    with pytest.raises(Exception, match="image_question_rows|not iterable"):
        run_notebook("02_regularization_ablation", ROOT / "config" / "ci.yaml", ci_results, profile, ROOT)
    assert _snapshot(ci_results) == before


def test_a_successful_notebook_publishes_its_outputs(ci_results: Path) -> None:
    profile = yaml.safe_load((ROOT / "config" / "ci.yaml").read_text())
    table = ci_results / "tables" / "04_svd_comparison.csv"
    table.unlink()
    (ci_results / "notebooks" / "04_svd_comparison.ipynb").unlink()
    run_notebook("04_svd_comparison", ROOT / "config" / "ci.yaml", ci_results, profile, ROOT)
    assert table.read_bytes() == (ROOT / "results" / "ci" / "tables" / "04_svd_comparison.csv").read_bytes()
    assert (ci_results / "notebooks" / "04_svd_comparison.ipynb").is_file()
    assert not (ci_results / STAGING_DIR).exists()


def test_a_failing_report_leaves_the_readme_and_the_claims(ci_results: Path, monkeypatch) -> None:
    before = _snapshot(ci_results)

    def broken(*args, **kwargs):
        raise RuntimeError("a table could not be read")

    monkeypatch.setattr(report, "step_times", broken)  # fails after the claims tables were written
    args = type("Args", (), {"config": ROOT / "config" / "ci.yaml", "results": ci_results})()
    with pytest.raises(RuntimeError):
        report.run(args)
    assert _snapshot(ci_results) == before
