"""The paper's reported numbers as data, and side-by-side tables (ours | paper | delta | protocol).

Every number in ``PAPER_TABLES`` is transcribed from the CV-VAE paper (NeurIPS 2024, arXiv 2405.20279),
or, for ``independent``, from the Open-Sora-Plan v1.2 report. Values are kept as printed; where the paper's
text and tables disagree, the table wins and the note of the table says so.

Tables are long-form ``pandas.DataFrame`` objects with the columns ``row, dataset, metric, value`` so that a
result of this project (long-form as well) can be joined on ``(row, dataset, metric)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

# Direction of every metric: True if higher is better (the sign of the "better" column).
HIGHER_IS_BETTER: dict[str, bool] = {
    "psnr": True,
    "ssim": True,
    "lpips": False,
    "lpips_alex": False,
    "lpips_vgg": False,
    "fid": False,
    "clip": True,
    "pic": True,
    "fvd": False,
    "kvd": False,
    "frame_consistency": True,
    "text_alignment": True,
}


@dataclass(frozen=True)
class PaperTable:
    """One table of the paper: long-form values plus what is needed to read them."""

    name: str
    caption: str
    protocol: str
    """Dataset, frames, stride, resolution and metric implementations as far as the paper states them."""
    rows: dict[str, str]
    """Row id -> label as printed."""
    values: tuple[tuple[str, str, str, float], ...]
    """``(row, dataset, metric, value)``."""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def frame(self) -> pd.DataFrame:
        """Long-form values with the printed row labels."""
        df = pd.DataFrame(self.values, columns=["row", "dataset", "metric", "value"])
        df.insert(1, "label", df["row"].map(self.rows))
        return df


def _grid(
    rows: Mapping[str, Iterable[float]], datasets: tuple[str, ...], metrics: tuple[str, ...]
) -> tuple[tuple[str, str, str, float], ...]:
    """Expand printed rows (values in dataset-major, metric-minor order) into long-form records."""
    out: list[tuple[str, str, str, float]] = []
    for row, numbers in rows.items():
        numbers = list(numbers)
        if len(numbers) != len(datasets) * len(metrics):
            raise ValueError(
                f"row {row!r}: expected {len(datasets) * len(metrics)} numbers, got {len(numbers)}"
            )
        cells = [(d, m) for d in datasets for m in metrics]
        out.extend((row, d, m, float(v)) for (d, m), v in zip(cells, numbers, strict=True))
    return tuple(out)


def _printed_table(
    name: str,
    caption: str,
    protocol: str,
    printed: Mapping[str, tuple[str, Iterable[float]]],
    datasets: tuple[str, ...],
    metrics: tuple[str, ...],
    notes: tuple[str, ...] = (),
) -> PaperTable:
    """A table from its rows as printed: row id -> (label, numbers in dataset-major, metric-minor order)."""
    return PaperTable(
        name=name,
        caption=caption,
        protocol=protocol,
        rows={row: label for row, (label, _) in printed.items()},
        values=_grid({row: numbers for row, (_, numbers) in printed.items()}, datasets, metrics),
        notes=notes,
    )


_REC = ("psnr", "ssim", "lpips")
_RECON_DATASETS = ("coco_val", "webvid_val")
_RECON_PROTOCOL = (
    "COCO2017 val images and WebVid val (1024 videos), resized and cropped to 256x256; videos 33 frames at "
    "stride 3; PSNR/SSIM/LPIPS (LPIPS backbone not stated); 3D tiled processing; posterior sample vs mode "
    "not stated"
)

PAPER_TABLES: dict[str, PaperTable] = {
    t.name: t
    for t in [
        _printed_table(
            "table1",
            "Table 1: image and video reconstruction",
            _RECON_PROTOCOL,
            {
                "vae_sd21": ("VAE-SD2.1", [26.6, 0.773, 0.127, 28.9, 0.810, 0.145]),
                "vqgan": ("VQGAN (f8-8192)", [22.7, 0.678, 0.186, 24.6, 0.718, 0.179]),
                "tats": ("TATS", [23.4, 0.741, 0.287, 24.1, 0.729, 0.310]),
                "vae_osp": ("VAE-OSP (Open-Sora-Plan)", [27.0, 0.791, 0.142, 26.7, 0.781, 0.166]),
                "cvvae_2d3d": ("Ours (2D+3D)", [27.6, 0.805, 0.136, 28.5, 0.817, 0.143]),
                "cvvae_3d": ("Ours (3D)", [27.7, 0.805, 0.135, 28.6, 0.819, 0.145]),
            },
            _RECON_DATASETS,
            _REC,
            notes=(
                "Params (encoder + decoder): VAE-SD2.1 34M+49M, VQGAN 26M+38M, TATS 7M+16M, "
                "VAE-OSP 94M+135M, Ours (2D+3D) 68M+114M, Ours (3D) 100M+156M.",
                "Frame compression: 1x for VAE-SD2.1 and VQGAN, 4x for the others.",
            ),
        ),
        _printed_table(
            "table2",
            "Table 2: text-to-image with SD2.1, no fine-tuning, COCO2017 val",
            "2048 COCO2017 val captions; FID, CLIP score, PIC (DreamSim); resolution not stated",
            {"sd21": ("SD2.1", [57.3, 0.312, 0.354]), "sd21_cvvae": ("SD2.1+CV-VAE", [57.6, 0.311, 0.360])},
            ("coco_val",),
            ("fid", "clip", "pic"),
            notes=("The paper prints CLIP with a down arrow; a CLIP score is normally higher-is-better.",),
        ),
        _printed_table(
            "table3",
            "Table 3: image-to-video with SVD",
            "2048 sampled videos each of UCF101 and MSR-VTT at 576x1024; FVD, KVD (I3D), PIC (DreamSim)",
            {
                "svd": ("SVD (25 frames)", [402, 8.20, 0.791, 310, 1.30, 0.588]),
                "svd_cvvae_i": ("SVD+CV-VAE-I (25 frames)", [419, 6.73, 0.763, 262, 1.67, 0.609]),
                "svd_cvvae_v": ("SVD+CV-VAE-V (97 frames)", [762, 15.7, 0.791, 319, 3.31, 0.696]),
                "svd_cvvae_v_tuned": (
                    "SVD+CV-VAE-V, output layer tuned (97 frames)",
                    [681, 13.1, 0.858, 295, 2.26, 0.734],
                ),
            },
            ("ucf101", "msrvtt"),
            ("fvd", "kvd", "pic"),
        ),
        _printed_table(
            "table4",
            "Table 4: CV-VAE vs frame interpolation, MSR-VTT",
            "SVD 25x576x1024 interpolated to 97 frames by RIFE vs SVD+CV-VAE producing 97 frames",
            {"svd_rife": ("SVD+RIFE", [253, 3.12, 0.721]), "svd_cvvae": ("SVD+CV-VAE", [295, 2.26, 0.734])},
            ("msrvtt",),
            ("fvd", "kvd", "pic"),
        ),
        _printed_table(
            "table5",
            "Table 5: text-to-video with VideoCrafter2, MSR-VTT val captions, 320x512",
            "MSR-VTT val captions; CLIP frame consistency and text alignment (Tune-A-Video)",
            {
                "vc2": ("VC2 (1x)", [0.292, 0.960]),
                "vc2_cvvae_i": ("VC2+CV-VAE-I (1x)", [0.290, 0.964]),
                "vc2_cvvae_v": ("VC2+CV-VAE-V (4x)", [0.285, 0.953]),
                "vc2_cvvae_v_tuned": ("VC2+CV-VAE-V, tuned (4x)", [0.301, 0.987]),
            },
            ("msrvtt",),
            ("frame_consistency", "text_alignment"),
            notes=(
                "Transcribed as printed; the two columns look swapped (values near 0.29 are typical of text "
                "alignment, values near 0.96 of frame consistency).",
            ),
        ),
        _printed_table(
            "table6",
            "Table 6: regularisation type (ablation)",
            _RECON_PROTOCOL + "; run length of the ablation not stated (numbers differ from Table 1)",
            {
                "enc": ("2D Enc.", [26.0, 0.759, 0.205, 26.0, 0.748, 0.222]),
                "dec": ("2D Dec.", [27.5, 0.801, 0.151, 28.0, 0.803, 0.158]),
                "both": ("2D Enc. + Dec.", [27.9, 0.808, 0.150, 27.6, 0.795, 0.176]),
            },
            _RECON_DATASETS,
            _REC,
            notes=("The paper has no row without regularisation.",),
        ),
        _printed_table(
            "table7",
            "Table 7: mapping function (ablation)",
            _RECON_PROTOCOL + "; run length of the ablation not stated",
            {
                "first": ("1st Frame", [27.3, 0.797, 0.156, 26.6, 0.771, 0.191]),
                "average": ("Average", [27.5, 0.801, 0.151, 27.9, 0.801, 0.172]),
                "slice": ("Slice", [27.5, 0.802, 0.152, 27.7, 0.799, 0.168]),
                "random": ("Random", [27.6, 0.803, 0.138, 28.4, 0.811, 0.153]),
            },
            _RECON_DATASETS,
            _REC,
        ),
        _printed_table(
            "table8",
            "Table 8: SD3 (z=16) variant, same protocol as Table 1",
            _RECON_PROTOCOL,
            {
                "vae_sd3": ("VAE-SD3", [32.6, 0.899, 0.064, 33.4, 0.910, 0.064]),
                "cvvae_sd3": ("CVVAE-SD3", [33.6, 0.916, 0.072, 32.0, 0.899, 0.087]),
            },
            _RECON_DATASETS,
            _REC,
        ),
        _printed_table(
            "independent",
            "Independent numbers (Open-Sora-Plan v1.2 report)",
            "WebVid val (5k clips) and Panda70M val (6k); short side 256, centre crop 256x256, 33 frames",
            {
                "cvvae": ("CV-VAE (4x8x8)", [30.76, 0.8566, 0.0803, 29.57, 0.8795, 0.0673]),
                "vae_sd21": ("SD2.1 VAE (1x8x8)", [30.19, 0.8379, 0.0568, 30.40, 0.8894, 0.0396]),
            },
            ("webvid_val", "panda70m_val"),
            _REC,
            notes=("Which CV-VAE release was tested is not stated.",),
        ),
    ]
}


def higher_is_better(metric: str) -> bool:
    """Direction of a metric; variants such as ``lpips_vgg`` or ``psnr_first`` follow their family."""
    if metric in HIGHER_IS_BETTER:
        return HIGHER_IS_BETTER[metric]
    return HIGHER_IS_BETTER.get(metric.split("_")[0], True)


def paper_frame(name: str) -> pd.DataFrame:
    """Long-form values of one paper table (``row, label, dataset, metric, value``)."""
    if name not in PAPER_TABLES:
        raise KeyError(f"no paper table {name!r}; known tables: {', '.join(PAPER_TABLES)}")
    return PAPER_TABLES[name].frame()


def paper_value(name: str, row: str, dataset: str, metric: str) -> float:
    """One number of the paper, or NaN where the paper has none."""
    df = paper_frame(name)
    hit = df[(df["row"] == row) & (df["dataset"] == dataset) & (df["metric"] == metric)]
    return float(hit["value"].iloc[0]) if len(hit) else math.nan


def side_by_side(
    ours: pd.DataFrame,
    table: str,
    row_map: Mapping[str, str | None],
    dataset_map: Mapping[str, str],
    metrics: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Put our long-form results next to the paper's numbers.

    ``ours`` has the columns ``row, dataset, metric, value`` (and optionally ``protocol``); ``row_map`` maps
    each of our rows to the paper's row id (or ``None`` where the paper has no counterpart), ``dataset_map``
    maps our dataset names to the paper's (e.g. ``{"video": "webvid_val"}``). Metrics the paper does not
    report (e.g. ``lpips_vgg``) are matched to the paper's generic metric of the same family (``lpips``),
    because the paper does not state its backbone; the protocol column says which one is ours.

    Returns one row per (our row, dataset, metric) with ``ours, paper, delta, better`` where ``delta = ours -
    paper`` and ``better`` says whether ours is better in the metric's direction (NA where either is missing).
    """
    required = {"row", "dataset", "metric", "value"}
    missing = required - set(ours.columns)
    if missing:
        raise ValueError(f"ours lacks column(s) {sorted(missing)}; expected long form {sorted(required)}")
    paper = paper_frame(table)
    df = ours.copy()
    if metrics is not None:
        df = df[df["metric"].isin(list(metrics))]
    unknown = sorted(set(df["row"]) - set(row_map))
    if unknown:
        raise ValueError(f"rows {unknown} have no entry in row_map; map them to a paper row or None")
    df["_order"] = range(len(df))  # keep the caller's row order through the merge
    df["paper_row"] = df["row"].map(row_map)
    df["paper_dataset"] = df["dataset"].map(lambda d: dataset_map.get(d))
    df["paper_metric"] = df["metric"].map(lambda m: "lpips" if str(m).startswith("lpips") else m)
    merged = df.merge(
        paper.rename(
            columns={
                "row": "paper_row",
                "dataset": "paper_dataset",
                "metric": "paper_metric",
                "value": "paper",
            }
        ),
        on=["paper_row", "paper_dataset", "paper_metric"],
        how="left",
    )
    merged = merged.sort_values("_order", kind="stable").rename(
        columns={"value": "ours", "label": "paper_label"}
    )
    merged["ours"] = pd.to_numeric(merged["ours"], errors="coerce")
    merged["delta"] = merged["ours"] - merged["paper"]
    sign = merged["metric"].map(lambda m: 1.0 if higher_is_better(str(m)) else -1.0)
    better = (merged["delta"] * sign) > 0
    merged["better"] = better.where(merged["delta"].notna(), pd.NA)
    cols = ["row", "dataset", "metric", "ours", "paper_label", "paper", "delta", "better"]
    if "protocol" in merged.columns:
        cols.append("protocol")
    return merged[cols].reset_index(drop=True)


