"""Consecutive, independent image samples decoded as one CV-VAE latent video (the paper's Fig. 6).

The image LDM's samples are independent images. Every ``t`` consecutive latents of ``latents.safetensors``
(4 by default) are stacked in time into one latent video ``1 c t h w`` and decoded by a CV-VAE in video mode,
giving ``1 + 4 (t - 1)`` frames (13). For comparison the image VAE decodes the same latents one by one. The
paper shows such videos as smooth; here it is measured, per video: how much consecutive frames differ, how
much the keyframes differ compared with the image VAE's images of the same (independent) latents, and how
close each keyframe is to the image VAE's image of its latent.

Which output frame shows which latent frame (read from ``cvvae.models``, not assumed): each temporal upsample
(``layers.Upsample3D``, ``frames_from_channel_groups``) turns frame ``t`` into frames ``2t - 1`` and ``2t``
and drops the first, so after the decoder's two doublings latent frame ``j`` covers output frames
``4j - 3 .. 4j`` (latent 0: frame 0 alone). Frame ``4j`` is the one an inflated decoder gives the latent's
own image (``inflate._inflate_upsample`` puts the 2D kernel on the ``2t`` half and interpolates the ``2t - 1``
half), the frame the causal encoder has seen last, and psi ``slice``'s default target (frames 0, 4, 8, ...).
So the keyframes are ``0, 4, 8, 12``. A run trained with psi ``random`` matches latent ``j`` to any frame of
its group; ``keyframe_is_best`` reports how often ``4j`` is the frame closest to the latent's image.

Layout of ``<generative>/video/``::

    metrics.csv          one row per video and decoder (the decoders of the latest run of the step)
    summary.csv          one row per decoder: the mean over its videos, with the spec and run identity
    per_frame.csv        one row per output frame: the latent it belongs to, change from the previous frame,
                         PSNR to that latent's image-VAE image
    <decoder>/meta.json  spec, run identity, image VAE, latents file and digest, keyframes
    <decoder>/strip_000.png ...  top row: the decoded video; bottom row: the image VAE's image of each latent
                         under its keyframe
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import Tensor

from cvvae.ldm.config import VIDEO_MODE_KINDS, LDMSection, LDMVideoConfig, spec_kind
from cvvae.ldm.data import to_uint8
from cvvae.ldm.decode import decode_latents, decoder_from_spec, decoder_run_identity
from cvvae.metrics.generative_fid import pairwise_psnr
from cvvae.metrics.reconstruction import PSNR_CAP_DB
from cvvae.models.frames import pixel_frames

VIDEO = "video"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.csv"
PER_FRAME_FILE = "per_frame.csv"
META_FILE = "meta.json"
NOT_RUN = (
    f"generative/{VIDEO}/{METRICS_FILE} not found: the video step has not run "
    "(python -m cvvae.ldm video, after sample)"
)
METRIC_COLUMNS = [
    "frame_diff", "max_frame_diff", "keyframe_diff", "image_vae_frame_diff", "keyframe_psnr",
    "keyframe_psnr_first", "keyframe_psnr_min", "keyframe_is_best",
]  # fmt: skip
TABLE_NOTES = [
    "frame_diff: mean |frame_t - frame_(t-1)| of the decoded video in uint8 levels (VBench flicker: "
    "1 - frame_diff / 255); max_frame_diff: its largest transition; keyframe_diff and image_vae_frame_diff: "
    "the same between consecutive keyframes (0, 4, 8, 12) and between the image VAE's images of the same "
    "independent latents.",
    "keyframe_psnr: dB (peak 255, identical = 100) of each keyframe to the image VAE's image of its latent; "
    "keyframe_is_best: share of latents whose closest output frame is their keyframe.",
]
GAP = 2  # pixels between the two rows of a strip
BLANK = 128  # grey under the frames that have no latent of their own


# ---------------------------------------------------------------------------------------------- latents
def keyframe_indices(latent_frames: int, temporal_compression: int = 4) -> list[int]:
    """Output frame of each latent frame: ``0, r, 2r, ...`` (see the module docs for why)."""
    return [temporal_compression * j for j in range(latent_frames)]


def frame_latent(frame: int, temporal_compression: int = 4) -> int:
    """The latent frame whose group output frame ``frame`` is in (frame 0: latent 0; 1..4: latent 1; ...)."""
    return math.ceil(frame / temporal_compression)


def latent_videos(latents: Tensor, videos: int, latent_frames: int = 4) -> Tensor:
    """The first ``videos * latent_frames`` latents ``N c h w`` as ``V c t h w``, consecutive latents in
    time; fewer videos when fewer latents fit."""
    if latents.ndim != 4:
        raise ValueError(f"expected sampled latents N c h w, got shape {tuple(latents.shape)}")
    if len(latents) < latent_frames:
        raise ValueError(
            f"{len(latents)} sampled latent(s), but one latent video needs {latent_frames}: sample more "
            "(ldm.sample.num_samples) or lower ldm.video.latent_frames"
        )
    count = min(videos, len(latents) // latent_frames)
    used = latents[: count * latent_frames]
    return used.reshape(count, latent_frames, *latents.shape[1:]).transpose(1, 2)


def check_video_specs(specs: Mapping[str, str]) -> None:
    """Refuse, before any decoding, a spec whose kind decodes each latent on its own."""
    if not specs:
        raise ValueError("no video decoders: set ldm.video.decoders or pass --decoder NAME=SPEC")
    for name, spec in specs.items():
        kind = spec_kind(spec)
        if kind not in VIDEO_MODE_KINDS:
            raise ValueError(
                f"video decoder {name}={spec!r}: kind {kind!r} is not a video model; use a video-mode spec "
                f"({', '.join(VIDEO_MODE_KINDS)}), e.g. cvvae:{{runs}}/dec/final"
            )


def check_video_decoder(decoder: Any, latent_channels: int) -> None:
    """The loaded decoder must decode latent videos of the image VAE's latents."""
    if getattr(decoder, "temporal_compression", 1) < 2:
        raise ValueError(
            f"{decoder.name} decodes every latent frame on its own (temporal compression 1), not a latent "
            "video; use a video-mode spec such as cvvae:{runs}/dec/final"
        )
    if decoder.latent_channels != latent_channels:
        raise ValueError(
            f"{decoder.name} has {decoder.latent_channels} latent channels, the sampled latents "
            f"{latent_channels}: use a CV-VAE trained against the LDM's image VAE"
        )


