"""Reconstruct a dataset with any ``VideoAutoencoder``; write per-clip, per-frame and summary metric tables.

Output folder (``out_dir``):

- ``per_clip.csv``: one row per clip: ``clip_id, path, num_frames, latent_frames``, means of ``psnr, ssim,
  lpips_<net>``, temporal metrics (``tde, tof, warp_error, warp_error_gt, flicker, vbench_flicker,
  vbench_flicker_gt``; clips of two or more frames), latent compatibility (``compat_psnr, compat_ssim,
  latent_mse, latent_cosine, latent_frechet``; only with a ``LatentReference``) and ``encode_seconds,
  decode_seconds, seconds``.
- ``per_frame.csv``: one row per clip and frame index: ``psnr, ssim, lpips_<net>`` and ``tde`` of the
  transition into that frame (empty for frame 0). Mean PSNR by ``frame_index`` exposes chunk boundaries.
- ``strip.json``, ``strip_gt.png``, ``strip.png`` and (with a ``LatentReference`` whose psi matches the
  latent frames) ``strip_image_decoder.png``: the first clip's frames 0, 4, 8, ... (at most 4, at most 64 px
  high) as ground truth, reconstruction and the image decoder on the latent frames 0, 1, 2, ...; small PNGs
  for qualitative grids (``cvvae.notebook_utils.reconstruction_grid``).
- ``summary.csv``: one row naming the protocol, the model and every metric implementation, with the means.
- ``meta.json``: the same description as data, with the evaluation's identity (the model spec and the
  digests of the weights and the manifest it read); a restart checks it before resuming, so clips of another
  model, retrained weights or another dataset are never reused. The display name (``--name``) is not part
  of it.

Rows are appended as each clip finishes (per-frame rows first, then the clip row, each in a single write), so
a restarted evaluation skips finished clips and drops partial per-frame rows of the clip it was working on.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from cvvae.dtypes import DTYPE_NAMES, dtype_name, resolve_dtype
from cvvae.metrics import latent as latent_metrics
from cvvae.metrics import reconstruction as rec
from cvvae.metrics import temporal
from cvvae.metrics.weights import format_na, lpips_na_reason
from cvvae.per_frame import per_frame
from cvvae.staging import atomic_write_text

PER_CLIP_CSV = "per_clip.csv"
PER_FRAME_CSV = "per_frame.csv"
SUMMARY_CSV = "summary.csv"
META_JSON = "meta.json"
# Fields of meta.json that must match for a restart to resume instead of mixing two different runs.
RESUME_KEYS = ("protocol", "protocol_description", "dtype", "lpips_nets", "latent_reference", "identity")
STRIP_JSON = "strip.json"
STRIP_GT_PNG = "strip_gt.png"
STRIP_PNG = "strip.png"
STRIP_IMAGE_DECODER_PNG = "strip_image_decoder.png"
STRIP_FRAMES = 4
STRIP_MAX_SIZE = 64  # pixels of a strip's height: committed PNGs stay a few kB


@dataclass
class LatentReference:
    """The frozen image VAE that the autoencoder's latents should stay compatible with.

    ``decode_image`` maps latents ``N c h w`` to images ``N C H W``; ``psi`` maps a video ``B C T H W`` to the
    frames its latent frames stand for ``B C t H W`` (e.g. ``cvvae.models.frames.map_frames(video,
    "slice")``); ``encode_image`` (optional) maps images to latents for ``latent_distance``.
    """

    decode_image: Callable[[Tensor], Tensor]
    psi: Callable[[Tensor], Tensor]
    encode_image: Callable[[Tensor], Tensor] | None = None
    description: str = "image VAE"


# ---------------------------------------------------------------------------------------------------------
# CSV files that survive interruption


def _drop_torn_tail(path: Path) -> None:
    """Remove an incomplete last line left by a crash in the middle of an append."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def _append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append ``rows`` in one write; a new column (rare) rewrites the file atomically with the union."""
    if not rows:
        return
    new = pd.DataFrame(rows)
    if not path.is_file() or path.stat().st_size == 0:
        atomic_write_text(path, new.to_csv(index=False))
        return
    header = path.open().readline().rstrip("\n").split(",")
    if not set(new.columns) <= set(header):
        merged = pd.concat([pd.read_csv(path), new], ignore_index=True)
        atomic_write_text(path, merged.to_csv(index=False))
        return
    text = new.reindex(columns=header).to_csv(index=False, header=False)
    with path.open("a") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame()
    return pd.read_csv(path, dtype={"clip_id": str})


