"""Training configuration: dataclasses with documented defaults and strict validation.

A profile YAML (``config/<profile>.yaml``) holds, among sections owned by other parts of the project, the
training sections read here::

    seed: 0
    data: {root: data/embedded}               # manifest at <root>/manifest.csv
    image_vae: {model: {...}, train: {...}}   # ImageVAESection
    cvvae:                                    # CVVAESection
      image_vae_path: results/default/runs/image_vae/final
      model: {}                               # overrides of the inflated CV-VAE config
      train: {...}                            # TrainConfig
      variants: {none: {reg: {lambda_dec: 0.0}}, svd_vae: {kind: svd_vae}, ...}

A variant is a partial ``TrainConfig`` deep-merged into ``cvvae.train``. ``--set dotted.key=value``
overrides apply to the profile after the variant merge (paths from the profile root, e.g.
``cvvae.train.loss.lpips=none``). Unknown keys raise ``ValueError`` naming the valid keys: in the training
sections here, at the top level and in ``data`` through ``cvvae.profile.check_known_keys`` (``data.embedded``
belongs to the dataset builder, which checks it).

Defaults follow the paper (Sec. 4.1: AdamW, lr 1e-4, cosine decay, fp32; decoder regularisation with the
random mapping). Where the paper is silent they follow the official training config, and where paper and code
differ the official value is named in the field's comment so that a profile can choose it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import operator
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from cvvae.config_keys import reject_unknown_keys
from cvvae.profile import apply_overrides, check_known_keys

# ----------------------------------------------------------------------------------------------------
# Sections


@dataclass
class DataConfig:
    """Where the training data lives (the embedded dataset or a real one converted to the manifest format)."""

    root: str = "data/embedded"
    """Dataset folder; the manifest is ``<root>/manifest.csv`` unless ``manifest`` is given."""
    manifest: str | None = None
    """Explicit manifest CSV path (overrides ``<root>/manifest.csv``)."""
    train_split: str = "train"
    """Manifest split used for training batches."""
    val_split: str = "val"
    """Manifest split used for validation."""

    def manifest_path(self) -> Path:
        return Path(self.manifest) if self.manifest else Path(self.root) / "manifest.csv"


@dataclass
class LossConfig:
    """Reconstruction, KL and GAN losses (shared by the image VAE and the CV-VAE)."""

    rec_loss: Literal["l1", "l2"] = "l1"
    """Pixel term of the reconstruction loss (official: l1)."""
    lpips: Literal["vgg", "alex", "none"] = "vgg"
    """LPIPS backbone of the perceptual term; ``none`` turns it off (recorded as a deviation in the run log).
    The weights must be installed offline (``cvvae weights lpips``); nothing is downloaded."""
    lpips_weight: float = 0.5
    """Weight of the perceptual term (official: 0.5)."""
    learn_logvar: bool = True
    """Learn the scalar log-variance of the NLL ``rec / exp(logvar) + logvar`` (official: true)."""
    logvar_init: float = 0.0
    """Initial log-variance."""
    kl_weight: float = 1.0
    """KL weight; KL is summed over latent elements and divided by the batch size (official: 1.0)."""
    disc_enabled: bool = True
    """Use the 3D patch discriminator and the hinge GAN loss."""
    disc_start: int = 1
    """First optimisation step (0-based) at which the GAN terms are active (official: 1)."""
    disc_weight: float = 0.5
    """Multiplier of the adaptive GAN weight (official: 0.5)."""
    disc_factor: float = 1.0
    """Extra factor on both generator and discriminator GAN losses (official: 1.0)."""
    disc_loss: Literal["hinge", "vanilla"] = "hinge"
    """Discriminator loss (official: hinge)."""
    adaptive_weight: bool = True
    """Scale the generator loss by ||grad nll|| / ||grad g|| at the decoder's last layer, clamped to
    [0, ``adaptive_weight_max``] (official: true)."""
    adaptive_weight_max: float = 1.0e4
    """Upper clamp of the adaptive weight (official: 1e4)."""
    disc_channels: int = 64
    """Width of the first discriminator layer (official ndf: 64)."""
    disc_layers: int = 4
    """Depth of the discriminator (official n_layers: 4)."""
    disc_schedule: Literal["alternate", "every_step"] = "alternate"
    """``alternate``: even steps update the autoencoder, odd steps the discriminator (official,
    ``optimizer_idx = step % 2``); ``every_step``: both are updated on every step."""


@dataclass
class RegConfig:
    """Latent regularisation against the frozen image VAE (paper Eq. 1-3)."""

    lambda_dec: float = 1.0
    """Weight of decoder regularisation ||psi(X) - D_i(E_v(X))|| (paper's choice: 1)."""
    lambda_enc: float = 0.0
    """Weight of encoder regularisation ||X - D_v(E_i(psi(X)))|| (paper's choice: 0)."""
    mapping: Literal["first", "slice", "average", "random"] = "random"
    """Mapping function psi from 1+4k frames to 1+k target frames (paper's choice: random)."""
    slice_position: int = 4
    """For ``slice``: which frame (1..4) of each group of 4 after frame 0 is taken. 4 = frames 0, 4, 8, ...
    (official ``x[:, :, ::4]``, the last frame of each group); 1 = frames 0, 1, 5, 9, ..."""
    distance: Literal["l2", "l1"] = "l2"
    """Distance of the regularisation terms: squared error as in the paper, or L1 as in the official code."""
    learn_logvar: bool = False
    """Wrap the decoder-regularisation term in its own learned log-variance NLL (official: true; the paper
    writes a plain squared error)."""
    enc_latent: Literal["sample", "mode"] = "sample"
    """Which latent of the frozen image encoder feeds the video decoder for encoder regularisation."""
    apply_dec_to_images: bool = True
    """Also apply decoder regularisation to image batches (T=1); the official code applies it to every
    batch."""
    time_compression: int = 4
    """Temporal compression of the CV-VAE (group size of psi)."""


@dataclass
class MixtureSourceConfig:
    """One source of the joint image/video batch mixture (paper Sec. 4.1 uses four)."""

    name: str
    """Name shown in logs (e.g. ``img256``, ``vid17``)."""
    kind: Literal["image", "video"] = "video"
    """``image``: still images as T=1 clips; ``video``: clips of ``num_frames``."""
    resolution: int = 64
    """Square crop size in pixels (multiple of 8)."""
    batch_size: int = 1
    """Batch size of this source (per process)."""
    weight: float = 1.0
    """Sampling weight of this source."""
    num_frames: int = 1
    """Frames per clip (1 + 4k for video sources)."""
    stride: int | list[int] = 1
    """Frame stride, or ``[lo, hi]`` for a uniform random stride (official: [1, 8] for WebVid)."""
    crop: Literal["random", "center"] = "random"
    """Spatial crop of training items."""


@dataclass
class OptimizerConfig:
    """AdamW, the cosine schedule and precision: shared by CV-VAE and image-VAE training."""

    lr: float = 1.0e-4
    """AdamW learning rate of the autoencoder (paper: 1e-4; official: 4e-5)."""
    disc_lr: float | None = None
    """Discriminator learning rate, constant (default: ``lr``; official: 2e-5)."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW betas (paper silent, PyTorch default; official: [0.9, 0.98])."""
    eps: float = 1.0e-8
    """AdamW epsilon (official: 1e-4)."""
    weight_decay: float = 0.01
    """AdamW weight decay (official: 0.01)."""
    warmup_steps: int = 0
    """Linear warm-up steps before the cosine decay (official: 1000)."""
    min_lr_ratio: float = 0.0
    """Final lr as a fraction of ``lr`` at the end of the cosine decay (official: 0.005)."""
    grad_clip: float | None = 1.0
    """Gradient-norm clipping of both models; null disables it (official: 1.0)."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """fp32 as in the paper, or bf16 autocast."""
    linearised_lr_scale: float = 1.0
    """lr multiplier of the decoder mid-block's spatial ``proj_out``, the tensor that the ``linearised``
    temporal-attention init scales down (by ``linearised_scale``, 1e-4). Adam moves every weight by about lr
    whatever its size, so at 1.0 that block's relative learning rate is 1/``linearised_scale`` times the
    rest's; set it to ``linearised_scale`` to give it the same relative step (neither paper nor official code
    has this tensor scaled, so neither has the knob)."""
    fused_optimizer: bool = True
    """Fused AdamW kernels where every parameter is on a CUDA device (same update rule, one launch per
    step); ignored on CPU."""
    channels_last: bool = False
    """Train in channels-last(-3d) memory format (cuDNN's preferred layout for bf16 convolutions)."""
    compile: bool = False
    """``torch.compile`` the encoder, decoder, discriminator and LPIPS network in place on CUDA (state-dict
    names unchanged; ignored on CPU). Each input shape compiles once, so a mixture of four shapes pays four
    compilations (about a minute each) before it runs faster."""
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "default"
    """``torch.compile`` mode with ``compile``: ``reduce-overhead`` replays each shape's kernels as CUDA
    graphs, the lever for a step bound by kernel launches (small models at small batches)."""


@dataclass
class LoopConfig:
    """Logging, validation, checkpoint and loader settings of a training loop: shared by CV-VAE and
    image-VAE training."""

    log_every: int = 10
    """Write a row of ``metrics.csv`` every N steps."""
    val_every: int = 500
    """Validate every N steps (0: only at the end)."""
    ckpt_every: int = 500
    """Write a resumable checkpoint every N steps (and on SIGTERM)."""
    keep_ckpts: int = 2
    """Number of most recent checkpoints kept."""
    num_workers: int = 0
    """Loader threads that read and crop the items of upcoming batches while the GPU trains (0: the loop
    loads each batch itself). Batches are the same whatever the number."""
    prefetch_batches: int = 2
    """Batches prepared ahead of the training step by the loader threads (with ``num_workers`` > 0)."""
    cache_decoded: bool = True
    """Keep every decoded training video and image in memory as uint8 (decoded once, then only windowed,
    resized and cropped): the same items as decoding each time, without the decoder in the loop."""
    val_at_start: bool = True
    """Validate before the first step, so ``val_metrics.csv`` starts with the model's own step-0 value."""


@dataclass
class TrainConfig(LoopConfig, OptimizerConfig):
    """One CV-VAE (or SVD-style VAE) training run; ``cvvae.train`` plus the chosen variant."""

    kind: Literal["cvvae", "svd_vae", "image_vae"] = "cvvae"
    """``cvvae``: inflate the frozen image VAE and train the CV-VAE; ``svd_vae``: build the SVD-style VAE from
    the image VAE, freeze its encoder and fine-tune its temporal decoder with the same budget
    (``image_vae`` is used internally by ``cvvae train-image-vae``)."""
    steps: int = 1000
    """Optimisation steps (paper: 200k on 16 A100)."""
    seed: int | None = None
    """Seed of this run when it differs from the profile's ``seed`` (second-seed variants, e.g.
    ``dec_seed1: {seed: 1, reg: {...}}``, which measure run-to-run noise); null keeps the profile's."""
    grad_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory."""
    mixture: list[MixtureSourceConfig] = field(
        default_factory=lambda: [
            MixtureSourceConfig(name="img", kind="image", resolution=64, batch_size=4, weight=0.5),
            MixtureSourceConfig(
                name="vid9",
                kind="video",
                resolution=64,
                batch_size=1,
                num_frames=9,
                stride=[1, 4],
                weight=0.5,
            ),
        ]
    )
    """Sources of the joint image and video batches."""
    synthetic_data: bool = False
    """Use seeded random tensors shaped like the mixture instead of a dataset (throughput smoke runs only)."""
    loss: LossConfig = field(default_factory=LossConfig)
    """Reconstruction, KL and GAN losses."""
    reg: RegConfig = field(default_factory=RegConfig)
    """Latent regularisation."""
    val_clips: int = 8
    """Validation clips (from the val split)."""
    val_num_frames: int = 9
    """Frames of each validation clip (1 + 4k)."""
    val_stride: int = 1
    """Frame stride of validation clips; the video protocol's stride makes validation measure the motion
    that the evaluation measures."""
    val_resolution: int = 64
    """Centre-crop size of validation clips."""

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"train.steps must be >= 1, got {self.steps}")
        if self.num_workers < 0 or self.prefetch_batches < 1:
            raise ValueError("train.num_workers must be >= 0 and train.prefetch_batches >= 1")
        if self.val_stride < 1:
            raise ValueError(f"train.val_stride must be >= 1, got {self.val_stride}")
        if len(self.betas) != 2:
            raise ValueError(f"train.betas must be two numbers, got {self.betas}")
        if not self.mixture:
            raise ValueError("train.mixture must name at least one source")
        if self.reg.mapping == "slice" and not 1 <= self.reg.slice_position <= self.reg.time_compression:
            raise ValueError(f"reg.slice_position must be in 1..{self.reg.time_compression}")


@dataclass
class ImageVAETrainConfig(LoopConfig, OptimizerConfig):
    """Pretraining of the small image VAE (diffusers ``AutoencoderKL``) of the small profiles."""

    steps: int = 1000
    """Optimisation steps."""
    batch_size: int = 8
    """Images per step (per process)."""
    resolution: int = 64
    """Square crop size."""
    use_video_frames: bool = True
    """Also train on single frames drawn from the video clips of the train split."""
    loss: LossConfig = field(default_factory=lambda: LossConfig(disc_enabled=False))
    """Same losses as the CV-VAE (L1 + LPIPS + KL); the GAN is off by default."""
    synthetic_data: bool = False
    """Seeded random images instead of a dataset (smoke runs only)."""
    val_images: int = 16
    """Validation images (PSNR on the val split)."""

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"image_vae.train.steps must be >= 1, got {self.steps}")


@dataclass
class ImageVAESection:
    """``image_vae`` section of a profile."""

    model: dict[str, Any] = field(
        default_factory=lambda: {
            "block_out_channels": [32, 64, 64, 64],
            "layers_per_block": 1,
            "latent_channels": 4,
            "norm_num_groups": 8,
        }
    )
    """Keyword arguments of diffusers ``AutoencoderKL`` (down/up block types are filled in to match)."""
    train: ImageVAETrainConfig = field(default_factory=ImageVAETrainConfig)


@dataclass
class CVVAESection:
    """``cvvae`` section of a profile."""

    image_vae_path: str = "results/default/runs/image_vae/final"
    """Frozen image VAE (diffusers ``AutoencoderKL`` folder): the image-VAE run's ``final/`` or, at paper
    scale, the SD2.1 VAE folder (``stabilityai/stable-diffusion-2-1-base``, subfolder ``vae``)."""
    image_vae_subfolder: str | None = None
    """Subfolder inside ``image_vae_path`` (``vae`` for a full Stable Diffusion pipeline folder)."""
    model: dict[str, Any] = field(default_factory=dict)
    """Overrides of the inflated CV-VAE config (``inflate_from_image_vae(vae, **model)``)."""
    init_path: str | None = None
    """Start from this saved CV-VAE instead of inflating the image VAE (fine-tuning released weights)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Named partial ``TrainConfig`` dicts deep-merged into ``train``."""


@dataclass
class RunConfig:
    """The fully resolved configuration of one CV-VAE run (written to ``<run>/config.yaml``)."""

    seed: int
    data: DataConfig
    variant: str
    image_vae_path: str
    image_vae_subfolder: str | None
    init_path: str | None
    model: dict[str, Any]
    train: TrainConfig


@dataclass
class ImageVAERunConfig:
    """The fully resolved configuration of one image-VAE run."""

    seed: int
    data: DataConfig
    model: dict[str, Any]
    train: ImageVAETrainConfig


# ----------------------------------------------------------------------------------------------------
# Strict dict -> dataclass conversion


def _strip_none(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        return functools.reduce(operator.or_, args), optional
    return tp, False


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check and convert ``value`` to the annotated type ``tp`` (dataclasses, lists, literals, scalars)."""
    tp, optional = _strip_none(tp)
    if value is None:
        if optional:
            return None
        raise ValueError(f"{where}: null is not allowed")
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return from_dict(tp, value, where)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ValueError(f"{where}: {value!r} is not one of {list(choices)}")
        return value
    if origin in (typing.Union, types.UnionType):  # e.g. int | list[int]
        for arg in typing.get_args(tp):
            with contextlib.suppress(ValueError):
                return _convert(value, arg, where)
        raise ValueError(f"{where}: {value!r} does not match {tp}")
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_convert(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return copy.deepcopy(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads exponent numbers without a dot ("3e-5", in configs and --set) as strings.
            try:
                return float(value)
            except ValueError:
                raise ValueError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{where}: unsupported annotation {tp}")


def from_dict(cls: type, data: dict[str, Any] | None, where: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys raise ``ValueError`` naming the valid keys."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ValueError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    reject_unknown_keys(data, fields, where or cls.__name__)
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(value, hints[name], f"{where}.{name}" if where else name)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # missing required field
        raise ValueError(f"{where or cls.__name__}: {exc}") from exc


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain dict (for ``config.yaml``)."""
    return dataclasses.asdict(obj)


# ----------------------------------------------------------------------------------------------------
# Profile loading, variants and --set overrides


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base`` (mappings merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _data_section(profile: dict[str, Any]) -> DataConfig:
    raw = dict(profile.get("data") or {})
    # The data section is shared with the dataset builder, which owns (and checks) ``embedded``.
    raw.pop("embedded", None)
    return from_dict(DataConfig, raw, "data")


def resolve_cvvae_config(
    profile: dict[str, Any], variant: str | None = None, overrides: list[str] | None = None
) -> RunConfig:
    """Merge variant and overrides into the profile and validate: the config a CV-VAE run uses."""
    section = copy.deepcopy(profile.get("cvvae") or {})
    variants = section.get("variants") or {}
    if variant is not None and variant not in variants and variant != "default":
        raise ValueError(f"unknown variant {variant!r}; the profile defines: {sorted(variants) or 'none'}")
    merged = copy.deepcopy(profile)
    if variant in variants:
        base_train = section.get("train") or {}
        merged.setdefault("cvvae", {})["train"] = deep_merge(base_train, variants[variant] or {})
    merged = apply_overrides(merged, overrides)
    check_known_keys(merged)
    cv = from_dict(CVVAESection, merged.get("cvvae") or {}, "cvvae")
    for name, partial in cv.variants.items():  # fail early on a typo in any variant, not only the chosen one
        candidate = deep_merge(section.get("train") or {}, partial or {})
        from_dict(TrainConfig, candidate, f"cvvae.variants.{name}")
    profile_seed = _convert(merged.get("seed", 0), int, "seed")
    return RunConfig(
        seed=profile_seed if cv.train.seed is None else cv.train.seed,
        data=_data_section(merged),
        variant=variant or "default",
        image_vae_path=cv.image_vae_path,
        image_vae_subfolder=cv.image_vae_subfolder,
        init_path=cv.init_path,
        model=cv.model,
        train=cv.train,
    )


def resolve_image_vae_config(
    profile: dict[str, Any], overrides: list[str] | None = None
) -> ImageVAERunConfig:
    """Apply overrides to the profile and validate its ``image_vae`` section."""
    merged = apply_overrides(profile, overrides)
    check_known_keys(merged)
    section = from_dict(ImageVAESection, merged.get("image_vae") or {}, "image_vae")
    return ImageVAERunConfig(
        seed=_convert(merged.get("seed", 0), int, "seed"),
        data=_data_section(merged),
        model=section.model,
        train=section.train,
    )


def dump_yaml(config: Any, path: str | Path) -> None:
    """Write a resolved config as YAML (dataclass or dict)."""
    data = to_dict(config) if dataclasses.is_dataclass(config) else config
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))
