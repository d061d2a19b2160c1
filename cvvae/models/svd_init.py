"""Build an SVD-style video VAE from an SD image VAE.

Stable Video Diffusion's VAE keeps the image encoder and replaces the decoder with a temporal one: every
decoder ResNet block gets a temporal (3x1x1) ResNet block blended in after it, and a 3x1x1 ``time_conv_out``
follows the output conv. At small scale no SVD weights exist, so :func:`svd_vae_from_image_vae` builds one
from a small image VAE the way such a decoder starts: encoder copied unchanged (latents stay identical),
spatial decoder weights copied, and the temporal parts initialised so that, before any video fine-tuning,
the decoder reproduces the image decoder frame by frame:

- every temporal ResNet block has its last conv zeroed, so it returns its input and the spatial/temporal
  blend (``0.5 * x + 0.5 * x``) is exactly the spatial path; the mix factor stays trainable (a saturated
  sigmoid would freeze it) and the zeroed conv gets gradients from the first step;
- ``time_conv_out`` is the identity in its centre tap.

diffusers' ``AutoencoderKLTemporalDecoder`` hard-codes 32 GroupNorm groups, a mid block with
``layers_per_block`` ResNets and no ``post_quant_conv``; small image VAEs differ on all three.
:class:`TemporalDecoderVAE` is the same model with those three choices as config keys; with their defaults
it is exactly diffusers' SVD VAE and loads its checkpoints (such as
``stabilityai/stable-video-diffusion-img2vid-xt``, subfolder ``vae``) unchanged. Remaining constraint:
every entry of ``block_out_channels`` must be divisible by 32, because diffusers builds its GroupNorms with
32 groups before the group count can be changed.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, AutoencoderKLTemporalDecoder
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput
from diffusers.models.unets.unet_3d_blocks import MidBlockTemporalDecoder
from diffusers.utils.accelerate_utils import apply_forward_hook
from torch import nn

# GroupNorms inside diffusers' temporal decoder blocks are always constructed with this many groups.
DIFFUSERS_TEMPORAL_GROUPS = 32
# The image VAE's mid block always has two ResNets around one attention, whatever layers_per_block is.
IMAGE_VAE_MID_BLOCK_RESNETS = 2
# Config keys the SVD-style VAE takes from the image VAE as they are (the block types and widths as tuples).
COPIED_KEYS = (
    "in_channels",
    "out_channels",
    "layers_per_block",
    "latent_channels",
    "sample_size",
    "scaling_factor",
    "force_upcast",
    "norm_num_groups",
)


class TemporalDecoderVAE(AutoencoderKLTemporalDecoder):
    """diffusers' ``AutoencoderKLTemporalDecoder`` with three extra config keys (defaults = the SVD VAE).

    Args:
        norm_num_groups: groups of every GroupNorm (diffusers fixes 32).
        use_post_quant_conv: a 1x1 conv on the latents before the decoder, as in ``AutoencoderKL``.
        mid_block_num_layers: ResNets in the decoder mid block (``None``: ``layers_per_block``, as diffusers).
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",),
        block_out_channels: tuple[int, ...] = (64,),
        layers_per_block: int = 1,
        latent_channels: int = 4,
        sample_size: int = 32,
        scaling_factor: float = 0.18215,
        force_upcast: float = True,
        norm_num_groups: int = DIFFUSERS_TEMPORAL_GROUPS,
        use_post_quant_conv: bool = False,
        mid_block_num_layers: int | None = None,
    ):
        bad = [c for c in block_out_channels if c % DIFFUSERS_TEMPORAL_GROUPS]
        if bad:
            raise ValueError(
                f"block_out_channels {tuple(block_out_channels)} has widths {bad} not divisible by "
                f"{DIFFUSERS_TEMPORAL_GROUPS}: diffusers builds the temporal decoder's GroupNorms with "
                f"{DIFFUSERS_TEMPORAL_GROUPS} groups. Use widths that are multiples of "
                f"{DIFFUSERS_TEMPORAL_GROUPS}."
            )
        super().__init__(
            in_channels=in_channels,
            out_channels=out_channels,
            down_block_types=down_block_types,
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            latent_channels=latent_channels,
            sample_size=sample_size,
            scaling_factor=scaling_factor,
            force_upcast=force_upcast,
        )
        if mid_block_num_layers is not None and mid_block_num_layers != layers_per_block:
            width = block_out_channels[-1]
            self.decoder.mid_block = MidBlockTemporalDecoder(
                num_layers=mid_block_num_layers,
                in_channels=width,
                out_channels=width,
                attention_head_dim=width,
            )
        if norm_num_groups != DIFFUSERS_TEMPORAL_GROUPS:
            for module in self.modules():
                if isinstance(module, nn.GroupNorm):
                    if module.num_channels % norm_num_groups:
                        raise ValueError(
                            f"norm_num_groups={norm_num_groups} does not divide a GroupNorm of "
                            f"{module.num_channels} channels"
                        )
                    module.num_groups = norm_num_groups
        self.post_quant_conv = nn.Conv2d(latent_channels, latent_channels, 1) if use_post_quant_conv else None

    @apply_forward_hook
    def decode(
        self, z: torch.Tensor, num_frames: int, return_dict: bool = True
    ) -> DecoderOutput | tuple[torch.Tensor]:
        """Decode ``(batch * num_frames, c, h, w)`` latents; same call as diffusers' SVD VAE."""
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        return super().decode(z, num_frames=num_frames, return_dict=return_dict)


