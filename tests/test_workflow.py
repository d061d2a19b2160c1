"""The Snakemake workflow: every profile dry-runs; the `ci` profile runs end to end; its notebooks pass nbval.

The end-to-end test writes into a temporary results folder and then re-executes the committed, executed `ci`
notebooks (results/ci/notebooks/) against it with nbval: the cells marked ``# NBVAL_CHECK_OUTPUT`` print the
final tables, and tests/nbval_sanitize.cfg rounds their numbers so that the comparison holds across machines.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROFILES = sorted(p.stem for p in (ROOT / "config").glob("*.yaml") if p.stem != "schema")
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
pytestmark = pytest.mark.workflow


def snakemake(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_profiles_exist() -> None:
    assert {"ci", "default", "gpu", "paper"} <= set(PROFILES)


# ids are prefixed: a bare "gpu" id would read as the gpu marker and skip the test on CPU machines.
@pytest.mark.parametrize("profile", PROFILES, ids=[f"profile_{p}" for p in PROFILES])
def test_dry_run(profile: str, tmp_path: Path) -> None:
    # a fresh results folder, so that the plan does not depend on what a previous run left in results/
    result = snakemake("-n", "--cores", "2", "--config", f"profile={profile}", f"results_dir={tmp_path}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "rule report:" in result.stdout
    config = yaml.safe_load((ROOT / "config" / f"{profile}.yaml").read_text())
    for variant in config["workflow"]["variants"]:
        assert f"runs/{variant}/final/config.json" in result.stdout


def _rule_resources(dry_run_stdout: str) -> dict[str, set[str]]:
    """Rule name -> the `resources:` lines of its jobs in a dry run's output."""
    out: dict[str, set[str]] = {}
    rule = None
    for line in dry_run_stdout.splitlines():
        if line.startswith(("rule ", "localrule ")):
            rule = line.split()[1].rstrip(":")
        elif line.strip().startswith("resources:") and rule:
            out.setdefault(rule, set()).add(line.strip())
    return out


@pytest.mark.parametrize("profile", ["ci", "gpu"], ids=["profile_ci", "profile_gpu"])
def test_gpu_rules_declare_a_gpu_only_in_gpu_profiles(profile: str, tmp_path: Path) -> None:
    result = snakemake("-n", "--cores", "2", "--config", f"profile={profile}", f"results_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    resources = _rule_resources(result.stdout)
    on_gpu = yaml.safe_load((ROOT / "config" / f"{profile}.yaml").read_text())["workflow"]["gpu"]
    for rule in ["image_vae", "train", "evaluate"]:
        assert resources[rule] == {f"resources: tmpdir=/tmp, gpu={int(on_gpu)}"} or all(
            f"gpu={int(on_gpu)}" in r for r in resources[rule]
        )
    for rule in ["data", "notebook"]:
        assert not any("gpu=1" in r for r in resources.get(rule, set()))


def test_bad_profile_is_rejected_with_the_offending_key(tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "config" / "ci.yaml").read_text())
    config["workflw"] = {}
    bad = tmp_path / "ci.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--cores", "1", "--config", f"profile_file={bad}")
    assert result.returncode != 0
    assert "workflw" in result.stdout + result.stderr


def test_missing_run_is_rejected(tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "config" / "ci.yaml").read_text())
    config["workflow"]["variants"].remove("none")
    bad = tmp_path / "ci.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--cores", "1", "--config", f"profile_file={bad}")
    assert result.returncode != 0
    assert "reads run 'none'" in result.stdout + result.stderr


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebooks_are_clean_and_parameterised(notebook: str) -> None:
    book = nbformat.read(ROOT / "notebooks" / f"{notebook}.ipynb", as_version=4)
    assert book.metadata["kernelspec"]["name"] == "python3"
    assert book.metadata["language_info"]["name"] == "python"
    tagged = [c for c in book.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    assert 'profile = "default"' in tagged[0].source
    for cell in book.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{notebook}: outputs not cleared"
    assert any("# NBVAL_CHECK_OUTPUT" in c.source for c in book.cells if c.cell_type == "code")


def _nbval_copy(stored: Path, executed: Path, dest: Path) -> None:
    """The committed notebook (stored outputs) with the fresh run's injected parameters (its results dir)."""
    book = nbformat.read(stored, as_version=4)
    fresh = nbformat.read(executed, as_version=4)
    injected = [c for c in fresh.cells if "injected-parameters" in c.metadata.get("tags", [])]
    for i, cell in enumerate(book.cells):
        if "injected-parameters" in cell.metadata.get("tags", []):
            book.cells[i].source = injected[0].source
    nbformat.write(book, dest)


def test_ci_profile_end_to_end_and_nbval(tmp_path: Path) -> None:
    results = tmp_path / "results" / "ci"
    result = snakemake(
        "--cores", "all", "--nolock", "--config", "profile=ci", f"results_dir={results}", timeout=900
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    readme = (results / "README.md").read_text()
    assert "Wall time" in readme
    for notebook in NOTEBOOKS:
        assert (results / "notebooks" / f"{notebook}.ipynb").is_file()
        assert (results / "logs" / f"notebook_{notebook}.log").is_file()
    assert list((results / "tables").glob("01_*.csv")) and list((results / "figures").glob("*.png"))
    assert (results / "runs_meta" / "dec" / "config.yaml").is_file()

    stored_dir = ROOT / "results" / "ci" / "notebooks"
    if not all((stored_dir / f"{nb}.ipynb").is_file() for nb in NOTEBOOKS):
        pytest.fail(f"no committed executed ci notebooks in {stored_dir}; run the ci profile and commit them")
    check_dir = tmp_path / "nbval"
    check_dir.mkdir()
    for notebook in NOTEBOOKS:
        _nbval_copy(
            stored_dir / f"{notebook}.ipynb",
            results / "notebooks" / f"{notebook}.ipynb",
            check_dir / f"{notebook}.ipynb",
        )
    nbval = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
            "--nbval-current-env", "--nbval-sanitize-with", str(ROOT / "tests" / "nbval_sanitize.cfg"),
            "--rootdir", str(check_dir), str(check_dir),
        ],
        capture_output=True, text=True, timeout=600, cwd=check_dir,
    )  # fmt: skip
    assert nbval.returncode == 0, nbval.stdout[-6000:]
