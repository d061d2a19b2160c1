"""One interface over every autoencoder of the study.

Every member maps a ``B C T H W`` video in [-1, 1] to unscaled latents (the posterior mode) and back:

==================== ======================================================================== ==== =====
kind                 what it is                                                               time space
==================== ======================================================================== ==== =====
``cvvae``            CV-VAE video mode (``1 + 4k`` frames -> ``1 + k`` latent frames)          4    8
``cvvae_image``      CV-VAE image mode: every frame its own latent, decoded with ``num_frames=1`` 1 8
``image_vae``        diffusers ``AutoencoderKL`` (SD image VAE) frame by frame                 1    8
``svd_vae``          diffusers ``AutoencoderKLTemporalDecoder``: image encoder, temporal decoder 1    8
``uniform_sampling`` the image VAE on frames 0, 4, 8, ...; frames in between interpolated       4    8
``diffusers_video``  a diffusers video VAE (CogVideoX, HunyuanVideo, LTX, Wan, Mochi) by path   per model
==================== ======================================================================== ==== =====

:func:`load_autoencoder` builds any of them from a spec, a dict ``{"kind": ..., "path": ...,
"subfolder": ..., options}`` or the string ``kind:path[?key=value&...]``. Weights come from local paths
only; a missing path raises ``FileNotFoundError`` naming what to download and where to put it.
``random_weights=true`` builds the released architecture with random weights instead (for benchmarks and
tests).

Adapters run without gradients, move inputs to the model's device and dtype, and return tensors in that dtype.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cvvae.dtypes import resolve_dtype
from cvvae.per_frame import (
    decode_images,
    encode_frames,
    encode_images,
    fold_frames,
    in_batches,
    per_frame,
    unfold_frames,
)

from .frames import check_num_frames, nearest_valid_frames, pixel_frames
from .loading import check_class, load_pretrained_strict, saved_class_name

# Released architectures, used with random_weights=true (values from the published config.json files).
SD21_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 768,
    "scaling_factor": 0.18215,
}
SVD_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 768,
    "scaling_factor": 0.18215,
}

# Where each kind's released weights live, for the missing-path error.
WEIGHT_SOURCES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "cvvae": (
        "AILab-CVC/CV-VAE",
        ("vae3d", "vae3d_v1-1", "vae3d_sd3"),
        "vae3d: SD2.1-compatible release; vae3d_v1-1: its update; vae3d_sd3: 16-channel SD3 variant",
    ),
    "image_vae": ("stabilityai/stable-diffusion-2-1-base", ("vae",), "the SD2.1 image VAE"),
    "svd_vae": ("stabilityai/stable-video-diffusion-img2vid-xt", ("vae",), "the SVD VAE (gated licence)"),
}
WEIGHT_SOURCES["cvvae_image"] = WEIGHT_SOURCES["cvvae"]
WEIGHT_SOURCES["uniform_sampling"] = WEIGHT_SOURCES["image_vae"]
# Other releases a spec may point at, recognised by the folder name of a download (missing-path hints).
OTHER_SOURCES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("stabilityai/stable-diffusion-3-medium-diffusers", ("vae",), "the SD3 image VAE (gated licence)"),
)

COMMON_OPTIONS = {"kind", "path", "subfolder", "name", "random_weights", "seed", "config"}
KIND_OPTIONS: dict[str, set[str]] = {
    "cvvae": {"tiling", "tile_size", "chunking", "variant"},
    "cvvae_image": {"tiling", "tile_size", "frame_batch_size", "variant"},
    "image_vae": {"frame_batch_size"},
    "svd_vae": {"frame_batch_size", "decode_chunk_size"},
    "uniform_sampling": {"frame_batch_size", "stride", "interpolation"},
    "diffusers_video": {"class_name", "tiling"},
}


# ---------------------------------------------------------------------------------------------- interface
class VideoAutoencoder(abc.ABC):
    """Encode ``B C T H W`` videos in [-1, 1] to latents (posterior mode) and decode them back."""

    name: str
    temporal_compression: int
    spatial_compression: int
    latent_channels: int
    module: nn.Module

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.module.parameters()).dtype

    @abc.abstractmethod
    def encode(self, video: Tensor) -> Tensor:
        """``B C T H W`` in [-1, 1] -> ``B c t h w`` unscaled latents (posterior mode)."""

    @abc.abstractmethod
    def decode(self, latents: Tensor, num_frames: int) -> Tensor:
        """``B c t h w`` -> ``B C num_frames H W``."""

    def reconstruct(self, video: Tensor) -> Tensor:
        return self.decode(self.encode(video), video.shape[2])

    def valid_num_frames(self, num_frames: int) -> int:
        """The largest frame count ``<= num_frames`` this autoencoder accepts."""
        if num_frames < 1:
            raise ValueError(f"need at least one frame, got {num_frames}")
        return nearest_valid_frames(num_frames, self.temporal_compression)[0]

    def latent_frames(self, num_frames: int) -> int:
        """Latent frames produced for ``num_frames`` input frames (validated)."""
        check_num_frames(num_frames, self.temporal_compression)
        return 1 + (num_frames - 1) // self.temporal_compression

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, temporal_compression={self.temporal_compression}, "
            f"spatial_compression={self.spatial_compression}, latent_channels={self.latent_channels})"
        )

    # -- shared checks
    def _prepare_video(self, video: Tensor) -> Tensor:
        if video.dim() != 5:
            raise ValueError(f"{self.name}: expected a B C T H W video, got shape {tuple(video.shape)}")
        if video.shape[1] != 3:
            raise ValueError(f"{self.name}: expected 3 colour channels in dim 1, got {video.shape[1]}")
        s = self.spatial_compression
        if video.shape[-2] % s or video.shape[-1] % s:
            raise ValueError(
                f"{self.name}: height and width must be multiples of {s}, got {tuple(video.shape[-2:])}; "
                "crop or resize the video"
            )
        check_num_frames(video.shape[2], self.temporal_compression)
        return video.to(device=self.device, dtype=self.dtype)

    def _prepare_latents(self, latents: Tensor, num_frames: int) -> Tensor:
        if latents.dim() != 5 or latents.shape[1] != self.latent_channels:
            raise ValueError(
                f"{self.name}: expected B {self.latent_channels} t h w latents, "
                f"got shape {tuple(latents.shape)}"
            )
        expected = pixel_frames(latents.shape[2], self.temporal_compression)
        if num_frames != expected:
            raise ValueError(
                f"{self.name}: {latents.shape[2]} latent frames decode to {expected} frames, "
                f"not the requested {num_frames}"
            )
        return latents.to(device=self.device, dtype=self.dtype)


# ---------------------------------------------------------------------------------------------- adapters
class ImageVAEAutoencoder(VideoAutoencoder):
    """A diffusers ``AutoencoderKL`` applied frame by frame; ``frame_batch_size`` bounds frames per call."""

    temporal_compression = 1

    def __init__(self, vae: nn.Module, frame_batch_size: int | None = None, name: str = "image_vae") -> None:
        self.module = vae
        self.name = name
        self.frame_batch_size = frame_batch_size
        self.spatial_compression = 2 ** (len(vae.config.block_out_channels) - 1)
        self.latent_channels = vae.config.latent_channels

    @torch.no_grad()
    def encode_frames(self, frames: Tensor) -> Tensor:
        """``N C H W`` images -> ``N c h w`` latents (posterior mode)."""
        return in_batches(partial(encode_images, self.module), frames, self.frame_batch_size)

    @torch.no_grad()
    def decode_frames(self, latents: Tensor) -> Tensor:
        """``N c h w`` latents -> ``N C H W`` images."""
        return in_batches(partial(decode_images, self.module), latents, self.frame_batch_size)

    def encode(self, video: Tensor) -> Tensor:
        return per_frame(self.encode_frames, self._prepare_video(video))

    def decode(self, latents: Tensor, num_frames: int) -> Tensor:
        return per_frame(self.decode_frames, self._prepare_latents(latents, num_frames))


class SVDAutoencoder(VideoAutoencoder):
    """diffusers ``AutoencoderKLTemporalDecoder``: the image encoder per frame, the temporal decoder over
    chunks of ``decode_chunk_size`` frames (all frames at once when ``None``; 1 decodes frames independently,
    the known flicker control)."""

    temporal_compression = 1

    def __init__(
        self,
        vae: nn.Module,
        decode_chunk_size: int | None = None,
        frame_batch_size: int | None = None,
        name: str | None = None,
    ) -> None:
        if decode_chunk_size is not None and decode_chunk_size < 1:
            raise ValueError(f"decode_chunk_size must be >= 1, got {decode_chunk_size}")
        self.module = vae
        self.decode_chunk_size = decode_chunk_size
        self.frame_batch_size = frame_batch_size
        self.name = name or ("svd_vae" if decode_chunk_size is None else f"svd_vae_chunk{decode_chunk_size}")
        self.spatial_compression = 2 ** (len(vae.config.block_out_channels) - 1)
        self.latent_channels = vae.config.latent_channels

    def encode(self, video: Tensor) -> Tensor:
        return encode_frames(self.module, self._prepare_video(video), batch_size=self.frame_batch_size)

    @torch.no_grad()
    def decode(self, latents: Tensor, num_frames: int) -> Tensor:
        latents = self._prepare_latents(latents, num_frames)
        chunk = self.decode_chunk_size or num_frames
        pieces = []
        for start in range(0, num_frames, chunk):
            part = latents[:, :, start : start + chunk]
            decoded = self.module.decode(fold_frames(part), num_frames=part.shape[2]).sample
            pieces.append(unfold_frames(decoded, latents.shape[0]))
        return torch.cat(pieces, dim=2)


class UniformSamplingAutoencoder(VideoAutoencoder):
    """The baseline of the paper's Fig. 1: the image VAE on every ``stride``-th frame (same latent budget as
    CV-VAE for ``1 + stride k`` frames), the frames in between interpolated from the decoded keyframes.

    ``interpolation``: ``linear`` (blend of the two neighbouring keyframes in pixel space) or ``nearest``.
    """

    INTERPOLATIONS = ("linear", "nearest")

    def __init__(
        self,
        image: ImageVAEAutoencoder,
        stride: int = 4,
        interpolation: str = "linear",
        name: str | None = None,
    ) -> None:
        if interpolation not in self.INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {interpolation!r}; choose one of {self.INTERPOLATIONS}")
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.image = image
        self.module = image.module
        self.temporal_compression = stride
        self.interpolation = interpolation
        self.name = name or f"uniform_sampling_{interpolation}"
        self.spatial_compression = image.spatial_compression
        self.latent_channels = image.latent_channels

    def encode(self, video: Tensor) -> Tensor:
        video = self._prepare_video(video)
        return self.image.encode(video[:, :, :: self.temporal_compression])

    def decode(self, latents: Tensor, num_frames: int) -> Tensor:
        latents = self._prepare_latents(latents, num_frames)
        keys = self.image.decode(latents, latents.shape[2])
        stride = self.temporal_compression
        frames = [keys[:, :, 0]]
        for k in range(keys.shape[2] - 1):
            left, right = keys[:, :, k], keys[:, :, k + 1]
            for offset in range(1, stride + 1):
                w = offset / stride
                if self.interpolation == "nearest":
                    w = float(w > 0.5)
                frames.append(right if w == 1.0 else left if w == 0.0 else torch.lerp(left, right, w))
        return torch.stack(frames, dim=2)


def cvvae_latent_channels(model: nn.Module) -> int:
    """Latent channels of a CV-VAE: 4 (``z_channels``) for vae3d, 16 for the SD3 variant."""
    return getattr(model, "latent_channels", None) or model.config.z_channels


class WholeClipAutoencoder(VideoAutoencoder):
    """A video VAE that encodes and decodes a whole clip in one call of its diffusers-style module."""

    @torch.no_grad()
    def encode(self, video: Tensor) -> Tensor:
        return self.module.encode(self._prepare_video(video)).latent_dist.mode()

    @torch.no_grad()
    def decode(self, latents: Tensor, num_frames: int) -> Tensor:
        out = self.module.decode(self._prepare_latents(latents, num_frames)).sample
        return self._decoded_video(out, latents.shape[0], num_frames)

    def _decoded_video(self, out: Tensor, batch: int, num_frames: int) -> Tensor:
        """The module's decoder output as ``B C num_frames H W``."""
        return out


