"""The trainer's AdamW: parameter groups (the linearised init's scaled tensor on its own lr), fused kernels on
CUDA, and the channels-last layout of the models' weights."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from cvvae.models.inflate import LINEARISED_SCALED_PARAMETERS


def is_linearised_scaled(name: str) -> bool:
    """Whether parameter ``name`` (of the CV-VAE, or of a wrapper that prefixes it) is one that the
    linearised temporal-attention init scales down."""
    return any(name == p or name.endswith("." + p) for p in LINEARISED_SCALED_PARAMETERS)


def build_adamw(
    config: Any,
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    extra: list[nn.Parameter],
    lr: float,
    scaled: bool = True,
) -> torch.optim.AdamW:
    """AdamW over the trainable ``named_parameters`` and ``extra`` (the learned log-variances).

    With ``scaled`` and ``config.linearised_lr_scale != 1`` the linearised init's scaled tensors form a second
    group at ``lr * linearised_lr_scale`` (the schedule multiplies both groups alike). Fused kernels are used
    where ``config.fused_optimizer`` asks and every parameter is on CUDA.
    """
    named = [(n, p) for n, p in named_parameters if p.requires_grad]
    scale = float(getattr(config, "linearised_lr_scale", 1.0))
    special = [p for n, p in named if scaled and scale != 1.0 and is_linearised_scaled(n)]
    ids = {id(p) for p in special}
    groups: list[dict[str, Any]] = [{"params": [p for _, p in named if id(p) not in ids] + list(extra)}]
    if special:
        groups.append({"params": special, "lr": lr * scale})
    params = [p for g in groups for p in g["params"]]
    fused = bool(getattr(config, "fused_optimizer", False)) and bool(params)
    fused = fused and all(p.is_cuda and p.is_floating_point() for p in params)
    kwargs: dict[str, Any] = {"betas": tuple(config.betas), "eps": config.eps}
    kwargs["weight_decay"] = config.weight_decay
    if fused:
        kwargs["fused"] = True
    return torch.optim.AdamW(groups, lr=lr, **kwargs)


def to_channels_last(module: nn.Module | None) -> None:
    """Store 4D weights channels-last and 5D weights channels-last-3d, in place (same values)."""
    if module is None:
        return
    with torch.no_grad():
        for param in module.parameters():
            if param.dim() == 4:
                param.data = param.data.contiguous(memory_format=torch.channels_last)
            elif param.dim() == 5:
                param.data = param.data.contiguous(memory_format=torch.channels_last_3d)


def compile_in_place(*modules: nn.Module | None, retain_graph: bool = False, **options: Any) -> None:
    """``torch.compile`` each module's forward in place (``nn.Module.compile``): parameters, state-dict names
    and hooks stay as they are, so checkpoints of compiled and eager runs are interchangeable.

    ``retain_graph``: the caller differentiates one graph more than once (the adaptive GAN weight takes two
    gradients at the decoder's last layer before the backward pass). A compiled backward that donates its
    saved buffers refuses that when it is compiled lazily, as after a change of input size (dynamic shapes),
    so donation is turned off for the process."""
    if retain_graph:
        import torch._functorch.config as functorch_config

        functorch_config.donated_buffer = False
    for module in modules:
        if module is not None:
            module.compile(**options)