def default_image_vae_spec(section: LDMSection) -> str:
    """The image VAE the latents were sampled in (``ldm.image_vae_path``) as a spec."""
    subfolder = f"?subfolder={section.image_vae_subfolder}" if section.image_vae_subfolder else ""
    return f"image_vae:{section.image_vae_path}{subfolder}"


# ---------------------------------------------------------------------------------------------- decoding
def decode_video(decoder: Any, video: Tensor) -> Tensor:
    """One latent video ``c t h w`` -> uint8 frames ``T 3 H W`` (``T = 1 + r (t - 1)``)."""
    frames = pixel_frames(video.shape[1], decoder.temporal_compression)
    out = decoder.decode(video[None], frames)[0]  # 3 T H W
    return to_uint8(out.transpose(0, 1).cpu())


def image_frames(videos: Tensor, image_vae: Any) -> Tensor:
    """Every latent of ``V c t h w`` decoded alone by the image VAE: uint8 ``V t 3 H W``."""
    v, c, t, h, w = videos.shape
    flat = videos.transpose(1, 2).reshape(v * t, c, h, w)
    images = decode_latents(flat, image_vae)
    return images.reshape(v, t, *images.shape[1:])


# ---------------------------------------------------------------------------------------------- metrics
def frame_steps(frames: Tensor) -> np.ndarray:
    """Mean absolute difference (uint8 levels) of each pair of consecutive frames ``T 3 H W``: ``T - 1``."""
    as_float = frames.double()
    return (as_float[1:] - as_float[:-1]).abs().flatten(1).mean(1).numpy()


def capped_psnr(a: Tensor, b: Tensor) -> np.ndarray:
    """PSNR (dB, peak 255) of each image pair; identical pairs count as ``PSNR_CAP_DB`` (finite means)."""
    return np.minimum(pairwise_psnr(a, b), PSNR_CAP_DB)