def _prepare_resume(out_dir: Path, meta: dict[str, Any], resume: bool, if_changed: str = "error") -> set[str]:
    """Finished clip ids; checks that an existing run is the same evaluation, cleans partial rows.

    A folder holding another evaluation raises (``if_changed="error"``) or is started over (``"restart"``).
    """
    from cvvae.fingerprint import differences

    files = [out_dir / n for n in (PER_CLIP_CSV, PER_FRAME_CSV, SUMMARY_CSV, META_JSON)]
    meta_path = out_dir / META_JSON
    if resume and meta_path.is_file():
        old = json.loads(meta_path.read_text())
        stored = json.loads(json.dumps({k: meta.get(k) for k in RESUME_KEYS}, default=str))
        changed = differences({k: old.get(k) for k in RESUME_KEYS}, stored)
        if changed and if_changed == "error":
            raise ValueError(
                f"{out_dir} holds a different evaluation ({changed}); use another --out folder or start "
                "over with --no-resume"
            )
        resume = not changed
    if not resume:
        for path in files:
            path.unlink(missing_ok=True)
        return set()
    for path in files[:2]:
        if path.is_file():
            _drop_torn_tail(path)
    clips = _read_csv(out_dir / PER_CLIP_CSV)
    done = set(clips["clip_id"]) if "clip_id" in clips else set()
    frames = _read_csv(out_dir / PER_FRAME_CSV)
    if "clip_id" in frames and not frames["clip_id"].isin(done).all():
        kept = frames[frames["clip_id"].isin(done)]
        atomic_write_text(out_dir / PER_FRAME_CSV, kept.to_csv(index=False))
    return done


# ---------------------------------------------------------------------------------------------------------
# One clip


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _mean(values: Tensor) -> float:
    finite = values[torch.isfinite(values)]
    return float(finite.double().mean()) if finite.numel() else float("nan")


