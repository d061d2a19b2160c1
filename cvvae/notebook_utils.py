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
        if any(ax.images for ax in fig.axes):  # photographs (reconstruction grids): full colour
            fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
        else:
            save_plot_png(fig, path)
        plt.close(fig)
        show_image(path)


def save_plot_png(fig: Any, path: Path, dpi: int = 110) -> None:
    """A plot as a 256-colour PNG: lines, points and antialiased text need no more, and the file is about a
    third of the RGB one (committed figures stay small). PIL writes no timestamp: stable bytes."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    buffer.seek(0)
    with Image.open(buffer) as image:
        palette = image.convert("RGB").quantize(
            colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
        )
    palette.save(path, optimize=True)


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
    from cvvae.profile import load_profile

    config_path = Path(config_path)
    config = load_profile(config_path)  # the one loader: a typo in the profile fails here, named
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


def mean_per_model(df: pd.DataFrame, metrics: Sequence[str] | None = None, by: str = "model") -> pd.DataFrame:
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
        summary = mean_per_model(study.clips(protocol, models), metrics)
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
    evaluated = [m for m in models if m in study.models(protocol)]
    summary = mean_per_model(study.clips(protocol, evaluated), metrics)
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


# ----------------------------------------------------------------------------------------------------
# Figures with units and intervals: per-clip data -> mean and 95% bootstrap CI over clips, seeds pooled

# Axis labels: the metric with its unit or range and direction (metrics not listed are shown by name).
METRIC_LABELS = {
    "psnr": "PSNR (dB)",
    "psnr_video": "validation video PSNR (dB)",
    "compat_psnr": "image decoder vs psi(X): PSNR (dB)",
    "psnr_image_decoder_vs_psi": "image decoder vs psi(X): PSNR (dB)",
    "ssim": "SSIM (0-1, higher is better)",
    "compat_ssim": "image decoder vs psi(X): SSIM (0-1)",
    "lpips_alex": "LPIPS AlexNet (0-1, lower is better)",
    "lpips_vgg": "LPIPS VGG (0-1, lower is better)",
    "tde": "tde (abs. error on [0, 1] intensities, lower is better)",
    "tof": "tOF (pixels, lower is better)",
    "warp_error": "warping error (MSE on [0, 1] intensities, lower is better)",
    "flicker": "flicker (VBench score, input - output; 0 is best)",
    "abs(flicker)": "|flicker| (VBench score, input - output; 0 is best)",
    "vbench_flicker": "VBench temporal flickering (0-1, reference-free)",
    "latent_mse": "latent MSE to the image VAE's latents (lower is better)",
    "latent_cosine": "latent cosine similarity to the image VAE's (-1 to 1)",
    "latent_frechet": "latent Frechet distance to the image VAE's (lower is better)",
    "seconds": "encode + decode time per clip (s)",
    "latent_frames": "latent frames per clip",
}
# Interval columns of every interval table (clip_intervals, frame_intervals, claims_forest).
INTERVAL_COLUMNS = ["mean", "ci_low", "ci_high", "clips"]
SEED_COLUMNS = ["seeds", "seed_min", "seed_max"]
LEGEND_OUTSIDE = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "borderaxespad": 0.0, "frameon": False}
VERDICT_COLOURS = {
    "reproduced": "#009E73",
    "not reproduced": "#D55E00",
    "inconclusive": "#7f7f7f",
    "n/a": "#bbbbbb",
}


def axis_label(metric: str) -> str:
    """The axis label of ``metric``: its name with unit or range (e.g. ``PSNR (dB)``)."""
    return METRIC_LABELS.get(metric, metric)


def split_seed(name: str) -> tuple[str, int]:
    """``cvvae_seed1`` -> ``("cvvae", 1)``; a name without the suffix is seed 0 (as in ``cvvae.claims``)."""
    from cvvae.claims import SEED_SUFFIX

    match = SEED_SUFFIX.match(name)
    return (match["base"], int(match["seed"])) if match else (name, 0)


def pool_seeds(df: pd.DataFrame, column: str = "model") -> pd.DataFrame:
    """``df`` with ``<base>_seed<N>`` rows renamed to ``<base>`` and a ``seed`` column (0 for the base)."""
    out = df.copy()
    if out.empty or column not in out.columns:
        out["seed"] = pd.Series(dtype=int)
        return out
    split = out[column].astype(str).map(split_seed)
    out[column] = split.map(lambda s: s[0])
    out["seed"] = split.map(lambda s: s[1])
    return out


def _clip_key(df: pd.DataFrame) -> str:
    return "clip_id" if "clip_id" in df.columns else "clip"


def _frame_key(df: pd.DataFrame) -> str:
    return "frame_index" if "frame_index" in df.columns else "frame"


def _interval_rows(df: pd.DataFrame, by: list[str], metric: str) -> pd.DataFrame:
    """One row per ``by`` group: mean over clips of the seed-averaged per-clip value, its 95% percentile
    bootstrap CI over clips (``cvvae.claims.bootstrap_ci``: fixed seed, as the claims table) and the spread
    of the seeds' means. ``df`` has a ``seed`` column and one value per clip, seed and group."""
    from cvvae.claims import bootstrap_ci

    key = _clip_key(df)
    records = []
    for group, part in df.dropna(subset=[metric]).groupby(by, sort=False):
        per_clip = part.groupby(key, sort=True)[metric].mean()  # seeds averaged per clip, as cvvae.claims
        seed_means = part.groupby("seed", sort=True)[metric].mean()
        low, high = bootstrap_ci(per_clip.to_numpy())
        keys = group if isinstance(group, tuple) else (group,)
        records.append(
            {
                **dict(zip(by, keys, strict=True)),
                "mean": float(per_clip.mean()),
                "ci_low": low,
                "ci_high": high,
                "clips": int(per_clip.size),
                "seeds": int(seed_means.size),
                "seed_min": float(seed_means.min()),
                "seed_max": float(seed_means.max()),
            }
        )
    return pd.DataFrame(records, columns=[*by, *INTERVAL_COLUMNS, *SEED_COLUMNS])


