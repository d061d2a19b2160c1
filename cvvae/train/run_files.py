"""What a run folder records besides its weights: the resolved config with its deviations from the paper,
the environment, the metric logs and the unreadable files met (see ``cvvae.train.trainer``)."""

from __future__ import annotations

import csv
import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cvvae.train.config import TrainConfig, dump_yaml, to_dict


def math_backends() -> dict[str, Any]:
    """The numerical libraries that decide floating-point results on this machine (BLAS, oneDNN, SIMD)."""
    from cvvae.env_info import torch_config_value

    lines = [line.strip(" -") for line in torch.__config__.show().splitlines()]

    def find(*needles: str) -> str:
        return next((line for line in lines if any(n in line for n in needles)), "n/a")

    return {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "blas": torch_config_value(lines, "BLAS_INFO"),
        "mkl": find("Math Kernel Library"),
        "onednn": find("MKL-DNN", "oneDNN"),
        "openmp": find("OpenMP"),
    }


def environment_info(accelerator: Any) -> dict[str, Any]:
    """``environment.json``: versions, hardware, the numerical libraries and the process layout."""
    import accelerate
    import diffusers

    from cvvae.env_info import cpu_model

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "accelerate": accelerate.__version__,
        "numpy": np.__version__,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        **math_backends(),
        "num_processes": accelerator.num_processes,
        "device": str(accelerator.device),
        "mixed_precision": accelerator.mixed_precision,
    }
    if torch.cuda.is_available():
        info["cuda"] = torch.version.cuda
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    try:
        import lpips

        info["lpips"] = getattr(lpips, "__version__", "installed")
    except ImportError:
        info["lpips"] = None
    return info


def deviations(config: TrainConfig) -> list[str]:
    """Where this run departs from the paper's recipe (written to config.yaml)."""
    out = []
    if config.loss.lpips == "none" or config.loss.lpips_weight == 0:
        out.append("perceptual (LPIPS) term off: reconstruction loss is pixel-only")
    if config.synthetic_data:
        out.append("synthetic random data instead of a dataset (throughput smoke run only)")
    if config.precision != "fp32":
        out.append(f"{config.precision} autocast instead of fp32")
    if config.kind == "cvvae" and config.reg.distance != "l2":
        out.append(f"regularisation distance {config.reg.distance} instead of the paper's squared error")
    return out


def write_config(run_dir: Path, resolved: Any, deviations: list[str]) -> None:
    """``config.yaml``: the resolved config and where the run departs from the paper's recipe."""
    data = to_dict(resolved)
    data["deviations"] = deviations
    dump_yaml(data, run_dir / "config.yaml")


def flat_scalars(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A resolved config as ``a.b.c -> scalar`` (what experiment trackers accept as hyperparameters)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_scalars(value, f"{name}."))
        else:
            out[name] = value if isinstance(value, int | float | str | bool) else str(value)
    return out


def data_report(sampler: Any, step: int) -> dict[str, Any]:
    """``data_report.json``: unreadable training files met so far, per mixture source (they were skipped,
    not trained on)."""
    # MixtureSampler's sources carry datasets; the synthetic stand-in reads no files.
    sources = [s for s in getattr(sampler, "sources", []) if hasattr(s, "dataset")]
    per_source = {
        source.name: {
            "skipped_loads": int(getattr(source.dataset, "skipped", 0)),
            "bad_files": sorted(getattr(source.dataset, "bad_paths", ())),
        }
        for source in sources
    }
    skipped = sum(v["skipped_loads"] for v in per_source.values())
    return {"step": step, "skipped_loads": skipped, "sources": per_source}


def write_run_files(run_dir: Path, resolved: Any, config: TrainConfig, accelerator: Any) -> None:
    """``config.yaml`` (with the deviations) and ``environment.json`` of a run about to train."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(run_dir, resolved, deviations(config))
    (run_dir / "environment.json").write_text(json.dumps(environment_info(accelerator), indent=2))


class CsvLog:
    """Append rows to a CSV; on resume, rows from steps >= the resume step are dropped first."""

    def __init__(self, path: Path, columns: list[str] | None = None) -> None:
        self.path, self.columns = path, columns

    def truncate_from(self, step: int) -> None:
        if not self.path.is_file():
            return
        with self.path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        if rows:
            self.columns = self.columns or list(rows[0])
        kept = [r for r in rows if int(r["step"]) < step]
        self._write(kept, mode="w")

    def append(self, row: dict[str, Any]) -> None:
        self.columns = self.columns or list(row)
        self._write([row], mode="a")

    def _write(self, rows: list[dict[str, Any]], mode: str) -> None:
        new = mode == "w" or not self.path.is_file()
        with self.path.open(mode, newline="") as fh:
            writer = csv.DictWriter(fh, self.columns, extrasaction="ignore", restval="")
            if new:
                writer.writeheader()
            writer.writerows(rows)