def _evaluate_clip(
    autoencoder: Any,
    video: Tensor,
    lpips_nets: Sequence[str],
    device: torch.device,
    dtype: torch.dtype,
    reference: LatentReference | None,
    keep: dict[str, Tensor] | None = None,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Per-clip values and per-frame arrays of one ``C T H W`` clip (its tensors stored in ``keep``)."""
    target = video.unsqueeze(0).to(device=device, dtype=torch.float32)
    with torch.no_grad():
        start = time.perf_counter()
        latents = autoencoder.encode(target.to(dtype))
        _sync(device)
        encoded = time.perf_counter()
        recon = autoencoder.decode(latents, target.shape[2])
        _sync(device)
        decoded = time.perf_counter()
    pred = recon.float()
    if pred.shape != target.shape:
        raise ValueError(
            f"{autoencoder.name} decoded shape {tuple(pred.shape)} for input {tuple(target.shape)}"
        )
    if not torch.isfinite(pred).all():
        hint = (
            "fp16 decoding is known to overflow in some VAEs: evaluate in bf16 or fp32"
            if dtype == torch.float16
            else "the weights may hold NaN/inf (check the checkpoint)"
        )
        raise FloatingPointError(f"{autoencoder.name} produced NaN/inf in {dtype_name(dtype)}; {hint}")
    per_frame: dict[str, Tensor] = rec.reconstruction_metrics(pred, target, lpips_nets=tuple(lpips_nets))
    clip: dict[str, float] = {name: _mean(values) for name, values in per_frame.items()}
    clip["latent_frames"] = int(latents.shape[2])
    if target.shape[2] >= 2:
        transitions = temporal.temporal_metrics(pred, target)
        clip.update({name: _mean(values) for name, values in transitions.items()})
        # Transition t-1 -> t is reported at frame t; frame 0 has none.
        per_frame["tde"] = torch.cat([torch.full((1, 1), float("nan")), transitions["tde"].cpu()], dim=1)
    if reference is not None:
        clip.update(_compatibility(latents.float(), target, reference))
    clip.update(encode_seconds=encoded - start, decode_seconds=decoded - encoded, seconds=decoded - start)
    arrays = {name: values[0].detach().cpu().double().numpy() for name, values in per_frame.items()}
    if keep is not None:
        keep.update(target=target, pred=pred, latents=latents)
    return clip, arrays


def strip_frames(num_frames: int, count: int = STRIP_FRAMES) -> list[int]:
    """Frame indices of a strip: up to ``count`` of 0, 4, 8, ... spread over the clip (the frames that start
    CV-VAE's latent groups, so the image decoder's latent frame j sits under frame 4j)."""
    groups = max(num_frames - 1, 0) // 4
    picks = np.unique(np.round(np.linspace(0, groups, min(count, groups + 1))).astype(int))
    return [4 * int(j) for j in picks]


def _save_strip(frames: Tensor, path: Path) -> None:
    """``C t H W`` in [-1, 1] -> the t frames side by side as one PNG, scaled to ``STRIP_MAX_SIZE`` high."""
    from PIL import Image

    row = torch.cat(list(frames.detach().float().cpu().unbind(1)), dim=-1)
    array = ((row.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array[..., :3])
    height, width = frames.shape[-2:]
    if height > STRIP_MAX_SIZE:
        cell = round(width * STRIP_MAX_SIZE / height)
        image = image.resize((cell * frames.shape[1], STRIP_MAX_SIZE), Image.Resampling.BOX)
    image.save(path, optimize=True)


def _write_strips(
    out_dir: Path,
    clip_id: str,
    kept: dict[str, Tensor],
    clip: dict[str, float],
    reference: LatentReference | None,
) -> None:
    """The strips of one evaluated clip (module docs); the json is written last, so it names complete PNGs."""
    target, pred, latents = kept["target"], kept["pred"], kept["latents"]
    frames = strip_frames(int(target.shape[2]))
    _save_strip(target[0, :, frames], out_dir / STRIP_GT_PNG)
    _save_strip(pred[0, :, frames], out_dir / STRIP_PNG)
    latent_frames = None
    decoder_strip = out_dir / STRIP_IMAGE_DECODER_PNG
    # a finite compat_psnr means psi's frames matched the latent frames (not a per-frame model)
    if reference is not None and math.isfinite(clip.get("compat_psnr", math.nan)):
        latent_frames = [f // 4 for f in frames]
        decoded = latent_metrics.decode_latent_frames(
            latents[:, :, latent_frames].float(), reference.decode_image
        )
        _save_strip(decoded[0], decoder_strip)
    else:
        decoder_strip.unlink(missing_ok=True)
    info = {"clip_id": clip_id, "frames": frames, "latent_frames": latent_frames}
    atomic_write_text(out_dir / STRIP_JSON, json.dumps(info, indent=2) + "\n")


def _compatibility(latents: Tensor, target: Tensor, reference: LatentReference) -> dict[str, float]:
    """Image decoder on the autoencoder's latent frames vs psi(X), and latents vs the image VAE's latents.
    NaN where the autoencoder's latent frames do not correspond to psi's frames (e.g. per-frame models)."""
    out = dict.fromkeys(
        ("compat_psnr", "compat_ssim", "latent_mse", "latent_cosine", "latent_frechet"), math.nan
    )
    mapped = reference.psi(target)
    if mapped.shape[2] != latents.shape[2]:
        return out
    decoded = latent_metrics.decode_latent_frames(latents, reference.decode_image).float()
    if decoded.shape != mapped.shape:
        return out
    out["compat_psnr"] = _mean(rec.psnr_per_frame(decoded, mapped))
    if min(mapped.shape[-2:]) >= 11:
        out["compat_ssim"] = _mean(rec.ssim_per_frame(decoded, mapped))
    if reference.encode_image is not None:
        with torch.no_grad():
            ref_latents = per_frame(reference.encode_image, mapped)
        if ref_latents.shape == latents.shape:
            distance = latent_metrics.latent_distance(latents, ref_latents.float())
            out.update(
                latent_mse=distance["mse"],
                latent_cosine=distance["cosine"],
                latent_frechet=distance["frechet"],
            )
    return out


# ---------------------------------------------------------------------------------------------------------
# The evaluation


def describe_metrics(lpips_nets: Sequence[str]) -> dict[str, str]:
    """The metric implementations, as every table row names them."""
    lpips_impl = {}
    for net in lpips_nets:
        reason = lpips_na_reason(net)
        lpips_impl[f"lpips_{net}_impl"] = (
            f"lpips v0.1 ({net}, torchvision ImageNet backbone), per frame on [-1,1]"
            if reason is None
            else format_na(reason)
        )
    return {
        "psnr_impl": rec.PSNR_IMPL,
        "ssim_impl": rec.SSIM_IMPL,
        **lpips_impl,
        "flow_impl": temporal.FLOW_IMPL,
        "tde_impl": temporal.TDE_IMPL,
        "warp_impl": temporal.WARP_IMPL,
        "flicker_impl": temporal.FLICKER_IMPL,
    }


def summary_row(per_clip: pd.DataFrame, meta: dict[str, Any]) -> pd.DataFrame:
    """One-row summary: protocol, model, implementations, clip count and the mean of every metric; LPIPS
    columns read ``n/a (reason)`` when the weights are not installed."""
    row: dict[str, Any] = {
        "protocol": meta["protocol"],
        "protocol_description": meta["protocol_description"],
        "model": meta["model"],
        "dtype": meta["dtype"],
        "clips": len(per_clip),
        **meta["implementations"],
    }
    skip = {"clip_id", "path", "num_frames"}
    for column in per_clip.columns:
        if column not in skip and pd.api.types.is_numeric_dtype(per_clip[column]):
            row[column] = float(per_clip[column].mean()) if per_clip[column].notna().any() else math.nan
    for net, reason in meta["lpips_na"].items():
        row[f"lpips_{net}"] = format_na(reason)
    return pd.DataFrame([row])


def evaluate(
    autoencoder: Any,
    dataset: Sequence[dict[str, Any]],
    out_dir: str | Path,
    protocol_name: str,
    lpips_nets: Sequence[str] = ("alex", "vgg"),
    device: torch.device | str = "cpu",
    dtype: str | torch.dtype = torch.float32,
    resume: bool = True,
    *,
    limit: int | None = None,
    latent_reference: LatentReference | None = None,
    protocol_description: str | None = None,
    progress: bool = True,
    identity: dict[str, Any] | None = None,
    if_changed: str = "error",
) -> pd.DataFrame:
    """Reconstruct every item ``{"video": C T H W in [-1, 1], "clip_id", "path"}`` of ``dataset`` with
    ``autoencoder`` (the ``VideoAutoencoder`` interface) and write the tables described in the module docs.

    Returns the per-clip table (every finished clip, including those of earlier runs). LPIPS backbones whose
    weights are not installed are left out and reported as ``n/a`` in the summary, with the reason.
    ``identity`` (what the results are computed from, e.g. the model spec and weight digests) is stored in
    ``meta.json``; finished clips are reused only when it and the protocol match (else ``if_changed``: raise
    ``"error"`` or start over ``"restart"``). NaN or infinite input pixels are refused, naming the clip.
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    dtype = resolve_dtype(dtype)
    if device.type == "cpu" and dtype == torch.float16:
        warnings.warn(
            "fp16 on the CPU is emulated and about 25x slower than fp32 there; use --dtype fp32 on the CPU "
            "(fp16/bf16 pay off on a GPU)",
            RuntimeWarning,
            stacklevel=2,
        )
    lpips_na = {net: reason for net in lpips_nets if (reason := lpips_na_reason(net)) is not None}
    usable_nets = [net for net in lpips_nets if net not in lpips_na]
    meta = {
        "protocol": protocol_name,
        "protocol_description": protocol_description or protocol_name,
        "model": str(getattr(autoencoder, "name", type(autoencoder).__name__)),
        "dtype": dtype_name(dtype),
        "device": str(device),
        "lpips_nets": list(lpips_nets),
        "lpips_na": lpips_na,
        "latent_reference": latent_reference.description if latent_reference is not None else None,
        "implementations": describe_metrics(lpips_nets),
        "torch": torch.__version__,
        # Without an explicit identity (API use), the model's name is all that tells two models apart.
        "identity": dict(identity)
        if identity is not None
        else {"model_name": str(getattr(autoencoder, "name", ""))},
    }
    done = _prepare_resume(out_dir, meta, resume, if_changed)
    atomic_write_text(out_dir / META_JSON, json.dumps(meta, indent=2) + "\n")

    total = len(dataset) if limit is None else min(limit, len(dataset))
    seen: set[str] = set()
    bar = tqdm(range(total), desc=f"{meta['model']} on {protocol_name}", disable=not progress, unit="clip")
    for index in bar:
        item = dataset[index]
        clip_id = str(item.get("clip_id", index))
        if clip_id in seen:
            raise ValueError(f"clip_id {clip_id!r} occurs twice in the dataset; resuming needs unique ids")
        seen.add(clip_id)
        if clip_id in done:
            continue
        video = item["video"]
        if video.ndim != 4:
            raise ValueError(f"clip {clip_id}: expected a C T H W video, got shape {tuple(video.shape)}")
        if not torch.isfinite(video).all():
            bad = int((~torch.isfinite(video)).sum())
            raise ValueError(
                f"clip {clip_id} ({item.get('path', '')}) has {bad} NaN or infinite pixel value(s); fix or "
                "remove the file (every output would be NaN)"
            )
        num_frames = int(video.shape[1])
        valid = autoencoder.valid_num_frames(num_frames)
        if valid != num_frames:
            raise ValueError(
                f"clip {clip_id} has {num_frames} frames, which {meta['model']} cannot encode (largest "
                f"usable: {valid}); choose a protocol whose num_frames the model accepts (1 + 4k for CV-VAE)"
            )
        kept: dict[str, Tensor] | None = {} if index == 0 else None  # the first clip gives the strips
        clip, arrays = _evaluate_clip(autoencoder, video, usable_nets, device, dtype, latent_reference, kept)
        if kept is not None:
            _write_strips(out_dir, clip_id, kept, clip, latent_reference)
        frame_rows = [
            {"clip_id": clip_id, "frame_index": t, **{k: float(v[t]) for k, v in arrays.items()}}
            for t in range(num_frames)
        ]
        _append_rows(out_dir / PER_FRAME_CSV, frame_rows)
        row = {"clip_id": clip_id, "path": str(item.get("path", "")), "num_frames": num_frames, **clip}
        _append_rows(out_dir / PER_CLIP_CSV, [row])
        bar.set_postfix(psnr=f"{clip['psnr']:.2f}")

    per_clip = _read_csv(out_dir / PER_CLIP_CSV)
    atomic_write_text(out_dir / SUMMARY_CSV, summary_row(per_clip, meta).to_csv(index=False))
    return per_clip


# ---------------------------------------------------------------------------------------------------------
# CLI: cvvae evaluate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="autoencoder spec kind:path[?key=value&...] (cvvae.models.zoo)"
    )
    parser.add_argument(
        "--config", type=Path, help="profile YAML (config/<profile>.yaml): protocols and data root"
    )
    parser.add_argument("--protocol", required=True, help="protocol name (the profile's or a built-in one)")
    parser.add_argument("--split", default="val", help="manifest split to evaluate (default: val)")
    parser.add_argument("--manifest", type=Path, help="manifest CSV (default: <data.root>/manifest.csv)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for the tables")
    parser.add_argument("--name", help="model name in the tables (default: the spec's name)")
    parser.add_argument("--dtype", choices=sorted(DTYPE_NAMES), default="fp32")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    parser.add_argument(
        "--limit", "--max-clips", dest="limit", type=int, help="evaluate only the first N clips"
    )
    parser.add_argument(
        "--lpips", nargs="+", default=["alex", "vgg"], help="LPIPS backbones (alex vgg), or 'none'"
    )
    parser.add_argument(
        "--image-vae",
        help="spec of the frozen image VAE for latent compatibility (default: the profile's "
        "cvvae.image_vae_path when it exists; 'none' turns it off)",
    )
    parser.add_argument(
        "--compat-mapping",
        default="average",
        choices=["first", "slice", "average"],
        help="psi for compatibility: the frames each latent frame stands for. average (default): frame 0, "
        "then the mean of each group of 4, the expectation of the paper's random mapping, which its decoder "
        "regularisation pulls the latents toward; slice: frames 0, 4, 8, ..., which the inflated model "
        "matches by construction (judging a regularised model against it favours unregularised ones)",
    )
    parser.add_argument(
        "--no-resume", action="store_true", help="start over instead of skipping finished clips"
    )
    parser.add_argument(
        "--if-changed",
        choices=["error", "restart"],
        default="error",
        help="when --out holds another evaluation (other model, weights, dataset or protocol): stop (error, "
        "the default) or start over (restart; the workflow's choice)",
    )
    parser.add_argument("--no-progress", action="store_true")