def clip_intervals(clips: pd.DataFrame, metric: str, by: Sequence[str] = ("model",)) -> pd.DataFrame:
    """Mean ``metric`` per model (and the other ``by`` columns) with a 95% CI over clips; ``<base>_seed<N>``
    models are pooled with ``<base>`` (per clip, the seeds' values are averaged first)."""
    by = list(by)
    if clips.empty or metric not in clips.columns:
        return pd.DataFrame(columns=[*by, *INTERVAL_COLUMNS, *SEED_COLUMNS])
    return _interval_rows(pool_seeds(clips), by, metric)


def frame_intervals(frames: pd.DataFrame, metric: str = "psnr", period: int | None = None) -> pd.DataFrame:
    """Mean ``metric`` per model and frame index with a 95% CI over clips (seeds pooled).

    With ``period`` (e.g. 4, the temporal compression) frames are grouped by ``frame index mod period``
    (column ``frame_mod<period>``) and frame 0 is left out: it is encoded on its own (the 1 of 1 + 4k)."""
    out_col = "frame" if period is None else f"frame_mod{period}"
    if frames.empty or metric not in frames.columns:
        return pd.DataFrame(columns=["model", out_col, *INTERVAL_COLUMNS, *SEED_COLUMNS])
    df = pool_seeds(frames)
    frame = _frame_key(df)
    if period is None:
        df[out_col] = df[frame].astype(int)
    else:
        df = df[df[frame] > 0].copy()
        df[out_col] = df[frame].astype(int) % period
    # one value per clip, seed and position (the mean over the frames of one residue class)
    df = df.groupby(["model", out_col, "seed", _clip_key(df)], sort=False)[metric].mean().reset_index()
    out = _interval_rows(df, ["model", out_col], metric)
    return out.sort_values(["model", out_col], key=_model_order(out), kind="stable").reset_index(drop=True)


