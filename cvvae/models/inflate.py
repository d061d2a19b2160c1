"""Inflate a Stable-Diffusion-style image VAE (diffusers ``AutoencoderKL``) into a :class:`CVVAEModel`.

Every 2D kernel goes into the temporal tap that lets a single image pass through unchanged, the other taps are
zero: the *last* tap of the causal encoder convs (their front padding repeats the frame), the *middle* tap of
the centred decoder convs (their time padding is zero). Consequences, for one frame:

* encoder: exact (``quant_conv`` folded into ``conv_out``; GroupNorm eps set to diffusers' 1e-6); the stride-2
  temporal downsample convs keep frames 0, 2, 4, ..., so latent ``t`` is built from frame ``4 t``;
* decoder: exact except (1) ``post_quant_conv``'s bias folded into ``conv_in`` is wrong on the border pixels
  (zero padding does not carry a bias), and (2) the mid block's temporal attention, which sits *in series*
  behind a LayerNorm with no residual of its own (see ``temporal_attention_init``);
* temporal upsampling convs: the half of the channels that becomes frame ``2 t`` (kept for ``T = 1``) holds
  the 2D kernel at the middle tap; the half that becomes the in-between frame ``2 t - 1`` averages the
  previous and current frame (0.5 at taps 0 and 1): linear interpolation in time.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import torch
from torch import Tensor, nn

from .cvvae import CVVAEModel

TEMPORAL_ATTENTION_INITS = ("linearised", "standardised", "zero")
# Parameters that the linearised init multiplies by ``linearised_scale``: Adam's lr-sized steps are huge for
# them relative to their size (the trainer can give them their own lr: ``train.linearised_lr_scale``).
LINEARISED_SCALED_PARAMETERS = ("decoder.mid.attn_1.proj_out.weight", "decoder.mid.attn_1.proj_out.bias")


def image_vae_to_cvvae_config(vae: Any) -> dict[str, Any]:
    """CV-VAE config keys derived from an ``AutoencoderKL`` config; ``ValueError`` if not inflatable."""
    cfg = vae.config
    blocks = list(cfg.block_out_channels)
    problems = []
    if len(blocks) != 4:
        problems.append(f"{len(blocks)} resolution levels (needs 4: 8x space, 4x time)")
    if any(t != "DownEncoderBlock2D" for t in cfg.down_block_types):
        problems.append(f"down blocks {list(cfg.down_block_types)} (needs DownEncoderBlock2D)")
    if any(t != "UpDecoderBlock2D" for t in cfg.up_block_types):
        problems.append(f"up blocks {list(cfg.up_block_types)} (needs UpDecoderBlock2D)")
    if any(b % blocks[0] for b in blocks):
        problems.append(f"block_out_channels {blocks} are not multiples of the first")
    if getattr(cfg, "act_fn", "silu") != "silu":
        problems.append(f"activation {cfg.act_fn} (needs silu)")
    if not getattr(cfg, "mid_block_add_attention", True):
        problems.append("no mid-block attention (the CV-VAE has one)")
    if problems:
        raise ValueError("cannot inflate this image VAE into a CV-VAE: " + "; ".join(problems))
    return {
        "ch": blocks[0],
        "ch_mult": [b // blocks[0] for b in blocks],
        "num_res_blocks": cfg.layers_per_block,
        "z_channels": cfg.latent_channels,
        "in_channels": cfg.in_channels,
        "out_ch": cfg.out_channels,
        "norm_num_groups": cfg.norm_num_groups,
        "norm_eps": 1e-6,  # diffusers' AutoencoderKL GroupNorm eps
        "scaling_factor": cfg.scaling_factor,
        "force_upcast": bool(cfg.force_upcast),
    }


def _at_tap(kernel_2d: Tensor, taps: int, tap: int) -> Tensor:
    """3D kernel with ``kernel_2d`` at temporal tap ``tap`` and zeros elsewhere."""
    out = kernel_2d.new_zeros(kernel_2d.shape[0], kernel_2d.shape[1], taps, *kernel_2d.shape[2:])
    out[:, :, tap] = kernel_2d
    return out


@torch.no_grad()
def _copy_conv(dst: nn.Module, src: nn.Module, tap: str) -> None:
    """Copy a 2D conv into a 2D, causal-3D (last tap) or centred-3D (middle tap) conv."""
    weight = src.weight
    if dst.weight.dim() == 5:
        taps = dst.weight.shape[2]
        weight = _at_tap(weight, taps, taps - 1 if tap == "last" else taps // 2)
    dst.weight.copy_(weight)
    dst.bias.copy_(src.bias)


@torch.no_grad()
def _copy_norm(dst: nn.Module, src: nn.Module) -> None:
    dst.weight.copy_(src.weight)
    dst.bias.copy_(src.bias)


def _copy_resnet(dst: nn.Module, src: nn.Module, tap: str) -> None:
    _copy_norm(dst.norm1, src.norm1)
    _copy_norm(dst.norm2, src.norm2)
    _copy_conv(dst.conv1, src.conv1, tap)
    _copy_conv(dst.conv2, src.conv2, tap)
    if hasattr(dst, "nin_shortcut"):
        _copy_conv(dst.nin_shortcut, src.conv_shortcut, tap)


@torch.no_grad()
def _copy_spatial_attention(dst: nn.Module, src: nn.Module) -> None:
    """diffusers ``Attention`` (Linear projections) -> released layout (1x1 Conv2d)."""
    if getattr(src, "heads", 1) != 1:
        raise ValueError(f"mid attention has {src.heads} heads; the CV-VAE's is single-head")
    _copy_norm(dst.norm, src.group_norm)
    for name, linear in (("q", src.to_q), ("k", src.to_k), ("v", src.to_v), ("proj_out", src.to_out[0])):
        conv = getattr(dst, name)
        conv.weight.copy_(linear.weight[:, :, None, None])
        conv.bias.copy_(linear.bias)


@torch.no_grad()
def _init_temporal_attention(dst: nn.Module, mode: str, scale: float) -> None:
    """Initialise the decoder's temporal attention, which replaces the spatial branch ``s`` by
    ``proj_out_t(attn_t(LayerNorm(s)))``. For one frame the attention returns ``v_t``; with ``q_t = k_t = 0``
    a video gets the mean of ``v_t`` over its frames (exact for static content).

    * ``linearised`` (default): the spatial ``proj_out`` is scaled by ``scale`` so that the LayerNorm's input
      variance is far below its eps; the LayerNorm then only removes the channel mean and divides by
      ``sqrt(eps)``, which ``proj_out_t`` undoes. Output: ``s - mean_channels(s)`` (up to ``O(scale^2)``).
    * ``standardised``: identity projections, so the output is ``LayerNorm(s)`` (unit variance per pixel).
    * ``zero``: ``proj_out_t = 0``; the mid attention block becomes the identity (drops the spatial branch).
    """
    if mode not in TEMPORAL_ATTENTION_INITS:
        raise ValueError(
            f"unknown temporal_attention_init {mode!r}; choose one of {TEMPORAL_ATTENTION_INITS}"
        )
    c = dst.q_t.weight.shape[0]
    eye = torch.eye(c, dtype=dst.q_t.weight.dtype)
    for linear in (dst.q_t, dst.k_t):
        linear.weight.zero_()
        linear.bias.zero_()
    dst.v_t.weight.copy_(eye)
    dst.v_t.bias.zero_()
    dst.norm_t.weight.fill_(1.0)
    dst.norm_t.bias.zero_()
    dst.proj_out_t.bias.zero_()
    if mode == "zero":
        dst.proj_out_t.weight.zero_()
    elif mode == "standardised":
        dst.proj_out_t.weight.copy_(eye)
    else:
        dst.proj_out.weight.mul_(scale)
        dst.proj_out.bias.mul_(scale)
        dst.proj_out_t.weight.copy_(eye * (math.sqrt(dst.norm_t.eps) / scale))


@torch.no_grad()
def _inflate_encoder(model: CVVAEModel, vae: Any) -> None:
    enc, src = model.encoder, vae.encoder
    _copy_conv(enc.conv_in, src.conv_in, "last")
    for stage, block in zip(enc.down, src.down_blocks, strict=True):
        for dst_res, src_res in zip(stage.block, block.resnets, strict=True):
            _copy_resnet(dst_res, src_res, "last")
        if hasattr(stage, "downsample"):
            _copy_conv(stage.downsample.conv, block.downsamplers[0].conv, "last")
    _copy_resnet(enc.mid.block_1, src.mid_block.resnets[0], "last")
    _copy_spatial_attention(enc.mid.attn_1, src.mid_block.attentions[0])
    _copy_resnet(enc.mid.block_2, src.mid_block.resnets[1], "last")
    _copy_norm(enc.norm_out, src.conv_norm_out)
    _copy_conv(enc.conv_out, src.conv_out, "last")
    quant = getattr(vae, "quant_conv", None)
    if quant is not None:  # quant(conv_out(h)) = (Q W) h + (Q b + q), exactly
        q = quant.weight[:, :, 0, 0]
        enc.conv_out.weight.copy_(torch.einsum("oc,c...->o...", q, enc.conv_out.weight))
        enc.conv_out.bias.copy_(q @ enc.conv_out.bias + quant.bias)


@torch.no_grad()
def _inflate_decoder(model: CVVAEModel, vae: Any, temporal_attention_init: str, scale: float) -> None:
    dec, src = model.decoder, vae.decoder
    _copy_conv(dec.conv_in, src.conv_in, "middle")
    post = getattr(vae, "post_quant_conv", None)
    if (
        post is not None
    ):  # conv_in(post(z)) = (W P) z + W p + b; W p is exact away from the zero-padded border
        p = post.weight[:, :, 0, 0]
        w = dec.conv_in.weight
        dec.conv_in.bias.add_(torch.einsum("oc...,c->o", w, post.bias))
        dec.conv_in.weight.copy_(torch.einsum("oc...,ci->oi...", w, p))
    _copy_resnet(dec.mid.block_1, src.mid_block.resnets[0], "middle")
    _copy_spatial_attention(dec.mid.attn_1, src.mid_block.attentions[0])
    if hasattr(dec.mid.attn_1, "q_t"):
        _init_temporal_attention(dec.mid.attn_1, temporal_attention_init, scale)
    _copy_resnet(dec.mid.block_2, src.mid_block.resnets[1], "middle")
    levels = len(dec.up)
    for i, block in enumerate(src.up_blocks):  # diffusers counts up blocks from the lowest resolution
        stage = dec.up[levels - 1 - i]
        for dst_res, src_res in zip(stage.block, block.resnets, strict=True):
            _copy_resnet(dst_res, src_res, "middle")
        if hasattr(stage, "upsample"):
            _inflate_upsample(stage.upsample.conv, block.upsamplers[0].conv)
    _copy_norm(dec.norm_out, src.conv_norm_out)
    _copy_conv(dec.conv_out, src.conv_out, "middle")


@torch.no_grad()
def _inflate_upsample(dst: nn.Conv3d, src: nn.Conv2d) -> None:
    c = src.weight.shape[0]
    if dst.weight.shape[0] == c:
        _copy_conv(dst, src, "middle")
        return
    # channels [0, c) become the in-between frame 2t-1, channels [c, 2c) frame 2t
    between = src.weight.new_zeros(c, c, 3, *src.weight.shape[2:])
    between[:, :, 0] = 0.5 * src.weight
    between[:, :, 1] = 0.5 * src.weight
    dst.weight.copy_(torch.cat([between, _at_tap(src.weight, 3, 1)]))
    dst.bias.copy_(torch.cat([src.bias, src.bias]))


def inflate_from_image_vae(
    vae: Any,
    temporal_attention_init: str = "linearised",
    linearised_scale: float = 1e-4,
    **config_overrides: Any,
) -> CVVAEModel:
    """Build a :class:`CVVAEModel` whose encoder reproduces ``vae``'s latents for single images.

    The architecture (``ch``, ``ch_mult``, ``num_res_blocks``, ``z_channels``, ``norm_num_groups``) comes from
    ``vae.config``; ``config_overrides`` set other CV-VAE keys (e.g. ``tile_spatial_size=None``) but may not
    change the derived ones. See the module docstring for what is exact and
    :func:`_init_temporal_attention` for the decoder's temporal attention.
    """
    derived = image_vae_to_cvvae_config(vae)
    clash = {k for k in config_overrides if k in derived and config_overrides[k] != derived[k]}
    if clash - {"scaling_factor", "force_upcast"}:
        raise ValueError(f"cannot override {sorted(clash)}: they are fixed by the image VAE's architecture")
    model = CVVAEModel(**{**derived, **config_overrides})
    if not (model.config.use_3d_conv and model.config.causal_encoder and not model.config.causal_decoder):
        raise ValueError("inflation supports the released layout: causal 3D encoder, centred 3D decoder")
    dtype = next(vae.parameters()).dtype
    if dtype != torch.float32:
        model = model.to(dtype=dtype)
    _inflate_encoder(model, vae)
    _inflate_decoder(model, vae, temporal_attention_init, linearised_scale)
    return model


def _parse_value(text: str) -> Any:
    """A ``--set`` value, read as YAML like every ``--set`` of the CLI (``null``, ``1e-4``, ``[1, 2]``)."""
    import yaml

    return yaml.safe_load(text) if text else ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--image-vae",
        required=True,
        help="the image VAE as a spec, as in `cvvae evaluate` (image_vae:PATH?subfolder=vae), or its folder",
    )
    parser.add_argument(
        "--subfolder", default=None, help="subfolder of --image-vae, e.g. 'vae' for an SD repo"
    )
    parser.add_argument("--out", required=True, help="output folder (save_pretrained)")
    parser.add_argument(
        "--temporal-attention-init",
        default="linearised",
        choices=TEMPORAL_ATTENTION_INITS,
        help="initialisation of the decoder's temporal attention",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a CV-VAE config key (YAML value), e.g. --set tile_spatial_size=null",
    )


def run(args: argparse.Namespace) -> int:
    from .image_vae import load_image_vae

    folder, subfolder = args.image_vae, args.subfolder
    if args.image_vae.startswith("image_vae:"):
        from cvvae.models.zoo import parse_spec

        spec = parse_spec(args.image_vae)
        folder, subfolder = spec.get("path", ""), spec.get("subfolder") or subfolder
    vae = load_image_vae(folder, subfolder, setting="--image-vae")
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key] = _parse_value(value)
    # The profile's cvvae.model may choose the temporal-attention init as well; it wins over the flag.
    options = {"temporal_attention_init": args.temporal_attention_init, **overrides}
    model = inflate_from_image_vae(vae, **options)
    model.save_pretrained(args.out)
    print(f"saved inflated CV-VAE to {args.out}")
    return 0
