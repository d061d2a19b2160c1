"""Assemble ``results/<profile>/README.md``: the claim-by-claim verdict (``cvvae.claims``), every table and
figure the notebooks wrote, the run metadata and the wall time of every workflow step.

    python -m cvvae.report --config config/default.yaml --results results/default

Small run files (resolved config, training logs, environment) are copied from ``runs/<run>/`` (git-ignored,
it holds checkpoints) to ``runs_meta/<run>/`` so that they can be committed beside the tables.

Everything the report writes (README, claims tables, run files) is staged and published together only when
the report succeeded (``cvvae.staging``).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
from pathlib import Path

import pandas as pd

from cvvae import claims, convergence, tables, training_curves
from cvvae.profile import load_profile
from cvvae.staging import staged_results

RUN_META_FILES = (
    "config.yaml",
    "run_identity.json",
    "environment.json",
    "metrics.csv",
    "val_metrics.csv",
    "data_report.json",
)
# Order of sections in the report: notebook prefix -> heading.
SECTIONS = {
    "01": "Reconstruction (paper Table 1 / Table 8)",
    "02": "Regularisation and mapping ablation (paper Tables 6 and 7)",
    "03": "Flicker analysis",
    "04": "SVD-style VAE vs CV-VAE as the decoder of a latent video model",
    "05": "Latent alignment during training",
    "06": "Generative compatibility (paper Table 2): one set of diffusion samples through each decoder",
}


def copy_run_meta(results: Path, out: Path | None = None) -> list[str]:
    """Copy the small files of every run to ``<out>/runs_meta/<run>/`` (``out`` defaults to ``results``);
    return the run names."""
    runs = sorted(p for p in (results / "runs").glob("*") if p.is_dir())
    copied = []
    for run in runs:
        dest = (out or results) / "runs_meta" / run.name
        files = [run / name for name in RUN_META_FILES if (run / name).is_file()]
        if not files:
            continue
        _warn_if_another_run(run, dest)
        dest.mkdir(parents=True, exist_ok=True)
        for src in files:
            shutil.copyfile(src, dest / src.name)
        copied.append(run.name)
    return copied


def _warn_if_another_run(run: Path, dest: Path) -> None:
    """Say so when ``runs/<run>`` replaces the record of a different run in ``runs_meta/<run>``: normally a
    retrained run, but also what a stale local run folder does to metadata brought back from elsewhere."""
    from cvvae.train.run_identity import IDENTITY_FILE as identity

    if not ((run / identity).is_file() and (dest / identity).is_file()):
        return
    if (run / identity).read_bytes() != (dest / identity).read_bytes():
        print(
            f"cvvae report: {dest} recorded another run of {run.name} (its run_identity.json differs); it "
            f"now holds {run}'s files. If {run} is an old local folder, move it away and restore {dest} "
            "(git checkout).",
            file=sys.stderr,
        )


def step_times(results: Path) -> pd.DataFrame:
    """Wall time of every workflow step from Snakemake's ``benchmark:`` files (seconds, max RSS in MB)."""
    rows = []
    for path in sorted((results / "benchmarks").glob("*.tsv")):
        bench = pd.read_csv(path, sep="\t")
        if bench.empty:
            continue
        rows.append(
            {
                "step": path.stem,
                "seconds": float(bench["s"].iloc[0]),
                "max_rss_mb": float(bench["max_rss"].iloc[0]) if "max_rss" in bench else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=["step", "seconds", "max_rss_mb"])


ELAPSED_FILE = "elapsed.json"  # benchmarks/elapsed.json: the wall time measured when the workflow ran


def recorded_elapsed(results: Path, times: pd.DataFrame, out: Path | None = None) -> float:
    """The workflow's wall time: measured from the log files right after a run (and recorded in
    ``benchmarks/elapsed.json``), else the recorded value. A checkout resets file times, so a report rebuilt
    from committed files must not measure them again (it would print seconds for an hour of work)."""
    record = results / "benchmarks" / ELAPSED_FILE
    if (results / "runs").is_dir() or not record.is_file():
        seconds = elapsed_seconds(results, times)
        if (results / "runs").is_dir() and seconds == seconds:  # not NaN
            target = (out or results) / "benchmarks" / ELAPSED_FILE
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps({"elapsed_s": seconds}) + "\n")
        return seconds
    return float(json.loads(record.read_text())["elapsed_s"])