def _model_order(df: pd.DataFrame) -> Any:
    """A sort key keeping models in their order of first appearance (numbers sort as numbers)."""
    order = {m: i for i, m in enumerate(dict.fromkeys(df["model"]))} if "model" in df.columns else {}

    def key(column: pd.Series) -> pd.Series:
        return column.map(order) if column.name == "model" else column

    return key


def _no_data(ax: Any, what: str, fontsize: float = 10) -> None:
    ax.text(0.5, 0.5, f"n/a: {what}", ha="center", va="center", transform=ax.transAxes, fontsize=fontsize)
    ax.set_xticks([])
    ax.set_yticks([])


def _yerr(df: pd.DataFrame) -> Any:
    import numpy as np

    # no interval (a single clip) -> no error bar, not a zero-width one that looks like certainty
    low = (df["mean"] - df["ci_low"]).to_numpy(dtype=float)
    high = (df["ci_high"] - df["mean"]).to_numpy(dtype=float)
    return np.nan_to_num(np.vstack([low, high]), nan=0.0)


def interval_figure(
    intervals: pd.DataFrame,
    metric: str,
    x: str = "model",
    hue: str | None = None,
    title: str = "",
    xlabel: str | None = None,
) -> Any:
    """Means with 95% CIs over clips (points and error bars, the value axis fitted to the data, not from 0);
    hollow diamonds mark the lowest and highest seed mean where a model has several seeds. Legend outside."""
    import matplotlib.pyplot as plt
    import numpy as np
    import seaborn as sns

    positions = {v: i for i, v in enumerate(dict.fromkeys(intervals[x]))} if x in intervals else {}
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(positions) + 2.5), 3.4))
    if intervals.empty or intervals["mean"].isna().all():
        _no_data(ax, f"no {metric} values")
        ax.set_title(title)
        return fig
    groups = list(dict.fromkeys(intervals[hue])) if hue else [None]
    offsets = np.linspace(-0.2, 0.2, len(groups)) if len(groups) > 1 else np.zeros(1)
    colours = sns.color_palette("colorblind", n_colors=len(groups))
    seeds_labelled = False
    for group, offset, colour in zip(groups, offsets, colours, strict=True):
        part = intervals if group is None else intervals[intervals[hue] == group]
        xs = np.array([positions[v] for v in part[x]], dtype=float) + offset
        label = "mean, 95% CI over clips" if group is None else str(group)
        ax.errorbar(xs, part["mean"], yerr=_yerr(part), fmt="o", color=colour, capsize=3, ms=4, label=label)
        several = (part["seeds"] > 1).to_numpy() if "seeds" in part else np.zeros(len(part), bool)
        if several.any():
            for column in ("seed_min", "seed_max"):
                ax.scatter(
                    xs[several],
                    part.loc[several, column],
                    marker="D",
                    s=14,
                    facecolors="none",
                    edgecolors=colour,
                    label=None if seeds_labelled else "lowest / highest seed mean",
                )
                seeds_labelled = True
    labels = [str(v) for v in positions]
    long_labels = max(map(len, labels)) > 3  # model names are slanted, frame residues are not
    ax.set_xticks(
        list(positions.values()),
        labels,
        rotation=45 if long_labels else 0,
        ha="right" if long_labels else "center",
    )
    ax.set_xlim(-0.6, len(positions) - 0.4)
    ax.set_ylabel(axis_label(metric))
    ax.set_xlabel(xlabel if xlabel is not None else x)
    ax.margins(y=0.12)
    ax.legend(**LEGEND_OUTSIDE, fontsize=8)
    ax.set_title(title)
    return fig


