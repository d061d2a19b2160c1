"""Helpers the study notebooks share: locate results, read evaluation tables, write tables and figures.

The notebooks stay thin: they set parameters, call these functions and ``cvvae.tables``, and show the result.
Everything here is deterministic (fixed plotting style, sorted inputs), so re-running a profile gives the same
tables and byte-stable figures on the same machine.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from cvvae import tables

# Files written by `cvvae evaluate` (cvvae/evaluate.py) into results/<profile>/eval/<protocol>/<model>/.
EVAL_CLIPS = "per_clip.csv"
EVAL_FRAMES = "per_frame.csv"
# Set by `cvvae notebook` (cvvae.notebook_run): where the notebook's tables and figures go until the run has
# succeeded and they are moved into the results folder. Unset in JupyterLab: they go to the results folder.
OUTPUT_DIR_ENV = "CVVAE_OUTPUT_DIR"
# Columns of the evaluation CSVs that identify a clip or a frame rather than measure it.
ID_COLUMNS = {
    "clip",
    "clip_id",
    "path",
    "source",
    "split",
    "frame",
    "frame_index",
    "model",
    "protocol",
    "name",
}


def find_repo_root(start: str | Path | None = None) -> Path:
    """The folder holding the ``Snakefile`` (notebooks run from notebooks/ in JupyterLab, from the root in
    papermill)."""
    here = Path(start or Path.cwd()).resolve()
    package_parent = Path(__file__).resolve().parents[1]  # an editable install lives in the repository
    for folder in [here, *here.parents, package_parent]:
        if (folder / "Snakefile").is_file() and (folder / "cvvae").is_dir():
            return folder
    raise FileNotFoundError(f"no repository root (a folder with Snakefile and cvvae/) above {here}")


@dataclass
class Study:
    """One profile's results folder, as seen by a notebook."""

    profile: str
    config: dict[str, Any]
    results_dir: Path
    missing: list[str] = field(default_factory=list)
    """Human-readable reasons why an input was absent (shown as ``n/a`` notes under the tables)."""
    output_dir: Path | None = None
    """Where tables and figures are written (default: ``results_dir``)."""

    @property
    def tables_dir(self) -> Path:
        return (self.output_dir or self.results_dir) / "tables"

    @property
    def figures_dir(self) -> Path:
        return (self.output_dir or self.results_dir) / "figures"

    @property
    def runs_dir(self) -> Path:
        return self.results_dir / "runs"

    @property
    def runs_meta_dir(self) -> Path:
        """The committed copies of the runs' small files (``cvvae.report`` writes them)."""
        return self.results_dir / "runs_meta"

    def eval_dir(self, protocol: str, model: str) -> Path:
        return self.results_dir / "eval" / protocol / model

    def models(self, protocol: str) -> list[str]:
        """Models the profile evaluates on ``protocol`` (in the profile's order)."""
        return list(self.config["evaluate"]["matrix"].get(protocol, []))

    def _read_eval(self, protocol: str, models: Sequence[str] | None, filename: str) -> pd.DataFrame:
        frames = []
        for model in models if models is not None else self.models(protocol):
            path = self.eval_dir(protocol, model) / filename
            if not path.is_file():
                self.missing.append(f"{protocol}/{model}: {path} not found (evaluation not run)")
                continue
            df = pd.read_csv(path)
            df.insert(0, "model", model)
            df.insert(1, "protocol", protocol)
            frames.append(df)
        if not frames:
            return pd.DataFrame(columns=["model", "protocol"])
        return pd.concat(frames, ignore_index=True)

    def clips(self, protocol: str, models: Sequence[str] | None = None) -> pd.DataFrame:
        """Per-clip metrics of every model on ``protocol`` (one row per clip, column ``model``)."""
        return self._read_eval(protocol, models, EVAL_CLIPS)

    def frames(self, protocol: str, models: Sequence[str] | None = None) -> pd.DataFrame:
        """Per-frame metrics of every model on ``protocol`` (one row per clip and frame index)."""
        return self._read_eval(protocol, models, EVAL_FRAMES)

    def run_csv(self, run: str, name: str = "val_metrics.csv") -> pd.DataFrame | None:
        """A training run's CSV log (``metrics.csv`` or ``val_metrics.csv``), or None (noted) when absent.

        Read from the run folder (``runs/``, git-ignored) when it is there, else from its committed copy in
        ``runs_meta/``, so a fresh clone shows the committed study."""
        for folder in (self.runs_dir, self.runs_meta_dir):
            path = folder / run / name
            if path.is_file():
                return pd.read_csv(path)
        self.missing.append(f"run {run}: {name} found in neither {self.runs_dir} nor {self.runs_meta_dir}")
        return None

    def save_table(
        self,
        df: pd.DataFrame,
        name: str,
        caption: str = "",
        notes: Iterable[str] = (),
        show: bool = True,
        markdown: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """Write ``tables/<name>.csv`` and ``.md`` (with notes and the reasons for missing inputs)."""
        all_notes = [*notes, *(f"n/a: {m}" for m in dict.fromkeys(self.missing))]
        tables.write_table(df, self.tables_dir, name, caption=caption, notes=all_notes, markdown=markdown)
        if show:
            print(f"{caption or name}\n")
            print(tables.to_markdown(rounded(df)))
        return df

    def save_figure(self, fig: Any, name: str) -> None:
        """Write ``figures/<name>.png`` without timestamps (stable bytes across re-runs); show it inline."""
        import matplotlib.pyplot as plt

        self.figures_dir.mkdir(parents=True, exist_ok=True)
        path = self.figures_dir / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
        plt.close(fig)
        show_image(path)


def show_image(path: Path) -> None:
    """Show a saved PNG inline when running in a notebook kernel (the saved bytes, so every viewer of the
    executed notebook sees the same figure); nothing outside IPython."""
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:
        return
    if get_ipython() is not None:
        display(Image(filename=str(path)))


def open_study(profile: str, config_path: str | Path, results_dir: str | Path) -> Study:
    """Load the profile, move to the repository root (paths as in the workflow) and set up plots.

    Tables and figures go to ``$CVVAE_OUTPUT_DIR`` when set (``cvvae notebook`` stages them there and
    publishes them only if the notebook succeeds), else to ``results_dir``."""
    root = find_repo_root()
    os.chdir(root)
    config_path = Path(config_path)
    if not config_path.is_file():
        raise FileNotFoundError(f"profile file {config_path} not found; pass config/<profile>.yaml")
    config = yaml.safe_load(config_path.read_text())
    if config.get("profile") != profile:
        raise ValueError(f"{config_path} is profile {config.get('profile')!r}, not {profile!r}")
    set_plot_style()
    output_dir = os.environ.get(OUTPUT_DIR_ENV)
    study = Study(
        profile=profile,
        config=config,
        results_dir=Path(results_dir),
        output_dir=Path(output_dir) if output_dir else None,
    )
    study.tables_dir.mkdir(parents=True, exist_ok=True)
    study.figures_dir.mkdir(parents=True, exist_ok=True)
    return study


def set_plot_style() -> None:
    """A fixed, headless plotting style."""
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    matplotlib.rcParams.update({"figure.dpi": 110, "svg.hashsalt": "cvvae", "path.simplify": False})


def metric_columns(df: pd.DataFrame) -> list[str]:
    """Numeric measurement columns of an evaluation table (identifiers excluded)."""
    return [c for c in df.columns if c not in ID_COLUMNS and pd.api.types.is_numeric_dtype(df[c])]


def summarize(df: pd.DataFrame, metrics: Sequence[str] | None = None, by: str = "model") -> pd.DataFrame:
    """Mean of every metric per ``by`` (keeping the order of first appearance) plus the number of clips."""
    if df.empty:
        return pd.DataFrame(columns=[by, "clips"])
    cols = [c for c in (metrics or metric_columns(df)) if c in df.columns]
    out = df.groupby(by, sort=False)[cols].mean(numeric_only=True)
    out.insert(0, "clips", df.groupby(by, sort=False).size())
    return out.reset_index()


def to_long(summary: pd.DataFrame, dataset: str, metrics: Sequence[str], row: str = "model") -> pd.DataFrame:
    """A summary (one row per model) -> long form ``row, dataset, metric, value`` for ``tables.side_by_side``.

    A metric absent from the evaluation (e.g. LPIPS without installed weights) becomes NaN, printed ``n/a``.
    """
    records = []
    for _, item in summary.iterrows():
        for metric in metrics:
            value = item[metric] if metric in summary.columns else float("nan")
            records.append({"row": item[row], "dataset": dataset, "metric": metric, "value": value})
    return pd.DataFrame(records, columns=["row", "dataset", "metric", "value"])


def rounded(df: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """Floats rounded to ``digits`` significant digits, for printing (files keep full precision)."""
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            out[col] = out[col].map(lambda v: float(f"{v:.{digits}g}") if pd.notna(v) else v)
    return out


# ----------------------------------------------------------------------------------------------------
# Study tables and figures (one function per kind of result, so notebooks only choose models and metrics)


def protocol_description(study: Study, protocol: str) -> str:
    """How ``protocol`` was measured, from the evaluation's ``meta.json`` (first model that has one)."""
    import json

    for model in study.models(protocol):
        meta = study.eval_dir(protocol, model) / "meta.json"
        if meta.is_file():
            info = json.loads(meta.read_text())
            desc = info.get("protocol_description") or info.get("protocol")
            if isinstance(desc, dict):
                desc = ", ".join(f"{k}={v}" for k, v in desc.items())
            if desc:
                return str(desc)
    return protocol


def comparison_table(
    study: Study,
    table: str,
    rows: dict[str, str | None],
    datasets: dict[str, str],
    metrics: Sequence[str],
) -> pd.DataFrame:
    """Our means per model and protocol beside the paper's ``table`` (``tables.side_by_side``).

    ``rows`` maps our model names to the paper's row ids (None: no paper number), ``datasets`` our protocol
    names to the paper's datasets. Models a protocol does not evaluate are left out; absent metrics are
    ``n/a``.
    """
    parts = []
    for protocol in datasets:
        models = [m for m in rows if m in study.models(protocol)]
        if not models:
            continue
        summary = summarize(study.clips(protocol, models), metrics)
        long = to_long(summary, protocol, metrics)
        long["protocol"] = protocol_description(study, protocol)
        parts.append(long)
    if not parts:
        return pd.DataFrame(columns=["row", "dataset", "metric", "ours", "paper_label", "paper", "delta"])
    ours = pd.concat(parts, ignore_index=True)
    return tables.side_by_side(ours, table, rows, datasets)


def save_comparison(study: Study, df: pd.DataFrame, name: str, table: str, notes: Iterable[str] = ()) -> None:
    """Save a ``comparison_table``: the long csv, and a compact markdown with the protocols as notes."""
    protocols = sorted(set(df["protocol"])) if "protocol" in df.columns else []
    study.save_table(
        df,
        name,
        caption=f"{tables.PAPER_TABLES[table].caption}: ours (paper)",
        notes=[
            *(f"ours, {p}" for p in protocols),
            f"paper: {tables.PAPER_TABLES[table].protocol}",
            "LPIPS: the paper does not name its backbone; ours are listed per backbone",
            *notes,
        ],
        show=False,
        markdown=tables.compact(df),
    )


def metrics_table(study: Study, protocol: str, models: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Mean of ``metrics`` per model on ``protocol``; metrics the evaluation lacks appear as NaN (``n/a``)."""
    summary = summarize(study.clips(protocol, [m for m in models if m in study.models(protocol)]), metrics)
    for metric in metrics:
        if metric not in summary.columns:
            summary[metric] = float("nan")
    return summary[["model", "clips", *metrics]] if not summary.empty else summary


def per_frame_curve(study: Study, protocol: str, models: Sequence[str], metric: str = "psnr") -> pd.DataFrame:
    """Mean ``metric`` per frame index and model (``model, frame, value``)."""
    df = study.frames(protocol, [m for m in models if m in study.models(protocol)])
    frame_col = "frame" if "frame" in df.columns else "frame_index"
    if df.empty or metric not in df.columns:
        return pd.DataFrame(columns=["model", "frame", "value"])
    out = df.groupby(["model", frame_col], sort=False)[metric].mean().reset_index()
    return out.rename(columns={frame_col: "frame", metric: "value"})


def alignment_history(
    study: Study, runs: Sequence[str], columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """Validation metrics of every run over training steps, long form ``run, step, metric, value``.

    ``columns`` picks the metrics (default: every numeric column except ``step``).
    """
    parts = []
    for run in runs:
        df = study.run_csv(run, "val_metrics.csv")
        if df is None or df.empty or "step" not in df.columns:
            continue
        cols = [c for c in (columns or metric_columns(df)) if c in df.columns and c != "step"]
        long = df.melt(id_vars=["step"], value_vars=cols, var_name="metric", value_name="value")
        long.insert(0, "run", run)
        parts.append(long)
    if not parts:
        return pd.DataFrame(columns=["run", "step", "metric", "value"])
    return pd.concat(parts, ignore_index=True)


def bar_figure(df: pd.DataFrame, x: str, y: str, hue: str | None = None, title: str = "") -> Any:
    """A bar chart of a summary table (one bar per model)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * df[x].nunique() + 2), 3.2))
    if not df.empty and y in df.columns and df[y].notna().any():
        sns.barplot(data=df, x=x, y=y, hue=hue, ax=ax, errorbar=None)
        ax.tick_params(axis="x", rotation=45)
    else:
        ax.text(0.5, 0.5, f"n/a: no {y} values", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title)
    return fig


def line_figure(
    df: pd.DataFrame, x: str, y: str, hue: str, title: str = "", vlines: Sequence[float] = ()
) -> Any:
    """Curves (per-frame metrics, training history) with optional vertical markers (chunk boundaries)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    if not df.empty and df[y].notna().any():
        sns.lineplot(data=df, x=x, y=y, hue=hue, ax=ax, marker="o", markersize=3, errorbar=None)
        for v in vlines:
            ax.axvline(v, color="grey", linestyle=":", linewidth=0.8)
    else:
        ax.text(0.5, 0.5, f"n/a: no {y} values", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title)
    return fig
