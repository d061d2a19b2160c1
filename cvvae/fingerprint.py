"""Content fingerprints: what a run or an evaluation was computed from, so that a rerun with different
inputs is detected instead of being paired with old results.

A fingerprint is a plain mapping (kept readable in the run folder) whose values are settings or SHA-256
digests of files: a folder of weights is identified by its bytes, not by its path, so moving it changes
nothing and retraining it in place changes the fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Files of a diffusers save_pretrained folder that determine the model.
MODEL_FILES = ("*.json", "*.safetensors", "*.bin")


def file_digest(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_digest(folder: str | Path, patterns: tuple[str, ...] = MODEL_FILES) -> str:
    """Digest of the names and bytes of the files of ``folder`` (not recursive) matching ``patterns``."""
    folder = Path(folder)
    files = sorted({p for pattern in patterns for p in folder.glob(pattern) if p.is_file()})
    if not files:
        raise FileNotFoundError(f"{folder} holds no model files ({', '.join(patterns)})")
    digest = hashlib.sha256()
    for path in files:
        digest.update(
            f"{path.name}\0{_json_digest(path) if path.suffix == '.json' else file_digest(path)}\n".encode()
        )
    return digest.hexdigest()


def _json_digest(path: Path) -> str:
    """A config's settings only: diffusers writes bookkeeping keys (``_name_or_path``, ``_diffusers_version``)
    that change with where and by which version a model was saved, not what it computes."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return file_digest(path)
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if not k.startswith("_")}
    return mapping_digest(data)


def mapping_digest(data: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    if not isinstance(data, Mapping):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def differences(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 8) -> str:
    """The keys whose values differ, as ``key: old -> new`` (at most ``limit`` of them, then a count)."""
    flat_old, flat_new = flatten(old), flatten(new)
    keys = sorted(k for k in flat_old.keys() | flat_new.keys() if flat_old.get(k) != flat_new.get(k))
    shown = [f"{k}: {flat_old.get(k, '(absent)')!r} -> {flat_new.get(k, '(absent)')!r}" for k in keys[:limit]]
    if len(keys) > limit:
        shown.append(f"and {len(keys) - limit} more")
    return "; ".join(shown)
