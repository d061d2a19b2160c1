"""Has a training run converged? Read from its validation log (``val_metrics.csv``).

A run counts as converged when its log

- starts with a step-0 row (its own starting point: the inflated model for a CV-VAE, the image VAE's decoder
  for the SVD-style VAE),
- ends above that starting point, and
- has plateaued: validation PSNR gained at most ``tolerance_db`` over the last 20% of its steps (0.2 dB for
  video models, 0.1 dB for the image VAE), and
- reached its planned length: a run stopped before the ``train.steps`` of the ``config.yaml`` beside its log
  has no final weights, and its plateau test would read a schedule that never decayed.

A reconstruction claim about a model that has not converged describes a training recipe, not the method, so
``cvvae.claims`` gives it no verdict, only the reason. ``cvvae.claims`` also asks that the run beat its
starting point on the claim's evaluation (a paired, source-clustered interval of PSNR against the inflated
model), which one validation log cannot show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

VAL_LOG = "val_metrics.csv"
METRIC = "psnr_video"
LAST_FRACTION = 0.2
TOLERANCE_DB = 0.2
IMAGE_VAE_TOLERANCE_DB = 0.1


@dataclass(frozen=True)
class RunStatus:
    """The convergence of one run, with the numbers it rests on."""

    run: str
    converged: bool
    reason: str
    start: float = math.nan
    final: float = math.nan
    late_gain: float = math.nan

    def describe(self) -> str:
        return f"{self.run}: {'converged' if self.converged else 'not converged'} ({self.reason})"


def run_status(run: str, log: Path | None, tolerance_db: float = TOLERANCE_DB) -> RunStatus:
    """Judge ``run`` from its validation log (``None`` or a missing file: no log)."""
    if log is None or not log.is_file():
        return RunStatus(run, False, "no validation log")
    df = pd.read_csv(log)
    if METRIC not in df.columns or df.empty:
        return RunStatus(run, False, f"no {METRIC} in {log.name}")
    df = df.dropna(subset=[METRIC]).sort_values("step")
    steps, values = df["step"].to_numpy(), df[METRIC].to_numpy()
    if steps[0] != 0:
        return RunStatus(run, False, "no step-0 validation, so its starting point is unknown")
    start, final, last = float(values[0]), float(values[-1]), int(steps[-1])
    if planned := stopped_before(log, last):
        where = f"{start:.2f} -> {final:.2f} dB at step {last}, its last validation"
        reason = f"stopped before its {planned} steps ({where})"
        return RunStatus(run, False, reason, start, final)
    if len(values) < 3:
        return RunStatus(run, False, f"too few validations ({len(values)}) to see a plateau", start, final)
    if final <= start:
        reason = f"ended below its starting point ({start:.2f} -> {final:.2f} dB)"
        return RunStatus(run, False, reason, start, final)
    # The last validation at or before 80% of the run is the reference of the plateau test.
    reference = float(values[steps <= (1 - LAST_FRACTION) * last][-1])
    gain = final - reference
    if gain > tolerance_db:
        reason = f"still improving (+{gain:.2f} dB over the last {LAST_FRACTION:.0%} of {last} steps)"
        return RunStatus(run, False, reason, start, final, gain)
    reason = f"{start:.2f} -> {final:.2f} dB, {gain:+.2f} dB over the last {LAST_FRACTION:.0%}"
    return RunStatus(run, True, reason, start, final, gain)


RUN_CONFIG = "config.yaml"


def train_section(config: Path | None) -> dict:
    """The ``train`` mapping of a run's resolved ``config.yaml`` (empty when the file or key is absent)."""
    import yaml

    if config is None or not config.is_file():
        return {}
    return (yaml.safe_load(config.read_text()) or {}).get("train") or {}


def stopped_before(log: Path, last_step: int) -> int | None:
    """The run's planned ``train.steps`` (its ``config.yaml`` beside ``log``) when ``last_step`` falls short
    of it, else None; a run whose length is not recorded is not checked."""
    steps = train_section(log.parent / RUN_CONFIG).get("steps")
    return int(steps) if isinstance(steps, int) and last_step < steps else None


def run_file(results_dir: Path, run: str, name: str) -> Path | None:
    """A file of the run: the run folder's when present, else the committed copy in runs_meta/."""
    for folder in ("runs", "runs_meta"):
        path = Path(results_dir) / folder / run / name
        if path.is_file():
            return path
    return None


def run_log(results_dir: Path, run: str) -> Path | None:
    """The run's validation log (:func:`run_file`)."""
    return run_file(results_dir, run, VAL_LOG)


def tolerance_for(run: str) -> float:
    return IMAGE_VAE_TOLERANCE_DB if run == "image_vae" else TOLERANCE_DB