def elapsed_seconds(results: Path, times: pd.DataFrame) -> float:
    """Wall time of the whole workflow: from the earliest step start (its log's last write minus its run time)
    to the latest step end; NaN when the logs are missing."""
    starts, ends = [], []
    for step, seconds in zip(times["step"], times["seconds"], strict=True):
        log = results / "logs" / f"{step}.log"
        if log.is_file():
            end = log.stat().st_mtime
            starts.append(end - seconds)
            ends.append(end)
    return max(ends) - min(starts) if ends else float("nan")


def _section_of(name: str) -> str:
    return name.split("_", 1)[0] if name[:2].isdigit() else "other"


def _environment(*folders: Path) -> str:
    """One line about the machine: from a run's environment.json if there is one, else from this process."""
    env_files = [f for folder in folders for f in sorted((folder / "runs_meta").glob("*/environment.json"))]
    for env_file in env_files:
        try:
            env = json.loads(env_file.read_text())
        except json.JSONDecodeError:
            continue
        flat = {k: v for k, v in env.items() if isinstance(v, str | int | float)}
        return ", ".join(f"{k}={v}" for k, v in list(flat.items())[:8])
    return f"python {platform.python_version()}, {platform.machine()}, {platform.system()}"


def claims_section(results: Path, out: Path | None = None, profile: dict | None = None) -> list[str]:
    """The claim-by-claim verdict (also written to ``<out>/tables/claims.csv`` / ``.md``) as README lines;
    with the profile, reconstruction claims on runs that have not converged are ``not testable``."""
    training = claims.Training.of_profile(profile) if profile is not None else None
    df = claims.write_claims(results, out, training)
    return [
        "## Claim-by-claim verdict",
        "",
        claims.HOW_DECIDED + " Full table: [csv](tables/claims.csv).",
        "",
        tables.to_markdown(df),
        "",
    ]


def convergence_section(results: Path, out: Path | None = None) -> list[str]:
    """Every run's convergence status with the figure and table of its validation PSNR over steps (drawn
    again by ``cvvae.training_curves`` into ``out``) as README lines."""
    curves = training_curves.write_training_curves(results, out)
    lines = ["## Convergence", ""]
    if not curves.statuses:
        return lines + [curves.message, ""]
    lines += [
        f"Validation PSNR of every training run over its steps (step 0: its starting point). A run has "
        f"converged when it ends above its start and gained at most {convergence.TOLERANCE_DB} dB "
        f"({convergence.IMAGE_VAE_TOLERANCE_DB} dB for the image VAE) over its last "
        f"{convergence.LAST_FRACTION:.0%} of steps (`cvvae.convergence`).",
        "",
        *[f"- {status.describe()}" for status in curves.statuses],
        "",
    ]
    if curves.table is not None:
        lines += [f"Numbers: [csv](tables/{training_curves.TABLE_NAME}).", ""]
    if curves.figure is not None:
        lines += [f"![validation PSNR over steps](figures/{training_curves.FIGURE_NAME})", ""]
    else:
        lines += [curves.message, ""]
    return lines


NOTES_FILE = "NOTES.md"


def regenerate_command(profile: dict) -> str:
    """The Snakemake command that regenerates a profile's results (GPU profiles use profiles/gpu)."""
    name = profile["profile"]
    if (profile.get("workflow") or {}).get("gpu"):
        return f"snakemake --workflow-profile profiles/gpu --config profile={name}"
    return f"snakemake --cores all --config profile={name}"