def wide(df: pd.DataFrame, value: str = "ours", index: str = "row") -> pd.DataFrame:
    """Pivot a long-form table to one row per ``index`` and one column per ``dataset/metric``.

    Row and column order follow first appearance, so a caller controls the order of the table it prints.
    """
    order_rows = list(dict.fromkeys(df[index]))
    order_cols = list(dict.fromkeys(f"{d}/{m}" for d, m in zip(df["dataset"], df["metric"], strict=True)))
    tmp = df.assign(column=[f"{d}/{m}" for d, m in zip(df["dataset"], df["metric"], strict=True)])
    out = tmp.pivot_table(index=index, columns="column", values=value, aggfunc="first", dropna=False)
    return out.reindex(index=order_rows, columns=order_cols)


def compact(side: pd.DataFrame) -> pd.DataFrame:
    """A ``side_by_side`` table for reading: one row per model, one column per ``dataset metric``, cells
    ``ours (paper)`` (or just ``ours`` where the paper has no number)."""
    if side.empty:
        return pd.DataFrame(columns=["row"])
    cells = []
    for _, item in side.iterrows():
        ours = format_value(item["ours"], str(item["metric"]))
        paper = item.get("paper")
        text = (
            ours
            if paper is None or pd.isna(paper)
            else f"{ours} ({format_value(paper, str(item['metric']))})"
        )
        cells.append({"row": item["row"], "column": f"{item['dataset']} {item['metric']}", "cell": text})
    long = pd.DataFrame(cells)
    rows = list(dict.fromkeys(long["row"]))
    cols = list(dict.fromkeys(long["column"]))
    out = long.pivot(index="row", columns="column", values="cell").reindex(index=rows, columns=cols)
    return out.fillna("").reset_index().rename(columns={"row": "model"}).rename_axis(columns=None)