class CVVAEAutoencoder(WholeClipAutoencoder):
    """CV-VAE in video mode: ``1 + 4k`` frames <-> ``1 + k`` latent frames. Tiling and temporal windows are
    whatever the model is set to (as loaded: the released 576-px tiles and 17-frame windows)."""

    def __init__(self, model: nn.Module, name: str = "cvvae") -> None:
        self.module = model
        self.name = name
        self.temporal_compression = model.temporal_compression_ratio
        self.spatial_compression = model.config.spatial_n_compress or 8
        self.latent_channels = cvvae_latent_channels(model)

    def _decoded_video(self, out: Tensor, batch: int, num_frames: int) -> Tensor:
        # one latent frame decodes to images (B C H W), as the SD pipeline expects
        return unfold_frames(out, batch) if out.dim() == 4 else out


class CVVAEImageAutoencoder(VideoAutoencoder):
    """CV-VAE in image mode: every frame encoded as a one-frame video, every latent frame decoded with
    ``num_frames=1`` (the call the SD pipeline makes)."""

    temporal_compression = 1

    def __init__(
        self, model: nn.Module, frame_batch_size: int | None = None, name: str = "cvvae_image"
    ) -> None:
        self.module = model
        self.name = name
        self.frame_batch_size = frame_batch_size
        self.spatial_compression = model.config.spatial_n_compress or 8
        self.latent_channels = cvvae_latent_channels(model)

    @torch.no_grad()
    def encode(self, video: Tensor) -> Tensor:
        def encode_part(images: Tensor) -> Tensor:  # as one-frame videos N C 1 H W
            return self.module.encode(images.unsqueeze(2)).latent_dist.mode()[:, :, 0]

        return per_frame(encode_part, self._prepare_video(video), self.frame_batch_size)

    @torch.no_grad()
    def decode(self, latents: Tensor, num_frames: int) -> Tensor:
        def decode_part(part: Tensor) -> Tensor:
            out = self.module.decode(part, num_frames=1).sample
            return out[:, :, 0] if out.dim() == 5 else out

        return per_frame(decode_part, self._prepare_latents(latents, num_frames), self.frame_batch_size)