def interval_line_figure(
    intervals: pd.DataFrame,
    metric: str,
    x: str = "frame",
    hue: str = "model",
    title: str = "",
    xlabel: str = "frame index",
    vlines: Sequence[float] = (),
) -> Any:
    """Curves of means over ``x`` with their 95% CI as a shaded band; optional vertical markers (chunk
    boundaries). Legend outside."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    if intervals.empty or intervals["mean"].isna().all():
        _no_data(ax, f"no {metric} values")
        ax.set_title(title)
        return fig
    groups = list(dict.fromkeys(intervals[hue]))
    for group, colour in zip(groups, sns.color_palette("colorblind", n_colors=len(groups)), strict=True):
        part = intervals[intervals[hue] == group].sort_values(x)
        ax.plot(part[x], part["mean"], marker="o", ms=3, color=colour, label=str(group))
        ax.fill_between(part[x], part["ci_low"], part["ci_high"], color=colour, alpha=0.18, linewidth=0)
    for v in vlines:
        ax.axvline(v, color="grey", linestyle=":", linewidth=0.8)
    ax.set_ylabel(axis_label(metric))
    ax.set_xlabel(xlabel)
    ax.margins(y=0.08)
    legend = ax.legend(**LEGEND_OUTSIDE, fontsize=8, title="band: 95% CI over clips")
    legend.get_title().set_fontsize(8)
    ax.set_title(title)
    return fig


# ----------------------------------------------------------------------------------------------------
# Training curves of every run


def run_names(study: Study, name: str = "val_metrics.csv") -> list[str]:
    """Every run with a ``name`` log, in ``runs/`` or its committed copy ``runs_meta/`` (sorted)."""
    found = {
        p.parent.name
        for folder in (study.runs_dir, study.runs_meta_dir)
        if folder.is_dir()
        for p in folder.glob(f"*/{name}")
    }
    return sorted(found)


def validation_figure(history: pd.DataFrame, metric: str, title: str = "") -> Any:
    """Validation ``metric`` over training steps, one line per run (``alignment_history`` long form). A run
    ``<base>_seed<N>`` shares its base's colour, dashed; a step-0 row (validation before training) is the
    first point of its curve, drawn hollow. Legend outside."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    part = history[history["metric"] == metric].dropna(subset=["value"]) if not history.empty else history
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    if part.empty:
        _no_data(ax, f"no {metric} in any run's validation log")
        ax.set_title(title)
        return fig
    runs = list(dict.fromkeys(part["run"]))
    bases = list(dict.fromkeys(split_seed(r)[0] for r in runs))
    colours = dict(zip(bases, sns.color_palette("colorblind", n_colors=len(bases)), strict=True))
    styles = ["-", "--", ":", "-."]
    for run in runs:
        base, seed = split_seed(run)
        curve = part[part["run"] == run].sort_values("step")
        colour = colours[base]
        ax.plot(
            curve["step"],
            curve["value"],
            linestyle=styles[seed % len(styles)],
            marker="o",
            ms=3,
            color=colour,
            label=run,
        )
        init = curve[curve["step"] == 0]
        if not init.empty:
            ax.scatter(init["step"], init["value"], s=36, facecolors="white", edgecolors=colour, zorder=3)
    has_init = bool((part["step"] == 0).any())
    ax.set_xlabel("training step" + (" (hollow: step 0, before training)" if has_init else ""))
    ax.set_ylabel(axis_label(metric))
    ax.margins(y=0.08)
    ax.legend(**LEGEND_OUTSIDE, fontsize=8, ncol=2 if len(runs) > 10 else 1)
    ax.set_title(title)
    return fig


# ----------------------------------------------------------------------------------------------------
# The claims as a forest plot