def notes_section(results: Path) -> list[str]:
    """The study's hand-written notes (``<results>/NOTES.md``): how it was run, what the numbers mean."""
    notes = results / NOTES_FILE
    if not notes.is_file():
        return []
    return [notes.read_text().strip(), ""]


def build_report(config_path: Path, results: Path, out: Path | None = None) -> str:
    """The README text for one profile's results folder; the files it writes beside the README (claims
    tables, run files) go to ``out`` (default: ``results``)."""
    profile = load_profile(config_path)
    name = profile["profile"]
    runs = copy_run_meta(results, out)
    times = step_times(results)
    lines = [
        f"# CV-VAE reproduction: results of the `{name}` profile",
        "",
        profile.get("description", ""),
        "",
        f"Regenerate with `{regenerate_command(profile)}` (profile: `{config_path}`).",
        "Each table names its protocol; `n/a` marks a number that could not be computed and says why.",
        "",
        *claims_section(results, out, profile),
        *notes_section(results),
        *convergence_section(results, out),
    ]
    by_section: dict[str, list[Path]] = {}
    for md in sorted((results / "tables").glob("*.md")):
        if md.stem == claims.TABLE_NAME:  # shown at the top, not again among the notebooks' tables
            continue
        by_section.setdefault(_section_of(md.stem), []).append(md)
    figures: dict[str, list[Path]] = {}
    for png in sorted((results / "figures").glob("*.png")):
        if png.name == training_curves.FIGURE_NAME:  # shown under Convergence
            continue
        figures.setdefault(_section_of(png.stem), []).append(png)
    for key in [*SECTIONS, *sorted(set(by_section) - set(SECTIONS))]:
        if key not in by_section and key not in figures:
            continue
        lines += [f"## {SECTIONS.get(key, 'Other tables')}", ""]
        notebook = next((results / "notebooks").glob(f"{key}_*.ipynb"), None)
        if notebook is not None:
            lines += [f"Notebook: [{notebook.name}](notebooks/{notebook.name})", ""]
        for md in by_section.get(key, []):
            lines += [f"### {md.stem} ([csv](tables/{md.stem}.csv))", "", md.read_text().strip(), ""]
        for png in figures.get(key, []):
            lines += [f"![{png.stem}](figures/{png.name})", ""]
    lines += ["## Wall time", ""]
    if times.empty:
        lines += ["n/a: no benchmark files (run the workflow with Snakemake to record them)", ""]
    else:
        wall = recorded_elapsed(results, times, out)
        lines += [
            f"Elapsed, first step to last: {wall / 60:.1f} min; sum of step times: "
            f"{times['seconds'].sum() / 60:.1f} min (steps run in parallel where cores allow).",
            "",
            tables.to_markdown(times, floatfmt=".1f"),
            "",
        ]
    lines += ["## Runs", ""]
    # Rebuilt from a checkout (no runs/): the committed run files are the record.
    runs = runs or sorted(p.name for p in (results / "runs_meta").glob("*") if p.is_dir())
    if runs:
        lines += [f"- `{r}`: [runs_meta/{r}/](runs_meta/{r}/)" for r in runs] + [""]
    else:
        lines += ["No training runs in this profile (released weights only).", ""]
    lines += [f"Environment: {_environment(*(f for f in (out, results) if f is not None))}", ""]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="profile YAML, e.g. config/default.yaml")
    parser.add_argument("--results", required=True, type=Path, help="results folder, e.g. results/default")


def run(args: argparse.Namespace) -> int:
    if not args.config.is_file():
        raise FileNotFoundError(f"profile {args.config} not found; pass config/<profile>.yaml")
    if not args.results.is_dir():
        raise FileNotFoundError(f"results folder {args.results} not found; run the workflow first")
    with staged_results(args.results, "report") as staging:
        (staging / "README.md").write_text(build_report(args.config, args.results, staging))
    print(f"wrote {args.results / 'README.md'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cvvae.report", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
