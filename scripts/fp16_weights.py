"""Weights that travel between GPU holds: round a diffusers folder's weights to fp16 in place and cut them
into shards small enough to come back (``round``); rebuild the folder from the shards (``restore``).

Rounding first means that every run reads the same bits, whether it runs in the hold that trained the model
or in a later one that restored it from the shards.

    python scripts/fp16_weights.py round results/gpu/runs/image_vae/final --shards /tmp/ship
    python scripts/fp16_weights.py restore /tmp/ship --out results/gpu/runs/image_vae/final
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

WEIGHTS = "diffusion_pytorch_model.safetensors"
SHARD_BYTES = 15 * 2**20


def round_folder(folder: Path, shards: Path) -> list[Path]:
    """Round ``folder``'s float weights to fp16 (stored back in their dtype) and write fp16 shards."""
    tensors = load_file(folder / WEIGHTS)
    rounded = {k: v.half().to(v.dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    tmp = folder / (WEIGHTS + ".tmp")
    save_file(rounded, tmp, metadata={"format": "pt", "rounded": "fp16"})
    tmp.replace(folder / WEIGHTS)
    shards.mkdir(parents=True, exist_ok=True)
    written, current, size = [], {}, 0
    for key in sorted(rounded):
        value = rounded[key].half() if rounded[key].is_floating_point() else rounded[key]
        nbytes = value.numel() * value.element_size()
        if current and size + nbytes > SHARD_BYTES:
            written.append(_write_shard(shards, len(written), current))
            current, size = {}, 0
        current[key], size = value.contiguous(), size + nbytes
    written.append(_write_shard(shards, len(written), current))
    shutil.copy2(folder / "config.json", shards / "config.json")
    digest = tensors_digest(rounded)
    dtypes = {k: str(v.dtype).removeprefix("torch.") for k, v in tensors.items()}
    index = {"shards": [p.name for p in written], "sha256": digest, "dtypes": dtypes}
    (shards / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    return written


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes in name order (the file's header order may differ)."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        value = tensors[key].contiguous()
        h.update(f"{key}|{value.dtype}|{tuple(value.shape)}|".encode())
        h.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return h.hexdigest()


def _write_shard(shards: Path, number: int, tensors: dict[str, torch.Tensor]) -> Path:
    path = shards / f"weights-{number:02d}.safetensors"
    save_file(tensors, path)
    return path


def restore_folder(shards: Path, out: Path) -> Path:
    """Rebuild the rounded folder from ``shards`` and check it against the digest recorded by ``round``."""
    index = json.loads((shards / "index.json").read_text())
    tensors: dict[str, torch.Tensor] = {}
    for name in index["shards"]:
        tensors |= load_file(shards / name)
    dtypes = {k: getattr(torch, v) for k, v in index["dtypes"].items()}
    restored = {k: v.to(dtypes[k]) for k, v in tensors.items()}
    out.mkdir(parents=True, exist_ok=True)
    save_file(restored, out / WEIGHTS, metadata={"format": "pt", "rounded": "fp16"})
    shutil.copy2(shards / "config.json", out / "config.json")
    digest = tensors_digest(load_file(out / WEIGHTS))
    if digest != index["sha256"]:
        raise SystemExit(
            f"restored weights differ from the rounded original (sha256 {digest} != {index['sha256']})"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    rounding = sub.add_parser("round", help="round a folder's weights to fp16 in place and write shards")
    rounding.add_argument("folder", type=Path)
    rounding.add_argument("--shards", type=Path, required=True)
    restore = sub.add_parser("restore", help="rebuild a folder from its shards")
    restore.add_argument("shards", type=Path)
    restore.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "round":
        for path in round_folder(args.folder, args.shards):
            print(path, path.stat().st_size)
    else:
        print(restore_folder(args.shards, args.out))


if __name__ == "__main__":
    main()