def claims_forest(results_dir: str | Path, claims: Sequence[Any] | None = None) -> pd.DataFrame:
    """Every comparison of the claims (``cvvae.claims.default_claims``): mean difference A - B over clips
    with its 95% CI and the verdict, as ``cvvae.claims`` computes them (seeds pooled per clip)."""
    from cvvae import claims as claims_mod

    records = []
    for claim in claims if claims is not None else claims_mod.default_claims():
        for comparison in claim.comparisons:
            result = claims_mod.evaluate_comparison(Path(results_dir), comparison)
            metric = f"abs({comparison.metric})" if comparison.absolute else comparison.metric
            records.append(
                {
                    "claim": claim.id,
                    "comparison": f"{comparison.a} - {comparison.b}",
                    "protocol": comparison.protocol,
                    "metric": metric,
                    "expect": comparison.expect,
                    "threshold": comparison.threshold,
                    "mean": result.mean,
                    "ci_low": result.ci[0],
                    "ci_high": result.ci[1],
                    "clips": result.clips,
                    "seeds": len(result.seed_means),
                    "verdict": result.verdict,
                    "why": result.why,
                }
            )
    columns = ["claim", "comparison", "protocol", "metric", "expect", "threshold"]
    return pd.DataFrame(records, columns=[*columns, *INTERVAL_COLUMNS, "seeds", "verdict", "why"])


