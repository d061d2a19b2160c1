"""The ``ldm`` profile section: a small latent diffusion model on the frozen image VAE and its evaluation.

::

    ldm:
      image_vae_path: results/gpu/runs/image_vae/final   # the frozen image VAE (the CV-VAEs' target)
      model: {block_out_channels: [64, 128, 256]}         # diffusers UNet2DModel keyword arguments
      noise: {num_train_timesteps: 1000}                  # NoiseConfig: the DDPM training schedule
      train: {steps: 20000, batch_size: 64}               # LDMTrainConfig
      sample: {num_samples: 2000, seed: 0}                # LDMSampleConfig
      score: {bootstrap: 50}                              # LDMScoreConfig
      decoders:                                           # name -> autoencoder spec (cvvae.models.zoo)
        image_vae: "image_vae:{runs}/image_vae/final"
        cvvae_dec: "cvvae_image:{runs}/dec/final"
      video: {videos: 16, decoders: {dec: "cvvae:{runs}/dec/final"}}   # LDMVideoConfig (cvvae.ldm.video)

Unknown keys raise ``ValueError`` naming the valid ones (``from_dict`` of ``cvvae.train.config``); ``--set``
overrides address keys from the profile root (``ldm.train.steps=10``). ``{runs}`` in a decoder spec stands for
``results/<profile>/runs``.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from cvvae.profile import apply_overrides, check_known_keys
from cvvae.train.config import DataConfig, from_dict

# Keys of the UNet that the trainer derives from the image VAE and the crop size; a profile may not set them.
DERIVED_UNET_KEYS = ("sample_size", "in_channels", "out_channels")


@dataclass
class NoiseConfig:
    """The diffusion (DDPM) noise schedule of training; DDIM and DPM-Solver sampling reuse it."""

    num_train_timesteps: int = 1000
    """Diffusion steps of the forward process (SD: 1000)."""
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "scaled_linear"
    """Variance schedule (SD: scaled_linear)."""
    beta_start: float = 0.00085
    """First beta (SD: 0.00085)."""
    beta_end: float = 0.012
    """Last beta (SD: 0.012)."""
    prediction_type: Literal["epsilon", "v_prediction"] = "epsilon"
    """What the UNet predicts (SD2.1-base: epsilon)."""

    def __post_init__(self) -> None:
        if self.num_train_timesteps < 2:
            raise ValueError(f"ldm.noise.num_train_timesteps must be >= 2, got {self.num_train_timesteps}")


@dataclass
class LDMTrainConfig:
    """Training of the UNet on the image VAE's scaled latents of training images and video frames."""

    steps: int = 20000
    """Optimisation steps (train until the loss plateaus: ``metrics.csv`` has it every ``log_every``)."""
    batch_size: int = 64
    """Images per step, each encoded by the frozen image VAE on the fly."""
    resolution: int = 64
    """Square crop size in pixels; the UNet works at ``resolution / 8`` for an 8x image VAE."""
    use_video_frames: bool = True
    """Also train on single frames of the train split's videos (half of the batches)."""
    lr: float = 1.0e-4
    """AdamW learning rate (constant after the warm-up)."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW betas."""
    eps: float = 1.0e-8
    """AdamW epsilon."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_steps: int = 500
    """Linear learning-rate warm-up steps."""
    grad_clip: float | None = 1.0
    """Gradient-norm clipping; null disables it."""
    ema_decay: float = 0.999
    """Decay of the exponential moving average of the weights that ``final/`` holds and sampling uses; 0
    turns the average off (``final/`` then holds the trained weights)."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """fp32, or bf16 autocast of the UNet (the frozen encoder always runs in fp32)."""
    scaling_factor: float | None = None
    """Multiplier of the latents the UNet sees; null computes it as SD did: 1 / std of the posterior samples
    of ``scaling_images`` training images (recorded in ``final/ldm.json``). SD's VAE: 0.18215."""
    scaling_images: int = 512
    """Training images (centre crops, then video frames if needed) whose latents set the scaling factor."""
    synthetic_data: bool = False
    """Seeded random images instead of a dataset (smoke runs only)."""
    log_every: int = 50
    """Write a row of ``metrics.csv`` every N steps."""
    ckpt_every: int = 1000
    """Write a resumable checkpoint every N steps (and on SIGTERM)."""
    keep_ckpts: int = 2
    """Number of most recent checkpoints kept."""
    cache_decoded: bool = True
    """Keep decoded training files in memory as uint8 (decoded once)."""

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.scaling_images < 2:
            raise ValueError("ldm.train.steps and batch_size must be >= 1 and scaling_images >= 2")
        if self.resolution % 8:
            raise ValueError(f"ldm.train.resolution must be a multiple of 8, got {self.resolution}")
        if len(self.betas) != 2:
            raise ValueError(f"ldm.train.betas must be two numbers, got {self.betas}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ldm.train.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.scaling_factor is not None and self.scaling_factor <= 0:
            raise ValueError(f"ldm.train.scaling_factor must be positive, got {self.scaling_factor}")


@dataclass
class LDMSampleConfig:
    """One set of sampled latents: fixed seed, deterministic sampler."""

    num_samples: int = 2000
    """Latents to sample (the paper's FID uses the COCO2017 val captions; at least 2,000 for a usable FID)."""
    seed: int = 0
    """Seed of the initial noise (drawn for all samples at once on the CPU, so the batch size and the device
    do not change which noise a sample starts from)."""
    scheduler: Literal["ddim", "dpm_solver"] = "ddim"
    """DDIM (eta 0) or DPM-Solver++ (2nd-order multistep); both deterministic given the noise."""
    steps: int = 50
    """Sampling steps."""
    batch_size: int = 64
    """Samples denoised at once."""

    def __post_init__(self) -> None:
        if self.num_samples < 1 or self.steps < 1 or self.batch_size < 1:
            raise ValueError("ldm.sample.num_samples, steps and batch_size must be >= 1")


@dataclass
class LDMScoreConfig:
    """FID/KID of each decoder's images against held-out images; pairwise PSNR between decoders."""

    reference_split: str = "val"
    """Manifest split of the held-out images (never the LDM's training split)."""
    reference_images: int = 10000
    """At most this many held-out images (centre crops at ``train.resolution``)."""
    reference_video_frames: int = 0
    """Also take this many frames of each held-out video (seeded random positions, centre crops; 0: images
    only)."""
    bootstrap: int = 50
    """Bootstrap resamples of the samples (and of the references) for the intervals."""
    kid_subsets: int = 100
    """Random subsets of the KID estimate."""
    kid_subset_size: int = 1000
    """Size of each KID subset (capped by the smaller set)."""
    feature_batch_size: int = 50
    """Images per call of the feature network."""
    grid_samples: int = 8
    """Samples shown in each decoder's grid strip."""
    lpips_net: Literal["alex", "vgg", "none"] = "alex"
    """Backbone of the pairwise LPIPS to the reference decoder's image of the same latent (n/a when its
    weights are not installed: ``cvvae weights lpips``); ``none`` skips it."""

    def __post_init__(self) -> None:
        if self.bootstrap < 0 or self.kid_subsets < 1 or self.kid_subset_size < 2 or self.grid_samples < 1:
            raise ValueError("ldm.score: bootstrap >= 0, kid_subsets >= 1, kid_subset_size >= 2, grid >= 1")


def default_video_decoders() -> dict[str, str]:
    return {"dec": "cvvae:{runs}/dec/final"}


@dataclass
class LDMVideoConfig:
    """Consecutive, independent image samples decoded as one CV-VAE latent video (paper Fig. 6)."""

    videos: int = 16
    """Latent videos, made of the first ``videos * latent_frames`` sampled latents (fewer if fewer fit)."""
    latent_frames: int = 4
    """Latents per video: ``t`` latent frames decode to ``1 + 4 (t - 1)`` frames (4 -> 13)."""
    strips: int = 4
    """Videos per decoder written as PNG strips."""
    decoders: dict[str, str] = field(default_factory=default_video_decoders)
    """Name -> video-mode autoencoder spec (kinds: ``cvvae``, ``uniform_sampling``); ``{runs}`` as in
    ``decoders``."""
    image_vae: str | None = None
    """Spec of the image VAE whose per-latent images the videos are compared with; null:
    ``image_vae:<image_vae_path>`` (with ``image_vae_subfolder``)."""

    def __post_init__(self) -> None:
        if self.videos < 1 or self.latent_frames < 2 or self.strips < 0:
            raise ValueError("ldm.video: videos >= 1, latent_frames >= 2 and strips >= 0")


def default_unet() -> dict[str, Any]:
    return {
        "block_out_channels": [64, 128, 256],
        "layers_per_block": 2,
        "attention_head_dim": 8,
        "norm_num_groups": 32,
    }


@dataclass
class LDMSection:
    """``ldm`` section of a profile."""

    image_vae_path: str = "results/default/runs/image_vae/final"
    """Frozen image VAE (diffusers ``AutoencoderKL`` folder) whose latents the model learns; must be the one
    the CV-VAE decoders were trained against."""
    image_vae_subfolder: str | None = None
    """Subfolder inside ``image_vae_path`` (``vae`` for a Stable Diffusion pipeline folder)."""
    model: dict[str, Any] = field(default_factory=default_unet)
    """Keyword arguments of diffusers ``UNet2DModel`` (unconditional). ``sample_size`` and the channels come
    from the image VAE and ``train.resolution``; without ``down_block_types`` the first level is a plain
    ``DownBlock2D`` and the deeper ones have attention (``AttnDownBlock2D``), mirrored on the way up."""
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    train: LDMTrainConfig = field(default_factory=LDMTrainConfig)
    sample: LDMSampleConfig = field(default_factory=LDMSampleConfig)
    score: LDMScoreConfig = field(default_factory=LDMScoreConfig)
    decoders: dict[str, str] = field(default_factory=dict)
    """Name -> autoencoder spec (``kind:path?options``, see ``cvvae.models.zoo``) of each decoder of the
    sampled latents; ``{runs}`` stands for ``results/<profile>/runs``. Image-mode kinds: ``image_vae``,
    ``cvvae_image``."""
    video: LDMVideoConfig = field(default_factory=LDMVideoConfig)
    """The video step (``python -m cvvae.ldm video``)."""


@dataclass
class LDMRunConfig:
    """The resolved configuration of one LDM training run (written to ``<run>/config.yaml``)."""

    seed: int
    data: DataConfig
    image_vae_path: str
    image_vae_subfolder: str | None
    model: dict[str, Any]
    noise: NoiseConfig
    train: LDMTrainConfig


def _seed(profile: Mapping[str, Any]) -> int:
    seed = profile.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed: expected an integer, got {seed!r}")
    return seed


def resolve_section(profile: Mapping[str, Any], overrides: list[str] | None = None) -> LDMSection:
    """The validated ``ldm`` section of ``profile`` with ``--set`` overrides applied."""
    merged = apply_overrides(dict(profile), overrides)
    check_known_keys(merged)
    section = from_dict(LDMSection, merged.get("ldm") or {}, "ldm")
    derived = sorted(set(section.model) & set(DERIVED_UNET_KEYS))
    if derived:
        raise ValueError(f"ldm.model: {derived} are derived from the image VAE and ldm.train.resolution")
    return section


def resolve_ldm_config(profile: Mapping[str, Any], overrides: list[str] | None = None) -> LDMRunConfig:
    """Apply overrides to the profile and validate its ``ldm`` section: the config a training run uses."""
    merged = apply_overrides(dict(profile), overrides)
    section = resolve_section(merged)
    raw_data = dict(merged.get("data") or {})
    raw_data.pop("embedded", None)  # the dataset builder's key (and check)
    return LDMRunConfig(
        seed=_seed(merged),
        data=from_dict(DataConfig, raw_data, "data"),
        image_vae_path=section.image_vae_path,
        image_vae_subfolder=section.image_vae_subfolder,
        model=copy.deepcopy(section.model),
        noise=section.noise,
        train=section.train,
    )


def ldm_section_errors(profile: Mapping[str, Any]) -> list[str]:
    """Problems of the ``ldm`` section (for ``cvvae.profile.section_errors``): its keys, the UNet's keyword
    arguments and the decoder specs."""
    from diffusers import UNet2DModel

    errors: list[str] = []
    try:
        section = resolve_section(profile)
    except (ValueError, TypeError) as exc:
        return [str(exc)]
    valid = [n for n in inspect.signature(UNet2DModel.__init__).parameters if n != "self"]
    unknown = sorted(set(section.model) - set(valid))
    if unknown:
        errors.append(f"ldm.model: unknown key(s) {unknown}; valid keys: {', '.join(valid)}")
    for name, spec in section.decoders.items():
        if error := spec_kind_error(spec, IMAGE_MODE_KINDS, "decode one latent image"):
            errors.append(f"ldm.decoders.{name}: {error}")
    for name, spec in section.video.decoders.items():
        if error := spec_kind_error(spec, VIDEO_MODE_KINDS, "decode a latent video of image latents"):
            errors.append(f"ldm.video.decoders.{name}: {error}")
    return errors


def spec_kind(spec: str) -> str:
    """The autoencoder kind of a spec (``{runs}`` allowed); ValueError for a malformed spec."""
    from cvvae.models.zoo import parse_spec

    return parse_spec(spec.replace("{runs}", "runs"))["kind"]


def spec_kind_error(spec: str, kinds: tuple[str, ...], role: str) -> str | None:
    """Why an autoencoder spec cannot ``role``, or None when its kind is one of ``kinds``."""
    try:
        kind = spec_kind(spec)
    except ValueError as exc:
        return str(exc)
    if kind not in kinds:
        return f"kind {kind!r} does not {role}; use one of {', '.join(kinds)}"
    return None


# Autoencoder kinds that decode each latent frame on its own (the image-LDM's latents are single frames).
IMAGE_MODE_KINDS = ("image_vae", "cvvae_image")
# Kinds that decode image-VAE latents as a video (1 + 4k frames from 1 + k latent frames): CV-VAE, and the
# image VAE with interpolated in-between frames (the paper's uniform-sampling baseline).
VIDEO_MODE_KINDS = ("cvvae", "uniform_sampling")