def _check_convertible(config) -> None:
    problems = []
    if set(config.down_block_types) != {"DownEncoderBlock2D"}:
        problems.append(f"down_block_types {config.down_block_types} (need DownEncoderBlock2D)")
    if set(config.up_block_types) != {"UpDecoderBlock2D"}:
        problems.append(f"up_block_types {config.up_block_types} (need UpDecoderBlock2D)")
    if config.act_fn != "silu":
        problems.append(f"act_fn {config.act_fn!r} (the temporal decoder uses silu)")
    if not getattr(config, "mid_block_add_attention", True):
        problems.append("mid_block_add_attention=False (the temporal decoder always has mid attention)")
    if problems:
        raise ValueError("this image VAE cannot be turned into an SVD-style VAE: " + "; ".join(problems))


def _decoder_key(image_key: str) -> str:
    """Image-decoder state-dict key -> temporal-decoder key: ResNets gain a ``spatial_res_block`` level."""
    parts = image_key.split(".")
    if "resnets" in parts:
        at = parts.index("resnets") + 2  # after "resnets.<j>"
        parts.insert(at, "spatial_res_block")
    return ".".join(parts)


def _identity_temporal_layers(vae: TemporalDecoderVAE) -> None:
    for module in vae.decoder.modules():
        if hasattr(module, "temporal_res_block"):
            nn.init.zeros_(module.temporal_res_block.conv2.weight)
            nn.init.zeros_(module.temporal_res_block.conv2.bias)
            # sigmoid(0) = 0.5: spatial and (identical) temporal paths blend to the spatial path exactly.
            module.time_mixer.mix_factor.data.fill_(0.0)
    time_conv = vae.decoder.time_conv_out
    nn.init.zeros_(time_conv.weight)
    nn.init.zeros_(time_conv.bias)
    centre = time_conv.kernel_size[0] // 2
    time_conv.weight.data[:, :, centre, 0, 0] = torch.eye(time_conv.out_channels)


def svd_vae_from_image_vae(vae: AutoencoderKL) -> TemporalDecoderVAE:
    """An SVD-style VAE (``AutoencoderKLTemporalDecoder`` subclass) whose encoder is ``vae``'s and whose
    decoder, before fine-tuning, decodes every frame exactly as ``vae`` does.

    Raises ``ValueError`` for image VAEs the temporal decoder cannot mirror (other block types or activation,
    widths not divisible by 32).
    """
    config = vae.config
    _check_convertible(config)
    video_vae = TemporalDecoderVAE(
        **{key: config[key] for key in COPIED_KEYS},
        down_block_types=tuple(config.down_block_types),
        block_out_channels=tuple(config.block_out_channels),
        use_post_quant_conv=vae.post_quant_conv is not None,
        mid_block_num_layers=IMAGE_VAE_MID_BLOCK_RESNETS,
    )
    video_vae.to(device=vae.device, dtype=vae.dtype)

    video_vae.encoder.load_state_dict(vae.encoder.state_dict())
    if vae.quant_conv is not None:
        video_vae.quant_conv.load_state_dict(vae.quant_conv.state_dict())
    else:  # the image VAE passes encoder moments through unchanged
        nn.init.zeros_(video_vae.quant_conv.bias)
        video_vae.quant_conv.weight.data.copy_(torch.eye(2 * config.latent_channels)[:, :, None, None])
    if vae.post_quant_conv is not None:
        video_vae.post_quant_conv.load_state_dict(vae.post_quant_conv.state_dict())

    decoder_state = {_decoder_key(k): v for k, v in vae.decoder.state_dict().items()}
    missing, unexpected = video_vae.decoder.load_state_dict(decoder_state, strict=False)
    if unexpected:
        raise RuntimeError(f"image decoder weights with no place in the temporal decoder: {unexpected}")
    not_temporal = [k for k in missing if "temporal_res_block" not in k and "time_" not in k]
    if not_temporal:
        raise RuntimeError(f"temporal decoder weights the image decoder did not provide: {not_temporal}")

    _identity_temporal_layers(video_vae)
    return video_vae.eval()