def _diffusers_video_factors(vae: nn.Module) -> tuple[int, int, int]:
    """(temporal, spatial, latent channels) of a diffusers video VAE, read from its config."""
    cfg = vae.config
    kind = type(vae).__name__
    if kind == "AutoencoderKLWan":
        down = list(cfg.temperal_downsample)  # (sic) diffusers' key
        return 2 ** sum(bool(d) for d in down), 2 ** len(down), cfg.z_dim
    if kind == "AutoencoderKLCogVideoX":
        return (
            int(cfg.temporal_compression_ratio),
            2 ** (len(cfg.block_out_channels) - 1),
            cfg.latent_channels,
        )
    if kind == "AutoencoderKLMochi":
        return 6, 8, cfg.latent_channels
    temporal = getattr(vae, "temporal_compression_ratio", None)
    spatial = getattr(vae, "spatial_compression_ratio", None)
    if temporal is None or spatial is None:
        raise ValueError(
            f"{kind}: compression factors unknown; supported are {', '.join(DIFFUSERS_VIDEO_VAES)}"
        )
    return int(temporal), int(spatial), cfg.latent_channels


DIFFUSERS_VIDEO_VAES = (
    "AutoencoderKLCogVideoX",
    "AutoencoderKLHunyuanVideo",
    "AutoencoderKLLTXVideo",
    "AutoencoderKLWan",
    "AutoencoderKLMochi",
)