def video_metrics(frames: Tensor, images: Tensor, temporal_compression: int) -> tuple[dict, list[dict]]:
    """Metrics of one decoded video ``T 3 H W`` against the image VAE's images ``t 3 H W`` of its latents:
    the row of ``metrics.csv`` and the rows of ``per_frame.csv``."""
    keys = keyframe_indices(len(images), temporal_compression)
    if len(frames) != keys[-1] + 1:
        raise ValueError(f"{len(images)} latent frames decode to {keys[-1] + 1} frames, got {len(frames)}")
    steps = frame_steps(frames)
    key_psnr = capped_psnr(frames[keys], images)
    # Every output frame against every latent's image: which frame is closest to latent j's own image.
    closeness = np.stack([capped_psnr(frames, images[j].expand_as(frames)) for j in range(len(images))], 1)
    best = closeness.argmax(0)
    row = {
        "frames": len(frames),
        "frame_diff": float(steps.mean()),
        "max_frame_diff": float(steps.max()),
        "keyframe_diff": float(frame_steps(frames[keys]).mean()),
        "image_vae_frame_diff": float(frame_steps(images).mean()),
        "keyframe_psnr": float(key_psnr.mean()),
        "keyframe_psnr_first": float(key_psnr[0]),
        "keyframe_psnr_min": float(key_psnr.min()),
        "keyframe_is_best": float(np.mean(best == np.asarray(keys))),
    }
    per_frame = []
    for index in range(len(frames)):
        owner = frame_latent(index, temporal_compression)
        per_frame.append({
            "frame": index, "latent": owner, "keyframe": index in keys,
            "diff_from_previous": float(steps[index - 1]) if index else math.nan,
            "psnr_vs_own_latent": float(closeness[index, owner]),
        })  # fmt: skip
    return row, per_frame


def video_strip(frames: Tensor, images: Tensor, temporal_compression: int) -> np.ndarray:
    """uint8 ``H W 3``: the video's frames in a row; under them each latent's image-VAE image at its keyframe
    (grey under the in-between frames)."""
    t_out, _, h, w = frames.shape
    bottom = torch.full((3, h, t_out * w), BLANK, dtype=torch.uint8)
    for j, key in enumerate(keyframe_indices(len(images), temporal_compression)):
        bottom[:, :, key * w : (key + 1) * w] = images[j]
    gap = torch.full((3, GAP, t_out * w), 255, dtype=torch.uint8)
    top = torch.cat(list(frames), dim=2)
    return torch.cat([top, gap, bottom], dim=1).permute(1, 2, 0).numpy()


# ---------------------------------------------------------------------------------------------- the step
def decode_videos(
    folder: Path, decoder: Any, videos: Tensor, images: Tensor, strips: int
) -> tuple[list[dict], list[dict]]:
    """Decode every latent video with ``decoder``, write the first ``strips`` strips into ``folder``; the
    rows of ``metrics.csv`` and ``per_frame.csv`` (without the decoder column)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("strip_*.png"):  # a rerun with fewer videos leaves no stale strips
        old.unlink()
    rows, frame_rows = [], []
    r = decoder.temporal_compression
    for index, (video, own_images) in enumerate(zip(videos, images, strict=True)):
        frames = decode_video(decoder, video)
        row, per_frame = video_metrics(frames, own_images, r)
        rows.append({"video": index, "first_latent": index * video.shape[1], **row})
        frame_rows += [{"video": index, **f} for f in per_frame]
        if index < strips:
            Image.fromarray(video_strip(frames, own_images, r)).save(folder / f"strip_{index:03d}.png")
    return rows, frame_rows


def summarise(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per decoder: the number of videos and the mean of every metric over them."""
    grouped = metrics.groupby("decoder", sort=False)
    summary = grouped[["frames", *METRIC_COLUMNS]].mean()
    summary.insert(0, "videos", grouped.size())
    return summary.reset_index()


