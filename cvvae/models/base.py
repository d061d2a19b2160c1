"""What both CV-VAE releases share: the call surface, temporal windows, spatial tiles, slicing, the fast path.

:class:`CVVAEBase` is shaped like diffusers' autoencoders: ``AutoencoderMixin`` gives the tiling and slicing
switches, ``encode`` and ``decode`` carry ``@apply_forward_hook`` (model CPU offload moves the model to its
device before either runs). A release subclasses it, registers its own ``config.json`` keys with
``@register_to_config``, calls ``super().__init__`` with its widths and latent channels, and builds
``self.encoder`` and ``self.decoder``.

Config keys both releases have and this class reads: ``in_channels``, ``en_de_n_frames_a_time``,
``time_n_compress``, ``spatial_n_compress``, ``tile_spatial_size``, ``tile_overlap_ratio``,
``num_video_frames``, ``reshape_x_dim_to_4``, ``causal_encoder``, ``norm_per_frame``; and the keys diffusers
pipelines read, derived here: ``block_out_channels``, ``latent_channels``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from diffusers.configuration_utils import ConfigMixin
from diffusers.models.autoencoders.vae import AutoencoderMixin, DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils.accelerate_utils import apply_forward_hook
from torch import Tensor, nn

from . import fast
from .frames import check_num_frames
from .tiling import run_causal_cache, run_official_windows, run_spatial_tiles

if TYPE_CHECKING:
    from typing_extensions import Self

TemporalChunking = Literal["official", "causal_cache"] | None
TensorFn = Callable[[Tensor], Tensor]

# Released tiling and window defaults, used when a config leaves them unset.
DEFAULT_TILE_SIZE = 576
DEFAULT_TILE_OVERLAP = 0.2222
DEFAULT_CHUNK_FRAMES = 16


class VideoDiagonalGaussian(DiagonalGaussianDistribution):
    """diffusers' diagonal Gaussian; ``kl()`` sums over every non-batch dimension (channels, time, space)."""

    def kl(self, other: DiagonalGaussianDistribution | None = None) -> Tensor:
        if self.deterministic:
            return torch.zeros(self.mean.shape[0], device=self.mean.device)
        if other is None:
            terms = self.mean.pow(2) + self.var - 1.0 - self.logvar
        else:
            terms = (self.mean - other.mean).pow(2) / other.var + self.var / other.var - 1.0
            terms = terms - self.logvar + other.logvar
        return 0.5 * terms.flatten(1).sum(dim=1)


def time_halvings(num_levels: int) -> int:
    """How many of ``num_levels`` resolution levels halve time: the even ones but the last (0 and 2 of 4)."""
    return sum(1 for level in range(num_levels - 1) if level % 2 == 0)


def frames_as_batch(x: Tensor) -> Tensor:
    """``B C T H W`` -> ``(B T) C H W``, the 4D layout of diffusers' image and SVD-style VAEs."""
    return x.transpose(1, 2).flatten(0, 1)


def batch_as_videos(x: Tensor, frames: int | None, error: str) -> Tensor:
    """``(B T) C H W`` -> ``B C T H W`` with ``T = frames``, or each frame its own video when ``frames`` is
    None; ``error`` is raised when the batch does not split into whole videos."""
    if frames is None:
        return x.unsqueeze(2)
    if x.shape[0] % frames:
        raise ValueError(error)
    return x.reshape(-1, frames, *x.shape[1:]).transpose(1, 2)


