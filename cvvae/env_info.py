"""``cvvae env``: the software and hardware facts a bug report needs (versions, CUDA, GPUs, CPU, BLAS).

Paste its output into an issue; ``--json`` prints the same facts as one JSON object.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
from typing import Any

PACKAGES = (
    "cvvae",
    "torch",
    "torchvision",
    "diffusers",
    "transformers",
    "accelerate",
    "safetensors",
    "numpy",
    "decord",
    "opencv-python-headless",
    "lpips",
    "torchmetrics",
    "snakemake",
)


def _version(distribution: str) -> str:
    if distribution == "cvvae":  # also right when run from a checkout that is not pip-installed
        from cvvae import __version__

        return __version__
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # not Linux
        pass
    return platform.processor() or platform.machine()


def torch_config_value(lines: list[str], key: str) -> str:
    """The value of ``KEY=value`` in torch's build configuration lines, or ``n/a``."""
    for line in lines:
        if f"{key}=" in line:
            return line.split(f"{key}=", 1)[1].split(",", 1)[0].strip()
    return "n/a"


def collect() -> dict[str, Any]:
    """Everything ``cvvae env`` reports, as plain data."""
    import torch

    from cvvae.data.reader import video_backend

    config_lines = torch.__config__.show().splitlines()
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in PACKAGES},
        "torch_cuda_build": torch.version.cuda or "none (CPU build)",
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(),
        "gpus": [],
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_blas": torch_config_value(config_lines, "BLAS_INFO"),
        "torch_lapack": torch_config_value(config_lines, "LAPACK_INFO"),
        "numpy_blas": _numpy_blas(),
        "video_backend": _safe_video_backend(video_backend),
    }
    for index in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        props = torch.cuda.get_device_properties(index)
        info["gpus"].append(
            {
                "name": props.name,
                "memory_gib": round(props.total_memory / 2**30, 1),
                "capability": f"{props.major}.{props.minor}",
            }
        )
    return info


def _numpy_blas() -> str:
    import numpy as np

    try:
        config = np.show_config(mode="dicts")  # numpy >= 1.25
    except TypeError:
        return "n/a"
    blas = (config or {}).get("Build Dependencies", {}).get("blas", {})
    name, version = blas.get("name"), blas.get("version")
    return f"{name} {version}".strip() if name else "n/a"


def _safe_video_backend(choose: Any) -> str:
    try:
        return choose()
    except (ImportError, ValueError) as err:  # a forced backend that cannot be used
        return f"unusable: {err}"


def format_text(info: dict[str, Any]) -> str:
    """The facts as aligned ``key: value`` lines."""
    rows: list[tuple[str, str]] = [("python", info["python"]), ("platform", info["platform"])]
    rows += [(name, version) for name, version in info["packages"].items()]
    rows += [
        ("torch CUDA build", str(info["torch_cuda_build"])),
        ("cuDNN", str(info["cudnn"] or "n/a")),
        ("CUDA available", str(info["cuda_available"])),
    ]
    for index, gpu in enumerate(info["gpus"]):
        rows.append(
            (
                f"GPU {index}",
                f"{gpu['name']}, {gpu['memory_gib']} GiB, compute capability {gpu['capability']}",
            )
        )
    rows += [
        (
            "CPU",
            f"{info['cpu']} ({info['cpu_count']} logical cores, torch uses {info['torch_threads']} threads)",
        ),
        ("CPU capability", str(info["cpu_capability"])),
        ("BLAS (torch)", f"{info['torch_blas']} (LAPACK {info['torch_lapack']})"),
        ("BLAS (numpy)", info["numpy_blas"]),
        ("video backend", info["video_backend"]),
    ]
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key + ':':<{width + 1}} {value}" for key, value in rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text lines")


def run(args: argparse.Namespace) -> int:
    info = collect()
    print(json.dumps(info, indent=2) if args.json else format_text(info))
    return 0