def run_video_step(
    out_dir: str | Path,
    specs: Mapping[str, str],
    runs_dir: str | Path,
    config: LDMVideoConfig,
    image_vae_spec: str,
    device: str | torch.device = "cpu",
    latents_file: str | Path | None = None,
) -> pd.DataFrame:
    """Decode the latent videos of ``latents_file`` (default ``out_dir/latents.safetensors``) with each video
    decoder of ``specs`` and the image VAE; write ``out_dir/video/`` (module docs) and return its summary."""
    from cvvae.fingerprint import file_digest
    from cvvae.ldm.sample import load_latents

    check_video_specs(specs)
    out_dir = Path(out_dir)
    latents_file = Path(latents_file or out_dir / "latents.safetensors")
    latents, sampling = load_latents(latents_file)
    videos = latent_videos(latents, config.videos, config.latent_frames)
    images = image_frames(videos, decoder_from_spec(image_vae_spec, runs_dir, device))
    folder = out_dir / VIDEO
    rows, frame_rows, records = [], [], []
    for name, spec in specs.items():
        decoder = decoder_from_spec(spec, runs_dir, device)
        check_video_decoder(decoder, latents.shape[1])
        decoded, per_frame = decode_videos(folder / name, decoder, videos, images, config.strips)
        rows += [{"decoder": name, **row} for row in decoded]
        frame_rows += [{"decoder": name, **row} for row in per_frame]
        record = {
            "decoder": name, "spec": spec, "decoder_run_identity": decoder_run_identity(spec, runs_dir),
            "image_vae": image_vae_spec, "latents": str(latents_file),
            "latents_sha256": file_digest(latents_file), "sampling": sampling, "videos": len(videos),
            "latent_frames": config.latent_frames, "frames": decoded[0]["frames"],
            "keyframes": keyframe_indices(config.latent_frames, decoder.temporal_compression),
        }  # fmt: skip
        (folder / name / META_FILE).write_text(json.dumps(record, indent=2) + "\n")
        records.append(record)
    metrics = pd.DataFrame(rows)
    metrics.to_csv(folder / METRICS_FILE, index=False)
    pd.DataFrame(frame_rows).to_csv(folder / PER_FRAME_FILE, index=False)
    summary = summarise(metrics)
    summary["spec"] = [r["spec"] for r in records]
    summary["decoder_run_identity"] = [r["decoder_run_identity"] for r in records]
    summary.to_csv(folder / SUMMARY_FILE, index=False)
    return summary


# ---------------------------------------------------------------------------------------------- notebook
@dataclass
class VideoResults:
    """``<results>/generative/video`` as notebook 06 reads it; ``missing`` says why it is empty."""

    folder: Path
    metrics: pd.DataFrame
    summary: pd.DataFrame
    strips: dict[str, Path] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


def read_video_results(results_dir: str | Path) -> VideoResults:
    """The metrics of the video step (empty with :data:`NOT_RUN` when it has not run) and each decoder's
    first strip."""
    folder = Path(results_dir) / "generative" / VIDEO
    if not (folder / METRICS_FILE).is_file():
        empty = pd.DataFrame(columns=["decoder", "videos", "frames", *METRIC_COLUMNS])
        return VideoResults(folder, empty, empty, missing=[NOT_RUN])
    metrics = pd.read_csv(folder / METRICS_FILE)
    out = VideoResults(folder, metrics, summarise(metrics))
    for name in out.summary["decoder"]:
        strip = folder / name / "strip_000.png"
        if strip.is_file():
            out.strips[name] = strip
        else:
            out.missing.append(f"generative/{VIDEO}/{name}/strip_000.png not found")
    return out


def strip_figure(results: VideoResults, decoder: str | None = None) -> Any:
    """The first strip of ``decoder`` (default: the first with one), labelled."""
    import matplotlib.pyplot as plt

    name = decoder or next(iter(results.strips), None)
    if name is None or name not in results.strips:
        fig, ax = plt.subplots(figsize=(7.0, 0.8))
        ax.text(0.5, 0.5, "n/a: no strip (" + "; ".join(results.missing[:1]) + ")", ha="center",
                va="center", transform=ax.transAxes, fontsize=8)  # fmt: skip
        ax.set_axis_off()
        return fig
    strip = np.asarray(Image.open(results.strips[name]).convert("RGB"))
    height, width = strip.shape[:2]
    fig, ax = plt.subplots(figsize=(10.0, 0.6 + 10.0 * height / width))
    ax.imshow(strip, interpolation="nearest")
    ax.grid(False)  # the study's plot style draws grid lines, which would cross the frames
    ax.tick_params(length=0)
    ax.set_xticks([])
    ax.set_yticks([(height - GAP) / 4, (3 * height + GAP) / 4])
    ax.set_yticklabels([f"{name}: one latent video", "image VAE, each latent alone"], fontsize=8)
    title = "Consecutive independent samples as one latent video; below: each latent's image at its keyframe"
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
