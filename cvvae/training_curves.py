"""Validation PSNR over training steps for every run, so that a reader sees convergence at a glance.

Each training run logs ``val_metrics.csv`` (step 0 is its starting point). This module gathers those logs
from ``runs/`` (else the committed copies in ``runs_meta/``, as ``cvvae.convergence.run_log`` does), writes
them as one tidy table and draws one figure: a line per run, the step-0 point marked, the seeds of one
variant in one colour, the image VAE in its own panel and each run's convergence status from
``cvvae.convergence`` in the legend.

    figures/validation_psnr.png, tables/validation_curves.csv
"""

from __future__ import annotations

import importlib.util
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cvvae import convergence

FIGURE_NAME = "validation_psnr.png"
TABLE_NAME = "validation_curves.csv"
IMAGE_VAE = "image_vae"
COLUMNS = ["run", "step", convergence.METRIC, "converged"]
NO_LOGS = (
    f"No validation logs (runs/<run>/{convergence.VAL_LOG} or runs_meta/<run>/{convergence.VAL_LOG}), "
    "so there is no convergence figure."
)
# Seeds of one variant share a colour; their line style tells them apart (dashed is the start line's).
SEED_STYLES = ("-", "-.", ":", (0, (5, 1, 1, 1, 1, 1)))
LEGEND_ROWS = 6  # a longer legend goes into two columns
_SEED = re.compile(r"^(?P<variant>.+)_seed(?P<seed>\d+)$")


@dataclass(frozen=True)
class Curves:
    """What :func:`write_training_curves` found and wrote; without a figure, ``message`` says why."""

    statuses: list[convergence.RunStatus]
    figure: Path | None = None
    table: Path | None = None
    message: str = ""


def variant_of(run: str) -> tuple[str, int]:
    """(variant, seed): ``dec_seed2`` -> (``dec``, 2); a run without a suffix is seed 0."""
    match = _SEED.match(run)
    return (match["variant"], int(match["seed"])) if match else (run, 0)


def find_logs(results_dir: str | Path) -> dict[str, Path]:
    """Every run's validation log, by run name (sorted); a run folder without a log is left out."""
    results_dir = Path(results_dir)
    names = {
        p.name for folder in ("runs", "runs_meta") for p in (results_dir / folder).glob("*") if p.is_dir()
    }
    logs = {run: convergence.run_log(results_dir, run) for run in sorted(names)}
    return {run: log for run, log in logs.items() if log is not None}


def run_statuses(logs: dict[str, Path]) -> dict[str, convergence.RunStatus]:
    """The convergence judgement of every run: the rule of ``cvvae.convergence``, not a copy of it."""
    return {
        run: convergence.run_status(run, log, convergence.tolerance_for(run)) for run, log in logs.items()
    }


def _read_log(log: Path) -> pd.DataFrame:
    df = pd.read_csv(log)
    if convergence.METRIC not in df.columns:
        return pd.DataFrame(columns=["step", convergence.METRIC])
    return df.dropna(subset=[convergence.METRIC]).sort_values("step")[["step", convergence.METRIC]]


def _table(logs: dict[str, Path], statuses: dict[str, convergence.RunStatus]) -> pd.DataFrame:
    frames = [_read_log(log).assign(run=run, converged=statuses[run].converged) for run, log in logs.items()]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    df = pd.concat(frames, ignore_index=True)[COLUMNS]
    return df.astype({"step": int, "converged": bool}).sort_values(["run", "step"], ignore_index=True)


def curves_table(results_dir: str | Path) -> pd.DataFrame:
    """One row per (run, validation step): run, step, psnr_video, converged (the run's status)."""
    logs = find_logs(results_dir)
    return _table(logs, run_statuses(logs))


def short_status(status: convergence.RunStatus) -> str:
    """A legend-sized status: ``converged`` or ``not converged: <reason without its numbers>``."""
    if status.converged:
        return "converged"
    return f"not converged: {status.reason.split(' (')[0]}"


