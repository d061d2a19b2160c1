"""The Snakemake workflow: every profile dry-runs (or names what it is missing); the `ci` profile runs end to
end; its notebooks pass nbval on committed inputs.

What is machine-independent is tested exactly, what is not is tested for sanity:

- the end-to-end `ci` run trains tiny models on the CPU, and training drifts between CPUs in the last digits
  (BLAS kernels, SIMD width), so it is checked for structure and plausible, finite numbers only;
- the notebooks are re-executed with nbval on *committed* inputs (results/ci/eval/ and runs_meta/: the
  evaluation tables and run logs of the committed ci run), so their printed tables are a function of those
  files alone and are compared exactly with the committed executed notebooks (results/ci/notebooks/).
  After changing a notebook or its inputs, regenerate the committed copies with
  `cvvae notebook --config config/ci.yaml --results results/ci`.
"""

from __future__ import annotations

import json
import os
import shutil
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
# Profiles that run on the embedded data alone (the paper profile needs real weights and datasets).
OFFLINE_PROFILES = [p for p in PROFILES if p != "paper"]


@pytest.mark.parametrize("profile", OFFLINE_PROFILES, ids=[f"profile_{p}" for p in OFFLINE_PROFILES])
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


def _rule_inputs(dry_run_stdout: str, rule: str) -> dict[str, list[str]]:
    """Output -> inputs of every job of ``rule`` in a dry run's output."""
    out: dict[str, list[str]] = {}
    current = None
    inputs: list[str] = []
    for line in dry_run_stdout.splitlines():
        if line.startswith(("rule ", "localrule ")):
            current = line.split()[1].rstrip(":")
            inputs = []
        elif current == rule and line.strip().startswith("input:"):
            inputs = line.split(":", 1)[1].strip().split(", ")
        elif current == rule and line.strip().startswith("output:"):
            out[line.split(":", 1)[1].strip().split()[0]] = inputs
    return out


