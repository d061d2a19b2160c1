"""Real inputs a profile needs before any job starts: datasets, weights and metric networks.

The workflow calls :func:`missing_inputs` when it parses a profile, so ``snakemake -n`` already lists every
file the user must provide, each with what it is, where it goes and how to get it, instead of the first job
failing later with one of them in a log file. Inputs the workflow itself produces (the embedded dataset,
the small image VAE, the training runs) are not checked here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

DATA_HINT = (
    "write its manifest with `cvvae data manifest --dataset NAME --root FOLDER` (see data/README.md), or "
    "build the embedded dataset with `cvvae data embedded` and enable workflow.build_data"
)


def _manifest(path: str | Path) -> Path:
    path = Path(path)
    return path / "manifest.csv" if path.suffix != ".csv" else path


def _missing_weights(kind: str, path: str | None, subfolder: str | None, what: str) -> str | None:
    from cvvae.models.zoo import missing_weights_message

    folder = Path(path or "") / (subfolder or "")
    if path and (folder / "config.json").is_file():
        return None
    return f"{what}: " + " ".join(missing_weights_message(kind, path, subfolder).split())


def _training_lpips_nets(profile: Mapping[str, Any]) -> set[str]:
    """LPIPS backbones the profile's training losses use (they cannot run without the weights)."""
    from cvvae.train.config import resolve_cvvae_config, resolve_image_vae_config

    nets: set[str] = set()
    workflow = profile["workflow"]
    if workflow.get("train_image_vae") and profile.get("image_vae") is not None:
        nets.add(resolve_image_vae_config(profile).train.loss.lpips)
    for variant in workflow.get("variants", []):
        nets.add(resolve_cvvae_config(profile, variant).train.loss.lpips)
    return nets - {"none"}


def missing_inputs(profile: Mapping[str, Any]) -> list[str]:
    """One line per real input of ``profile`` that is not where the profile says it is."""
    from cvvae.metrics.weights import lpips_na_reason
    from cvvae.models.zoo import parse_spec
    from cvvae.profile import frozen_image_vae

    workflow = profile["workflow"]
    problems: list[str] = []
    data = profile.get("data") or {}
    trains = bool(workflow.get("variants")) or bool(workflow.get("train_image_vae"))
    default_manifest = _manifest(data.get("manifest") or data["root"])
    if not workflow.get("build_data"):
        readers = ["training"] if trains else []
        readers += [
            f"protocol {name}"
            for name, fields in (profile.get("protocols") or {}).items()
            if not (fields or {}).get("dataset")
        ]
        if readers and not default_manifest.is_file():
            problems.append(f"dataset for {', '.join(readers)}: {default_manifest} not found; {DATA_HINT}")
    for name, fields in (profile.get("protocols") or {}).items():
        dataset = (fields or {}).get("dataset")
        if dataset and not _manifest(dataset).is_file():
            problems.append(f"dataset of protocol {name}: {_manifest(dataset)} not found; {DATA_HINT}")
    section = profile.get("cvvae") or {}
    if not workflow.get("train_image_vae") and (trains or workflow.get("inflate")):
        image_vae = frozen_image_vae(profile)
        problem = _missing_weights(
            "image_vae", image_vae.path, image_vae.subfolder, "frozen image VAE (cvvae.image_vae_path)"
        )
        problems += [problem] if problem else []
    if section.get("init_path") and trains:
        problem = _missing_weights("cvvae", section["init_path"], None, "starting CV-VAE (cvvae.init_path)")
        problems += [problem] if problem else []
    for name, spec in (profile.get("evaluate") or {}).get("models", {}).items():
        if "{runs}" in spec:
            continue  # produced by the workflow
        parsed = parse_spec(spec)
        if parsed.get("random_weights"):
            continue
        problem = _missing_weights(
            parsed["kind"], parsed.get("path"), parsed.get("subfolder"), f"weights of evaluate.models.{name}"
        )
        problems += [problem] if problem else []
    for net in sorted(_training_lpips_nets(profile)):
        reason = lpips_na_reason(net)
        if reason is not None:
            problems.append(f"LPIPS-{net} weights for the training loss: {reason}")
    return problems
