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


FEATURES = "features"
PAIRS_FILE = "pairs.json"
FEATURE_KEY = "features"


def write_features(
    out_dir: str | Path,
    decoders: Sequence[str] | None = None,
    reference_decoder: str | None = None,
    network: FeatureNetwork | None = None,
    network_name: str | None = None,
    config: LDMScoreConfig | None = None,
    device: str = "cpu",
) -> Path:
    """The part of scoring that needs the images and the feature network: ``features/<name>.safetensors``
    (float32 ``N 2048``, the reference images as ``reference``) and ``features/pairs.json`` (each decoder
    against the reference decoder's image of the same latent). Small enough to travel where the images do not;
    :func:`score_features` turns them into the table anywhere."""
    from safetensors.torch import save_file

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
    folder = out_dir / FEATURES
    folder.mkdir(parents=True, exist_ok=True)
    if network is not None:
        sets = {REFERENCE: read_pngs(out_dir / REFERENCE), **images}
        for name, pixels in sets.items():
            feats = torch.from_numpy(features(pixels, network, config.feature_batch_size)).float()
            save_file({FEATURE_KEY: feats.contiguous()}, folder / f"{name}.safetensors")
    lpips_reason = None if config.lpips_net != "none" else "switched off (ldm.score.lpips_net: none)"
    pairs: dict[str, dict[str, Any]] = {}
    for name in names:
        pairs[name] = {"samples": len(images[name]), **pair_summary(images[name], images[reference_decoder])}
        value = math.nan
        if lpips_reason is None:
            try:
                value = pair_lpips(images[name], images[reference_decoder], config.lpips_net, device)
            except LPIPSWeightsMissing as err:
                lpips_reason = f"LPIPS weights not installed: {err}"
        pairs[name][f"lpips_{config.lpips_net}_vs_reference"] = value
    record = {"reference_decoder": reference_decoder, "feature_network": network_name or "n/a",
              "feature_reason": reason, "lpips_reason": lpips_reason, "decoders": pairs}  # fmt: skip
    (folder / PAIRS_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return folder


def score_features(out_dir: str | Path, config: LDMScoreConfig | None = None) -> pd.DataFrame:
    """``metrics.csv`` from the files :func:`write_features` left in ``out_dir/features``: FID and KID with
    their paired intervals, and the pairwise columns."""
    from safetensors.torch import load_file

    out_dir, config = Path(out_dir), config or LDMScoreConfig()
    folder = out_dir / FEATURES
    if not (folder / PAIRS_FILE).is_file():
        raise FileNotFoundError(
            f"no {folder / PAIRS_FILE}: run `python -m cvvae.ldm features` where the decoded images are"
        )
    record = json.loads((folder / PAIRS_FILE).read_text())
    reference_decoder, pairs = record["reference_decoder"], record["decoders"]
    rows: dict[str, dict[str, Any]] = {name: {"decoder": name} | pair for name, pair in pairs.items()}
    reason = record.get("feature_reason")
    files = [folder / f"{name}.safetensors" for name in [REFERENCE, *pairs]]
    if reason is None and all(f.is_file() for f in files):
        loaded = {f.stem: load_file(f)[FEATURE_KEY].double().numpy() for f in files}
        real = loaded.pop(REFERENCE)
        for row in compare_decoders(
            real, loaded, reference_decoder, config.bootstrap, config.kid_subsets, config.kid_subset_size
        ):
            rows[row["decoder"]].update(row)
    elif reason is None:
        reason = "feature files missing: " + ", ".join(f.name for f in files if not f.is_file())
    for row in rows.values():
        row["reference_decoder"] = reference_decoder
        row["feature_network"] = record.get("feature_network", "n/a")
        row["note"] = "; ".join(f"n/a: {t}" for t in (reason, record.get("lpips_reason")) if t)
        for column in SET_COLUMNS:
            row.setdefault(column, math.nan)
    table = pd.DataFrame(list(rows.values()))
    table.to_csv(out_dir / METRICS_FILE, index=False)
    sampling = out_dir / DECODED / f"{reference_decoder}.json"
    if sampling.is_file():  # how the latents were made, beside the table
        (out_dir / "sampling.json").write_text(
            json.dumps(json.loads(sampling.read_text())["sampling"], indent=2)
        )
    return table


def score_folder(out_dir: str | Path, config: LDMScoreConfig | None = None, **options: Any) -> pd.DataFrame:
    """Score the decoded folders of ``out_dir`` and write ``metrics.csv``: :func:`write_features` (with its
    ``options``: decoders, reference decoder, feature network, device) then :func:`score_features`. Without a
    feature network the set metrics are n/a with the reason and only the pairwise columns are computed."""
    write_features(out_dir, config=config, **options)
    return score_features(out_dir, config)


def pair_lpips(a: Tensor, b: Tensor, net: str, device: str = "cpu", batch_size: int = 32) -> float:
    """Mean LPIPS between two decoders' uint8 images of the same latents (``LPIPSWeightsMissing`` without
    the backbone's weights)."""
    from cvvae.metrics.reconstruction import lpips_per_frame

    values = [
        lpips_per_frame(x.to(device).float() / 127.5 - 1, y.to(device).float() / 127.5 - 1, net)
        for x, y in zip(a.split(batch_size), b.split(batch_size), strict=True)
    ]
    return float(torch.cat([v.flatten() for v in values]).mean())