class DiffusersVideoAutoencoder(WholeClipAutoencoder):
    """A diffusers video VAE used at paper scale (``1 + t k`` frames, ``t`` its temporal compression)."""

    def __init__(self, vae: nn.Module, name: str | None = None) -> None:
        self.module = vae
        self.name = name or type(vae).__name__
        self.temporal_compression, self.spatial_compression, self.latent_channels = _diffusers_video_factors(
            vae
        )

    def _decoded_video(self, out: Tensor, batch: int, num_frames: int) -> Tensor:
        if out.shape[2] != num_frames:
            raise ValueError(f"{self.name} decoded {out.shape[2]} frames, expected {num_frames}")
        return out


# ---------------------------------------------------------------------------------------------- specs
def _parse_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("none", "null", ""):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_spec(spec: str | Mapping[str, Any]) -> dict[str, Any]:
    """Normalise a spec: a dict with ``kind`` or the string ``kind[:path][?key=value&...]``."""
    if isinstance(spec, Mapping):
        parsed = dict(spec)
    elif isinstance(spec, str):
        head, _, query = spec.partition("?")
        kind, _, path = head.partition(":")
        parsed = {"kind": kind.strip()}
        if path:
            parsed["path"] = path
        for item in filter(None, query.split("&")):
            key, eq, value = item.partition("=")
            if not eq:
                raise ValueError(f"spec option {item!r} in {spec!r} needs the form key=value")
            parsed[key.strip()] = _parse_value(value.strip())
    else:
        raise TypeError(f"a spec is a dict or a string 'kind:path?key=value', got {type(spec).__name__}")
    kind = parsed.get("kind")
    if kind not in KIND_OPTIONS:
        raise ValueError(f"unknown autoencoder kind {kind!r}; choose one of {', '.join(KIND_OPTIONS)}")
    unknown = set(parsed) - COMMON_OPTIONS - KIND_OPTIONS[kind]
    if unknown:
        allowed = sorted(COMMON_OPTIONS | KIND_OPTIONS[kind])
        raise ValueError(f"unknown option(s) {sorted(unknown)} for kind {kind!r}; allowed: {allowed}")
    return parsed


