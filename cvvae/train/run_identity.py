"""What a training run is computed from, recorded in its folder, so that a run folder never pairs a new
config with old weights.

``<run>/run_identity.json`` holds the resolved config minus bookkeeping (log, checkpoint and worker
settings), with the frozen image VAE, the starting weights and the manifest replaced by digests of their
bytes. Continuing a run whose identity differs stops with the differing keys, unless the caller asked to
start afresh.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Literal

from cvvae.fingerprint import differences, file_digest, folder_digest, mapping_digest
from cvvae.staging import atomic_write_text

IDENTITY_FILE = "run_identity.json"


def identity_digest(run_dir: str | Path) -> str | None:
    """Digest of the identity recorded in ``run_dir`` (its settings, not their formatting), or None for a
    folder that is not a training run (released weights, a restored image VAE)."""
    path = Path(run_dir) / IDENTITY_FILE
    if not path.is_file():
        return None
    return mapping_digest(json.loads(path.read_text()))


# TrainConfig keys that change neither the weights nor the logged metrics.
BOOKKEEPING_KEYS = (
    "log_every", "ckpt_every", "keep_ckpts", "num_workers", "prefetch_batches", "cache_decoded",
    "val_at_start", "compile", "compile_mode",
)  # fmt: skip
# What a run folder holds besides the identity; removed when a run starts afresh.
RUN_CONTENTS = (
    "checkpoints",
    "final",
    "samples",
    "metrics.csv",
    "val_metrics.csv",
    "config.yaml",
    "environment.json",
    "data_report.json",
)


class RunConfigChanged(ValueError):
    """The run folder was trained with another config (or with none recorded)."""


def _weights_digest(path: str | None, subfolder: str | None = None) -> str | None:
    if not path:
        return None
    folder = Path(path) / (subfolder or "")
    try:
        return folder_digest(folder)
    except FileNotFoundError:
        return f"missing: {folder}"  # the trainer reports the missing folder itself


def run_identity(resolved: Any) -> dict[str, Any]:
    """The identity of a resolved ``RunConfig`` or ``ImageVAERunConfig`` (see the module docs)."""
    from cvvae.train.config import to_dict

    data = to_dict(resolved)
    data.pop("variant", None)  # a name, not a setting
    train = data["train"]
    for key in BOOKKEEPING_KEYS:
        train.pop(key, None)
    source = data.pop("data")
    if train.get("synthetic_data"):
        data["data"] = "synthetic"
    else:
        manifest = resolved.data.manifest_path()
        data["data"] = {
            "manifest_sha256": file_digest(manifest) if manifest.is_file() else f"missing: {manifest}",
            "train_split": source["train_split"],
            "val_split": source["val_split"],
        }
    if "image_vae_path" in data:
        data["image_vae_sha256"] = _weights_digest(
            data.pop("image_vae_path"), data.pop("image_vae_subfolder")
        )
    if "init_path" in data:
        data["init_sha256"] = _weights_digest(data.pop("init_path"))
    return data


def _has_run_state(run_dir: Path) -> bool:
    return any((run_dir / name).exists() for name in ("checkpoints", "final", "metrics.csv"))


def clear_run_dir(run_dir: Path) -> None:
    for name in (*RUN_CONTENTS, IDENTITY_FILE):
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def prepare_run_dir(
    run_dir: str | Path,
    identity: dict[str, Any],
    restart: bool = False,
    if_changed: Literal["error", "restart"] = "error",
) -> Literal["new", "continue", "restarted"]:
    """Check ``run_dir`` against ``identity`` and record it; clear the folder when starting afresh."""
    run_dir = Path(run_dir)
    identity = json.loads(json.dumps(identity, sort_keys=True, default=str))  # compare as stored
    record = run_dir / IDENTITY_FILE
    reason = None
    if restart:
        reason = "--restart"
    elif record.is_file():
        old = json.loads(record.read_text())
        if old != identity:
            reason = f"its config changed ({differences(old, identity)})"
    elif _has_run_state(run_dir):
        reason = f"it holds a run without {IDENTITY_FILE} (an older version's run), so its config is unknown"
    if reason is not None and not restart and if_changed == "error":
        raise RunConfigChanged(
            f"{run_dir} cannot be continued: {reason}. Train into a new --out folder, or pass --restart to "
            "discard this run and train from step 0."
        )
    outcome: Literal["new", "continue", "restarted"] = "continue" if record.is_file() else "new"
    if reason is not None:
        print(f"{run_dir}: starting afresh: {reason}")
        clear_run_dir(run_dir)
        outcome = "restarted"
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record, json.dumps(identity, indent=2, sort_keys=True) + "\n")
    return outcome
