"""What notebook 06 shows of a generative folder: the metrics table and the grid of the same samples through
each decoder (rows: the held-out reference images, then every decoder; columns: sample index)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from cvvae.ldm.decode import GRIDS, REFERENCE
from cvvae.ldm.score import METRICS_FILE

TABLE_COLUMNS = [
    "decoder", "samples", "reference_images", "fid", "fid_lo", "fid_hi", "delta_fid", "delta_fid_lo",
    "delta_fid_hi", "kid", "kid_lo", "kid_hi", "delta_kid", "psnr_vs_reference", "lpips_alex_vs_reference",
    "lpips_vgg_vs_reference", "max_abs_diff", "note",
]  # fmt: skip


@dataclass
class Generative:
    """A generative folder as read for the notebook; ``missing`` holds why something is n/a."""

    folder: Path
    table: pd.DataFrame
    grids: dict[str, np.ndarray] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    feature_network: str = "n/a"
    reference_decoder: str = ""


def read_generative(results_dir: str | Path) -> Generative:
    """``<results_dir>/generative``: its ``metrics.csv`` (empty with a note when absent) and grid strips."""
    folder = Path(results_dir) / "generative"
    empty = pd.DataFrame(columns=TABLE_COLUMNS)
    if not (folder / METRICS_FILE).is_file():
        # Relative to the results folder, so the note reads the same wherever the folder is.
        note = (
            f"generative/{METRICS_FILE} not found (train-ldm, then python -m cvvae.ldm sample/decode/score)"
        )
        return Generative(folder, empty, missing=[note])
    raw = pd.read_csv(folder / METRICS_FILE, keep_default_na=False, na_values=[""])
    if "note" in raw:
        raw["note"] = raw["note"].fillna("")  # an empty note is no note, not a missing value
    out = Generative(folder, raw[[c for c in TABLE_COLUMNS if c in raw.columns]])
    out.feature_network = str(raw["feature_network"].iloc[0]) if len(raw) else "n/a"
    out.reference_decoder = str(raw["reference_decoder"].iloc[0]) if len(raw) else ""
    out.missing += [
        str(n)[len("n/a: ") :] for n in raw.get("note", pd.Series(dtype=str)).dropna().unique() if n
    ]
    for name in [REFERENCE, *raw["decoder"]]:
        path = folder / GRIDS / f"{name}.png"
        if path.is_file():
            out.grids[name] = np.asarray(Image.open(path).convert("RGB"))
        else:
            out.missing.append(f"grid generative/{GRIDS}/{name}.png not found")
    return out


def grid_figure(generative: Generative, title: str = "") -> Any:
    """One row per strip (reference images first, then the decoders of the same latents)."""
    import matplotlib.pyplot as plt

    strips = generative.grids
    if not strips:
        fig, ax = plt.subplots(figsize=(7.0, 0.8))
        ax.text(0.5, 0.5, "n/a: " + "; ".join(generative.missing[:1] or ["no grids"]), ha="center",
                va="center", transform=ax.transAxes, fontsize=8)  # fmt: skip
        ax.set_axis_off()
        return fig
    height, width = next(iter(strips.values())).shape[:2]
    fig_width = 8.0
    fig, axes = plt.subplots(
        len(strips), 1, figsize=(fig_width, 0.2 + len(strips) * fig_width * height / width)
    )
    for ax, (name, strip) in zip(np.atleast_1d(axes), strips.items(), strict=True):
        ax.imshow(strip, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        label = "held-out images" if name == REFERENCE else name
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