def missing_weights_message(kind: str, path: str | None, subfolder: str | None) -> str:
    where = f"{path}/{subfolder}" if subfolder else str(path)
    lines = [f"{kind}: no model found at {where!r} (expected a folder with config.json and weights)."]
    run_dir = Path(path or "").parent
    if Path(path or "").name == "final" and not subfolder:  # a training run's output, not a download
        lines.append(
            f"It is the final folder of training run {run_dir.name!r}, which has not finished: train it "
            f"first (the workflow, or cvvae train --variant {run_dir.name} --out {run_dir} with its profile)."
        )
        return "\n".join(lines)
    source = WEIGHT_SOURCES.get(kind)
    folder_name = Path(path or "").name
    for candidate in (*WEIGHT_SOURCES.values(), *OTHER_SOURCES):
        if folder_name and candidate[0].split("/")[-1] == folder_name:
            source = candidate  # the download the path is named after
    if source:
        repo, subfolders, what = source
        sub = subfolder if subfolder in subfolders else subfolders[0]
        local = f"data/weights/{repo.split('/')[-1]}"
        lines += [
            f"Download {repo} (subfolder {' / '.join(subfolders)}; {what}) from the Hugging Face Hub, e.g.",
            f"  hf download {repo} --include '{sub}/*' --local-dir {local}",
            f"then pass the spec '{kind}:{local}?subfolder={sub}'.",
        ]
    else:
        lines.append("Give the local folder of a diffusers save_pretrained / from_pretrained checkpoint.")
    return "\n".join(lines)


def model_dir(spec: Mapping[str, Any]) -> Path:
    """The folder a spec's weights load from; ``FileNotFoundError`` with download hints when absent."""
    path, subfolder = spec.get("path"), spec.get("subfolder")
    if not path:
        raise FileNotFoundError(
            missing_weights_message(spec["kind"], path, subfolder)
            + "\n(or set random_weights=true to benchmark the architecture with random weights)"
        )
    folder = Path(path).expanduser() / (subfolder or "")
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(missing_weights_message(spec["kind"], str(path), subfolder))
    return folder


CVVAE_CLASSES = ("CVVAEModel", "CVVAESD3Model")
# Ours (cvvae.models.svd_init) and the released SVD VAE's.
SVD_VAE_CLASSES = ("TemporalDecoderVAE", "AutoencoderKLTemporalDecoder")


def _load_cvvae(spec: Mapping[str, Any]) -> nn.Module:
    from cvvae import models

    if spec.get("random_weights"):
        sd3 = spec.get("variant", "vae3d") == "vae3d_sd3"
        model_class = models.CVVAESD3Model if sd3 else models.CVVAEModel
        return model_class.from_released_config(**spec.get("config", {}))
    folder = model_dir(spec)
    check_class(folder, CVVAE_CLASSES, "a CV-VAE")
    class_name = saved_class_name(folder) or "CVVAEModel"
    return load_pretrained_strict(getattr(models, class_name), folder)


def _load_image_vae(spec: Mapping[str, Any]) -> nn.Module:
    from .image_vae import build_image_vae, load_image_vae

    if spec.get("random_weights"):
        return build_image_vae({**SD21_VAE_CONFIG, **spec.get("config", {})})
    return load_image_vae(model_dir(spec), what=f"an image VAE for kind {spec['kind']!r}")


def _load_svd_vae(spec: Mapping[str, Any]) -> nn.Module:
    from .svd_init import TemporalDecoderVAE

    if spec.get("random_weights"):
        return TemporalDecoderVAE(**{**SVD_VAE_CONFIG, **spec.get("config", {})})
    folder = model_dir(spec)
    check_class(folder, SVD_VAE_CLASSES, "an SVD-style VAE")
    return load_pretrained_strict(TemporalDecoderVAE, folder)