def forest_figure(forest: pd.DataFrame, title: str = "") -> Any:
    """One row per comparison: the mean difference A - B with its 95% CI, coloured by verdict; a panel per
    metric (each with its unit); solid line at 0, dashed at a non-inferiority margin. Legend outside."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    metrics = list(dict.fromkeys(forest["metric"])) if not forest.empty else []
    counts = [int((forest["metric"] == m).sum()) for m in metrics] or [1]
    fig, axes = plt.subplots(
        len(counts),
        1,
        figsize=(8.0, 0.28 * sum(counts) + 0.7 * len(counts) + 0.9),
        gridspec_kw={"height_ratios": counts},
        squeeze=False,
        layout="constrained",  # room for the long row labels and the legend below the panels
    )
    axes = axes[:, 0]
    if not metrics:
        _no_data(axes[0], "no claims")
    for ax, metric in zip(axes, metrics, strict=False):
        part = forest[forest["metric"] == metric].reset_index(drop=True)
        ys = list(range(len(part)))[::-1]  # first comparison on top
        for y, (_, row) in zip(ys, part.iterrows(), strict=True):
            colour = VERDICT_COLOURS.get(row["verdict"], "black")
            if pd.isna(row["mean"]):
                ax.text(0.0, y, "n/a", ha="center", va="center", fontsize=8, color=colour)
                continue
            low = row["mean"] - row["ci_low"] if pd.notna(row["ci_low"]) else 0.0
            high = row["ci_high"] - row["mean"] if pd.notna(row["ci_high"]) else 0.0
            ax.errorbar(row["mean"], y, xerr=[[low], [high]], fmt="o", color=colour, capsize=3, ms=4)
        ax.axvline(0.0, color="black", linewidth=0.8)
        for margin in sorted({t for t in part["threshold"] if t != 0}):
            ax.axvline(margin, color="black", linestyle="--", linewidth=0.8)
        labels = [
            f"{r['claim']}: {r['comparison']} ({r['protocol']}), paper {r['expect']} {r['threshold']:g}"
            for _, r in part.iterrows()
        ]
        ax.set_yticks(ys, labels, fontsize=8)
        ax.set_ylim(-0.6, len(part) - 0.4)
        ax.set_xlabel(f"A - B: {axis_label(metric)}", fontsize=9)
        ax.margins(x=0.15)
    handles = [Line2D([], [], color=c, marker="o", linestyle="", label=v) for v, c in VERDICT_COLOURS.items()]
    handles.append(Line2D([], [], color="black", linestyle="--", label="non-inferiority margin"))
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=len(handles),
        fontsize=8,
        frameon=False,
        title="verdict (cvvae.claims); bars: 95% CI over clips, seeds pooled",
        title_fontsize=8,
    )
    fig.suptitle(title, fontsize=10)
    return fig


# ----------------------------------------------------------------------------------------------------
# Qualitative reconstruction grids from the strips `cvvae evaluate` writes (cvvae/evaluate.py)

STRIP_JSON = "strip.json"
STRIP_GT_PNG = "strip_gt.png"
STRIP_PNG = "strip.png"
STRIP_IMAGE_DECODER_PNG = "strip_image_decoder.png"


@dataclass
class GridRow:
    """One row of a reconstruction grid: a label and one image per column (None: n/a)."""

    label: str
    cells: list[Any]
    note: str = ""


def _read_strip(path: Path, cells: int) -> list[Any]:
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"))
    width = array.shape[1] // cells
    return [array[:, i * width : (i + 1) * width] for i in range(cells)]


def reconstruction_grid(
    study: Study, protocol: str, models: Sequence[str], latents_model: str | None = None
) -> tuple[list[GridRow], list[int], str]:
    """The strips of ``models`` on ``protocol`` as grid rows (ground truth first, then each model, then the
    frozen image decoder on ``latents_model``'s latents), the frame indices of the columns and the clip id.

    Every strip must show the same clip and frames as the first one found; a model without a strip (not
    evaluated, or evaluated before strips were written) gets an ``n/a`` row with the reason."""
    import json

    models = [m for m in models if m in study.models(protocol)]
    infos = {}
    for model in models:
        path = study.eval_dir(protocol, model) / STRIP_JSON
        if path.is_file():
            infos[model] = json.loads(path.read_text())
    if not infos:
        return [], [], ""
    first = next(iter(infos))
    clip, frames = infos[first]["clip_id"], list(infos[first]["frames"])
    rows = [GridRow("ground truth", _read_strip(study.eval_dir(protocol, first) / STRIP_GT_PNG, len(frames)))]
    for model in models:
        info = infos.get(model)
        if info is None:
            rows.append(GridRow(model, [None] * len(frames), "n/a: no strip (evaluation without strips)"))
        elif info["clip_id"] != clip or list(info["frames"]) != frames:
            note = f"n/a: strip of another clip ({info['clip_id']})"
            rows.append(GridRow(model, [None] * len(frames), note))
        else:
            rows.append(GridRow(model, _read_strip(study.eval_dir(protocol, model) / STRIP_PNG, len(frames))))
    if latents_model is not None and latents_model in models:
        label = f"image decoder on\n{latents_model} latents"
        info = infos.get(latents_model) or {}
        latent_frames = info.get("latent_frames")
        path = study.eval_dir(protocol, latents_model) / STRIP_IMAGE_DECODER_PNG
        if info.get("clip_id") == clip and latent_frames and path.is_file():
            decoded = _read_strip(path, len(latent_frames))
            # latent frame j stands for the frames of group j; shown in the column of frame 4j
            by_frame = dict(zip([4 * j for j in latent_frames], decoded, strict=True))
            rows.append(GridRow(label, [by_frame.get(f) for f in frames], "latent frame j in column 4j"))
        else:
            rows.append(GridRow(label, [None] * len(frames), "n/a: no image-decoder strip"))
    return rows, frames, clip


def grid_figure(rows: Sequence[GridRow], frames: Sequence[int], title: str = "", missing: str = "") -> Any:
    """The grid of ``reconstruction_grid``: one row per autoencoder, one column per frame index; ``missing``
    is the note shown when there are no strips at all."""
    import matplotlib.pyplot as plt

    if not rows:
        fig, ax = plt.subplots(figsize=(7.0, 0.8))
        _no_data(ax, missing or "no reconstruction strips", fontsize=8)
        ax.set_axis_off()
        ax.set_title(title, fontsize=9)
        return fig
    cols = len(frames)
    size = (1.1 * cols + 1.6, 1.1 * len(rows) + 0.4)
    fig, axes = plt.subplots(len(rows), cols, figsize=size, squeeze=False)
    for r, row in enumerate(rows):
        for c, cell in enumerate(row.cells):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if cell is None:
                ax.text(0.5, 0.5, "n/a", ha="center", va="center", transform=ax.transAxes, fontsize=8)
                ax.set_facecolor("#f2f2f2")
            else:
                ax.imshow(cell, interpolation="nearest")
            if r == 0:
                ax.set_title(f"frame {frames[c]}", fontsize=8)
        label = f"{row.label}\n({row.note})" if row.note.startswith("n/a") else row.label
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