def test_only_the_latent_alignment_notebook_waits_for_the_training_runs(tmp_path: Path) -> None:
    # 05 plots the validation logs of the runs; the other notebooks read the evaluation tables alone.
    result = snakemake("-n", "--cores", "1", "--config", "profile=ci", f"results_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    variants = yaml.safe_load((ROOT / "config" / "ci.yaml").read_text())["workflow"]["variants"]
    runs = {f"{tmp_path}/runs/{v}/final/config.json" for v in variants}
    jobs = _rule_inputs(result.stdout, "notebook")
    assert len(jobs) == len([n for n in NOTEBOOKS if n[:2].isdigit()])
    for output, inputs in jobs.items():
        expected = runs if output.endswith("/05_latent_alignment.ipynb") else set()
        assert {i for i in inputs if "/runs/" in i} == expected, output


def test_multi_gpu_profiles_launch_one_process_per_gpu(tmp_path: Path) -> None:
    result = snakemake("-n", "-p", "--cores", "2", "--config", "profile=gpu8", f"results_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    resources = _rule_resources(result.stdout)
    assert all("gpu=8" in r for r in resources["train"] | resources["image_vae"])
    assert all("gpu=1" in r for r in resources["evaluate"])
    launches = [line for line in result.stdout.splitlines() if "cvvae.cli train " in line]
    assert launches and all("--num_processes 8 --multi_gpu" in line for line in launches)
    assert all("NCCL_NVLS_ENABLE=0" in line for line in launches)


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


def _paper_profile_with_inputs_in(folder: Path, create: bool) -> Path:
    """The paper profile with every real input under ``folder`` (created as empty stand-ins if asked)."""
    text = (ROOT / "config" / "paper.yaml").read_text().replace("data/", f"{folder}/data/")
    profile = folder / "paper.yaml"
    profile.write_text(text)
    if create:
        config = yaml.safe_load(text)
        folders = [config["cvvae"]["image_vae_path"] + "/vae"]
        folders += [
            spec.split(":", 1)[1].replace("?subfolder=", "/").split("&")[0]
            for spec in config["evaluate"]["models"].values()
            if "{runs}" not in spec
        ]
        for weights in folders:
            (Path(weights)).mkdir(parents=True, exist_ok=True)
            (Path(weights) / "config.json").write_text("{}")
        for fields in config["protocols"].values():
            Path(fields["dataset"]).mkdir(parents=True, exist_ok=True)
            (Path(fields["dataset"]) / "manifest.csv").write_text("path\n")
    return profile


def test_dry_run_names_every_missing_real_input_before_any_job(tmp_path: Path) -> None:
    profile = _paper_profile_with_inputs_in(tmp_path, create=False)
    result = snakemake(
        "-n", "--cores", "1", "--config", f"profile_file={profile}", f"results_dir={tmp_path}/r"
    )
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "input(s) missing" in out and "rule " not in out  # nothing was planned
    for expected in ["coco2017_val/manifest.csv", "webvid_val/manifest.csv", "CV-VAE/vae3d'", "vae3d_sd3",
                     "stable-video-diffusion-img2vid-xt/vae", "hf download", "data/README.md"]:  # fmt: skip
        assert expected in out, expected
    assert "cvvae data embedded --config" not in out  # the hint of the small profiles does not apply

    provided = _paper_profile_with_inputs_in(tmp_path, create=True)
    result = snakemake(
        "-n", "--cores", "1", "--config", f"profile_file={provided}", f"results_dir={tmp_path}/r"
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "rule report:" in result.stdout


def test_notebook_and_report_outputs_are_kept_while_they_run(tmp_path: Path) -> None:
    # `update` outputs are neither deleted before the job nor left half-written after a failure.
    result = snakemake("-n", "--cores", "1", "--config", "profile=ci", f"results_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{tmp_path}/notebooks/01_reconstruction.ipynb (update)" in result.stdout
    assert f"{tmp_path}/README.md (update)" in result.stdout


def _finite_metrics(path: Path, columns: list[str], low: float, high: float) -> None:
    import pandas as pd

    df = pd.read_csv(path)
    assert len(df) >= 1, path
    for column in columns:
        values = df[column]
        assert values.notna().all() and values.between(low, high).all(), f"{path}: {column} = {list(values)}"


def test_ci_profile_end_to_end(tmp_path: Path) -> None:
    # A copy of the ci profile with its data in the test's folder (nothing shared with other runs), which the
    # rerun check below edits.
    profile = tmp_path / "ci.yaml"
    config = yaml.safe_load((ROOT / "config" / "ci.yaml").read_text())
    config["data"]["root"] = str(tmp_path / "data")
    profile.write_text(yaml.safe_dump(config, sort_keys=False))
    results = tmp_path / "results" / "ci"
    args = ["--config", f"profile_file={profile}", f"results_dir={results}"]
    result = snakemake("--cores", "all", "--nolock", *args, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    readme = (results / "README.md").read_text()
    assert "Wall time" in readme and "Claim-by-claim verdict" in readme
    for notebook in NOTEBOOKS:
        executed = nbformat.read(results / "notebooks" / f"{notebook}.ipynb", as_version=4)
        assert (results / "logs" / f"notebook_{notebook}.log").is_file()
        images = [
            o
            for c in executed.cells
            if c.cell_type == "code"
            for o in c.outputs
            if "image/png" in o.get("data", {})
        ]
        assert images, f"{notebook}: no inline figure"  # fmt: skip
    assert not (results / ".staging").exists()
    assert list((results / "tables").glob("01_*.csv")) and list((results / "figures").glob("*.png"))
    for run in ["image_vae", *config["workflow"]["variants"]]:
        meta = results / "runs_meta" / run
        for name in ["config.yaml", "run_identity.json", "environment.json", "val_metrics.csv"]:
            assert (meta / name).is_file(), meta / name
        environment = json.loads((meta / "environment.json").read_text())
        assert environment["cpu"] and environment["blas"] and environment["cpu_capability"]
    # Numbers of a CPU training run are not a cross-machine invariant: check they are plausible, not digits.
    for protocol, models in config["evaluate"]["matrix"].items():
        for model in models:
            clip_table = results / "eval" / protocol / model / "per_clip.csv"
            _finite_metrics(clip_table, ["psnr"], 3.0, 100.0)
            _finite_metrics(clip_table, ["ssim"], -1.0, 1.0)
            assert json.loads((clip_table.parent / "meta.json").read_text())["identity"]["model"][
                "weights_sha256"
            ]
    _finite_metrics(results / "eval" / "video" / "cvvae" / "per_clip.csv", ["compat_psnr", "tde"], 0.0, 100.0)

    # A finished workflow has nothing left to do; editing one variant reruns only that variant's branch.
    again = snakemake("-n", "--cores", "1", *args)
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]
    config["cvvae"]["variants"]["none"]["lr"] = 5.0e-4
    profile.write_text(yaml.safe_dump(config, sort_keys=False))
    edited = snakemake("-n", "-p", "--cores", "1", *args)
    assert edited.returncode == 0, edited.stderr[-2000:]
    planned = [line.split()[1].rstrip(":") for line in edited.stdout.splitlines() if line.startswith("rule ")]
    assert planned.count("train") == 1 and not {"data", "image_vae", "inflate"} & set(planned), planned
    assert "--variant none" in edited.stdout and "--variant dec " not in edited.stdout


def _nbval_copy(stored: Path, results_dir: Path, dest: Path) -> None:
    """The committed notebook (stored outputs) with its injected parameters pointed at ``results_dir``."""
    book = nbformat.read(stored, as_version=4)
    for cell in book.cells:
        if "injected-parameters" in cell.metadata.get("tags", []):
            lines = [
                f"results_dir = {str(results_dir)!r}" if line.startswith("results_dir = ") else line
                for line in cell.source.splitlines()
            ]
            cell.source = "\n".join(lines)
    nbformat.write(book, dest)


def test_ci_notebooks_reproduce_their_committed_outputs_from_committed_inputs(tmp_path: Path) -> None:
    stored = ROOT / "results" / "ci"
    missing = [nb for nb in NOTEBOOKS if not (stored / "notebooks" / f"{nb}.ipynb").is_file()]
    if missing:
        command = "cvvae notebook --config config/ci.yaml --results results/ci"
        pytest.fail(f"no committed executed ci notebooks {missing}; run `{command}` and commit them")
    results = tmp_path / "results" / "ci"
    for fixture in ["eval", "runs_meta"]:  # what the notebooks read
        shutil.copytree(stored / fixture, results / fixture)
    check_dir = tmp_path / "nbval"
    check_dir.mkdir()
    for notebook in NOTEBOOKS:
        _nbval_copy(stored / "notebooks" / f"{notebook}.ipynb", results, check_dir / f"{notebook}.ipynb")
    nbval = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
            "--nbval-current-env", "--nbval-sanitize-with", str(ROOT / "tests" / "nbval_sanitize.cfg"),
            "--rootdir", str(check_dir), str(check_dir),
        ],
        capture_output=True, text=True, timeout=600, cwd=check_dir,
    )  # fmt: skip
    assert nbval.returncode == 0, nbval.stdout[-6000:]