class CVVAEBase(ModelMixin, AutoencoderMixin, ConfigMixin):
    r"""A CV-VAE release (diffusers ``ModelMixin`` + ``ConfigMixin``): everything but its layers.

    Shapes and frame rules:

    * ``encode(x)``: ``x`` is ``B C T H W`` with ``T = 1 + 4k`` (``ValueError`` otherwise), or ``B C H W``: a
      batch of images (``T = 1``), or, when ``num_video_frames`` is set, ``(B T) C H W`` frames regrouped into
      videos of ``num_video_frames``. Returns ``AutoencoderKLOutput(latent_dist)`` with latents ``B z (1 + k)
      H/8 W/8`` for 5D input and in the input's 4D layout for 4D input (``B z h/8 w/8`` for images, as
      diffusers' ``AutoencoderKL``; ``(B t) z h w`` with ``num_video_frames``).
    * ``decode(z, num_frames=None, generator=None)``: ``z`` is ``B z t h w`` (gives ``B C (1 + 4 (t - 1)) H
      W``), or 4D ``(B t) z h w``: regrouped into videos of ``num_frames`` *latent* frames when given, else of
      ``num_latent_frames`` (derived from ``num_video_frames``) when set, else every latent is its own image.
      4D latents give 4D output, ``(B T) C H W``: ``decode(z4d)`` is therefore the image mode of diffusers'
      image pipelines (``B C H W`` images). ``reshape_x_dim_to_4`` also flattens the output of 5D latents.
      ``generator`` is accepted for diffusers' pipelines and unused (decoding is deterministic).
      ``reshape_z_dim_to_4`` is accepted for config compatibility and, as released, has no effect.
    * Temporal chunking (default ``official`` when ``en_de_n_frames_a_time`` is set): encode windows of
      ``en_de_n_frames_a_time + 1`` frames, decode windows of ``en_de_n_frames_a_time / time_n_compress + 1``
      latent frames, overlapping by one frame whose repeat is dropped. See :meth:`set_temporal_chunking`.
    * Spatial tiling (on when ``tile_spatial_size`` is set, as released): tiles of ``tile_spatial_size``
      pixels (``/ spatial_n_compress`` latents) overlapping by ``tile_overlap_ratio``, blended linearly.
    """

    config_name = "config.json"
    _supports_gradient_checkpointing = True
    # Released variant -> its config file in cvvae/models/configs; the first is the default.
    _released_configs: ClassVar[dict[str, str]] = {}
    # Where the other release's variants live, for the error naming a wrong variant.
    _other_variants: ClassVar[str] = ""
    # Appended to the error for latents with the wrong channel count.
    _latent_channels_hint: ClassVar[str] = ""

    encoder: nn.Module
    decoder: nn.Module
    fast_path: bool | None = None

    def __init__(self, widths: Sequence[int], latent_channels: int) -> None:
        """Check and record the keys derived from the architecture (``widths``: channels per level) and set
        the tiling and chunking state from the config the subclass's ``@register_to_config`` recorded."""
        super().__init__()
        self.temporal_compression = self._check_temporal_compression(len(widths))
        self._register_pipeline_keys(tuple(widths), latent_channels)
        self._init_switches()

    def _init_switches(self) -> None:
        """Tiling and temporal windows as the config sets them; slicing off."""
        self.use_slicing = False
        tile_size, overlap = self.config.tile_spatial_size, self.config.tile_overlap_ratio
        self.use_tiling = tile_size is not None
        self.tile_sample_size = tile_size or DEFAULT_TILE_SIZE
        self.tile_overlap = overlap if overlap is not None else DEFAULT_TILE_OVERLAP
        window = self.config.en_de_n_frames_a_time
        self.temporal_chunking: TemporalChunking = "official" if window else None
        self.encode_chunk_frames = window or DEFAULT_CHUNK_FRAMES

    def _check_temporal_compression(self, levels: int) -> int:
        """The factor ``levels`` levels compress time by, which ``time_n_compress`` must match when set."""
        halvings = time_halvings(levels)
        given = self.config.time_n_compress
        if given is not None and given != 2**halvings:
            raise ValueError(
                f"time_n_compress={given} does not match the architecture: {levels} levels halve time "
                f"{halvings} times (factor {2**halvings})"
            )
        return 2**halvings

    def _register_pipeline_keys(self, widths: tuple[int, ...], latent_channels: int) -> None:
        """Record the config keys diffusers pipelines read from a ``vae``, derived from the architecture.

        ``StableDiffusionPipeline`` computes ``vae_scale_factor = 2 ** (len(block_out_channels) - 1)``; SD3
        and the image processors read ``latent_channels``. The released configs of the SD2.1-compatible
        release have none of these keys, so they are derived here; a config that carries them must agree
        with the architecture.
        """
        config, levels = self.config, len(widths)
        given_widths = config.get("block_out_channels")
        if given_widths is not None and tuple(given_widths) != widths:
            raise ValueError(
                f"block_out_channels={list(given_widths)} does not match the architecture's widths "
                f"{list(widths)}"
            )
        given_latent = config.get("latent_channels")
        if given_latent is not None and given_latent != latent_channels:
            raise ValueError(
                f"latent_channels={given_latent} does not match {latent_channels} latent channels"
            )
        spatial = 2 ** (levels - 1)
        if config.spatial_n_compress is not None and config.spatial_n_compress != spatial:
            raise ValueError(
                f"spatial_n_compress={config.spatial_n_compress} does not match the architecture: {levels} "
                f"levels downsample space by {spatial}"
            )
        self.register_to_config(
            block_out_channels=list(widths),
            latent_channels=latent_channels,
            spatial_n_compress=spatial,
            time_n_compress=self.temporal_compression,
        )

    # ------------------------------------------------------------------ released config as data
    @classmethod
    def released_config(cls, variant: str | None = None) -> dict[str, Any]:
        """The released ``config.json`` of ``variant`` (default: the release's first) as a dict."""
        variant = variant or next(iter(cls._released_configs))
        if variant not in cls._released_configs:
            choices = " or ".join(repr(name) for name in cls._released_configs)
            raise ValueError(
                f"unknown released variant {variant!r} for {cls.__name__}; choose {choices}"
                f"{cls._other_variants}"
            )
        path = resources.files("cvvae.models").joinpath(f"configs/{cls._released_configs[variant]}")
        return {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}

    @classmethod
    def from_released_config(cls, **overrides: Any) -> Self:
        """A randomly initialised model with the released architecture (``overrides`` replace keys)."""
        return cls(**{**cls.released_config(), **overrides})

    # ------------------------------------------------------------------ sizes, under diffusers' names too
    @property
    def latent_channels(self) -> int:
        """Channels of one latent frame (4 in the SD2.1-compatible release, 16 in the SD3-compatible one)."""
        return self.config.latent_channels

    @property
    def spatial_compression_ratio(self) -> int:
        """Pixels per latent along height and width (8 as released), as diffusers' video VAEs name it."""
        return self.config.spatial_n_compress

    @property
    def temporal_compression_ratio(self) -> int:
        """``temporal_compression`` under the name diffusers' video VAEs and pipelines read."""
        return self.temporal_compression

    # ------------------------------------------------------------------ diffusers-style switches
    def enable_tiling(
        self, tile_sample_size: int | None = None, tile_overlap_ratio: float | None = None
    ) -> None:
        """Encode and decode in overlapping spatial tiles of ``tile_sample_size`` pixels (default: config)."""
        if tile_sample_size is not None and tile_sample_size % self.config.spatial_n_compress:
            raise ValueError(f"tile size must be a multiple of {self.config.spatial_n_compress}")
        if tile_overlap_ratio is not None and not 0 <= tile_overlap_ratio < 1:
            raise ValueError("tile_overlap_ratio must be in [0, 1)")
        super().enable_tiling()
        if tile_sample_size is not None:
            self.tile_sample_size = tile_sample_size
        if tile_overlap_ratio is not None:
            self.tile_overlap = tile_overlap_ratio

    def set_temporal_chunking(self, mode: TemporalChunking, chunk_frames: int | None = None) -> None:
        """Choose how long videos are split in time.

        * ``"official"``: the released overlapping windows (``chunk_frames + 1`` pixel frames per encode
          round, ``chunk_frames / time_n_compress + 1`` latent frames per decode round).
        * ``"causal_cache"``: the encoder runs over chunks of ``chunk_frames`` frames (after a first chunk of
          ``1 + chunk_frames``), carrying every causal layer's last frames: equal to one pass over the whole
          video. Needs ``causal_encoder=True`` and ``norm_per_frame=True`` (released GroupNorm statistics span
          all frames, which no chunking can reproduce exactly). The decoder (non-causal as released) keeps the
          official windows in this mode.
        * ``None``: one pass over the whole video (memory grows with its length).
        """
        if mode not in ("official", "causal_cache", None):
            raise ValueError(f"unknown temporal chunking {mode!r}; choose 'official', 'causal_cache' or None")
        chunk = chunk_frames or self.encode_chunk_frames
        if chunk % self.temporal_compression:
            raise ValueError(f"chunk_frames must be a multiple of {self.temporal_compression}, got {chunk}")
        if mode == "causal_cache":
            self._check_causal_cache()
        self.temporal_chunking = mode
        self.encode_chunk_frames = chunk

    def _encoder_is_causal(self) -> bool:
        """Whether no encoder layer looks at later frames (what ``causal_cache`` chunking needs)."""
        return bool(self.config.causal_encoder)

    def _check_causal_cache(self) -> None:
        if not self._encoder_is_causal():
            raise ValueError("causal_cache chunking needs a causal encoder (causal_encoder=True, 3D convs)")
        if not self.config.norm_per_frame:
            raise ValueError(
                "causal_cache chunking is exact only with per-frame normalisation (norm_per_frame=True); "
                "this model's GroupNorm statistics span all frames of a pass. Use 'official' windows or None."
            )

    # ------------------------------------------------------------------ fast inference path
    def set_fast_path(self, mode: bool | None) -> None:
        """How encode and decode run the encoder and decoder: ``None`` (default) through
        :mod:`cvvae.models.fast` on CUDA in inference (no autograd, eval mode), ``True`` there on any device,
        ``False`` always through the modules' own ``forward``. Same function; rounding differs."""
        self.fast_path = mode

    def _run_encoder(self, x: Tensor) -> Tensor:
        if fast.wanted(self.fast_path, self, x):
            return fast.encoder_forward(self.encoder, x)
        return self.encoder(x)

    def _run_decoder(self, z: Tensor) -> Tensor:
        if fast.wanted(self.fast_path, self, z):
            return fast.decoder_forward(self.decoder, z)
        return self.decoder(z)

    # ------------------------------------------------------------------ tiles and slices
    def _tiled(self, fn: TensorFn, x: Tensor, tile: int, out_tile: int) -> Tensor:
        """``fn`` over spatial tiles of ``tile`` (giving tiles of ``out_tile``, blended) when tiling is on."""
        if not self.use_tiling:
            return fn(x)
        out_overlap = round(out_tile * self.tile_overlap)
        return run_spatial_tiles(
            fn,
            x,
            tile=tile,
            stride=round(tile * (1 - self.tile_overlap)),
            out_overlap=out_overlap,
            out_stride=out_tile - out_overlap,
        )

    def _latent_tile(self) -> int:
        return self.tile_sample_size // self.config.spatial_n_compress

    def _sliced(self, fn: TensorFn, x: Tensor) -> Tensor:
        """``fn`` over the batch, one element at a time when slicing is on."""
        if self.use_slicing and x.shape[0] > 1:
            return torch.cat([fn(part) for part in x.split(1)])
        return fn(x)

    # ------------------------------------------------------------------ encode
    def _encode_tiles(self, fn: TensorFn, x: Tensor) -> Tensor:
        return self._tiled(fn, x, self.tile_sample_size, self._latent_tile())

    def _spatial_encode(self, x: Tensor) -> Tensor:
        return self._encode_tiles(self._run_encoder, x)

    def _causal_cache_encode(self, x: Tensor) -> Tensor:
        return run_causal_cache(self.encoder, x, self.encode_chunk_frames, self.encoder.modules())

    def _encode_video(self, x: Tensor) -> Tensor:
        if self.temporal_chunking == "official":
            return run_official_windows(self._spatial_encode, x, self.encode_chunk_frames)
        if self.temporal_chunking == "causal_cache":
            return self._encode_tiles(self._causal_cache_encode, x)
        return self._spatial_encode(x)

    def _as_video(self, x: Tensor) -> Tensor:
        if x.dim() == 5:
            return x
        if x.dim() != 4:
            raise ValueError(f"expected B C T H W video or B C H W images, got shape {tuple(x.shape)}")
        t = self.config.num_video_frames
        return batch_as_videos(x, t, f"{x.shape[0]} frames do not split into videos of num_video_frames={t}")

    @apply_forward_hook
    def encode(
        self, x: Tensor, return_dict: bool = True
    ) -> AutoencoderKLOutput | tuple[VideoDiagonalGaussian]:
        """Encode ``B C T H W`` (``T = 1 + 4k``) or ``B C H W`` to a diagonal Gaussian over the latents."""
        video = self._as_video(x)
        check_num_frames(video.shape[2], self.temporal_compression)
        if video.shape[1] != self.config.in_channels:
            raise ValueError(f"expected {self.config.in_channels} input channels, got {video.shape[1]}")
        moments = self._sliced(self._encode_video, video)
        if x.dim() == 4:  # 4D in, 4D latents out: what diffusers' image and SVD pipelines expect
            moments = frames_as_batch(moments)
        posterior = VideoDiagonalGaussian(moments)
        return AutoencoderKLOutput(latent_dist=posterior) if return_dict else (posterior,)

    # ------------------------------------------------------------------ decode
    def _spatial_decode(self, z: Tensor) -> Tensor:
        return self._tiled(self._run_decoder, z, self._latent_tile(), self.tile_sample_size)

    def _decode_video(self, z: Tensor) -> Tensor:
        if self.temporal_chunking is None:
            return self._spatial_decode(z)
        return run_official_windows(
            self._spatial_decode, z, self.encode_chunk_frames // self.temporal_compression
        )

    def _latents_as_video(self, z: Tensor, num_frames: int | None) -> Tensor:
        if z.dim() == 5:
            return z
        if z.dim() != 4:
            raise ValueError(f"expected B c t h w or (B t) c h w latents, got shape {tuple(z.shape)}")
        t = num_frames
        if t is None and self.config.num_video_frames is not None:
            t = 1 + (self.config.num_video_frames - 1) // self.temporal_compression
        return batch_as_videos(
            z, t, f"{z.shape[0]} latent frames do not split into videos of {t} latent frames"
        )

    def _check_latent_channels(self, z: Tensor) -> None:
        if z.shape[1] != self.latent_channels:
            raise ValueError(
                f"expected {self.latent_channels} latent channels, got {z.shape[1]}"
                f"{self._latent_channels_hint}"
            )

    @apply_forward_hook
    def decode(
        self,
        z: Tensor,
        num_frames: int | None = None,
        return_dict: bool = True,
        generator: torch.Generator | None = None,
    ) -> DecoderOutput | tuple[Tensor]:
        """Decode latents; ``num_frames`` counts *latent* frames per video for 4D input (see class docs).

        ``generator`` is accepted because diffusers' pipelines pass it; decoding draws no random numbers.
        """
        video = self._latents_as_video(z, num_frames)
        self._check_latent_channels(video)
        x = self._sliced(self._decode_video, video)
        if z.dim() == 4 or self.config.reshape_x_dim_to_4:  # 4D latents in, (B T) C H W out
            x = frames_as_batch(x)
        return DecoderOutput(sample=x) if return_dict else (x,)

    def forward(
        self,
        sample: Tensor,
        sample_posterior: bool = False,
        return_dict: bool = True,
        generator: torch.Generator | None = None,
        num_frames: int | None = None,
    ) -> DecoderOutput | tuple[Tensor]:
        """Encode, take the posterior mode (or a seeded sample), decode."""
        posterior = self.encode(sample).latent_dist
        z = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        return self.decode(z, num_frames=num_frames, return_dict=return_dict)