def format_value(value: object, metric: str = "") -> str:
    """Numbers at the precision the paper prints them; missing values as ``n/a``."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        base = metric.split("_")[0]
        if base in {"psnr", "fid", "fvd"}:
            return f"{value:.2f}"
        return f"{value:.4f}"
    return str(value)


def to_markdown(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """A GitHub-flavoured markdown table; NaN shows as ``n/a``."""
    # tabulate only treats None as missing, so NaN/NA become None first.
    cleaned = df.astype(object).where(df.notna(), None)
    return cleaned.to_markdown(index=False, floatfmt=floatfmt, missingval="n/a")


def write_table(
    df: pd.DataFrame,
    out_dir: str | Path,
    name: str,
    caption: str = "",
    notes: Iterable[str] = (),
    markdown: pd.DataFrame | None = None,
) -> Path:
    """Write ``<out_dir>/<name>.csv`` and ``<out_dir>/<name>.md`` (caption, table, notes); return the csv.

    ``markdown`` replaces ``df`` in the ``.md`` file (e.g. a ``compact`` view of a long-form csv)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / f"{name}.csv"
    df.to_csv(csv_path, index=False)
    parts = [f"**{caption}**\n" if caption else "", to_markdown(df if markdown is None else markdown), ""]
    parts += [f"- {n}" for n in notes]
    (out_dir / f"{name}.md").write_text("\n".join(p for p in parts if p is not None).strip() + "\n")
    return csv_path