def _load_diffusers_video(spec: Mapping[str, Any]) -> nn.Module:
    import diffusers

    if spec.get("random_weights"):
        class_name = spec.get("class_name")
        if class_name not in DIFFUSERS_VIDEO_VAES:
            raise ValueError(f"random diffusers_video needs class_name, one of {DIFFUSERS_VIDEO_VAES}")
        return getattr(diffusers, class_name)(**spec.get("config", {}))
    folder = model_dir(spec)
    class_name = spec.get("class_name") or json.loads((folder / "config.json").read_text()).get("_class_name")
    if class_name not in DIFFUSERS_VIDEO_VAES or not hasattr(diffusers, class_name):
        raise ValueError(f"{folder}: class {class_name!r} is not one of {DIFFUSERS_VIDEO_VAES}")
    return load_pretrained_strict(getattr(diffusers, class_name), folder)


def _build(spec: Mapping[str, Any], device: torch.device | str, dtype: torch.dtype) -> VideoAutoencoder:
    kind = spec["kind"]
    loaders = {
        "cvvae": _load_cvvae,
        "cvvae_image": _load_cvvae,
        "image_vae": _load_image_vae,
        "uniform_sampling": _load_image_vae,
        "svd_vae": _load_svd_vae,
        "diffusers_video": _load_diffusers_video,
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(spec.get("seed", 0)))
        module = loaders[kind](spec)
    # nn.Module.to: diffusers' ModelMixin.to warns on every dtype cast, although none of these models keeps
    # modules in float32.
    module = nn.Module.to(module, device=device, dtype=dtype).eval().requires_grad_(False)
    name = spec.get("name")
    batch = spec.get("frame_batch_size")

    if kind in ("cvvae", "cvvae_image", "diffusers_video") and "tiling" in spec:
        (module.enable_tiling if spec["tiling"] else module.disable_tiling)()
    if kind in ("cvvae", "cvvae_image") and spec.get("tile_size"):
        module.enable_tiling(tile_sample_size=int(spec["tile_size"]))
    if kind == "cvvae":
        if "chunking" in spec:
            module.set_temporal_chunking(None if spec["chunking"] in (None, "none") else spec["chunking"])
        if name is None and not module.use_tiling:
            name = "cvvae_untiled"
        return CVVAEAutoencoder(module, name=name or "cvvae")
    if kind == "cvvae_image":
        return CVVAEImageAutoencoder(module, frame_batch_size=batch, name=name or "cvvae_image")
    if kind == "image_vae":
        return ImageVAEAutoencoder(module, frame_batch_size=batch, name=name or "image_vae")
    if kind == "uniform_sampling":
        image = ImageVAEAutoencoder(module, frame_batch_size=batch)
        return UniformSamplingAutoencoder(
            image,
            stride=int(spec.get("stride", 4)),
            interpolation=spec.get("interpolation", "linear"),
            name=name,
        )
    if kind == "svd_vae":
        chunk = spec.get("decode_chunk_size")
        return SVDAutoencoder(
            module, decode_chunk_size=None if chunk is None else int(chunk), frame_batch_size=batch, name=name
        )
    return DiffusersVideoAutoencoder(module, name=name)


def load_autoencoder(
    spec: str | Mapping[str, Any],
    device: torch.device | str = "cpu",
    dtype: str | torch.dtype = torch.float32,
) -> VideoAutoencoder:
    """Build a :class:`VideoAutoencoder` from a spec (see the module docs), in eval mode on ``device``.

    Spec options: ``path``, ``subfolder``, ``name`` (label in tables), ``random_weights`` (released
    architecture, random init from ``seed``; dict specs may add ``config`` overrides), and per kind:
    ``tiling``, ``tile_size``,
    ``chunking`` (``official`` | ``causal_cache`` | ``none``) and, with random weights, ``variant``
    (``vae3d`` | ``vae3d_sd3``) for CV-VAE; ``frame_batch_size`` for per-frame
    models; ``decode_chunk_size`` for ``svd_vae``; ``stride``, ``interpolation`` for ``uniform_sampling``;
    ``class_name`` for ``diffusers_video``.
    """
    return _build(parse_spec(spec), device, resolve_dtype(dtype))