def _load_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    from cvvae.profile import load_profile

    return load_profile(path)


def _dataset_for(args: argparse.Namespace, config: dict[str, Any]) -> tuple[Any, str, Path]:
    from cvvae.data import get_protocol, register_protocol

    fields = dict((config.get("protocols") or {}).get(args.protocol) or {})
    source = fields.pop("dataset", None)
    if fields:
        register_protocol({"name": args.protocol, **fields}, overwrite=True)
    protocol = get_protocol(args.protocol)
    manifest = args.manifest or source or (config.get("data") or {}).get("root")
    if manifest is None:
        raise ValueError("no dataset: pass --manifest PATH or --config with data.root")
    manifest = Path(manifest)
    if manifest.is_dir():
        manifest = manifest / "manifest.csv"
    if not manifest.is_file():
        raise FileNotFoundError(
            f"manifest {manifest} not found; build the embedded dataset with `cvvae data embedded --config "
            "...` or pass --manifest for a real dataset (see data/README.md)"
        )
    dataset = protocol.dataset(manifest, args.split, seed=int(config.get("seed", 0)))
    return dataset, protocol.describe(), manifest


def spec_identity(spec: str) -> dict[str, Any]:
    """A model spec without its display name and location, plus the digest of the weights it loads."""
    from cvvae.fingerprint import folder_digest
    from cvvae.models.zoo import model_dir, parse_spec

    parsed = parse_spec(spec)
    weights = "random" if parsed.get("random_weights") else folder_digest(model_dir(parsed))
    options = {k: v for k, v in parsed.items() if k not in ("name", "path", "subfolder")}
    return {**options, "weights_sha256": weights}