def _colours(variants: list[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    palette = colormaps["tab10" if len(variants) <= 10 else "tab20"]
    return {v: palette(i % palette.N) for i, v in enumerate(variants)}


def _columns(runs: int) -> int:
    return 1 if runs <= LEGEND_ROWS else 2


def _draw_panel(ax, table: pd.DataFrame, statuses: dict, colours: dict, title: str) -> None:
    """One panel: a line per run, its step-0 point marked, a dashed line at every distinct start."""
    starts: set[float] = set()
    for run, rows in table.groupby("run", sort=True):
        variant, seed = variant_of(run)
        colour, style = colours[variant], SEED_STYLES[seed % len(SEED_STYLES)]
        label = f"{run}: {short_status(statuses[run])}"
        ax.plot(rows["step"], rows[convergence.METRIC], color=colour, ls=style, marker=".", label=label)
        first = rows.iloc[0]
        if first["step"] == 0:  # the starting point (inflated model / fresh init)
            ax.plot([0], [first[convergence.METRIC]], marker="o", ms=8, mfc="white", color=colour, zorder=3)
            starts.add(round(float(first[convergence.METRIC]), 2))
    # CV-VAE runs share the inflated start: one line per distinct value, not one per run on top of each other.
    for value in sorted(starts):
        ax.axhline(value, color="0.4", ls="--", lw=1, zorder=1)
        ax.annotate(
            f"start {value:.2f} dB",
            (1, value),
            xycoords=("axes fraction", "data"),
            ha="right",
            va="bottom",
            fontsize=8,
            color="0.3",
        )
    ax.set(title=title, xlabel="training step", ylabel="validation PSNR (dB)")
    ax.grid(alpha=0.3)
    runs = table["run"].nunique()
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize=8, frameon=False, ncol=_columns(runs))


def draw_validation_psnr(table: pd.DataFrame, statuses: dict, path: Path) -> Path:
    """Draw the curves of ``table`` (see :func:`curves_table`) to ``path``: the CV-VAE runs in one panel,
    the image VAE (another model, another PSNR scale) in its own."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    is_image = table["run"].map(lambda r: variant_of(r)[0] == IMAGE_VAE)
    # (rows, title, width): the CV-VAE panel holds most runs, so it gets twice the room.
    candidates = [
        (table[~is_image], "CV-VAE runs (all start from the inflated image VAE)", 2),
        (table[is_image], "image_vae (2D, from scratch: its own PSNR scale)", 1),
    ]
    panels = [panel for panel in candidates if not panel[0].empty]
    colours = _colours(sorted({variant_of(r)[0] for r in table["run"]}))
    widths = [width for _, _, width in panels]
    # The legends sit below the panels: the figure grows with the longest one so the axes keep their height.
    rows = max(math.ceil(n / _columns(n)) for n in (panel[0]["run"].nunique() for panel in panels))
    fig = Figure(figsize=(3 + 4 * sum(widths), 4.5 + 0.2 * rows), layout="constrained")
    FigureCanvasAgg(fig)  # headless: no pyplot, no global backend
    axes = fig.subplots(1, len(panels), squeeze=False, gridspec_kw={"width_ratios": widths})[0]
    for ax, (rows, title, _) in zip(axes, panels, strict=True):
        _draw_panel(ax, rows, statuses, colours, title)
    fig.suptitle("Validation PSNR over training (open circle: step 0; dashed: starting point)", fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})  # no version stamp: same inputs, same bytes
    return path


def write_training_curves(results_dir: str | Path, out: str | Path | None = None) -> Curves:
    """Write ``<out>/tables/validation_curves.csv`` and ``<out>/figures/validation_psnr.png`` (``out``
    defaults to ``results_dir``) from every run's validation log; nothing is written when there are none."""
    results_dir = Path(results_dir)
    out = Path(out) if out is not None else results_dir
    logs = find_logs(results_dir)
    statuses = run_statuses(logs)
    table = _table(logs, statuses)
    if table.empty:
        message = NO_LOGS if not logs else f"No {convergence.METRIC} in any validation log: nothing to plot."
        return Curves(list(statuses.values()), message=message)
    table_path = out / "tables" / TABLE_NAME
    table_path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(table_path, index=False)
    # matplotlib comes with the workflow extra, not with cvvae itself: the table is still written without it.
    if importlib.util.find_spec("matplotlib") is None:
        message = "Figure not drawn: matplotlib is not installed (pip install 'cvvae[workflow]')."
        return Curves(list(statuses.values()), table=table_path, message=message)
    figure = draw_validation_psnr(table, statuses, out / "figures" / FIGURE_NAME)
    return Curves(list(statuses.values()), figure, table_path)
