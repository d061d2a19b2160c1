"""Floating-point dtypes by name: the short names of tables and command lines, and their aliases."""

from __future__ import annotations

import torch

# The names written into tables and offered on command lines, in this order.
DTYPE_NAMES: tuple[str, ...] = ("fp32", "bf16", "fp16")
DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "float": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``torch.dtype`` from a dtype or a name (``fp32``, ``bf16``, ``fp16``, ``float32``, ...)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPE_NAMES)}") from None


def dtype_name(dtype: torch.dtype) -> str:
    """The short name of ``dtype`` (``fp32``, ``bf16``, ``fp16``), else torch's own."""
    return next((name for name in DTYPE_NAMES if DTYPES[name] == dtype), str(dtype))