def evaluation_identity(
    args: argparse.Namespace, manifest: Path, image_vae_spec: str | None
) -> dict[str, Any]:
    """What an evaluation folder's clips are computed from (``meta.json``'s ``identity``)."""
    from cvvae.fingerprint import file_digest

    return {
        "model": spec_identity(args.model),
        "manifest_sha256": file_digest(manifest),
        "split": args.split,
        "image_vae": spec_identity(image_vae_spec) if image_vae_spec else None,
        "compat_mapping": args.compat_mapping if image_vae_spec else None,
    }


def _image_vae_spec(args: argparse.Namespace, config: dict[str, Any]) -> str | None:
    """The spec of the frozen image VAE for latent compatibility, or None when there is none."""
    from cvvae.profile import frozen_image_vae

    spec = args.image_vae
    if spec is None:
        location = frozen_image_vae(config)
        if not location.path:
            return None
        if not location.folder.exists():
            # Say so: the compatibility columns would otherwise just be missing from the tables.
            print(
                f"latent compatibility not computed: the profile's image VAE {location.folder} does not "
                "exist (train it first, or pass --image-vae SPEC, or --image-vae none to silence this)",
                file=sys.stderr,
            )
            return None
        spec = location.spec
    return None if spec == "none" else spec


def _latent_reference(args: argparse.Namespace, spec: str | None, device: str, dtype: torch.dtype):
    from cvvae.models.frames import map_frames
    from cvvae.models.zoo import load_autoencoder

    if spec is None:
        return None
    image_vae = load_autoencoder(spec, device=device, dtype=dtype)
    mapping = args.compat_mapping
    return LatentReference(
        decode_image=lambda z: image_vae.decode_frames(z.to(dtype)).float(),
        encode_image=lambda x: image_vae.encode_frames(x.to(dtype)).float(),
        psi=lambda video: map_frames(video, mapping),
        description=f"{spec} (psi={mapping})",
    )


def run(args: argparse.Namespace) -> int:
    from cvvae.models.zoo import load_autoencoder

    config = _load_config(args.config)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = resolve_dtype(args.dtype)
    dataset, description, manifest = _dataset_for(args, config)
    autoencoder = load_autoencoder(args.model, device=device, dtype=dtype)
    if args.name:
        autoencoder.name = args.name
    nets = () if args.lpips == ["none"] else tuple(args.lpips)
    image_vae_spec = _image_vae_spec(args, config)
    reference = _latent_reference(args, image_vae_spec, device, dtype)
    per_clip = evaluate(
        autoencoder,
        dataset,
        args.out,
        args.protocol,
        lpips_nets=nets,
        device=device,
        dtype=dtype,
        resume=not args.no_resume,
        limit=args.limit,
        latent_reference=reference,
        protocol_description=description,
        progress=not args.no_progress,
        identity=evaluation_identity(args, manifest, image_vae_spec),
        if_changed=args.if_changed,
    )
    summary = pd.read_csv(args.out / SUMMARY_CSV)
    shown = [
        c for c in ("clips", "psnr", "ssim", "lpips_alex", "lpips_vgg", "tde", "compat_psnr") if c in summary
    ]
    print(summary[shown].to_string(index=False))
    print(f"{len(per_clip)} clips -> {args.out}")
    return 0
